//! Pull delivery in cluster mode: a queue subscription's events come from the cluster's routing
//! log ([`crate::routing::shared`]) and the node that served a receive holds their locks.
//!
//! - **Receive** leases events from the subscription's feed (ack wait = lock duration + 5 s)
//!   on whichever node serves the call. That node keeps the locks in memory, each with its
//!   expiry, and the delivery count is the log's.
//! - **Tokens** name the owner node and the delivery, signed (`token.rs`). Acknowledge,
//!   release, reject and renew check a token's signature and send it to its owner: this node's
//!   own tokens go to its lock table, another node's go to that node (`cluster/locks.rs`),
//!   which answers token by token. An owner that does not answer is gone with its locks: its
//!   tokens fail as `TokenLost`, and the log hands their events out again after the ack wait,
//!   counted one delivery higher.
//! - **The owner expires its locks itself** (the cluster's lock service sweeps them) and hands
//!   their events back to the log at once, rather than waiting for the ack wait.
//!
//! **Invariant**: a lease is in at most one lock table entry, and is settled (acknowledged,
//! released, rejected, renewed, expired) only by the task that took it out of the table, so two
//! operations on one token never both succeed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::join_all;
use parking_lot::Mutex;
use sinks::DeadLetterReason;
use tracing::{debug, warn};

use super::token::{self, Lock};
use super::{
    FailedToken, LOST_TOKENS, LockOp, LockRequest, QueueSubscription, RENEW_WINDOW, Received,
    TokenOutcome,
};
use crate::routing::buffer::millis;
use crate::routing::shared::{Backlog, Feed, Leased, SharedError, SharedLog};

/// What the log's ack wait adds to the lock duration: the owner expires a lock itself, and the
/// log's own redelivery is only for an owner that died.
const ACK_SLACK: Duration = Duration::from_secs(5);

/// How long a receive pauses when the log cannot be read, so that a client's retries do not
/// spin.
const PAUSE: Duration = Duration::from_secs(1);

/// The cluster-mode part of a queue subscription.
pub(super) struct Leases {
    log: Arc<dyn SharedLog>,
    feed: tokio::sync::OnceCell<Arc<dyn Feed>>,
    table: Mutex<Table>,
    /// When this lock table began: a genuine token issued before it held a lock that a restart
    /// of this node, or a change of the subscription, lost.
    created_ms: u64,
    /// The subscription's events in the log on every node, as last counted (`count_backlog`).
    backlog: Mutex<Backlog>,
}

#[derive(Default)]
struct Table {
    locked: HashMap<String, Held>,
    /// Tokens whose lock expired, so that late operations on them report `TokenLost`.
    lost: VecDeque<String>,
}

impl Table {
    /// Remembers `token` as lost, forgetting the oldest past [`LOST_TOKENS`].
    fn remember_lost(&mut self, token: String) {
        self.lost.push_back(token);
        if self.lost.len() > LOST_TOKENS {
            self.lost.pop_front();
        }
    }
}

struct Held {
    leased: Arc<Leased>,
    expires: SystemTime,
    /// This lease's receive: the hour a lock can be renewed for counts from here.
    received: SystemTime,
}

impl Leases {
    pub(super) fn new(log: Arc<dyn SharedLog>) -> Leases {
        Leases {
            log,
            feed: tokio::sync::OnceCell::new(),
            table: Mutex::new(Table::default()),
            created_ms: millis(SystemTime::now()),
            backlog: Mutex::new(Backlog::default()),
        }
    }

    /// Events waiting to be received on any node, as last counted.
    pub(super) fn waiting(&self) -> usize {
        let backlog = *self.backlog.lock();
        backlog.waiting.saturating_sub(backlog.leased)
    }

    /// Events under a lock on any node: as last counted, or this node's own when it holds more
    /// than that count (it is fresher).
    pub(super) fn locked(&self) -> usize {
        self.table.lock().locked.len().max(self.backlog.lock().leased)
    }

    /// When the oldest event not yet settled entered the log, as last counted or locked here.
    pub(super) fn oldest(&self) -> Option<SystemTime> {
        let held = self.table.lock().locked.values().map(|h| h.leased.event.published).min();
        let counted = self.backlog.lock().oldest;
        held.into_iter().chain(counted).min()
    }

    /// Takes every lock out of the table (a retired subscription, or shutdown).
    fn take_all(&self) -> Vec<Arc<Leased>> {
        let mut table = self.table.lock();
        table.locked.drain().map(|(_, held)| held.leased).collect()
    }

