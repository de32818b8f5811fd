//! An application message as the broker holds it, and one delivery of it to one session.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::time::Instant;

use crate::mqtt::{QoS, SharedProperties};

/// A published message. Immutable once built and shared by every delivery through an `Arc`, so
/// fan-out to many subscribers copies neither payload nor properties.
#[derive(Debug)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// The publisher's properties, without topic alias, subscription identifiers and message
    /// expiry interval: those are written per delivery.
    pub properties: SharedProperties,
    /// When the message expires (from its Message Expiry Interval).
    pub expires_at: Option<Instant>,
    /// The publishing session's id, for No Local; 0 for messages no session published.
    pub publisher: u64,
    /// The message's store record, encoded at most once however many persistent sessions
    /// it is queued for.
    pub record: OnceLock<Vec<u8>>,
}

impl Message {
    /// The bytes one delivery of this message counts against a session's queue bound.
    pub fn queued_size(&self) -> usize {
        self.payload.len() + self.topic.len()
    }

    /// The store record of this message (`broker/persist.rs`), encoded on first use.
    pub fn record(&self) -> &[u8] {
        self.record.get_or_init(|| super::persist::encode_message(self))
    }

    /// True once the message's expiry has passed: it is then never delivered.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The Message Expiry Interval to forward: the seconds left, rounded up, so a message with
    /// less than a second left is not forwarded as "0".
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX)
        })
    }
}

/// Identifies a shared subscription: the group and the inner filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedKey {
    pub group: String,
    pub filter: String,
}

/// One message on its way to one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// min(publish QoS, granted QoS).
    pub qos: QoS,
    /// The RETAIN flag to send: set for retained messages sent at subscribe time, and kept
    /// from the publish only under Retain As Published.
    pub retain: bool,
    /// Identifiers of every subscription of this session that matched. A boxed slice rather
    /// than a `Vec`: queues hold many deliveries, and it is a word shorter (nothing is
    /// allocated when it is empty, as it almost always is).
    pub subscription_ids: Box<[u32]>,
    /// Set when the delivery came through a shared subscription: if this member leaves before
    /// acknowledging it, the message goes to another member of the group.
    pub shared: Option<Arc<SharedKey>>,
    /// The delivery's key in the store; 0 when it is not stored (QoS 0, or a session that
    /// does not outlive its connection).
    pub seq: u64,
    /// The ticket of the delivery's PutEntry while an acknowledgement could still cancel it
    /// (see `store/journal.rs`, "Ack elision"); `None` when it is not stored, or once a later
    /// version of it was appended.
    pub elidable: Option<crate::store::Ticket>,
}

impl Delivery {
    /// The bytes this delivery counts against its session's queue bound.
    pub fn size(&self) -> usize {
        self.message.queued_size()
    }
}
