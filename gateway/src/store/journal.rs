//! Group commit: the ordered log of changes waiting for the store, and the one thread that
//! commits them.
//!
//! `append` is synchronous and cheap, so the broker calls it while it holds the lock of the
//! state it changes; the journal's order is therefore the order of the in-memory changes (a
//! delivery's PutEntry always precedes its DeleteEntry). The writer thread takes everything
//! appended since its last commit, up to `max_batch_ops`, and commits it in one transaction:
//! while one fsync runs, the next batch gathers, so many publishers share one fsync.
//!
//! Bound: callers that need durability await their ticket before answering their client and
//! reading its next packet, so the pending ops never exceed what the connected clients have in
//! flight (one packet each, times its fan-out). Callers that do not wait (deletions after an
//! acknowledgement, QoS 0 retained) add at most one op per packet they handle.
//!
//! Atomic groups: some changes must reach the disk together or not at all. An inbound QoS 2
//! PUBLISH stores its packet id and its deliveries: with the id alone a re-sent copy after a
//! restart would be taken for a duplicate and the message lost; with the deliveries alone it
//! would be delivered twice. `begin_group` marks the journal position; until the group ends,
//! the writer commits only what was appended before that position. Groups last microseconds
//! (one fan-out), so the writer is never held for long.
//!
//! Ack elision: a delivery that is acknowledged by its subscriber before its PutEntry was
//! committed never needs to reach the disk. The delivery keeps the ticket of its PutEntry
//! (`Delivery::elidable`); when its DeleteEntry comes (`delete_entry`) while that op is still
//! pending, the PutEntry becomes `Op::Nop` and the delete is dropped. The ticket is the op's
//! position, so this costs no lookup table: an earlier design kept one, keyed by client id and
//! sequence number, and paid a hash insert for every persistent delivery. Tickets keep their
//! positions, so a publisher waiting for the cancelled PutEntry is released by the next commit:
//! its promise is kept, the message has reached the subscriber. A delivery with a later
//! version (a QoS 2 stage) is not elidable, and once the PutEntry has been taken by the
//! writer, deletes are written as usual.
//!
//! Linger: under load, the writer waits until `commit_linger` has passed since its previous
//! commit started before it takes the next batch, but only when that previous batch was busy
//! (at least `LINGER_MIN_OPS` ops). A busy broker then commits fewer, larger batches, and more
//! deliveries are acknowledged while their PutEntry is still pending, so ack elision removes
//! them from the disk's work altogether. A lone publisher's batches are small, so it never
//! waits: its latency stays one commit. The linger ends early at `max_batch_ops` or on close.
//!
//! A commit that fails (disk full, I/O error) is logged and retried every second; waiting
//! callers keep waiting, so nothing is acknowledged that is not on disk. Once the journal is
//! closing, a commit that still fails after `CLOSE_RETRIES` tries is given up, so that a
//! broken store cannot hold shutdown forever.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::{Op, Store, StoreError};

/// Marks a point in the journal: durable once every op up to it is committed. The number of
/// ops appended up to and including the one it was handed out for, so never zero (which
/// makes an `Option<Ticket>` one word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(std::num::NonZeroU64);

/// The ordered log of changes and its writer.
pub struct Journal {
    pending: Mutex<Pending>,
    wake: Condvar,
    committed: watch::Sender<u64>,
    max_batch_ops: usize,
    linger: Duration,
    /// Why the last commit failed, while commits fail: the store is not writable (`/readyz`).
    failure: Mutex<Option<String>>,
}

/// How many times a failing commit is tried once the journal is closing.
const CLOSE_RETRIES: u32 = 5;

/// A batch at least this large marks the broker busy enough that the next commit lingers.
pub const LINGER_MIN_OPS: usize = 64;

struct Pending {
    ops: Vec<Op>,
    /// Tickets handed out: the number of ops appended so far.
    appended: u64,
    /// Start positions of open atomic groups (a position may be open more than once).
    groups: std::collections::BTreeMap<u64, usize>,
    /// The writer lingers: appends do not wake it unless the batch is full.
    lingering: bool,
    closed: bool,
}

/// An open atomic group; end it with `Journal::end_group`.
#[derive(Debug)]
#[must_use = "a group that is never ended holds back every later commit"]
pub struct Group(u64);

impl Journal {
    /// Starts the writer thread over `store`. `max_batch_ops` caps one commit (1 means one
    /// commit per op, which the benchmarks use as the baseline); `linger` is the least time
    /// from one busy commit's start to the next (zero: never wait).
    pub fn start(
        store: Arc<dyn Store>,
        max_batch_ops: usize,
        linger: Duration,
    ) -> Result<(Arc<Journal>, JoinHandle<()>), StoreError> {
        let journal = Arc::new(Journal {
            pending: Mutex::new(Pending {
                ops: Vec::new(),
                appended: 0,
                groups: std::collections::BTreeMap::new(),
                lingering: false,
                closed: false,
            }),
            wake: Condvar::new(),
            committed: watch::Sender::new(0),
            max_batch_ops: max_batch_ops.max(1),
            failure: Mutex::new(None),
            linger,
        });
        let writer = journal.clone();
        let handle = std::thread::Builder::new()
            .name("gridmq-store".into())
            .spawn(move || writer.write_loop(store.as_ref()))
            .map_err(StoreError::WriterThread)?;
        Ok((journal, handle))
    }

    /// Operations appended and not yet taken by a commit.
    pub fn backlog(&self) -> usize {
        self.pending.lock().ops.len()
    }

