//! A queue event subscription: events wait until a consumer receives them over HTTP (pull
//! delivery), under a lock, and are then acknowledged, released, rejected, or redelivered when
//! the lock expires.
//!
//! Event Grid's rules: each receive counts as a delivery (`deliveryCount`, stored, so it
//! survives a restart); an event whose count would pass `maxDeliveryCount`, or whose time to
//! live has passed, is dead-lettered instead of delivered; a rejected event is dead-lettered;
//! a lock can be renewed only within an hour of the first receive. Locks live in memory: after
//! a restart every locked event is receivable again.
//!
//! **Invariant**: an event is either available or held under exactly one lock token, so two
//! consumers never hold the same event at once.
//!
//! A queue subscription changed at run time hands its events (locked ones too, whose tokens
//! then fail as `BadToken`) to its successor, the changed subscription under the same key;
//! a deleted one settles them ([`QueueSubscription::retire`]).
//!
//! In cluster mode (the buffer has a shared log) events wait in the cluster's routing log
//! instead, any node receives them and the receiving node holds their locks: see `leases.rs`,
//! and `token.rs` for the lock tokens, which then route an operation to the lock's node.

mod leases;
mod token;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use sinks::{CloudEvent, DeadLetterReason, RetryPolicy};
use tokio::sync::Notify;

use super::buffer::{Buffer, BufferedEvent, millis};
use super::dead_letter::DeadLetters;
use super::filter::Filter;

/// How long after its first receive an event's lock may still be renewed.
const RENEW_WINDOW: Duration = Duration::from_secs(3600);

/// Lock tokens remembered after their lock expired, so that late operations on them report
/// `TokenLost` rather than `BadToken`. The oldest are forgotten past this bound.
const LOST_TOKENS: usize = 10_000;

/// An event handed to a consumer.
#[derive(Debug, Clone)]
pub struct Received {
    pub lock_token: String,
    pub delivery_count: u32,
    pub event: CloudEvent,
}

/// A lock token an operation could not apply to, as Event Grid answers it:
/// `{"lockToken": "...", "error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedToken {
    pub lock_token: String,
    pub error: TokenError,
}

/// Why a lock token failed: Event Grid's code (`BadToken`, `TokenLost`) and a message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenError {
    pub code: String,
    pub message: String,
}

impl FailedToken {
    fn new(token: &str, code: &str, message: &str) -> FailedToken {
        FailedToken {
            lock_token: token.to_string(),
            error: TokenError { code: code.to_string(), message: message.to_string() },
        }
    }
}

/// The answer to acknowledge, release, reject and renew.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenOutcome {
    pub succeeded_lock_tokens: Vec<String>,
    pub failed_lock_tokens: Vec<FailedToken>,
}

impl TokenOutcome {
    fn merge(&mut self, other: TokenOutcome) {
        self.succeeded_lock_tokens.extend(other.succeeded_lock_tokens);
        self.failed_lock_tokens.extend(other.failed_lock_tokens);
    }

    /// How many tokens failed with each code; a code this version does not know (from another
    /// node) is `other`, so that a metric label never takes an unbounded value.
    fn failed_by_code(&self) -> Vec<(&'static str, u64)> {
        let mut counts: Vec<(&'static str, u64)> = Vec::new();
        for failed in &self.failed_lock_tokens {
            let code = match failed.error.code.as_str() {
                "BadToken" => "BadToken",
                "TokenLost" => "TokenLost",
                _ => "other",
            };
            match counts.iter_mut().find(|(seen, _)| *seen == code) {
                Some((_, n)) => *n += 1,
                None => counts.push((code, 1)),
            }
        }
        counts
    }
}

/// An operation on lock tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LockOp {
    Acknowledge,
    Release { delay_secs: u64 },
    Reject,
    Renew,
}

impl LockOp {
    /// The operation's name in the data plane's path (and the metrics' `operation` label).
    pub fn name(self) -> &'static str {
        match self {
            LockOp::Acknowledge => "acknowledge",
            LockOp::Release { .. } => "release",
            LockOp::Reject => "reject",
            LockOp::Renew => "renewLock",
        }
    }
}

/// A lock operation one node sends to the node that holds the locks (cluster mode), as JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockRequest {
    pub topic: String,
    pub subscription: String,
    pub op: LockOp,
    pub tokens: Vec<String>,
}

struct Pending {
    event: Arc<BufferedEvent>,
    /// Deliveries (receives) so far.
    attempts: u32,
}

