//! Durable state: what a broker restart must not lose, behind a narrow `Store` trait.
//!
//! The broker never calls the store directly. It appends `Op`s to the `Journal`
//! (`store/journal.rs`) while it changes its in-memory state, under the same session lock, so
//! the journal's order is the order of the changes. One writer thread commits everything appended
//! since its last commit in one transaction with one fsync (group commit). A caller that must not
//! answer its client before the change is on disk (PUBACK, PUBREC, PUBCOMP, SUBACK, CONNACK of
//! a persistent session, an outbound QoS 2 PUBLISH or PUBREL) awaits its ticket.
//!
//! Only persistent sessions (Session Expiry Interval above 0, or a 3.1.1 session without clean
//! session) and QoS 1/2 messages are written; QoS 0 and clean sessions cost nothing here.

pub mod journal;
pub mod record;
pub mod redb;

use std::sync::Arc;

pub use self::journal::{Journal, Ticket};
pub use self::record::{EntryRecord, SessionRecord, WillRecord};

/// A failure of the underlying store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store i/o: {0}")]
    Backend(String),
    #[error("corrupt record in {table}: {problem}")]
    Corrupt { table: &'static str, problem: String },
    /// The system would not start the journal's writer thread.
    #[error("cannot start the store writer thread: {0}")]
    WriterThread(std::io::Error),
}

/// One change to durable state. Applied in order within a commit.
#[derive(Debug, Clone)]
pub enum Op {
    /// Creates or replaces a session's record (subscriptions, expiry).
    PutSession(Arc<str>, Arc<[u8]>),
    /// Removes a session with its queue, inbound QoS 2 ids and pending will.
    DeleteSession(Arc<str>),
    /// Creates or replaces a queued or in-flight delivery. Its record is made for this op
    /// alone (one per delivery), so it is boxed rather than shared.
    PutEntry(Arc<str>, u64, Box<[u8]>),
    /// Removes a delivery (acknowledged, dropped or expired).
    DeleteEntry(Arc<str>, u64),
    /// An inbound QoS 2 packet id that got PUBREC.
    PutInbound(Arc<str>, u16),
    /// An inbound QoS 2 packet id released by PUBREL.
    DeleteInbound(Arc<str>, u16),
    /// Sets the retained message of a topic.
    PutRetained(Arc<str>, Arc<[u8]>),
    /// Clears the retained message of a topic.
    DeleteRetained(Arc<str>),
    /// A will waiting for its delay.
    PutWill(Arc<str>, Arc<[u8]>),
    /// A will published or cancelled.
    DeleteWill(Arc<str>),
    /// Creates or replaces a namespace resource (kind such as `clients`, name, JSON body).
    PutResource(Arc<str>, Arc<str>, Arc<[u8]>),
    /// Deletes a namespace resource.
    DeleteResource(Arc<str>, Arc<str>),
    /// Creates or replaces a row of a routing table: (table, key, sequence number) → record.
    PutRouting(RoutingTable, Arc<str>, u64, Arc<[u8]>),
    /// Deletes a row of a routing table.
    DeleteRouting(RoutingTable, Arc<str>, u64),
    /// A message for the cluster's shared log. Only the cluster's store (`crate::cluster`) gets
    /// these; the single-node store ignores them.
    Forward(Arc<Forwarded>),
    /// A routed event for one event subscription, for the cluster's routing stream. Only the
    /// cluster's store gets these; the single-node store ignores them.
    PublishEvent(Arc<SharedEvent>),
    /// Nothing: what a cancelled op becomes (see `Journal`, ack elision), so that journal
    /// positions and tickets stay as they were.
    Nop,
}

/// A message bound for the cluster's shared log: its subject there, a number unique to this
/// process that makes the copy a retried commit sends again a duplicate the log drops, and the
/// message's store record.
#[derive(Debug)]
pub struct Forwarded {
    pub subject: String,
    pub id: u64,
    /// The publishing session's number on this node, for No Local when it comes back.
    pub publisher: u64,
    pub body: bytes::Bytes,
}

/// A routed event bound for the cluster's routing stream, once per event subscription that
/// takes it: the subscription's topic and name, a number unique to this process that makes a
/// retried commit's second copy a duplicate the stream drops, and the event's record
/// (`routing::buffer::encode_event`).
#[derive(Debug)]
pub struct SharedEvent {
    pub topic: Arc<str>,
    pub subscription: Arc<str>,
    pub id: u64,
    pub body: bytes::Bytes,
}

/// The routing pipeline's tables (see `crate::routing`), all keyed by (name, sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoutingTable {
    /// (namespace topic, event sequence number) → the event in the CloudEvents JSON format.
    Events,
    /// (`topic/subscription`, event sequence number) → delivery state (attempts, next attempt).
    Deliveries,
    /// (`topic/subscription`, dead-letter sequence number) → dead-letter record JSON.
    DeadLetters,
    /// (counter name, 0) → a little-endian u64: lifecycle sequence numbers and the like.
    Counters,
}

