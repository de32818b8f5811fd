//! The routing log a cluster shares (`crate::cluster` implements it): where routed events
//! wait, per event subscription, when several nodes route.
//!
//! In single-node mode the buffer keeps events in memory and their rows in the journal, and
//! each subscription's dispatcher or queue holds its own deliveries. With a shared log, the
//! buffer instead journals one [`crate::store::Op::PublishEvent`] per subscription that takes an
//! event, which the cluster's store publishes to a replicated stream before the publisher's
//! PUBACK; nothing is queued in this process. Dispatchers and queues then *lease* events from
//! their subscription's [`Feed`], on whichever node serves them, and settle each lease: acknowledged
//! (delivered, or dead-lettered after its record was stored), retried after a delay (the delay is
//! kept by the log, so a long retry schedule survives the node), or kept alive longer.
//!
//! **Invariant:** an event leaves its subscription's feed only by [`Settle::ack`] or
//! [`Settle::term`]; a lease that is neither settled nor renewed before its ack wait ends is
//! delivered again, with `delivered` one higher.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::buffer::BufferedEvent;

/// Why the shared log could not do something; what to retry is the caller's choice.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SharedError {
    #[error("cluster routing log unavailable: {0}")]
    Unavailable(String),
}

/// The routing log a cluster shares.
pub trait SharedLog: Send + Sync + 'static {
    /// Events stored and not yet settled, over the whole cluster, as last counted (the buffer's
    /// bound, `routing.max_buffered_events`, is checked against it).
    fn buffered(&self) -> usize;

    /// The feed of event subscription `subscription` of namespace topic `topic`, created when
    /// missing. A leased event stays leased for `ack_wait` unless renewed.
    fn feed(
        &self,
        topic: &str,
        subscription: &str,
        ack_wait: Duration,
    ) -> BoxFuture<'static, Result<Arc<dyn Feed>, SharedError>>;

    /// A deleted subscription's feed and the events waiting in it are removed.
    fn remove(
        &self,
        topic: &str,
        subscription: &str,
    ) -> BoxFuture<'static, Result<(), SharedError>>;

    /// Stores a dead-letter record (Event Grid's JSON, `sinks::DeadLetterRecord::to_raw`) of
    /// subscription `subscription` of `topic` in the cluster's dead-letter stream; it is durable
    /// when this returns `Ok`, so the event may then be settled.
    fn dead_letter(
        &self,
        topic: &str,
        subscription: &str,
        record: Bytes,
    ) -> BoxFuture<'static, Result<(), SharedError>>;

    /// This node's id.
    fn node(&self) -> &str;

    /// The dead-letter records of subscription `subscription` of `topic`, oldest first, each
    /// with its id: its place in the cluster's dead-letter stream, the same on every node.
    fn dead_letters(
        &self,
        topic: &str,
        subscription: &str,
    ) -> BoxFuture<'static, Result<Vec<(u64, Bytes)>, SharedError>>;

    /// Deletes the dead-letter records `ids` of a subscription (all of them when `None`) and
    /// says how many were deleted; ids that are unknown, or another subscription's, are skipped.
    fn delete_dead_letters(
        &self,
        topic: &str,
        subscription: &str,
        ids: Option<Vec<u64>>,
    ) -> BoxFuture<'static, Result<usize, SharedError>>;

    /// Puts an event (the buffer's record, `buffer::encode_event`) back in a subscription's
    /// feed as a new delivery, for dead-letter record `record`; durable when this returns `Ok`.
    /// Another call for the same record within the log's duplicate window (two minutes) stores
    /// nothing more, so a re-drive retried after a failure, or run on two nodes at once, does
    /// not deliver the event twice.
    fn requeue(
        &self,
        topic: &str,
        subscription: &str,
        record: u64,
        body: Bytes,
    ) -> BoxFuture<'static, Result<(), SharedError>>;

    /// How many dead-letter records each subscription has, for those with any.
    fn dead_letter_counts(&self) -> BoxFuture<'static, Result<Vec<DeadLetterCount>, SharedError>>;

    /// The key pull delivery signs and checks its lock tokens with (HMAC-SHA256): the same on
    /// every node, so any node can tell a token it may forward from a forged or mangled one.
    fn lock_key(&self) -> &ring::hmac::Key;

    /// Sends a lock operation (`routing::queue::LockRequest`, JSON) to node `node`, which
    /// holds the locks, and returns its answer; `Ok(None)` when no node answers in time (it is
    /// gone), `Err` when this node cannot reach the cluster.
    fn lock_request(
        &self,
        node: &str,
        request: Bytes,
    ) -> BoxFuture<'static, Result<Option<Bytes>, SharedError>>;

    /// The right to push subscription `subscription` of `topic` to its destination, which one
    /// node at a time holds (see [`Claim`]). Nothing is claimed before [`Claim::keep`].
    fn claim(&self, topic: &str, subscription: &str) -> Box<dyn Claim>;

    /// The subscription's events waiting in the log (not yet delivered, leased ones included),
    /// and when the oldest of them was published, when there is one.
    fn backlog(
        &self,
        topic: &str,
        subscription: &str,
    ) -> BoxFuture<'static, Result<Backlog, SharedError>>;
}