    /// Takes the expired locks out of the table, remembering their tokens as lost.
    fn take_expired(&self, now: SystemTime) -> Vec<Arc<Leased>> {
        let mut table = self.table.lock();
        let expired: Vec<String> =
            table.locked.iter().filter(|(_, h)| h.expires <= now).map(|(t, _)| t.clone()).collect();
        let mut out = Vec::with_capacity(expired.len());
        for token in expired {
            if let Some(held) = table.locked.remove(&token) {
                out.push(held.leased);
                table.remember_lost(token);
            }
        }
        out
    }

    /// Gives up the lock of `token`, remembering the token as lost.
    fn forget(&self, token: &str) {
        let mut table = self.table.lock();
        if table.locked.remove(token).is_some() {
            table.remember_lost(token.to_string());
        }
    }

    /// Why `token`, not in the table, fails: `TokenLost` when its lock expired or went with an
    /// earlier table, `BadToken` when it was settled (or never issued here).
    fn failed(&self, table: &Table, token: &str) -> FailedToken {
        if table.lost.iter().any(|t| t == token) {
            return lost(token, "Token has expired.");
        }
        match token::check(self.log.lock_key(), token) {
            Some(lock) if lock.issued_ms < self.created_ms => lost(
                token,
                "The lock was lost when its node restarted or the subscription changed.",
            ),
            _ => bad_token(token),
        }
    }
}

/// Hands events back to the log at once.
async fn hand_back(leases: Vec<Arc<Leased>>) {
    join_all(leases.iter().map(|leased| async move {
        if let Err(error) = leased.settle.retry_after(Duration::ZERO).await {
            // The log hands it out again after the ack wait anyway.
            debug!(seq = leased.event.seq, %error, "Handing a lock's event back to the log.");
        }
    }))
    .await;
}

fn bad_token(token: &str) -> FailedToken {
    FailedToken::new(token, "BadToken", "Token is not valid for this subscription.")
}

fn lost(token: &str, message: &str) -> FailedToken {
    FailedToken::new(token, "TokenLost", message)
}

impl QueueSubscription {
    fn leases(&self) -> Option<&Leases> {
        self.leases.as_ref()
    }

    /// The subscription's feed from the log, opened (and its consumer created) on first use.
    async fn open_feed(&self, leases: &Leases) -> Result<Arc<dyn Feed>, SharedError> {
        let ack_wait = self.lock_duration + ACK_SLACK;
        leases
            .feed
            .get_or_try_init(|| leases.log.feed(&self.topic, &self.name, ack_wait))
            .await
            .cloned()
    }

