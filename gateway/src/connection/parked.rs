//! A parked connection: its `Core`, without the parts only a running one needs (`Running`,
//! all empty or unset when it parks), and the parker that watches its socket. Every idle
//! connection is one of these.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::Instrument;

use super::park_timer::ParkTimer;
use super::running::Running;
use super::{Connection, Core, Park, Parker, drive};
use crate::broker::session::Parked;
use crate::mqtt::Codec;

/// A connection at rest, held by its session (`Session::park`) until something wakes it.
pub(super) struct ParkedConnection<S> {
    core: Core<S>,
    parker: Arc<Parker>,
}

impl<S> Connection<S> {
    /// Sets the running parts aside; the connection must be quiet (`Running::is_quiet`), so
    /// they hold nothing.
    pub(super) fn into_parked(self, parker: Arc<Parker>) -> Box<ParkedConnection<S>> {
        debug_assert!(self.running.is_quiet());
        Box::new(ParkedConnection { core: self.core, parker })
    }
}

impl<S> ParkedConnection<S> {
    /// The connection again, with empty buffers, that parks after `Parker::after` of quiet.
    pub(super) fn into_connection(self) -> Box<Connection<S>> {
        // The codec holds only the configured packet limit.
        let codec = Codec::new(self.core.broker.config.max_packet_size as usize);
        let running = Running::woken(codec, ParkTimer::woken(self.parker));
        Box::new(Connection { core: self.core, running })
    }
}

impl<S> Parked for ParkedConnection<S>
where
    S: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
{
    fn resume(self: Box<Self>) {
        if let Some(fd) = self.core.stream.parked_fd() {
            self.parker.unwatch(fd);
        }
        let tasks = self.core.broker.tasks.clone();
        let handle = self.parker.handle().clone();
        let span = tracing::debug_span!("connection", client_id = %self.core.session.client_id);
        let resumed = async move {
            let mut connection = (*self).into_connection();
            connection.core.stream.unpark();
            drive(connection).await;
        };
        tasks.spawn_on(resumed.instrument(span), &handle);
    }

    fn deadline(&self) -> Instant {
        self.core.deadline()
    }
}