/// A subscription's number of dead-letter records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterCount {
    pub topic: String,
    pub subscription: String,
    pub count: usize,
}

/// One subscription's waiting events.
pub trait Feed: Send + Sync + 'static {
    /// Leases up to `max` waiting events. Returns as soon as at least one is there, or with none
    /// after `wait`.
    fn fetch(&self, max: usize, wait: Duration) -> BoxFuture<'_, Result<Vec<Leased>, SharedError>>;
}

/// A leased event.
pub struct Leased {
    /// The event; its `seq` is its sequence number in the shared log.
    pub event: Arc<BufferedEvent>,
    /// How many times the log has handed this event out, this time included (1 the first time).
    /// Push delivery replaces it with the attempts recorded ([`Settle::attempts`]) plus one.
    pub delivered: u32,
    pub settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Leased {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leased")
            .field("seq", &self.event.seq)
            .field("delivered", &self.delivered)
            .finish()
    }
}

/// How a lease ends or lives on. Each waits for the log to confirm it.
pub trait Settle: Send + Sync + 'static {
    /// Done with the event: delivered, or dead-lettered once its record is stored.
    fn ack(&self) -> BoxFuture<'_, Result<(), SharedError>>;
    /// Hand the event out again after `delay`, which the log keeps (it survives this node).
    fn retry_after(&self, delay: Duration) -> BoxFuture<'_, Result<(), SharedError>>;
    /// Keep the lease for another ack wait.
    fn renew(&self) -> BoxFuture<'_, Result<(), SharedError>>;
    /// Never hand the event out again (counts as settled).
    fn term(&self) -> BoxFuture<'_, Result<(), SharedError>>;
    /// Push delivery: the delivery attempts `retry_attempted` recorded for the event, if any.
    /// The log's own count counts leases, and a lease can end with nothing sent: its node died
    /// or gave the event back.
    fn attempts(&self) -> BoxFuture<'_, Result<Option<u32>, SharedError>>;
    /// Push delivery: records that `attempts` delivery attempts were made, then hands the event
    /// out again after `delay`. An event whose record could not be stored is handed back all
    /// the same: a retry with a count too low beats one that waits out its lease.
    fn retry_attempted(
        &self,
        attempts: u32,
        delay: Duration,
    ) -> BoxFuture<'_, Result<(), SharedError>>;
}

/// A subscription's events in the shared log, for the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events not yet settled: waiting, and leased (handed out, not yet settled).
    pub waiting: usize,
    /// Of those, the leased ones, on every node.
    pub leased: usize,
    pub oldest: Option<std::time::SystemTime>,
}

/// One node's claim on a push subscription: whoever holds it is the only node that leases and
/// sends that subscription's events, so its concurrency limit, probation and handshake mean
/// what they mean on one node.
///
/// **Invariant:** a claim lapses on its own [`CLAIM_TERM`] after it was last kept, so a dead
/// holder's claim goes to another node; a holder stops sending once [`CLAIM_TRUSTED`] has passed
/// since its last confirmed `keep` began, before anyone else can take it.
pub trait Claim: Send + 'static {
    /// Takes the claim when nobody holds it, or keeps it for another term when this holds it:
    /// true while this holds it, false when another node does.
    fn keep(&mut self) -> BoxFuture<'_, Result<bool, SharedError>>;
    /// Gives the claim up at once, when held, so another node need not wait for it to lapse.
    fn release(&mut self) -> BoxFuture<'_, ()>;
}

/// How long an unkept claim lasts.
pub const CLAIM_TERM: Duration = Duration::from_secs(5);

/// How long a holder trusts its claim after a `keep` it began was confirmed: well inside
/// [`CLAIM_TERM`], so that it stops sending before another node may start.
pub const CLAIM_TRUSTED: Duration = Duration::from_secs(3);
