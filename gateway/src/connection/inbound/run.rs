//! Runs: QoS 0 and QoS 1 publishes read back to back, fanned out together (see
//! `Broker::publish_run`; ARCHITECTURE.md, "Runs").

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::broker::config::MqttConfig;
use crate::broker::message::Message;
use crate::connection::{Connection, Park};
use crate::mqtt::codec::Head;
use crate::mqtt::{Ack, Codec, Packet, Properties, QoS, ReasonCode};

/// Most messages fanned out as one run.
const RUN_MAX: usize = 64;

/// QoS 0 and QoS 1 publishes waiting to be fanned out together, and their size as queues
/// count it. The three are kept in step by the methods below.
#[derive(Debug, Default)]
pub(in crate::connection) struct Run {
    messages: Vec<Arc<Message>>,
    /// The packet id of each message in `messages` that is owed a PUBACK once it is fanned
    /// out (QoS 1), or 0 (QoS 0; MQTT never uses packet id 0).
    packet_ids: Vec<u16>,
    bytes: usize,
}

impl Run {
    pub(in crate::connection) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Whether `message` may join: runs are bounded by count and by bytes (half of a
    /// session's byte bound, the room between its soft limit and its bound), so that what a
    /// publisher holds while paused stays small.
    pub(super) fn fits(&self, message: &Message, config: &MqttConfig) -> bool {
        self.messages.len() < RUN_MAX
            && (self.messages.is_empty()
                || self.bytes + message.queued_size() <= config.max_queued_bytes / 2)
    }

    /// Adds a message, with the packet id its PUBACK is owed under (0 for QoS 0).
    pub(super) fn push(&mut self, message: Arc<Message>, packet_id: u16) {
        self.bytes += message.queued_size();
        self.messages.push(message);
        self.packet_ids.push(packet_id);
    }

    /// Takes out the first `count` messages, fanned out; gives their packet ids (0 for QoS 0).
    fn take_front(&mut self, count: usize) -> std::vec::Drain<'_, u16> {
        let bytes: usize = self.messages.drain(..count).map(|m| m.queued_size()).sum();
        self.bytes -= bytes;
        self.packet_ids.drain(..count)
    }
}

/// Whether the packet at the head of `buf` may be read while a run waits: a QoS 0 or QoS 1
/// PUBLISH without RETAIN (it joins the run; DUP does not matter) or a PUBACK
/// (acknowledgements of our deliveries, in no order with what the client publishes).
/// Anything else must not overtake the run.
pub(in crate::connection) fn joins_run(buf: &[u8]) -> bool {
    matches!(
        Codec::head(buf),
        Some(
            Head::PubAck
                | Head::Publish { qos: Some(QoS::AtMostOnce | QoS::AtLeastOnce), retain: false }
        )
    )
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
{
    /// Fans out the messages waiting in `run`, a run at a time, and acknowledges the QoS 1
    /// ones, until it is empty or a subscriber is congested: then this publisher pauses, as
    /// after any publish, and what is left waits in `run` until the pause is over. With
    /// `force` (the connection is ending, or an acknowledgement must not overtake the run)
    /// everything goes, congested or not, as the queues' bounds allow.
    pub(in crate::connection) fn flush_run(&mut self, run: &mut Run, force: bool) {
        while !run.is_empty() && (force || !self.running.pause.is_paused()) {
            let (taken, fanout) = self.core.broker.publish_run(&run.messages);
            self.hold(fanout.ticket);
            let reason = if fanout.matched == 0 {
                ReasonCode::NoMatchingSubscribers
            } else {
                ReasonCode::Success
            };
            for packet_id in run.take_front(taken).filter(|&id| id != 0) {
                let properties = Properties::default();
                self.send(Packet::PubAck(Ack { packet_id, reason, properties }));
            }
            if !force {
                self.running.pause.start(fanout.congested, &self.core.broker.config);
            }
        }
    }
}

#[cfg(test)]
mod tests;
