//! Push delivery in cluster mode: the dispatcher leases its events from the cluster's routing
//! log ([`SharedLog`]) instead of holding them, and only while this node holds the
//! subscription's [`Claim`].
//!
//! Every node runs the loop; one at a time holds the claim and fetches, so `max_concurrency`,
//! probation and the handshake mean what they mean on one node. A keeper task keeps the claim
//! (or tries for it) every second. A node cut off from NATS can neither keep it nor fetch, and
//! stops sending once its claim is no longer trusted; another node then takes it.
//!
//! Each outcome settles the leases of its request: delivered → `ack`; retry at a time →
//! `retry_after`, so the log keeps the delay and a long schedule survives any node;
//! dead-letter → the record goes to the dead-letter stream, then `term` (or, when the record
//! could not be stored, a retry: the event comes back). A retry records the attempts made with
//! the log (`Settle::retry_attempted`), and an event handed out again reads them back
//! (`Settle::attempts`): the log's own count counts leases, and an event leased by a node
//! that died, or gave it back, before sending it was not attempted. A request's delivery count
//! is the attempts before it plus one (a webhook's `aeg-delivery-count`, one less). An attempt
//! in flight when its node died is not counted.
//!
//! What the holder alone knows starts afresh on the next one: the probation (the retry delays
//! themselves are in the log) and the handshake, which the new holder makes again.
//!
//! **Invariant:** every leased event is settled, renewed while its request is in flight, or
//! given back (`retry_after` zero) when this node stops serving the subscription; one whose
//! lease lapses anyway comes back from the log (at least once).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::future::join_all;
use parking_lot::Mutex;
use sinks::{Delivery, DeliveryError, Verdict};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::{Dispatcher, MAX_CANDIDATES};
use crate::routing::shared::{CLAIM_TRUSTED, Claim, Feed, Leased, SharedLog};

/// How often the claim is kept (or tried for).
const KEEP_EVERY: Duration = Duration::from_secs(1);

/// How often the backlog is counted for the API, in claim keepings: each count is two
/// requests to NATS, made by every node for every push subscription.
const COUNT_EVERY: u32 = 3;

/// How long a leased event stays with this node unless renewed. Requests in flight renew
/// theirs every [`RENEW_EVERY`], so a slow endpoint is not the limit; a node that dies
/// mid-request has its events handed out again after this.
pub(super) const ACK_WAIT: Duration = Duration::from_secs(15);

/// How often the leases of a request in flight, or of fetched events waiting, are renewed.
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// How long one fetch waits for an event before the loop looks at its claim again.
const FETCH_WAIT: Duration = Duration::from_secs(1);

/// The pause after the routing log could not be reached.
const UNAVAILABLE_PAUSE: Duration = Duration::from_secs(1);

/// How often a node without the claim looks whether it has it now.
const STANDBY_RECHECK: Duration = Duration::from_millis(250);

/// When an event whose dead-letter record could not be stored comes back.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(10);

/// The most time spent giving leases back or releasing the claim when stopping.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Until when this node may send for the subscription, as its keeper last confirmed.
#[derive(Default)]
struct Holding {
    until: Mutex<Option<Instant>>,
}

impl Holding {
    fn held(&self) -> bool {
        self.until.lock().is_some_and(|until| until > Instant::now())
    }
}

/// A fetched event not yet sent, and when its lease was taken or last renewed.
struct Spare {
    leased: Leased,
    since: Instant,
}

