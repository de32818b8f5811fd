//! One event subscription's delivery loop: take the deliveries that are due, cut them into
//! requests as the sink says, send at most `max_concurrency` requests at once, and turn each
//! outcome into the next step through the shared retry policy (delivered, retry at a time, or
//! dead-letter). Sinks only classify errors; the schedule lives here and in `sinks::retry`.
//!
//! Before the first delivery (and again after the endpoint refused it) the sink's
//! `validate` runs, the webhook abuse-protection handshake. A refusing endpoint is reported in
//! the log and retried on `VALIDATION_RETRY`, never hammered; its events wait, unattempted.
//!
//! After a failed request the whole subscription pauses (Event Grid's "probation"): an endpoint
//! that is down is tried again after the pause, not once per waiting event. The probation's end
//! and the last error with its time are kept for the API ([`Status`]); they change only when an
//! outcome is recorded, so they cost nothing per message.
//!
//! **Invariant**: a delivery is either in `Queue::due` or in exactly one request in flight;
//! every outcome either reschedules it (journaled), or settles it (journaled).
//!
//! # Retiring
//! A subscription changed or deleted at run time retires its dispatcher ([`Dispatcher::retire`]):
//! its loop stops, and what it still holds (waiting deliveries, and requests in flight once
//! they fail) goes to its successor, the dispatcher of the changed subscription under the same
//! key, or is settled when the subscription is gone. Requests in flight are not cut short.
//!
//! # Cluster mode
//! With the cluster's shared routing log, nothing is queued here: the loop in `leased.rs`
//! leases events from the log while this node holds the subscription's claim, so that one node
//! at a time sends. Retiring then stops the loop; the management API removes a deleted
//! subscription's events from the log (`router/topics.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use sinks::{Delivery, DeliveryError, RetryPolicy, Sink, Verdict};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::buffer::{Buffer, BufferedEvent, millis};
use super::dead_letter::DeadLetters;
use super::filter::Filter;
use super::shared::Backlog;

mod leased;

/// Pauses between validation attempts of a refusing endpoint; the last one repeats.
const VALIDATION_RETRY: [Duration; 4] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(300),
];

/// Most deliveries looked at for one request.
const MAX_CANDIDATES: usize = 5_000;

/// How often an idle dispatcher looks at its queue anyway.
const IDLE_RECHECK: Duration = Duration::from_secs(60);

/// A delivery waiting for its next attempt.
struct Pending {
    event: Arc<BufferedEvent>,
    /// Attempts made so far.
    attempts: u32,
}

/// An event subscription with a push destination, and its deliveries.
pub struct Dispatcher {
    /// `topic/subscription`, the key of its rows in the store.
    pub key: Arc<str>,
    pub topic: Arc<str>,
    pub name: Arc<str>,
    pub filter: Filter,
    sink: Arc<dyn Sink>,
    policy: RetryPolicy,
    buffer: Arc<Buffer>,
    dead_letters: Arc<DeadLetters>,
    /// Due deliveries by (next attempt in ms since the epoch, event seq).
    due: Mutex<BTreeMap<(u64, u64), Pending>>,
    wake: Notify,
    /// The endpoint's validation, probation and last error, for the API and tests.
    health: Mutex<Health>,
    /// No request goes out before this (probation after a failed request).
    paused_until: Mutex<tokio::time::Instant>,
    /// Set (under the `due` lock) once retired: nothing is queued here any more.
    retired: AtomicBool,
    /// Set when its delivery loop is spawned, so it is spawned once.
    started: AtomicBool,
    /// Stops the delivery loop of a retired dispatcher.
    stop: CancellationToken,
    /// Where deliveries go once retired, when the subscription lives on.
    successor: OnceLock<super::router::Subscriber>,
    /// This dispatcher in `/readyz`: ready while it runs with its endpoint validated.
    readiness: crate::readiness::Entry,
    counters: crate::telemetry::catalogue::SubscriptionCounters,
    /// In cluster mode, the subscription's events in the shared log, as last counted.
    backlog: Mutex<Backlog>,
}

/// Where a subscription's endpoint stands, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub validated: bool,
    /// Why the last validation failed, while it does.
    pub validation_error: Option<String>,
    pub validation_attempts: u32,
    /// Whether the subscription rests after a failed request (probation): nothing is sent
    /// before `probation_until`.
    pub probation: bool,
    /// When the probation ends (RFC 3339, UTC), while it lasts.
    pub probation_until: Option<String>,
    /// The last failed handshake or request. It stays after later successes; its time says
    /// how old it is.
    pub last_error: Option<String>,
    /// When the last error happened (RFC 3339, UTC).
    pub last_error_time: Option<String>,
}

