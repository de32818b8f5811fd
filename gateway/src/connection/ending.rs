//! How a connected session ends: why, what the client is told, and what the broker does
//! with the session, its will and the transport afterwards.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::{Connection, Core, Park, linger};
use crate::broker::Broker;
use crate::hooks::{DisconnectReason, LifecycleEvent};
use crate::mqtt::{Codec, Disconnect, Packet, Protocol, ReasonCode};
use crate::store::record::now_ms;

/// How a connected session ends.
#[derive(Debug)]
pub(super) struct Ending {
    pub(super) reason: DisconnectReason,
    /// A DISCONNECT to send before closing (5.0 only); boxed, as its properties would
    /// otherwise make every `Ending` (and the futures that return one) much larger.
    pub(super) notify: Option<Box<Disconnect>>,
    /// Whether the will is published.
    pub(super) publish_will: bool,
}

impl Ending {
    pub(super) fn administrative(code: ReasonCode) -> Ending {
        Ending {
            reason: DisconnectReason::Administrative(code),
            notify: Some(Box::new(Disconnect::new(code))),
            publish_will: true,
        }
    }

    pub(super) fn lost() -> Ending {
        Ending { reason: DisconnectReason::ConnectionLost, notify: None, publish_will: true }
    }

    pub(super) fn violation(code: ReasonCode) -> Ending {
        Ending {
            reason: DisconnectReason::ProtocolViolation(code),
            notify: Some(Box::new(Disconnect::new(code))),
            publish_will: true,
        }
    }

    pub(super) fn kicked(code: ReasonCode) -> Ending {
        let reason = match code {
            ReasonCode::SessionTakenOver => DisconnectReason::SessionTakenOver,
            ReasonCode::QuotaExceeded => DisconnectReason::SessionOverflow,
            ReasonCode::ServerShuttingDown => DisconnectReason::ServerShutdown,
            other => DisconnectReason::Administrative(other),
        };
        // A server going down is not the client's failure: its will is not published.
        let publish_will = code != ReasonCode::ServerShuttingDown;
        Ending { reason, notify: Some(Box::new(Disconnect::new(code))), publish_will }
    }
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
{
    /// Detaches from the session and applies what the ending implies: will, session expiry or
    /// removal, lifecycle event; then closes, with the DISCONNECT when there is one. The
    /// session and everything else the connection holds are let go of first: a server-ended
    /// connection then lingers (`linger.rs`) holding only its transport.
    pub(super) async fn finish(mut self: Box<Self>, ending: Ending) {
        crate::telemetry::catalogue::OPEN_CONNECTIONS.decrement(1);
        if let Some(disconnect) = &ending.notify {
            crate::telemetry::catalogue::dropped_session(disconnect.reason);
        }
        if let Some(disconnect) = &ending.notify
            && self.core.protocol == Protocol::V5
        {
            Codec::encode(
                &Packet::Disconnect((**disconnect).clone()),
                self.core.protocol,
                &mut self.running.write_buf,
            );
        }
        let (generation, expiry, shared) = {
            let mut state = self.core.session.lock();
            state.attached = None;
            (state.generation, state.expiry_interval, state.take_shared())
        };
        // A detached session congests nobody: publishers paused for it go on at once.
        self.core.session.space.notify_waiters();
        self.core.broker.redistribute(shared, &self.core.session);
        self.core.broker.persist_session(&self.core.session, Some(now_ms()));
        let shutting_down = self.core.broker.shutdown.is_cancelled();
        if let Some(will) = self.core.will.take() {
            if ending.publish_will && !shutting_down {
                let delay = will.delay.min(expiry);
                self.core.broker.schedule_will(
                    will.message,
                    self.core.session.clone(),
                    generation,
                    Duration::from_secs(u64::from(delay)),
                );
            } else {
                self.core.broker.forget_connect_will(&self.core.session.client_id);
            }
        }
        if expiry == 0 {
            self.core.broker.end_session(&self.core.session);
        } else if expiry != u32::MAX && !shutting_down {
            self.core.broker.schedule_expiry(
                self.core.session.clone(),
                generation,
                Duration::from_secs(u64::from(expiry)),
            );
        }
        debug!(client_id = %self.core.session.client_id, reason = ?ending.reason, "Client disconnected.");
        crate::diagnostics::MqttDisconnected {
            client_identity: &self.core.identity.authentication_name,
            session_name: &self.core.session.client_id,
            protocol: self.core.protocol,
            websocket: self.core.stream.websocket(),
            reason: &ending.reason,
        }
        .emit();
        self.core.broker.hooks.emit(LifecycleEvent::Disconnected {
            identity: self.core.identity.clone(),
            connection: self.core.number,
            reason: ending.reason,
        });
        let (broker, stream, last) = (*self).into_transport();
        if ending.notify.is_some() {
            linger::close(&broker, stream, last).await;
        } else {
            // The client ended the connection: there is nothing of its own left to read.
            linger::close_now(stream, last).await;
        }
    }

    /// The broker, the transport and what is left to write; everything else (the session's
    /// attach lock, the listener's slot) is dropped here.
    fn into_transport(self) -> (Arc<Broker>, S, BytesMut) {
        let Connection { core: Core { broker, stream, .. }, running } = self;
        (broker, stream, running.write_buf)
    }
}