impl Dispatcher {
    /// Delivers from the shared log until `shutdown`, or until retired (see the module docs).
    pub(super) async fn run_leased(
        self: Arc<Self>,
        shared: Arc<dyn SharedLog>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) {
        let holding = Arc::new(Holding::default());
        let claim = shared.claim(&self.topic, &self.name);
        tasks.spawn(self.clone().keep_claim(
            claim,
            shared.clone(),
            holding.clone(),
            shutdown.clone(),
        ));
        // A node that does not hold the claim is a standby: the subscription is served.
        self.readiness.ready();
        let requests = Arc::new(Semaphore::new(self.sink.max_concurrency().max(1)));
        let mut feed: Option<Arc<dyn Feed>> = None;
        let mut spare: VecDeque<Spare> = VecDeque::new();
        loop {
            if !holding.held() {
                give_back(spare.drain(..).map(|s| s.leased).collect()).await;
                let pause = tokio::time::sleep(STANDBY_RECHECK);
                if self.until_stopped(&shutdown, pause).await.is_none() {
                    break;
                }
                continue;
            }
            let current = match &feed {
                Some(feed) => feed.clone(),
                None => {
                    let open = shared.feed(&self.topic, &self.name, ACK_WAIT);
                    match self.until_stopped(&shutdown, open).await {
                        None => break,
                        Some(Ok(opened)) => feed.insert(opened).clone(),
                        Some(Err(error)) => {
                            warn!(subscription = %self.key, %error, "Cannot open the subscription's feed; retrying.");
                            let pause = tokio::time::sleep(UNAVAILABLE_PAUSE);
                            if self.until_stopped(&shutdown, pause).await.is_none() {
                                break;
                            }
                            continue;
                        }
                    }
                }
            };
            if !self.health.lock().validated {
                self.readiness.not_ready("handshake pending");
                if !self.validate(&shutdown).await {
                    break;
                }
                self.readiness.ready();
                continue;
            }
            let paused_until = *self.paused_until.lock();
            if paused_until > Instant::now() {
                let pause = self.renewing(&mut spare, tokio::time::sleep_until(paused_until));
                if self.until_stopped(&shutdown, pause).await.is_none() {
                    break;
                }
                continue;
            }
            let permit = self.renewing(&mut spare, requests.clone().acquire_owned());
            let Some(Ok(permit)) = self.until_stopped(&shutdown, permit).await else { break };
            // The claim may have gone, or a failed request begun a probation, while waiting.
            if !holding.held() || *self.paused_until.lock() > Instant::now() {
                continue;
            }
            if spare.is_empty() {
                // As much as every request slot can send, so that a backlog costs one round
                // trip to the log per `max_concurrency` requests, not one per request (a slot
                // freed while the rest are busy would otherwise fetch for itself alone); no
                // more, so that little is leased and unsent when this node dies.
                let slots = self.sink.max_concurrency().max(1);
                let max =
                    self.sink.max_batch_events().saturating_mul(slots).clamp(1, MAX_CANDIDATES);
                match self.until_stopped(&shutdown, current.fetch(max, FETCH_WAIT)).await {
                    None => break,
                    Some(Ok(mut leased)) => {
                        self.count_attempts(&mut leased).await;
                        let since = Instant::now();
                        spare.extend(leased.into_iter().map(|leased| Spare { leased, since }));
                    }
                    Some(Err(error)) => {
                        debug!(subscription = %self.key, %error, "Cannot fetch; reopening the feed.");
                        feed = None;
                        let pause = tokio::time::sleep(UNAVAILABLE_PAUSE);
                        if self.until_stopped(&shutdown, pause).await.is_none() {
                            break;
                        }
                        continue;
                    }
                }
            }
            // A fetch that waited may answer after the claim went (this node paused, or cut off):
            // what it leased goes back rather than out.
            if !holding.held() {
                continue;
            }
            let batch = self.take_spare(&mut spare, &shared).await;
            if batch.is_empty() {
                continue;
            }
            let this = self.clone();
            let shared = shared.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let deliveries: Vec<Delivery<'_>> = batch
                    .iter()
                    .map(|l| Delivery { event: &l.event.event, delivery_count: l.delivered.max(1) })
                    .collect();
                let started = std::time::Instant::now();
                let sending = this.send_renewing(&deliveries, &batch);
                let Some(result) = stop.run_until_cancelled(sending).await else {
                    drop(deliveries);
                    // Cut short by shutdown: back to the log at once, for the next holder.
                    give_back(batch).await;
                    return;
                };
                this.counters.destination.record(started.elapsed().as_secs_f64());
                drop(deliveries);
                this.complete_leased(&shared, batch, result, permit).await;
            });
        }
        give_back(spare.into_iter().map(|s| s.leased).collect()).await;
    }

    /// Sets the delivery count of each event handed out before from the attempts recorded for
    /// it (none recorded: none made). An event that cannot be looked up keeps the log's count,
    /// which may be high.
    async fn count_attempts(&self, leased: &mut [Leased]) {
        let lookups = leased.iter().map(|l| async move {
            if l.delivered > 1 { Some(l.settle.attempts().await) } else { None }
        });
        let found = join_all(lookups).await;
        for (leased, found) in leased.iter_mut().zip(found) {
            match found {
                None => {}
                Some(Ok(recorded)) => leased.delivered = recorded.unwrap_or(0).saturating_add(1),
                Some(Err(error)) => {
                    debug!(subscription = %self.key, seq = leased.event.seq, %error, "Cannot read an event's attempts; the log's count stands.");
                }
            }
        }
    }

    /// Keeps (or tries for) the claim every second and counts the backlog, until the
    /// dispatcher stops; then releases the claim.
    async fn keep_claim(
        self: Arc<Self>,
        mut claim: Box<dyn Claim>,
        shared: Arc<dyn SharedLog>,
        holding: Arc<Holding>,
        shutdown: CancellationToken,
    ) {
        let mut held = false;
        let mut round: u32 = 0;
        loop {
            let began = Instant::now();
            match tokio::time::timeout(CLAIM_TRUSTED, claim.keep()).await {
                Ok(Ok(true)) => {
                    *holding.until.lock() = Some(began + CLAIM_TRUSTED);
                    if !held {
                        info!(subscription = %self.key, node = shared.node(), "This node delivers the subscription's events.");
                    }
                    held = true;
                }
                Ok(Ok(false)) => {
                    *holding.until.lock() = None;
                    if held {
                        info!(subscription = %self.key, "Another node delivers the subscription's events now.");
                    }
                    held = false;
                }
                // The claim's trust runs out by itself when this goes on.
                Ok(Err(error)) => {
                    debug!(subscription = %self.key, %error, "Cannot keep the dispatch claim.")
                }
                Err(_) => debug!(subscription = %self.key, "Keeping the dispatch claim timed out."),
            }
            if held && !holding.held() {
                warn!(subscription = %self.key, "The dispatch claim could not be kept; sending stops.");
                held = false;
            }
            if round.is_multiple_of(COUNT_EVERY) {
                let count = shared.backlog(&self.topic, &self.name);
                if let Ok(Ok(backlog)) = tokio::time::timeout(KEEP_EVERY, count).await {
                    *self.backlog.lock() = backlog;
                }
            }
            round = round.wrapping_add(1);
            let pause = tokio::time::sleep(KEEP_EVERY.saturating_sub(began.elapsed()));
            if self.until_stopped(&shutdown, pause).await.is_none() {
                break;
            }
        }
        *holding.until.lock() = None;
        let _ = tokio::time::timeout(STOP_WAIT, claim.release()).await;
    }

    /// The next request's events from `spare`: dead-letters those past their time to live on
    /// the way, renews leases that waited long, and leaves what the request cannot hold.
    async fn take_spare(
        &self,
        spare: &mut VecDeque<Spare>,
        shared: &Arc<dyn SharedLog>,
    ) -> Vec<Leased> {
        let now = SystemTime::now();
        let limit = self.sink.max_batch_events().clamp(1, MAX_CANDIDATES);
        let mut candidates: Vec<Spare> = Vec::new();
        while candidates.len() < limit {
            let Some(mut next) = spare.pop_front() else { break };
            if self.policy.expired(next.leased.event.published, now) {
                self.counters.expired.increment(1);
                let attempts = next.leased.delivered.saturating_sub(1);
                let reason = sinks::DeadLetterReason::MaxRetryDurationExceeded;
                self.dead_letter_leased(shared, next.leased, attempts, reason, None).await;
                continue;
            }
            // Kept from an earlier fetch: renewed, so no other node gets it meanwhile.
            if next.since.elapsed() >= RENEW_EVERY {
                if let Err(error) = next.leased.settle.renew().await {
                    debug!(subscription = %self.key, %error, "Cannot renew a waiting lease.");
                }
                next.since = Instant::now();
            }
            candidates.push(next);
        }
        if candidates.len() > 1 {
            let deliveries: Vec<Delivery<'_>> = candidates
                .iter()
                .map(|s| Delivery {
                    event: &s.leased.event.event,
                    delivery_count: s.leased.delivered,
                })
                .collect();
            let take = self.sink.batch_len(&deliveries).clamp(1, candidates.len());
            drop(deliveries);
            for rest in candidates.drain(take..).rev() {
                spare.push_front(rest);
            }
        }
        candidates.into_iter().map(|s| s.leased).collect()
    }

    /// Runs `work`, renewing the leases of `spare` meanwhile, so that none lapses while the
    /// loop rests (a probation) or waits for a request slot.
    async fn renewing<T>(&self, spare: &mut VecDeque<Spare>, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        loop {
            let Some(oldest) = spare.iter().map(|s| s.since).min() else { return work.await };
            tokio::select! {
                done = &mut work => return done,
                () = tokio::time::sleep_until(oldest + RENEW_EVERY) => {
                    let renewed = join_all(spare.iter().map(|s| s.leased.settle.renew())).await;
                    for error in renewed.into_iter().filter_map(Result::err) {
                        debug!(subscription = %self.key, %error, "Cannot renew a waiting lease.");
                    }
                    let now = Instant::now();
                    spare.iter_mut().for_each(|s| s.since = now);
                }
            }
        }
    }

    /// Sends one request, renewing its leases while it is in flight.
    async fn send_renewing(
        &self,
        deliveries: &[Delivery<'_>],
        batch: &[Leased],
    ) -> Result<(), DeliveryError> {
        let mut sending = self.sink.send(deliveries);
        let mut renew = tokio::time::interval_at(Instant::now() + RENEW_EVERY, RENEW_EVERY);
        loop {
            tokio::select! {
                result = &mut sending => return result,
                _ = renew.tick() => {
                    for result in join_all(batch.iter().map(|l| l.settle.renew())).await {
                        if let Err(error) = result {
                            debug!(subscription = %self.key, %error, "Cannot renew a lease in flight.");
                        }
                    }
                }
            }
        }
    }

    /// Settles a request's leases by its outcome; a failure pauses the subscription
    /// (probation). An error settling is logged: the event comes back (at least once).
    ///
    /// The request's slot (`permit`) is freed as soon as no other request may start in its
    /// place too early: `maxConcurrency` bounds requests to the endpoint, not the log's
    /// confirmations, so a delivered batch frees it before its acknowledgements, which the log
    /// confirms concurrently. The events waiting for them stay bounded by the consumer's
    /// most leased events (`MAX_ACK_PENDING` in `cluster/events.rs`).
    async fn complete_leased(
        &self,
        shared: &Arc<dyn SharedLog>,
        batch: Vec<Leased>,
        result: Result<(), DeliveryError>,
        permit: OwnedSemaphorePermit,
    ) {
        let error = match result {
            Ok(()) => {
                drop(permit);
                self.counters.delivered.increment(batch.len() as u64);
                let acked = join_all(batch.iter().map(|leased| leased.settle.ack())).await;
                for (leased, result) in batch.iter().zip(acked) {
                    if let Err(error) = result {
                        warn!(subscription = %self.key, seq = leased.event.seq, %error, "A delivered event's acknowledgement was lost; it will be delivered again.");
                    }
                }
                return;
            }
            Err(error) => error,
        };
        self.counters.failed(error.kind.outcome_name(), batch.len() as u64);
        warn!(subscription = %self.key, events = batch.len(), %error, "Delivery failed.");
        let now = SystemTime::now();
        let rest = self.probation(&error);
        {
            let mut health = self.health.lock();
            health.probation_until = (!rest.is_zero()).then(|| now + rest);
            health.last_error = Some((error.to_string(), now));
        }
        // Before the leases are settled and the slot freed, so that no other request starts
        // in between.
        *self.paused_until.lock() = Instant::now() + rest;
        drop(permit);
        for leased in batch {
            let attempts = leased.delivered.max(1);
            match self.policy.after_failure(attempts, leased.event.published, now, &error) {
                Verdict::RetryAt(at) => {
                    let delay = at.duration_since(SystemTime::now()).unwrap_or_default();
                    if let Err(error) = leased.settle.retry_attempted(attempts, delay).await {
                        warn!(subscription = %self.key, seq = leased.event.seq, %error, "Cannot schedule a retry; the event comes back when its lease ends.");
                    }
                }
                Verdict::DeadLetter(reason) => {
                    self.dead_letter_leased(shared, leased, attempts, reason, Some(&error)).await;
                }
            }
        }
    }

    /// Stores the event's dead-letter record in the cluster's dead-letter stream, then takes it
    /// out of the log; when the record cannot be stored, the event comes back instead.
    async fn dead_letter_leased(
        &self,
        shared: &Arc<dyn SharedLog>,
        leased: Leased,
        attempts: u32,
        reason: sinks::DeadLetterReason,
        error: Option<&DeliveryError>,
    ) {
        let record = self.record(&leased.event, attempts, reason, error);
        let stored =
            shared.dead_letter(&self.topic, &self.name, Bytes::from(record.to_json_bytes())).await;
        if let Err(error) = stored {
            warn!(subscription = %self.key, event_id = %leased.event.event.id, %error, "Cannot store a dead letter; the event comes back.");
            if let Err(error) = leased.settle.retry_attempted(attempts, DEAD_LETTER_RETRY).await {
                debug!(subscription = %self.key, %error, "Cannot hand back an event to dead-letter.");
            }
            return;
        }
        warn!(
            subscription = %self.key,
            event_id = %leased.event.event.id,
            reason = reason.as_str(),
            attempts,
            "Event dead-lettered."
        );
        self.counters.dead_lettered.increment(1);
        if let Err(error) = leased.settle.term().await {
            warn!(subscription = %self.key, %error, "A dead-lettered event could not be taken out of the log; it may be dead-lettered twice.");
        }
    }
}

/// Gives leases back to the log at once, for whichever node serves the subscription next.
async fn give_back(leases: Vec<Leased>) {
    if leases.is_empty() {
        return;
    }
    let back = join_all(leases.iter().map(|l| l.settle.retry_after(Duration::ZERO)));
    if tokio::time::timeout(STOP_WAIT, back).await.is_err() {
        debug!(
            events = leases.len(),
            "Giving leases back timed out; they come back when they end."
        );
    }
}
