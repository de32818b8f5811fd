//! The routing buffer: events waiting for delivery, and the journal rows that make them
//! durable.
//!
//! An event is admitted once per namespace topic, with one delivery for each event subscription
//! whose filter takes it; an event no subscription takes is not stored. The event row and its
//! delivery rows are appended to the journal as one atomic group, and the returned ticket is
//! what the publisher's PUBACK waits for. When the last subscription is done with an event
//! (delivered or dead-lettered) its row is deleted.
//!
//! Rows (see `store::RoutingTable`):
//! - `Events`: (topic, seq) → published time (u64 LE milliseconds since the epoch) followed by
//!   the event in the CloudEvents JSON format.
//! - `Deliveries`: (`topic/subscription`, seq) → attempts made (u32 LE) and the time of the next
//!   attempt (u64 LE milliseconds since the epoch).
//!
//! **Bound**: at most `routing.max_buffered_events` events are buffered; `admit` refuses past it
//! and the publisher is told (see `RoutingConfig::max_buffered_events`).
//!
//! **Shared** (cluster mode, [`super::shared`]): the event goes to the cluster's routing log as
//! one `Op::PublishEvent` per subscription that takes it, in the same atomic group, and nothing
//! is queued in this process: subscriptions lease their events from the log. The bound is
//! checked against the log's last count of waiting events, so it may be passed by what is admitted
//! between two counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sinks::CloudEvent;

use super::shared::SharedLog;
use crate::store::{Journal, Op, RoutingTable, SharedEvent, Ticket};

/// One event in the buffer, shared by the subscriptions that still owe it a delivery.
#[derive(Debug)]
pub struct BufferedEvent {
    pub seq: u64,
    pub topic: Arc<str>,
    pub event: CloudEvent,
    /// When the event entered the buffer; time to live counts from here.
    pub published: SystemTime,
    /// Subscriptions that have not finished with the event.
    owed: AtomicUsize,
}

impl BufferedEvent {
    /// An event leased from the cluster's shared log (`seq` is its place there): settled through
    /// its lease, not through the buffer.
    pub fn leased(
        seq: u64,
        topic: Arc<str>,
        event: CloudEvent,
        published: SystemTime,
    ) -> BufferedEvent {
        BufferedEvent { seq, topic, event, published, owed: AtomicUsize::new(1) }
    }
}

/// The buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Events waiting for delivery, bounded.
pub struct Buffer {
    journal: Option<Arc<Journal>>,
    next_seq: AtomicU64,
    buffered: AtomicUsize,
    capacity: usize,
    /// The cluster's routing log, in cluster mode.
    shared: Option<Arc<dyn SharedLog>>,
}

impl Buffer {
    pub fn new(journal: Option<Arc<Journal>>, capacity: usize) -> Buffer {
        Buffer {
            journal,
            next_seq: AtomicU64::new(1),
            buffered: AtomicUsize::new(0),
            capacity,
            shared: None,
        }
    }

    /// A buffer whose events go to the cluster's routing log `shared` through `journal`.
    pub fn shared(journal: Arc<Journal>, capacity: usize, shared: Arc<dyn SharedLog>) -> Buffer {
        Buffer { shared: Some(shared), ..Buffer::new(Some(journal), capacity) }
    }

    /// The cluster's routing log, in cluster mode.
    pub fn shared_log(&self) -> Option<&Arc<dyn SharedLog>> {
        self.shared.as_ref()
    }

    /// Events buffered now (in cluster mode: in the whole cluster, as last counted).
    pub fn len(&self) -> usize {
        match &self.shared {
            Some(shared) => shared.buffered(),
            None => self.buffered.load(Ordering::Relaxed),
        }
    }

    /// The bound, `routing.max_buffered_events`.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether no event is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes `event` for `owers` (the subscription keys that will deliver it): journals it and
    /// returns the shared event with the ticket that makes it durable. Refuses when full.
    pub fn admit(
        &self,
        topic: &Arc<str>,
        event: CloudEvent,
        published: SystemTime,
        owers: &[&Arc<str>],
    ) -> Result<(Arc<BufferedEvent>, Option<Ticket>), Full> {
        if let (Some(shared), Some(journal)) = (&self.shared, &self.journal) {
            return self.admit_shared(shared, journal, topic, event, published, owers);
        }
        if self.buffered.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.buffered.fetch_sub(1, Ordering::AcqRel);
            return Err(Full);
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut ticket = None;
        if let Some(journal) = &self.journal {
            let group = journal.begin_group();
            let record = encode_event(published, &event);
            ticket = Some(journal.append(Op::PutRouting(
                RoutingTable::Events,
                topic.clone(),
                seq,
                record.into(),
            )));
            let state: Arc<[u8]> = encode_delivery(0, published).into();
            for key in owers {
                let op =
                    Op::PutRouting(RoutingTable::Deliveries, (*key).clone(), seq, state.clone());
                ticket = Some(journal.append(op));
            }
            journal.end_group(group);
        }
        let buffered = Arc::new(BufferedEvent {
            seq,
            topic: topic.clone(),
            event,
            published,
            owed: AtomicUsize::new(owers.len()),
        });
        Ok((buffered, ticket))
    }

    /// [`Buffer::admit`] into the cluster's routing log: one `PublishEvent` per subscription,
    /// as one atomic group. The returned event is owed to nobody here.
    fn admit_shared(
        &self,
        shared: &Arc<dyn SharedLog>,
        journal: &Journal,
        topic: &Arc<str>,
        event: CloudEvent,
        published: SystemTime,
        owers: &[&Arc<str>],
    ) -> Result<(Arc<BufferedEvent>, Option<Ticket>), Full> {
        if shared.buffered() >= self.capacity {
            return Err(Full);
        }
        Ok(self.publish_shared(journal, topic, event, published, owers))
    }

