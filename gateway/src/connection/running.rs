//! What only a running connection has: its buffers, its pause, its durability barrier, the
//! publishes a pause held back, and its parking timer. All of it is empty or unset when the
//! connection parks, so a parked connection keeps only its `Core`.

use bytes::BytesMut;

use super::inbound::Run;
use super::park_timer::ParkTimer;
use super::pause::Pause;
use crate::mqtt::Codec;
use crate::store::Ticket;

pub(super) struct Running {
    pub(super) codec: Codec,
    pub(super) read_buf: BytesMut,
    pub(super) write_buf: BytesMut,
    /// Whether the last read filled all the room the read buffer had (see `BUSY_READ`).
    pub(super) busy: bool,
    /// The journal point that must be durable before the write buffer goes out: an
    /// acknowledgement must never promise what a crash could still lose.
    pub(super) barrier: Option<Ticket>,
    /// QoS 0 and QoS 1 publishes already read, held back by a pause (see `process_input`; a
    /// held QoS 1 publish is not acknowledged until it is fanned out); boxed, as it is rare.
    pub(super) held: Option<Box<Run>>,
    pub(super) pause: Pause,
    /// When to park; `None` keeps the connection a task for its whole life.
    pub(super) park: Option<ParkTimer>,
}

impl Running {
    /// A connection's running parts, around what was read with its CONNECT and the CONNACK
    /// written; it does not park until it is given a parker.
    pub(super) fn connected(codec: Codec, read_buf: BytesMut, write_buf: BytesMut) -> Running {
        Running {
            codec,
            read_buf,
            write_buf,
            busy: false,
            barrier: None,
            held: None,
            pause: Pause::none(),
            park: None,
        }
    }

    /// The running parts of a connection that was parked, with empty buffers.
    pub(super) fn woken(codec: Codec, park: ParkTimer) -> Running {
        Running { park: Some(park), ..Running::connected(codec, BytesMut::new(), BytesMut::new()) }
    }

    /// Whether to park now: parking is due and nothing holds the connection.
    pub(super) fn should_park(&self) -> bool {
        self.park.as_ref().is_some_and(ParkTimer::is_due) && self.is_quiet()
    }

    /// Whether the connection holds nothing that a parked connection could not: no partial
    /// packet, nothing to write or wait for, no pause.
    pub(super) fn is_quiet(&self) -> bool {
        self.read_buf.is_empty()
            && self.write_buf.is_empty()
            && !self.busy
            && !self.pause.is_paused()
            && self.held.is_none()
            && self.barrier.is_none()
    }

    /// Makes the next write wait until `ticket` is durable.
    pub(super) fn hold(&mut self, ticket: Option<Ticket>) {
        self.barrier = self.barrier.max(ticket);
    }
}