struct Locked {
    pending: Pending,
    expires: SystemTime,
    first_received: SystemTime,
}

#[derive(Default)]
struct State {
    /// Available events by (when they become receivable, ms since the epoch; event seq).
    available: BTreeMap<(u64, u64), Pending>,
    locked: HashMap<String, Locked>,
    /// First receive time of events that were received before and released back.
    first_received: HashMap<u64, SystemTime>,
    lost: VecDeque<String>,
    /// Set once retired: nothing is queued here any more.
    retired: bool,
}

/// A queue event subscription.
pub struct QueueSubscription {
    pub key: Arc<str>,
    pub topic: Arc<str>,
    pub name: Arc<str>,
    pub filter: Filter,
    policy: RetryPolicy,
    lock_duration: Duration,
    buffer: Arc<Buffer>,
    dead_letters: Arc<DeadLetters>,
    state: Mutex<State>,
    arrived: Notify,
    /// Where events go once retired, when the subscription lives on.
    successor: std::sync::OnceLock<super::router::Subscriber>,
    counters: crate::telemetry::catalogue::SubscriptionCounters,
    /// Cluster mode: the locks this node holds on events of the cluster's routing log.
    leases: Option<leases::Leases>,
}

impl QueueSubscription {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topic: &str,
        name: &str,
        filter: Filter,
        policy: RetryPolicy,
        lock_duration: Duration,
        buffer: Arc<Buffer>,
        dead_letters: Arc<DeadLetters>,
    ) -> QueueSubscription {
        let (topic, name): (Arc<str>, Arc<str>) = (topic.into(), name.into());
        QueueSubscription {
            leases: buffer.shared_log().cloned().map(leases::Leases::new),
            key: format!("{topic}/{name}").into(),
            counters: crate::telemetry::catalogue::SubscriptionCounters::new(&topic, &name),
            topic,
            name,
            filter,
            policy,
            lock_duration,
            buffer,
            dead_letters,
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
            successor: std::sync::OnceLock::new(),
        }
    }

    /// Makes `event` receivable at `at`, with `attempts` deliveries behind it.
    pub fn enqueue(&self, event: Arc<BufferedEvent>, attempts: u32, at: SystemTime) {
        {
            let mut state = self.state.lock();
            if !state.retired {
                state.available.insert((millis(at), event.seq), Pending { event, attempts });
                drop(state);
                self.arrived.notify_waiters();
                return;
            }
        }
        self.hand_on(event, attempts, at);
    }

    /// Hands every event, locked or not, to `successor`, or settles them when the subscription
    /// is gone; later enqueues follow the same way.
    pub fn retire(&self, successor: Option<super::router::Subscriber>) {
        if let Some(successor) = successor {
            let _ = self.successor.set(successor);
        }
        if let Some(leases) = &self.leases {
            self.state.lock().retired = true;
            self.retire_leases(leases);
        }
        let now = SystemTime::now();
        let held: Vec<(SystemTime, Pending)> = {
            let mut state = self.state.lock();
            state.retired = true;
            let available = std::mem::take(&mut state.available);
            let locked = std::mem::take(&mut state.locked);
            state.first_received.clear();
            available
                .into_iter()
                .map(|((at, _), pending)| (super::buffer::from_millis(at), pending))
                .chain(locked.into_values().map(|locked| (now, locked.pending)))
                .collect()
        };
        self.arrived.notify_waiters();
        for (at, pending) in held {
            self.hand_on(pending.event, pending.attempts, at);
        }
    }

    /// An event of a retired subscription: to the successor, or settled.
    fn hand_on(&self, event: Arc<BufferedEvent>, attempts: u32, at: SystemTime) {
        match self.successor.get() {
            Some(successor) => successor.enqueue(event, attempts, at),
            None => self.buffer.settle(&self.key, &event),
        }
    }

    /// Events waiting to be received (not locked); in cluster mode, on every node, as last
    /// counted (every 3 s).
    pub fn waiting(&self) -> usize {
        if let Some(leases) = &self.leases {
            return leases.waiting();
        }
        self.state.lock().available.len()
    }

    /// Events under a lock (in cluster mode: on every node, as last counted, or the locks this
    /// node holds when they are more).
    pub fn locked(&self) -> usize {
        if let Some(leases) = &self.leases {
            return leases.locked();
        }
        self.state.lock().locked.len()
    }

    /// When the oldest available or locked event entered the buffer (in cluster mode: the oldest
    /// in the log as last counted, or locked here).
    pub fn oldest(&self) -> Option<SystemTime> {
        if let Some(leases) = &self.leases {
            return leases.oldest();
        }
        let state = self.state.lock();
        let available = state.available.values().map(|p| p.event.published);
        available.chain(state.locked.values().map(|l| l.pending.event.published)).min()
    }

    /// Receives up to `max_events`, waiting up to `max_wait` for the first one (long poll).
    pub async fn receive(&self, max_events: usize, max_wait: Duration) -> Vec<Received> {
        if let Some(leases) = &self.leases {
            if self.state.lock().retired {
                return Vec::new();
            }
            return self.receive_shared(leases, max_events, max_wait).await;
        }
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (received, next) = self.take(max_events);
            // A retired queue's consumer gets an empty answer at once, and finds the changed
            // subscription on its next request.
            if !received.is_empty()
                || tokio::time::Instant::now() >= deadline
                || self.state.lock().retired
            {
                return received;
            }
            let wake = next.map_or(deadline, |d| (tokio::time::Instant::now() + d).min(deadline));
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Applies `op` to `tokens`: on this node's lock table, or in cluster mode wherever each
    /// token's lock is. The tokens refused are counted here, on the node the client called, so
    /// that a forwarded settle counts once.
    pub async fn settle(&self, op: LockOp, tokens: &[String]) -> TokenOutcome {
        let outcome = match (&self.leases, op) {
            (Some(leases), op) => self.settle_shared(leases, op, tokens).await,
            (None, LockOp::Acknowledge) => self.acknowledge(tokens),
            (None, LockOp::Release { delay_secs }) => {
                self.release(tokens, Duration::from_secs(delay_secs))
            }
            (None, LockOp::Reject) => self.reject(tokens),
            (None, LockOp::Renew) => self.renew(tokens),
        };
        for (code, tokens) in outcome.failed_by_code() {
            self.counters.failed_settles(op.name(), code, tokens);
        }
        outcome
    }

    /// Settles events for good.
    pub fn acknowledge(&self, tokens: &[String]) -> TokenOutcome {
        self.apply(tokens, |this, _, locked| {
            this.counters.acknowledged.increment(1);
            this.buffer.settle(&this.key, &locked.pending.event);
        })
    }

    /// Makes events receivable again after `delay`.
    pub fn release(&self, tokens: &[String], delay: Duration) -> TokenOutcome {
        let at = SystemTime::now() + delay;
        self.apply(tokens, |this, state, locked| {
            this.counters.released.increment(1);
            let Locked { pending, first_received, .. } = locked;
            this.buffer.reschedule(&this.key, &pending.event, pending.attempts, at);
            state.first_received.insert(pending.event.seq, first_received);
            state.available.insert((millis(at), pending.event.seq), pending);
            this.arrived.notify_waiters();
        })
    }

    /// Dead-letters events.
    pub fn reject(&self, tokens: &[String]) -> TokenOutcome {
        self.apply(tokens, |this, _, locked| {
            this.counters.rejected.increment(1);
            this.dead_letter(locked.pending, DeadLetterReason::Rejected);
        })
    }

    /// Extends locks by the lock duration, within an hour of the first receive.
    pub fn renew(&self, tokens: &[String]) -> TokenOutcome {
        let now = SystemTime::now();
        let mut state = self.state.lock();
        self.expire_locks(&mut state, now);
        let mut outcome = TokenOutcome::default();
        for token in tokens {
            match state.locked.get_mut(token) {
                Some(locked) if now < locked.first_received + RENEW_WINDOW => {
                    locked.expires = now + self.lock_duration;
                    outcome.succeeded_lock_tokens.push(token.clone());
                }
                // The lock still holds until it expires, but it can no longer be kept: to the
                // client that is a token about to be lost, so Event Grid's `TokenLost`.
                Some(_) => outcome.failed_lock_tokens.push(FailedToken::new(
                    token,
                    "TokenLost",
                    "Locks can be renewed only within an hour of the first receive.",
                )),
                None => outcome.failed_lock_tokens.push(failed(&state, token)),
            }
        }
        outcome
    }

    fn apply(
        &self,
        tokens: &[String],
        mut action: impl FnMut(&Self, &mut State, Locked),
    ) -> TokenOutcome {
        let now = SystemTime::now();
        let mut state = self.state.lock();
        self.expire_locks(&mut state, now);
        let mut outcome = TokenOutcome::default();
        for token in tokens {
            match state.locked.remove(token) {
                Some(locked) => {
                    action(self, &mut state, locked);
                    outcome.succeeded_lock_tokens.push(token.clone());
                }
                None => outcome.failed_lock_tokens.push(failed(&state, token)),
            }
        }
        outcome
    }

    /// Locks up to `max` available events; also returns how long until something changes
    /// (an event becomes available or a lock expires).
    fn take(&self, max: usize) -> (Vec<Received>, Option<Duration>) {
        let now = SystemTime::now();
        let now_ms = millis(now);
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let next;
        {
            let mut state = self.state.lock();
            self.expire_locks(&mut state, now);
            while out.len() < max {
                let Some(entry) = state.available.first_entry() else { break };
                if entry.key().0 > now_ms {
                    break;
                }
                let mut pending = entry.remove();
                if self.policy.expired(pending.event.published, now) {
                    self.counters.expired.increment(1);
                    dead.push((pending, DeadLetterReason::MaxRetryDurationExceeded));
                    continue;
                }
                if pending.attempts >= self.policy.max_attempts {
                    dead.push((pending, DeadLetterReason::MaxDeliveryAttemptsExceeded));
                    continue;
                }
                pending.attempts += 1;
                self.buffer.reschedule(&self.key, &pending.event, pending.attempts, now);
                let token = sinks::event::new_id();
                let first_received = state.first_received.remove(&pending.event.seq).unwrap_or(now);
                out.push(Received {
                    lock_token: token.clone(),
                    delivery_count: pending.attempts,
                    event: pending.event.event.clone(),
                });
                state.locked.insert(
                    token,
                    Locked { pending, expires: now + self.lock_duration, first_received },
                );
            }
            let available = state.available.first_key_value().map(|(&(at, _), _)| at);
            let expiry = state.locked.values().map(|l| millis(l.expires)).min();
            next = available
                .into_iter()
                .chain(expiry)
                .min()
                .map(|at| Duration::from_millis(at.saturating_sub(now_ms).max(1)));
        }
        for (pending, reason) in dead {
            self.dead_letter(pending, reason);
        }
        self.counters.received.increment(out.len() as u64);
        (out, next)
    }

    /// Makes events whose lock expired receivable again.
    fn expire_locks(&self, state: &mut State, now: SystemTime) {
        let expired: Vec<String> =
            state.locked.iter().filter(|(_, l)| l.expires <= now).map(|(t, _)| t.clone()).collect();
        for token in expired {
            if let Some(Locked { pending, first_received, .. }) = state.locked.remove(&token) {
                state.first_received.insert(pending.event.seq, first_received);
                state.available.insert((millis(now), pending.event.seq), pending);
                self.counters.lock_lost.increment(1);
                state.lost.push_back(token);
                if state.lost.len() > LOST_TOKENS {
                    state.lost.pop_front();
                }
            }
        }
    }

    /// Event Grid's dead-letter record of `event` after `attempts` deliveries.
    fn record(
        &self,
        event: &BufferedEvent,
        reason: DeadLetterReason,
        attempts: u32,
    ) -> sinks::DeadLetterRecord {
        sinks::DeadLetterRecord {
            event: event.event.clone(),
            reason,
            attempts,
            last_result: match reason {
                DeadLetterReason::Rejected => "Rejected",
                _ => "",
            }
            .to_string(),
            last_status: None,
            published: sinks::event::format_time(event.published),
            last_attempt: sinks::event::format_time(SystemTime::now()),
            custom_delivery_properties: BTreeMap::new(),
        }
    }

    fn dead_letter(&self, pending: Pending, reason: DeadLetterReason) {
        let record = self.record(&pending.event, reason, pending.attempts);
        tracing::info!(subscription = %self.key, event_id = %pending.event.event.id, reason = reason.as_str(), "Event dead-lettered.");
        self.counters.dead_lettered.increment(1);
        if self.dead_letters.add(&self.key, record.to_raw()) {
            self.counters.dropped.increment(1);
        }
        self.buffer.settle(&self.key, &pending.event);
    }
}

fn failed(state: &State, token: &str) -> FailedToken {
    if state.lost.iter().any(|t| t == token) {
        FailedToken::new(token, "TokenLost", "Token has expired.")
    } else {
        FailedToken::new(token, "BadToken", "Token is not valid for this subscription.")
    }
}