    /// Hands an event this node's own store held (from before it joined a cluster) to the
    /// cluster's routing log, past the bound: it was admitted once already. `None` without a
    /// shared log.
    pub fn hand_over(
        &self,
        topic: &Arc<str>,
        event: CloudEvent,
        published: SystemTime,
        owers: &[&Arc<str>],
    ) -> Option<Ticket> {
        let (Some(_), Some(journal)) = (&self.shared, &self.journal) else { return None };
        self.publish_shared(journal, topic, event, published, owers).1
    }

    fn publish_shared(
        &self,
        journal: &Journal,
        topic: &Arc<str>,
        event: CloudEvent,
        published: SystemTime,
        owers: &[&Arc<str>],
    ) -> (Arc<BufferedEvent>, Option<Ticket>) {
        let body = bytes::Bytes::from(encode_event(published, &event));
        let group = journal.begin_group();
        let mut ticket = None;
        for key in owers {
            let subscription = key.rsplit_once('/').map_or(&***key, |(_, name)| name);
            let op = Op::PublishEvent(Arc::new(SharedEvent {
                topic: topic.clone(),
                subscription: subscription.into(),
                id: self.next_seq.fetch_add(1, Ordering::Relaxed),
                body: body.clone(),
            }));
            ticket = Some(journal.append(op));
        }
        journal.end_group(group);
        let buffered = Arc::new(BufferedEvent {
            seq: 0,
            topic: topic.clone(),
            event,
            published,
            owed: AtomicUsize::new(0),
        });
        (buffered, ticket)
    }

    /// An event recovered from the store, owed to `owed` subscriptions.
    pub fn restore(
        &self,
        topic: Arc<str>,
        seq: u64,
        event: CloudEvent,
        published: SystemTime,
        owed: usize,
    ) -> Arc<BufferedEvent> {
        self.next_seq.fetch_max(seq + 1, Ordering::Relaxed);
        self.buffered.fetch_add(1, Ordering::AcqRel);
        Arc::new(BufferedEvent { seq, topic, event, published, owed: AtomicUsize::new(owed) })
    }

    /// Records the next attempt of `event` for subscription `key`.
    /// With a shared log this does nothing: a lease keeps its own retry time.
    pub fn reschedule(&self, key: &Arc<str>, event: &BufferedEvent, attempts: u32, at: SystemTime) {
        if self.shared.is_some() {
            return;
        }
        let state = encode_delivery(attempts, at);
        self.append(Op::PutRouting(RoutingTable::Deliveries, key.clone(), event.seq, state.into()));
    }

    /// Subscription `key` is done with `event` (delivered or dead-lettered); the event leaves
    /// the buffer when no subscription owes it any more.
    /// With a shared log this does nothing: a lease is settled through its [`super::shared::Settle`].
    pub fn settle(&self, key: &Arc<str>, event: &BufferedEvent) {
        if self.shared.is_some() {
            return;
        }
        self.append(Op::DeleteRouting(RoutingTable::Deliveries, key.clone(), event.seq));
        if event.owed.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.append(Op::DeleteRouting(RoutingTable::Events, event.topic.clone(), event.seq));
            self.buffered.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Appends an op when the buffer is durable.
    pub fn append(&self, op: Op) -> Option<Ticket> {
        self.journal.as_ref().map(|journal| journal.append(op))
    }
}

/// An `Events` row: the publish time, then the event in the JSON event format with `data` as
/// the published text. The format is unchanged from when `data` was re-serialized through a
/// `serde_json::Value`: rows written then are still events in the JSON event format, so they
/// read back as before (with their already-rewritten data), and no migration is needed.
pub fn encode_event(published: SystemTime, event: &CloudEvent) -> Vec<u8> {
    let mut record = millis(published).to_le_bytes().to_vec();
    record.extend_from_slice(&event.to_json_bytes());
    record
}

/// A routing row that cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("event record shorter than 8 bytes")]
    ShortEvent,
    #[error(transparent)]
    Event(#[from] sinks::event::EventError),
    #[error("delivery record too short")]
    ShortDelivery,
}

/// Reads an `Events` row.
pub fn decode_event(record: &[u8]) -> Result<(SystemTime, CloudEvent), RecordError> {
    let time: [u8; 8] =
        record.get(..8).and_then(|b| b.try_into().ok()).ok_or(RecordError::ShortEvent)?;
    let published = from_millis(u64::from_le_bytes(time));
    let event = CloudEvent::from_json_bytes(&record[8..])?;
    Ok((published, event))
}

/// A `Deliveries` row.
pub fn encode_delivery(attempts: u32, next: SystemTime) -> Vec<u8> {
    let mut record = attempts.to_le_bytes().to_vec();
    record.extend_from_slice(&millis(next).to_le_bytes());
    record
}

/// Reads a `Deliveries` row: attempts made and the next attempt's time.
pub fn decode_delivery(record: &[u8]) -> Result<(u32, SystemTime), RecordError> {
    let attempts: [u8; 4] =
        record.get(..4).and_then(|b| b.try_into().ok()).ok_or(RecordError::ShortDelivery)?;
    let next: [u8; 8] =
        record.get(4..12).and_then(|b| b.try_into().ok()).ok_or(RecordError::ShortDelivery)?;
    Ok((u32::from_le_bytes(attempts), from_millis(u64::from_le_bytes(next))))
}

/// Milliseconds since the epoch.
pub fn millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The time `millis` milliseconds after the epoch.
pub fn from_millis(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}
