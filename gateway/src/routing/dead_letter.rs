//! The local dead-letter store: events a subscription could not deliver, kept with why, until an
//! operator lists, re-drives or deletes them (management API and `gridmq deadletters`).
//!
//! Rows: `DeadLetters` (`topic/subscription`, dead-letter seq) → the record in Event Grid's
//! dead-letter JSON shape (`event`, `customDeliveryProperties`, `deadletterProperties`).
//! Records are held as JSON text (`RawValue`), never as a `serde_json::Value`, so the event's
//! data stays the text that was published when it is stored, listed and re-driven.
//!
//! **Bound**: at most `MAX_DEAD_LETTERS` records in all; past it the oldest record of the same
//! subscription is dropped, logged at error level and counted in
//! `gridmq_subscription_dropped_events_total`.
//!
//! In cluster mode the records are in the cluster's dead-letter stream instead (see
//! [`super::shared::SharedLog::dead_letters`]), so that every node lists, deletes and re-drives
//! the same records; this store is then empty.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde_json::value::RawValue;

use crate::store::{Journal, Op, RoutingTable};

/// Why dead letters could not be listed, deleted or re-driven.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("no event subscription {subscription:?} on topic {topic:?}")]
    NoSuchSubscription { topic: String, subscription: String },
    /// Cluster mode: the cluster's dead-letter stream did not answer.
    #[error(transparent)]
    Unavailable(#[from] super::shared::SharedError),
}

/// Most dead-letter records kept.
pub const MAX_DEAD_LETTERS: usize = 100_000;

/// One subscription's records by dead-letter seq, as JSON text.
type Records = BTreeMap<u64, Box<RawValue>>;

/// Dead-lettered events by subscription key (`topic/subscription`).
pub struct DeadLetters {
    journal: Option<Arc<Journal>>,
    next_seq: AtomicU64,
    rows: Mutex<BTreeMap<Arc<str>, Records>>,
}

impl DeadLetters {
    pub fn new(journal: Option<Arc<Journal>>) -> DeadLetters {
        DeadLetters { journal, next_seq: AtomicU64::new(1), rows: Mutex::new(BTreeMap::new()) }
    }

    /// Keeps `record` for subscription `key`; true when the store was full and the
    /// subscription's oldest record was dropped for it.
    pub fn add(&self, key: &Arc<str>, record: Box<RawValue>) -> bool {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.append(Op::PutRouting(
            RoutingTable::DeadLetters,
            key.clone(),
            seq,
            record.get().as_bytes().into(),
        ));
        let mut rows = self.rows.lock();
        let total: usize = rows.values().map(BTreeMap::len).sum();
        let subscription = rows.entry(key.clone()).or_default();
        let mut dropped = false;
        if total >= MAX_DEAD_LETTERS
            && let Some((oldest, _)) = subscription.pop_first()
        {
            dropped = true;
            tracing::error!(subscription = %key, seq = oldest, "Dead-letter store full; dropped the oldest record.");
            self.append(Op::DeleteRouting(RoutingTable::DeadLetters, key.clone(), oldest));
        }
        subscription.insert(seq, record);
        dropped
    }

    /// A record read back from the store.
    pub fn restore(&self, key: Arc<str>, seq: u64, record: Box<RawValue>) {
        self.next_seq.fetch_max(seq + 1, Ordering::Relaxed);
        self.rows.lock().entry(key).or_default().insert(seq, record);
    }

    /// The records of subscription `key`, oldest first, with their ids.
    pub fn list(&self, key: &str) -> Vec<(u64, Box<RawValue>)> {
        let rows = self.rows.lock();
        rows.get(key).map(|r| r.iter().map(|(s, v)| (*s, v.clone())).collect()).unwrap_or_default()
    }

    /// Removes and returns the records `ids` of subscription `key` (all of them when `ids` is
    /// `None`); unknown ids are skipped.
    pub fn take(&self, key: &str, ids: Option<&[u64]>) -> Vec<(u64, Box<RawValue>)> {
        let mut rows = self.rows.lock();
        let Some(subscription) = rows.get_mut(key) else { return Vec::new() };
        let key: Arc<str> = key.into();
        let taken: Vec<(u64, Box<RawValue>)> = match ids {
            None => std::mem::take(subscription).into_iter().collect(),
            Some(ids) => ids.iter().filter_map(|id| subscription.remove_entry(id)).collect(),
        };
        drop(rows);
        for (seq, _) in &taken {
            self.append(Op::DeleteRouting(RoutingTable::DeadLetters, key.clone(), *seq));
        }
        taken
    }

    fn append(&self, op: Op) {
        if let Some(journal) = &self.journal {
            journal.append(op);
        }
    }
}

#[cfg(test)]
mod tests;