    /// Appends one op and returns the ticket that is durable once it is committed.
    pub fn append(&self, op: Op) -> Ticket {
        let mut pending = self.pending.lock();
        let ticket = pending.push(op);
        let wake = !pending.lingering || pending.ops.len() >= self.max_batch_ops;
        drop(pending);
        if wake {
            self.wake.notify_one();
        }
        ticket
    }

    /// Appends the DeleteEntry of a delivery, unless the PutEntry that `elidable` (the
    /// delivery's ticket of it) names is still pending: then that op becomes `Op::Nop` and
    /// nothing is appended (ack elision). The op at the position is checked to be that
    /// delivery's PutEntry before it is cancelled.
    pub fn delete_entry(&self, client_id: &Arc<str>, seq: u64, elidable: Option<Ticket>) -> Ticket {
        let mut pending = self.pending.lock();
        if let Some(put) = elidable {
            let base = pending.appended - pending.ops.len() as u64;
            if let Some(index) = (put.0.get() - 1).checked_sub(base)
                && let Some(slot) = pending.ops.get_mut(index as usize)
                && matches!(slot, Op::PutEntry(client, s, _) if *s == seq && client == client_id)
            {
                *slot = Op::Nop;
                crate::telemetry::catalogue::ELIDED.increment(1);
                return put;
            }
        }
        let ticket = pending.push(Op::DeleteEntry(client_id.clone(), seq));
        let wake = !pending.lingering || pending.ops.len() >= self.max_batch_ops;
        drop(pending);
        if wake {
            self.wake.notify_one();
        }
        ticket
    }

    /// Opens an atomic group: what is appended until `end_group` is committed in one
    /// transaction.
    pub fn begin_group(&self) -> Group {
        let mut pending = self.pending.lock();
        let start = pending.appended;
        *pending.groups.entry(start).or_insert(0) += 1;
        Group(start)
    }

    /// Closes an atomic group.
    pub fn end_group(&self, group: Group) {
        let mut pending = self.pending.lock();
        if let Some(count) = pending.groups.get_mut(&group.0) {
            *count -= 1;
            if *count == 0 {
                pending.groups.remove(&group.0);
            }
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// Waits until every op up to `ticket` is committed.
    pub async fn durable(&self, ticket: Ticket) {
        let mut committed = self.committed.subscribe();
        // The sender lives as long as the journal, so this cannot fail while we hold `self`.
        let _ = committed.wait_for(|done| *done >= ticket.0.get()).await;
    }

    /// Why commits fail, while they do (a commit is retried every second until it succeeds).
    pub fn commit_failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    /// Tells the writer to commit what is pending and stop.
    pub fn close(&self) {
        self.pending.lock().closed = true;
        self.wake.notify_one();
    }

    fn write_loop(&self, store: &dyn Store) {
        // When the previous commit started, and whether its batch was busy.
        let mut previous: Option<std::time::Instant> = None;
        loop {
            let (ops, upto) = {
                let mut pending = self.pending.lock();
                while pending.committable() == 0 && !(pending.closed && pending.groups.is_empty()) {
                    self.wake.wait(&mut pending);
                }
                if let Some(started) = previous {
                    let until = started + self.linger;
                    pending.lingering = true;
                    while !pending.closed && pending.ops.len() < self.max_batch_ops {
                        if self.wake.wait_until(&mut pending, until).timed_out() {
                            break;
                        }
                    }
                    pending.lingering = false;
                }
                let committable = pending.committable();
                if committable == 0 {
                    return;
                }
                let take = committable.min(self.max_batch_ops);
                let rest = pending.ops.split_off(take);
                let ops = std::mem::replace(&mut pending.ops, rest);
                let upto = pending.appended - pending.ops.len() as u64;
                (ops, upto)
            };
            let started = std::time::Instant::now();
            previous = (ops.len() >= LINGER_MIN_OPS && !self.linger.is_zero()).then_some(started);
            let mut failures = 0;
            while let Err(error) = store.commit(&ops) {
                tracing::error!(%error, ops = ops.len(), "Store commit failed; retrying.");
                *self.failure.lock() = Some(error.to_string());
                failures += 1;
                // Shutting down with a store that keeps failing (a cluster node cut off from
                // NATS): stop rather than hold the process forever. Nothing is lost that was
                // acknowledged, because whoever waits for these ops is still waiting.
                if failures >= CLOSE_RETRIES && self.pending.lock().closed {
                    tracing::error!(ops = ops.len(), "Closing with ops the store would not take.");
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            self.failure.lock().take();
            tracing::trace!(
                ops = ops.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "Committed."
            );
            // The histograms' counts are the commits, their sums the ops and the time spent.
            crate::telemetry::catalogue::COMMIT_SECONDS.record(started.elapsed().as_secs_f64());
            crate::telemetry::catalogue::COMMIT_OPS.record(ops.len() as f64);
            self.committed.send_replace(upto);
        }
    }
}

impl Pending {
    fn push(&mut self, op: Op) -> Ticket {
        self.ops.push(op);
        self.appended += 1;
        // 1 + (appended - 1): exact, as `appended` was just incremented from at least 0.
        Ticket(std::num::NonZeroU64::MIN.saturating_add(self.appended - 1))
    }
    /// How many pending ops may be committed now: all of them, or those before the start of
    /// the oldest open group.
    fn committable(&self) -> usize {
        let base = self.appended - self.ops.len() as u64;
        match self.groups.keys().next() {
            Some(&start) => start.saturating_sub(base) as usize,
            None => self.ops.len(),
        }
    }
}

#[cfg(test)]
mod tests;
