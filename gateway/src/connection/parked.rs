//! What a parked connection keeps: the connection without the parts only a running one needs
//! (its buffers, its pause, its durability barrier, the publishes a pause held back, its
//! parking timer), all empty or unset when it parks. Every idle connection is one of these,
//! so each field here is paid for by every idle client.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::Instrument;

use super::outbound::Outbound;
use super::{Connection, Park, Parker, Peer, Will, drive};
use crate::broker::Broker;
use crate::broker::session::{Parked, Session};
use crate::hooks::ClientIdentity;
use crate::mqtt::{Codec, Protocol};

/// A connection at rest, held by its session (`Session::park`) until something wakes it.
pub(super) struct ParkedConnection<S> {
    broker: Arc<Broker>,
    stream: S,
    protocol: Protocol,
    session: Arc<Session>,
    identity: ClientIdentity,
    number: u64,
    keep_alive: u16,
    last_packet: Instant,
    will: Option<Will>,
    expiry_was_zero: bool,
    auth_method: Option<Box<str>>,
    peer: Peer,
    problem_information: bool,
    #[allow(clippy::box_collection, reason = "as in `Connection`")]
    inbound_aliases: Option<Box<HashMap<u16, Arc<str>>>>,
    outbound: Outbound,
    credentials_expire: Option<Instant>,
    parker: Arc<Parker>,
    attached: OwnedMutexGuard<()>,
    slot: Option<OwnedSemaphorePermit>,
}

impl<S> Connection<S> {
    /// Sets the running-only parts aside; the connection must be quiet (`is_quiet`), so they
    /// hold nothing. Gives the connection back when it has no parker.
    pub(super) fn into_parked(self: Box<Self>) -> Result<Box<ParkedConnection<S>>, Box<Self>> {
        debug_assert!(self.read_buf.is_empty() && self.write_buf.is_empty());
        debug_assert!(self.congested.is_empty() && self.held.is_none() && self.barrier.is_none());
        let Some(parker) = self.parker.clone() else { return Err(self) };
        let Connection {
            broker,
            stream,
            read_buf: _,
            write_buf: _,
            codec: _,
            protocol,
            session,
            identity,
            number,
            keep_alive,
            last_packet,
            will,
            expiry_was_zero,
            auth_method,
            peer,
            problem_information,
            inbound_aliases,
            outbound,
            congested: _,
            pause_until: _,
            busy: _,
            credentials_expire,
            barrier: _,
            held: _,
            parker: _,
            park_due: _,
            active: _,
            park_check: _,
            _attached: attached,
            _slot: slot,
        } = *self;
        Ok(Box::new(ParkedConnection {
            broker,
            stream,
            protocol,
            session,
            identity,
            number,
            keep_alive,
            last_packet,
            will,
            expiry_was_zero,
            auth_method,
            peer,
            problem_information,
            inbound_aliases,
            outbound,
            credentials_expire,
            parker,
            attached,
            slot,
        }))
    }
}

impl<S> ParkedConnection<S> {
    /// The connection again, with empty buffers, that parks after `Parker::after` of quiet.
    pub(super) fn into_connection(self) -> Box<Connection<S>> {
        let ParkedConnection {
            broker,
            stream,
            protocol,
            session,
            identity,
            number,
            keep_alive,
            last_packet,
            will,
            expiry_was_zero,
            auth_method,
            peer,
            problem_information,
            inbound_aliases,
            outbound,
            credentials_expire,
            parker,
            attached,
            slot,
        } = self;
        let now = Instant::now();
        let codec = Codec::new(broker.config.max_packet_size as usize);
        Box::new(Connection {
            broker,
            stream,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            // The codec holds only the configured packet limit.
            codec,
            protocol,
            session,
            identity,
            number,
            keep_alive,
            last_packet,
            will,
            expiry_was_zero,
            auth_method,
            peer,
            problem_information,
            inbound_aliases,
            outbound,
            congested: Vec::new(),
            pause_until: now,
            busy: false,
            credentials_expire,
            barrier: None,
            held: None,
            park_check: now + parker.after(),
            parker: Some(parker),
            park_due: false,
            active: false,
            _attached: attached,
            _slot: slot,
        })
    }
}

impl<S> Parked for ParkedConnection<S>
where
    S: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
{
    fn resume(self: Box<Self>) {
        if let Some(fd) = self.stream.parked_fd() {
            self.parker.unwatch(fd);
        }
        let tasks = self.broker.tasks.clone();
        let handle = self.parker.handle().clone();
        let span = tracing::debug_span!("connection", client_id = %self.session.client_id);
        let resumed = async move {
            let mut connection = (*self).into_connection();
            connection.stream.unpark();
            drive(connection).await;
        };
        tasks.spawn_on(resumed.instrument(span), &handle);
    }

    fn deadline(&self) -> Instant {
        super::deadline(self.last_packet, self.keep_alive, self.credentials_expire)
    }
}