impl RoutingTable {
    /// Every routing table, in the order recovery reads them.
    pub const ALL: [RoutingTable; 4] = [
        RoutingTable::Events,
        RoutingTable::Deliveries,
        RoutingTable::DeadLetters,
        RoutingTable::Counters,
    ];
}

/// Everything the store holds, as raw records, for recovery at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub sessions: Vec<(String, Vec<u8>)>,
    /// Sorted by client id, then sequence number.
    pub entries: Vec<(String, u64, Vec<u8>)>,
    pub inbound: Vec<(String, u16)>,
    pub retained: Vec<(String, Vec<u8>)>,
    pub wills: Vec<(String, Vec<u8>)>,
    /// (kind, name, JSON body), sorted by kind then name.
    pub resources: Vec<(String, String, Vec<u8>)>,
    /// The routing tables' rows, each sorted by key then sequence number.
    pub routing: std::collections::BTreeMap<RoutingTable, Vec<(String, u64, Vec<u8>)>>,
}

/// A durable backend. Narrow on purpose: a distributed backend must only apply ordered batches
/// atomically and list what it holds.
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` in order, atomically, and returns once they are durable.
    fn commit(&self, ops: &[Op]) -> Result<(), StoreError>;
    /// Reads everything back.
    fn load(&self) -> Result<Snapshot, StoreError>;
}

/// The `[store]` table: where durable state lives and how it is committed.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory of the database (`gridmq.redb`); created if missing. `--data-dir` overrides it.
    pub data_dir: std::path::PathBuf,
    /// Keep nothing on disk: sessions, queues and retained messages die with the process.
    /// `--in-memory` sets it.
    pub in_memory: bool,
    /// Most ops in one commit. Everything appended while a commit runs goes into the next one
    /// (group commit); 1 makes every op its own commit and fsync, for comparison only.
    pub max_batch_ops: usize,
    /// Under load, the least time in milliseconds from one commit's start to the next (see
    /// `store/journal.rs`, "Linger"); 0 commits as soon as the previous commit ends.
    pub commit_linger_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: "gridmq-data".into(),
            in_memory: false,
            max_batch_ops: 10_000,
            commit_linger_ms: 5,
        }
    }
}

/// An invalid field of the `[store]` table, e.g. `store.max_batch_ops: must be at least 1`.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct StoreConfigError {
    pub field: &'static str,
    pub problem: String,
}

impl StoreConfig {
    pub(crate) fn validate(&self) -> Result<(), StoreConfigError> {
        if self.max_batch_ops == 0 {
            return Err(StoreConfigError {
                field: "store.max_batch_ops",
                problem: "must be at least 1".into(),
            });
        }
        if self.commit_linger_ms > 1_000 {
            return Err(StoreConfigError {
                field: "store.commit_linger_ms",
                problem: format!(
                    "{} ms is more than 1,000 ms: every busy publisher would wait that long for \
                     each acknowledgement",
                    self.commit_linger_ms
                ),
            });
        }
        Ok(())
    }
}

/// The store as the gateway holds it: the journal and its writer thread, and what was on disk
/// at start-up until recovery takes it.
pub struct Storage {
    journal: Option<Arc<Journal>>,
    writer: Option<std::thread::JoinHandle<()>>,
    snapshot: Option<Snapshot>,
}

impl Storage {
    /// `store` (redb, or the cluster's), read back, with the journal over it.
    pub fn over(store: Arc<dyn Store>, config: &StoreConfig) -> Result<Storage, StoreError> {
        let snapshot = store.load()?;
        let (journal, writer) = Journal::start(
            store,
            config.max_batch_ops,
            std::time::Duration::from_millis(config.commit_linger_ms),
        )?;
        Ok(Storage { journal: Some(journal), writer: Some(writer), snapshot: Some(snapshot) })
    }

    /// Opens the store `config` names and reads it back, or nothing in in-memory mode.
    pub fn open(config: &StoreConfig) -> Result<Storage, StoreError> {
        if config.in_memory {
            return Ok(Storage { journal: None, writer: None, snapshot: None });
        }
        Storage::over(Arc::new(self::redb::RedbStore::open(&config.data_dir)?), config)
    }

    /// The journal the broker appends to; `None` in in-memory mode.
    pub fn journal(&self) -> Option<Arc<Journal>> {
        self.journal.clone()
    }

    /// What was on disk at start-up (once).
    pub fn take_snapshot(&mut self) -> Option<Snapshot> {
        self.snapshot.take()
    }

    /// Commits what is pending and stops the writer thread.
    pub async fn close(mut self) {
        if let Some(journal) = &self.journal {
            journal.close();
        }
        if let Some(writer) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }
}