    /// Receives from the cluster's routing log (see the module doc).
    pub(super) async fn receive_shared(
        &self,
        leases: &Leases,
        max_events: usize,
        max_wait: Duration,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let feed = match self.open_feed(leases).await {
            Ok(feed) => feed,
            Err(error) => {
                warn!(subscription = %self.key, %error, "Cannot open the subscription's feed.");
                tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + PAUSE)).await;
                return Vec::new();
            }
        };
        loop {
            self.expire_leases().await;
            let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            let leased = match feed.fetch(max_events, wait).await {
                Ok(leased) => leased,
                Err(error) => {
                    warn!(subscription = %self.key, %error, "Cannot receive from the routing log.");
                    let pause = deadline.min(tokio::time::Instant::now() + PAUSE);
                    tokio::time::sleep_until(pause).await;
                    if tokio::time::Instant::now() >= deadline {
                        return Vec::new();
                    }
                    continue;
                }
            };
            // A subscription changed or deleted meanwhile: what it leased goes back to the log
            // for its successor, and the consumer finds that one on its next request.
            if self.state.lock().retired {
                hand_back(leased.into_iter().map(Arc::new).collect()).await;
                return Vec::new();
            }
            let (received, dead) = self.lock_leased(leases, leased);
            for (leased, reason) in dead {
                let attempts = leased.delivered.saturating_sub(1);
                self.dead_letter_leased(leases, &leased, reason, attempts).await;
            }
            self.counters.received.increment(received.len() as u64);
            if !received.is_empty() || tokio::time::Instant::now() >= deadline {
                return received;
            }
        }
    }

    /// Locks what a fetch leased, but for events past their time to live or their delivery
    /// count, which are returned to be dead-lettered.
    fn lock_leased(
        &self,
        leases: &Leases,
        leased: Vec<Leased>,
    ) -> (Vec<Received>, Vec<(Arc<Leased>, DeadLetterReason)>) {
        let now = SystemTime::now();
        let mut received = Vec::new();
        let mut dead = Vec::new();
        let mut table = leases.table.lock();
        for leased in leased {
            let leased = Arc::new(leased);
            if self.policy.expired(leased.event.published, now) {
                self.counters.expired.increment(1);
                dead.push((leased, DeadLetterReason::MaxRetryDurationExceeded));
                continue;
            }
            if leased.delivered > self.policy.max_attempts {
                dead.push((leased, DeadLetterReason::MaxDeliveryAttemptsExceeded));
                continue;
            }
            let token = token::issue(
                leases.log.lock_key(),
                &Lock {
                    node: leases.log.node().to_string(),
                    subscription: self.key.to_string(),
                    seq: leased.event.seq,
                    delivered: leased.delivered,
                    issued_ms: millis(now),
                },
            );
            received.push(Received {
                lock_token: token.clone(),
                delivery_count: leased.delivered,
                event: leased.event.event.clone(),
            });
            let expires = now + self.lock_duration;
            table.locked.insert(token, Held { leased, expires, received: now });
        }
        (received, dead)
    }

    /// Stores Event Grid's dead-letter record in the cluster's dead-letter stream, then
    /// removes the event from the log; when the record cannot be stored the event is handed
    /// back instead, so it is not lost. Whether it was dead-lettered.
    async fn dead_letter_leased(
        &self,
        leases: &Leases,
        leased: &Leased,
        reason: DeadLetterReason,
        attempts: u32,
    ) -> bool {
        let record = self.record(&leased.event, reason, attempts).to_raw();
        let record = Bytes::from(String::from(Box::<str>::from(record)));
        let stored = leases.log.dead_letter(&self.topic, &self.name, record).await;
        if let Err(error) = stored {
            warn!(subscription = %self.key, %error, "Cannot store a dead letter; the event is handed back.");
            hand_back_one(leased).await;
            return false;
        }
        tracing::info!(subscription = %self.key, event_id = %leased.event.event.id, reason = reason.as_str(), "Event dead-lettered.");
        self.counters.dead_lettered.increment(1);
        if let Err(error) = leased.settle.term().await {
            // The record is stored: a second copy, should the event come back, is the lesser harm.
            warn!(subscription = %self.key, %error, "Cannot remove a dead-lettered event from the routing log.");
        }
        true
    }

    /// Acknowledge, release, reject or renew `tokens`, wherever their locks are (see the module
    /// doc).
    pub(super) async fn settle_shared(
        &self,
        leases: &Leases,
        op: LockOp,
        tokens: &[String],
    ) -> TokenOutcome {
        let mut outcome = TokenOutcome::default();
        let mut mine = Vec::new();
        let mut others: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for token in tokens {
            match token::check(leases.log.lock_key(), token) {
                Some(lock) if lock.subscription == *self.key => {
                    if lock.node == leases.log.node() {
                        mine.push(token.clone());
                    } else {
                        others.entry(lock.node).or_default().push(token.clone());
                    }
                }
                _ => outcome.failed_lock_tokens.push(bad_token(token)),
            }
        }
        if !mine.is_empty() {
            outcome.merge(self.settle_held(op, &mine).await);
        }
        for (node, tokens) in others {
            outcome.merge(self.forward(leases, &node, op, tokens).await);
        }
        outcome
    }

    /// Sends `tokens` to `node`, which holds their locks.
    async fn forward(
        &self,
        leases: &Leases,
        node: &str,
        op: LockOp,
        tokens: Vec<String>,
    ) -> TokenOutcome {
        // The name the data plane knows the topic by, which the owner looks it up with.
        let topic = match &*self.topic {
            crate::routing::router::SYSTEM_TOPIC => "systemTopic",
            topic => topic,
        };
        let request = LockRequest {
            topic: topic.to_string(),
            subscription: self.name.to_string(),
            op,
            tokens,
        };
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let all_lost = |tokens: &[String], message: &str| TokenOutcome {
            succeeded_lock_tokens: Vec::new(),
            failed_lock_tokens: tokens.iter().map(|t| lost(t, message)).collect(),
        };
        match leases.log.lock_request(node, Bytes::from(body)).await {
            Ok(Some(answer)) => match serde_json::from_slice::<TokenOutcome>(&answer) {
                Ok(outcome) => outcome,
                Err(error) => {
                    warn!(node, %error, "A lock operation's answer could not be read.");
                    all_lost(&request.tokens, "The lock's node gave no readable answer.")
                }
            },
            Ok(None) => all_lost(&request.tokens, "The lock's node is gone."),
            Err(error) => {
                warn!(node, %error, "Cannot send a lock operation to its node.");
                all_lost(&request.tokens, "The lock's node cannot be reached.")
            }
        }
    }

    /// Applies `op` to this node's locks `tokens` (its own, or sent by another node).
    pub async fn settle_held(&self, op: LockOp, tokens: &[String]) -> TokenOutcome {
        let Some(leases) = self.leases() else {
            return TokenOutcome {
                succeeded_lock_tokens: Vec::new(),
                failed_lock_tokens: tokens.iter().map(|t| bad_token(t)).collect(),
            };
        };
        self.expire_leases().await;
        let now = SystemTime::now();
        let mut outcome = TokenOutcome::default();
        let mut taken = Vec::new();
        {
            let mut table = leases.table.lock();
            for token in tokens {
                let held = match op {
                    // A renewed lock stays in the table, so that it can still expire.
                    LockOp::Renew => match table.locked.get_mut(token) {
                        Some(held) if now < held.received + RENEW_WINDOW => {
                            held.expires = now + self.lock_duration;
                            Some(held.leased.clone())
                        }
                        Some(_) => {
                            outcome.failed_lock_tokens.push(lost(
                                token,
                                "Locks can be renewed only within an hour of the first receive.",
                            ));
                            continue;
                        }
                        None => None,
                    },
                    _ => table.locked.remove(token).map(|held| held.leased),
                };
                match held {
                    Some(leased) => taken.push((token.clone(), leased)),
                    None => outcome.failed_lock_tokens.push(leases.failed(&table, token)),
                }
            }
        }
        let results = join_all(taken.iter().map(|(token, leased)| async move {
            let done = match op {
                LockOp::Acknowledge => leased.settle.ack().await.map(|()| true),
                LockOp::Release { delay_secs } => {
                    leased.settle.retry_after(Duration::from_secs(delay_secs)).await.map(|()| true)
                }
                LockOp::Renew => leased.settle.renew().await.map(|()| true),
                LockOp::Reject => Ok(self
                    .dead_letter_leased(
                        leases,
                        leased,
                        DeadLetterReason::Rejected,
                        leased.delivered,
                    )
                    .await),
            };
            (token, done)
        }))
        .await;
        for (token, done) in results {
            match done {
                Ok(true) => {
                    outcome.succeeded_lock_tokens.push(token.clone());
                    match op {
                        LockOp::Acknowledge => self.counters.acknowledged.increment(1),
                        LockOp::Release { .. } => self.counters.released.increment(1),
                        LockOp::Reject => self.counters.rejected.increment(1),
                        LockOp::Renew => {}
                    }
                }
                Ok(false) => outcome
                    .failed_lock_tokens
                    .push(lost(token, "The event could not be dead-lettered; it was released.")),
                Err(error) => {
                    warn!(subscription = %self.key, %error, "A lock operation failed in the routing log.");
                    if op == LockOp::Renew {
                        // The log did not extend its lease, so it may hand the event out again
                        // before the lock this table extended would end: the lock is given up.
                        leases.forget(token);
                    }
                    outcome
                        .failed_lock_tokens
                        .push(lost(token, "The routing log could not be reached."));
                }
            }
        }
        outcome
    }

    /// Hands the events of expired locks back to the log at once.
    pub async fn expire_leases(&self) {
        let Some(leases) = self.leases() else { return };
        let expired = leases.take_expired(SystemTime::now());
        if expired.is_empty() {
            return;
        }
        self.counters.lock_lost.increment(expired.len() as u64);
        hand_back(expired).await;
    }

    /// Counts the subscription's events in the log, for the API and the gauges; a count that
    /// cannot be had within `within` keeps the last one.
    pub async fn count_backlog(&self, within: Duration) {
        let Some(leases) = self.leases() else { return };
        let count = async {
            // The log counts for a consumer only once it exists: opening the feed creates it.
            self.open_feed(leases).await?;
            leases.log.backlog(&self.topic, &self.name).await
        };
        if let Ok(Ok(backlog)) = tokio::time::timeout(within, count).await {
            *leases.backlog.lock() = backlog;
        }
    }

    /// Hands every locked event back to the log (shutdown): other nodes receive them at once.
    pub async fn release_leases(&self) {
        if let Some(leases) = self.leases() {
            hand_back(leases.take_all()).await;
        }
    }

    /// A retired subscription's locks: their events go back to the log, from a task of their
    /// own since retiring is synchronous; without a runtime the log's ack wait brings them back.
    pub(super) fn retire_leases(&self, leases: &Leases) {
        let held = leases.take_all();
        if held.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(hand_back(held));
        }
    }
}

async fn hand_back_one(leased: &Leased) {
    if let Err(error) = leased.settle.retry_after(Duration::ZERO).await {
        debug!(seq = leased.event.seq, %error, "Handing an event back to the log.");
    }
}