/// What [`Status`] is made from, kept as times rather than text.
struct Health {
    validated: bool,
    validation_error: Option<String>,
    validation_attempts: u32,
    /// The end of the last probation (it may have passed).
    probation_until: Option<SystemTime>,
    last_error: Option<(String, SystemTime)>,
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topic: &str,
        name: &str,
        filter: Filter,
        sink: Arc<dyn Sink>,
        policy: RetryPolicy,
        buffer: Arc<Buffer>,
        dead_letters: Arc<DeadLetters>,
        readiness: &Arc<crate::readiness::Readiness>,
    ) -> Dispatcher {
        let (topic, name): (Arc<str>, Arc<str>) = (topic.into(), name.into());
        let key = format!("{topic}/{name}");
        let readiness =
            readiness.register(crate::readiness::Component::Dispatcher, key.clone(), "not started");
        Dispatcher {
            readiness,
            key: key.into(),
            counters: crate::telemetry::catalogue::SubscriptionCounters::new(&topic, &name),
            topic,
            name,
            filter,
            sink,
            policy,
            buffer,
            dead_letters,
            due: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            health: Mutex::new(Health {
                validated: false,
                validation_error: None,
                validation_attempts: 0,
                probation_until: None,
                last_error: None,
            }),
            paused_until: Mutex::new(tokio::time::Instant::now()),
            retired: AtomicBool::new(false),
            started: AtomicBool::new(false),
            stop: CancellationToken::new(),
            successor: OnceLock::new(),
            backlog: Mutex::new(Backlog::default()),
        }
    }

    /// Queues a delivery of `event` after `attempts` attempts, due at `at`.
    pub fn enqueue(&self, event: Arc<BufferedEvent>, attempts: u32, at: SystemTime) {
        {
            let mut due = self.due.lock();
            if !self.retired.load(Ordering::Acquire) {
                due.insert((millis(at), event.seq), Pending { event, attempts });
                drop(due);
                self.wake.notify_one();
                return;
            }
        }
        self.hand_on(event, attempts, at);
    }

    /// Stops this dispatcher and hands what it holds to `successor` (the same subscription,
    /// changed), or settles it when the subscription is gone. See the module docs.
    pub fn retire(&self, successor: Option<super::router::Subscriber>) {
        if let Some(successor) = successor {
            let _ = self.successor.set(successor);
        }
        let waiting = {
            let mut due = self.due.lock();
            self.retired.store(true, Ordering::Release);
            std::mem::take(&mut *due)
        };
        self.stop.cancel();
        // A retired dispatcher is no longer part of the gateway: its successor, if any, has
        // its own entry.
        self.readiness.ready();
        for ((at, _), pending) in waiting {
            self.hand_on(pending.event, pending.attempts, super::buffer::from_millis(at));
        }
    }

    /// A delivery of a retired dispatcher: to the successor, or settled.
    fn hand_on(&self, event: Arc<BufferedEvent>, attempts: u32, at: SystemTime) {
        match self.successor.get() {
            Some(successor) => successor.enqueue(event, attempts, at),
            None => self.buffer.settle(&self.key, &event),
        }
    }

    /// True the first time only: whoever gets true spawns [`Dispatcher::run`].
    pub fn start_once(&self) -> bool {
        !self.started.swap(true, Ordering::AcqRel)
    }

    /// Runs `work` to its end, unless the global `shutdown` comes or this dispatcher is
    /// retired first: `None` then.
    async fn until_stopped<T>(
        &self,
        shutdown: &CancellationToken,
        work: impl Future<Output = T>,
    ) -> Option<T> {
        self.stop.run_until_cancelled(shutdown.run_until_cancelled(work)).await.flatten()
    }

    /// Deliveries waiting (not in flight). In cluster mode: the subscription's events in the
    /// shared log, in flight included, as every node counts them every few seconds.
    pub fn waiting(&self) -> usize {
        if self.buffer.shared_log().is_some() {
            return self.backlog.lock().waiting;
        }
        self.due.lock().len()
    }

    /// When the oldest waiting event entered the buffer (in cluster mode, as last counted).
    pub fn oldest(&self) -> Option<SystemTime> {
        if self.buffer.shared_log().is_some() {
            return self.backlog.lock().oldest;
        }
        self.due.lock().values().map(|p| p.event.published).min()
    }

    /// The endpoint's validation, probation and last error.
    pub fn status(&self) -> Status {
        let health = self.health.lock();
        let probation_until = health.probation_until.filter(|&until| until > SystemTime::now());
        Status {
            validated: health.validated,
            validation_error: health.validation_error.clone(),
            validation_attempts: health.validation_attempts,
            probation: probation_until.is_some(),
            probation_until: probation_until.map(sinks::event::format_time),
            last_error: health.last_error.as_ref().map(|(error, _)| error.clone()),
            last_error_time: health
                .last_error
                .as_ref()
                .map(|&(_, at)| sinks::event::format_time(at)),
        }
    }

    /// Delivers until `shutdown`. Requests run as tasks of `tasks`; one cut short by shutdown
    /// leaves its deliveries in the store, to be sent again after a restart.
    pub async fn run(self: Arc<Self>, tasks: TaskTracker, shutdown: CancellationToken) {
        if let Some(shared) = self.buffer.shared_log().cloned() {
            return self.run_leased(shared, tasks, shutdown).await;
        }
        let requests = Arc::new(Semaphore::new(self.sink.max_concurrency().max(1)));
        loop {
            if !self.health.lock().validated {
                self.readiness.not_ready("handshake pending");
                if !self.validate(&shutdown).await {
                    return;
                }
                self.readiness.ready();
            }
            let paused_until = *self.paused_until.lock();
            if paused_until > tokio::time::Instant::now() {
                let pause = tokio::time::sleep_until(paused_until);
                if self.until_stopped(&shutdown, pause).await.is_none() {
                    return;
                }
            }
            let permit = self.until_stopped(&shutdown, requests.clone().acquire_owned()).await;
            let Some(Ok(permit)) = permit else { return };
            let batch = self.take_due();
            if batch.is_empty() {
                drop(permit);
                let wait = self.next_due().unwrap_or(IDLE_RECHECK).min(IDLE_RECHECK);
                // Woken by a new delivery, or at the next due time at the latest.
                let woken = tokio::time::timeout(wait, self.wake.notified());
                if self.until_stopped(&shutdown, woken).await.is_none() {
                    return;
                }
                continue;
            }
            let this = self.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let deliveries: Vec<Delivery<'_>> = batch
                    .iter()
                    .map(|p| Delivery { event: &p.event.event, delivery_count: p.attempts + 1 })
                    .collect();
                let started = std::time::Instant::now();
                let Some(result) = stop.run_until_cancelled(this.sink.send(&deliveries)).await
                else {
                    return;
                };
                this.counters.destination.record(started.elapsed().as_secs_f64());
                drop(deliveries);
                this.complete(batch, result);
                drop(permit);
            });
        }
    }

    /// Runs the validation handshake until it succeeds; false on shutdown.
    async fn validate(&self, shutdown: &CancellationToken) -> bool {
        loop {
            let Some(result) = self.until_stopped(shutdown, self.sink.validate()).await else {
                return false;
            };
            let attempts = {
                let mut health = self.health.lock();
                health.validation_attempts += 1;
                match &result {
                    Ok(()) => {
                        health.validated = true;
                        health.validation_error = None;
                    }
                    Err(error) => {
                        health.validation_error = Some(error.to_string());
                        health.last_error = Some((error.to_string(), SystemTime::now()));
                        self.readiness.not_ready(format!("handshake failed: {error}"));
                    }
                }
                health.validation_attempts
            };
            let Err(error) = result else {
                tracing::info!(subscription = %self.key, "Endpoint validated.");
                return true;
            };
            let index = (attempts as usize - 1).min(VALIDATION_RETRY.len() - 1);
            let pause = match &self.policy.delays {
                Some(delays) => delays.iter().copied().find(|d| !d.is_zero()).unwrap_or_default(),
                None => VALIDATION_RETRY[index],
            };
            tracing::error!(
                subscription = %self.key,
                %error,
                attempts,
                retry_in_secs = pause.as_secs_f64(),
                "Endpoint refused validation; its events wait."
            );
            if self.until_stopped(shutdown, tokio::time::sleep(pause)).await.is_none() {
                return false;
            }
        }
    }

    /// Takes the due deliveries that form the next request; dead-letters those past their
    /// time to live on the way. Looks at no more deliveries than one request can hold, so a
    /// large backlog costs nothing per request.
    fn take_due(&self) -> Vec<Pending> {
        let now = SystemTime::now();
        let now_ms = millis(now);
        let limit = self.sink.max_batch_events().clamp(1, MAX_CANDIDATES);
        let mut expired = Vec::new();
        let mut candidates = Vec::new();
        {
            let mut due = self.due.lock();
            while candidates.len() < limit {
                let Some(entry) = due.first_entry() else { break };
                if entry.key().0 > now_ms {
                    break;
                }
                let pending = entry.remove();
                if self.policy.expired(pending.event.published, now) {
                    expired.push(pending);
                } else {
                    candidates.push(pending);
                }
            }
            if candidates.len() > 1 {
                let deliveries: Vec<Delivery<'_>> = candidates
                    .iter()
                    .map(|p| Delivery { event: &p.event.event, delivery_count: p.attempts + 1 })
                    .collect();
                let take = self.sink.batch_len(&deliveries).clamp(1, candidates.len());
                drop(deliveries);
                for pending in candidates.drain(take..) {
                    due.insert((now_ms, pending.event.seq), pending);
                }
            }
        }
        for pending in expired {
            self.counters.expired.increment(1);
            self.dead_letter(pending, sinks::DeadLetterReason::MaxRetryDurationExceeded, None);
        }
        candidates
    }

    /// How long until the next delivery is due.
    fn next_due(&self) -> Option<Duration> {
        let due = self.due.lock();
        let (&(at, _), _) = due.first_key_value()?;
        Some(Duration::from_millis(at.saturating_sub(millis(SystemTime::now()))))
    }

    /// Applies a request's outcome; a failure pauses the subscription (probation).
    fn complete(&self, batch: Vec<Pending>, result: Result<(), DeliveryError>) {
        let error = match result {
            Ok(()) => {
                self.counters.delivered.increment(batch.len() as u64);
                for pending in batch {
                    self.buffer.settle(&self.key, &pending.event);
                }
                return;
            }
            Err(error) => error,
        };
        self.counters.failed(error.kind.outcome_name(), batch.len() as u64);
        tracing::warn!(subscription = %self.key, events = batch.len(), %error, "Delivery failed.");
        let now = SystemTime::now();
        let rest = self.probation(&error);
        // Recorded before the deliveries are rescheduled or dead-lettered, so whoever sees a
        // dead letter also sees the error.
        {
            let mut health = self.health.lock();
            health.probation_until = (!rest.is_zero()).then(|| now + rest);
            health.last_error = Some((error.to_string(), now));
        }
        for mut pending in batch {
            pending.attempts += 1;
            match self.policy.after_failure(pending.attempts, pending.event.published, now, &error)
            {
                Verdict::RetryAt(at) => {
                    self.buffer.reschedule(&self.key, &pending.event, pending.attempts, at);
                    self.enqueue(pending.event, pending.attempts, at);
                }
                Verdict::DeadLetter(reason) => self.dead_letter(pending, reason, Some(&error)),
            }
        }
        *self.paused_until.lock() = tokio::time::Instant::now() + rest;
        self.wake.notify_one();
    }

    /// How long the subscription rests after a failed request.
    fn probation(&self, error: &DeliveryError) -> Duration {
        if let Some(delays) = &self.policy.delays {
            return delays.iter().copied().find(|d| !d.is_zero()).unwrap_or_default();
        }
        if error.is_retriable(self.policy.schedule) {
            Duration::from_secs(10)
        } else {
            Duration::ZERO
        }
    }

    fn dead_letter(
        &self,
        pending: Pending,
        reason: sinks::DeadLetterReason,
        error: Option<&DeliveryError>,
    ) {
        let record = self.record(&pending.event, pending.attempts, reason, error);
        tracing::warn!(
            subscription = %self.key,
            event_id = %pending.event.event.id,
            reason = reason.as_str(),
            attempts = pending.attempts,
            "Event dead-lettered."
        );
        self.counters.dead_lettered.increment(1);
        if self.dead_letters.add(&self.key, record.to_raw()) {
            self.counters.dropped.increment(1);
        }
        self.buffer.settle(&self.key, &pending.event);
    }

    /// Event Grid's dead-letter record of `event` after `attempts` attempts.
    fn record(
        &self,
        event: &BufferedEvent,
        attempts: u32,
        reason: sinks::DeadLetterReason,
        error: Option<&DeliveryError>,
    ) -> sinks::DeadLetterRecord {
        sinks::DeadLetterRecord {
            event: event.event.clone(),
            reason,
            attempts,
            last_result: error.map_or("", |e| e.kind.outcome_name()).to_string(),
            last_status: error.and_then(|e| e.status),
            published: sinks::event::format_time(event.published),
            last_attempt: if error.is_some() {
                sinks::event::format_time(SystemTime::now())
            } else {
                String::new()
            },
            custom_delivery_properties: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests;
