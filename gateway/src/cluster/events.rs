//! The cluster's routing log ([`crate::routing::shared::SharedLog`]): routed events in the
//! `EVENTS` stream, one subject per event subscription, each read through a durable consumer
//! that any node may pull from; dead-letter records in the `DLQ` stream.
//!
//! - **Admission**: the cluster's store publishes each `Op::PublishEvent` to its subscription's
//!   subject before the publisher's PUBACK, with a message id that makes a retried commit's copy
//!   a duplicate.
//! - **Leases**: a fetch leases events for the consumer's ack wait. Settling a lease is a
//!   JetStream acknowledgement: `+ACK`, `-NAK` with a delay (kept in the consumer's replicated
//!   state, so a retry schedule survives any node), `+WPI`, `+TERM`. The stream is a work queue,
//!   so an acknowledged or terminated event is removed.
//! - **Attempts**: the consumer counts leases, not delivery attempts, and a lease can end with
//!   nothing sent (its node died, or handed it back). Push delivery records the attempts made
//!   in the `attempts` bucket when it schedules a retry, reads them when the event comes back,
//!   and the record goes when the event is settled. Events delivered the first time cost no
//!   request to the bucket.
//! - **Bound**: the stream's message count is read twice a second; the buffer refuses
//!   admissions while it is at `routing.max_buffered_events`.
//!
//! A consumer's maximum delivery count is never used: it would leave an event in the stream,
//! undelivered and not dead-lettered. Dead-lettering is a publish to `DLQ`, then `+TERM`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::dispatch_lease::DispatchClaim;
use super::link::Link;
use crate::routing::buffer::{BufferedEvent, decode_event};
use crate::routing::shared::{
    Backlog, Claim, DeadLetterCount, Feed, Leased, Settle, SharedError, SharedLog,
};

mod dead_letters;

/// How often the stream's message count is read for the buffer's bound.
const COUNT_EVERY: Duration = Duration::from_millis(500);

/// How long a node waits for another to answer a lock operation before it takes that node for
/// gone.
const LOCK_TIMEOUT: Duration = Duration::from_secs(3);

/// Most events leased and not yet settled per subscription; the consumer hands out no more.
const MAX_ACK_PENDING: i64 = 10_000;

/// This node's view of the cluster's routing log.
pub struct Events {
    link: Arc<Link>,
    node: Arc<str>,
    /// Events in the stream, as last counted.
    buffered: AtomicUsize,
}

impl Events {
    pub fn new(link: Arc<Link>, node: Arc<str>) -> Events {
        Events { link, node, buffered: AtomicUsize::new(0) }
    }

    /// Keeps the count of waiting events up to date until `stop`.
    pub async fn count(self: Arc<Self>, stop: CancellationToken) {
        let mut stream = self.link.events.clone();
        loop {
            match stream.info().await {
                Ok(info) => {
                    let messages = usize::try_from(info.state.messages).unwrap_or(usize::MAX);
                    self.buffered.store(messages, Ordering::Relaxed);
                }
                Err(error) => debug!(%error, "Cannot count the routing log's events."),
            }
            if stop.run_until_cancelled(tokio::time::sleep(COUNT_EVERY)).await.is_none() {
                return;
            }
        }
    }

    /// The durable consumer of a subscription's events: `ev-<base64url(topic/subscription)>`.
    fn consumer_name(topic: &str, subscription: &str) -> String {
        format!("ev-{}", super::store::name_key(&format!("{topic}/{subscription}")))
    }

    async fn open(
        link: Arc<Link>,
        topic: Arc<str>,
        subscription: String,
        ack_wait: Duration,
    ) -> Result<Arc<dyn Feed>, SharedError> {
        let name = Events::consumer_name(&topic, &subscription);
        let config = consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: link.names.event_subject(&topic, &subscription),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait,
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        };
        let unavailable = |e: &dyn std::fmt::Display| SharedError::Unavailable(e.to_string());
        let mut consumer: PullConsumer = link
            .events
            .get_or_create_consumer(&name, config.clone())
            .await
            .map_err(|e| unavailable(&e))?;
        // A subscription whose lock duration changed keeps its consumer with the new wait.
        let current = consumer.info().await.map_err(|e| unavailable(&e))?.config.ack_wait;
        if current != ack_wait {
            link.events.update_consumer(config).await.map_err(|e| unavailable(&e))?;
            consumer = link.events.get_consumer(&name).await.map_err(|e| unavailable(&e))?;
        }
        // A stream created again numbers its events from 1 again: its creation time keeps
        // their attempt records apart from those of the stream before.
        let epoch = link.events.cached_info().created.unix_timestamp_nanos();
        Ok(Arc::new(EventFeed { consumer, topic, link, epoch }))
    }
}

impl SharedLog for Events {
    fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    fn feed(
        &self,
        topic: &str,
        subscription: &str,
        ack_wait: Duration,
    ) -> BoxFuture<'static, Result<Arc<dyn Feed>, SharedError>> {
        Box::pin(Events::open(self.link.clone(), topic.into(), subscription.into(), ack_wait))
    }

    fn remove(
        &self,
        topic: &str,
        subscription: &str,
    ) -> BoxFuture<'static, Result<(), SharedError>> {
        let link = self.link.clone();
        let name = Events::consumer_name(topic, subscription);
        let subject = link.names.event_subject(topic, subscription);
        Box::pin(async move {
            // Gone already is as good as deleted.
            if let Err(error) = link.events.delete_consumer(&name).await {
                debug!(consumer = %name, %error, "Deleting a subscription's consumer.");
            }
            link.events
                .purge()
                .filter(subject)
                .await
                .map(|_| ())
                .map_err(|e| SharedError::Unavailable(e.to_string()))
        })
    }

    fn dead_letter(
        &self,
        topic: &str,
        subscription: &str,
        record: Bytes,
    ) -> BoxFuture<'static, Result<(), SharedError>> {
        let link = self.link.clone();
        let subject = link.names.dead_letter_subject(topic, subscription);
        Box::pin(async move {
            let unavailable = |e: &dyn std::fmt::Display| SharedError::Unavailable(e.to_string());
            let ack = link.js.publish(subject, record).await.map_err(|e| unavailable(&e))?;
            ack.await.map(|_| ()).map_err(|e| unavailable(&e))
        })
    }

    fn node(&self) -> &str {
        &self.node
    }

    fn dead_letters(
        &self,
        topic: &str,
        subscription: &str,
    ) -> BoxFuture<'static, Result<Vec<(u64, Bytes)>, SharedError>> {
        let link = self.link.clone();
        let subject = link.names.dead_letter_subject(topic, subscription);
        Box::pin(dead_letters::list(link, subject))
    }

    fn delete_dead_letters(
        &self,
        topic: &str,
        subscription: &str,
        ids: Option<Vec<u64>>,
    ) -> BoxFuture<'static, Result<usize, SharedError>> {
        let link = self.link.clone();
        let subject = link.names.dead_letter_subject(topic, subscription);
        Box::pin(dead_letters::delete(link, subject, ids))
    }

    fn requeue(
        &self,
        topic: &str,
        subscription: &str,
        record: u64,
        body: Bytes,
    ) -> BoxFuture<'static, Result<(), SharedError>> {
        let link = self.link.clone();
        let subject = link.names.event_subject(topic, subscription);
        Box::pin(dead_letters::requeue(link, subject, record, body))
    }

    fn dead_letter_counts(&self) -> BoxFuture<'static, Result<Vec<DeadLetterCount>, SharedError>> {
        Box::pin(dead_letters::counts(self.link.clone()))
    }

    fn lock_key(&self) -> &ring::hmac::Key {
        &self.link.lock_key
    }

    fn lock_request(
        &self,
        node: &str,
        request: Bytes,
    ) -> BoxFuture<'static, Result<Option<Bytes>, SharedError>> {
        let client = self.link.client.clone();
        let subject = self.link.names.lock_subject(node);
        Box::pin(async move {
            use async_nats::RequestErrorKind;
            let request = async_nats::Request::new().payload(request).timeout(Some(LOCK_TIMEOUT));
            match client.send_request(subject, request).await {
                Ok(answer) => Ok(Some(answer.payload)),
                Err(error)
                    if matches!(
                        error.kind(),
                        RequestErrorKind::NoResponders | RequestErrorKind::TimedOut
                    ) =>
                {
                    Ok(None)
                }
                Err(error) => Err(SharedError::Unavailable(error.to_string())),
            }
        })
    }

    fn claim(&self, topic: &str, subscription: &str) -> Box<dyn Claim> {
        Box::new(DispatchClaim::new(self.link.clone(), &self.node, topic, subscription))
    }

    fn backlog(
        &self,
        topic: &str,
        subscription: &str,
    ) -> BoxFuture<'static, Result<Backlog, SharedError>> {
        let link = self.link.clone();
        let name = Events::consumer_name(topic, subscription);
        let subject = link.names.event_subject(topic, subscription);
        Box::pin(async move {
            let unavailable = |e: &dyn std::fmt::Display| SharedError::Unavailable(e.to_string());
            // Waiting and leased: what the consumer has not seen, and what it handed out and
            // was not settled yet. Before anyone opened the feed, nothing has been counted.
            let (waiting, leased) = match link.events.consumer_info(&name).await {
                Ok(info) => (
                    usize::try_from(info.num_pending)
                        .unwrap_or(usize::MAX)
                        .saturating_add(info.num_ack_pending),
                    info.num_ack_pending,
                ),
                Err(error) => {
                    debug!(consumer = %name, %error, "No consumer info for a backlog.");
                    (0, 0)
                }
            };
            let oldest = match link.events.get_first_raw_message_by_subject(&subject, 1).await {
                Ok(message) => decode_event(&message.payload).ok().map(|(published, _)| published),
                Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => None,
                Err(error) => return Err(unavailable(&error)),
            };
            Ok(Backlog { waiting, leased, oldest })
        })
    }
}

/// One subscription's consumer.
struct EventFeed {
    consumer: PullConsumer,
    topic: Arc<str>,
    link: Arc<Link>,
    /// When the `EVENTS` stream was created (ns since the Unix epoch), for attempt records.
    epoch: i128,
}

impl EventFeed {
    /// One pull: what is there now (`wait` none), or up to `max` within `wait`.
    async fn pull(&self, max: usize, wait: Option<Duration>) -> Result<Vec<Leased>, SharedError> {
        let unavailable = |e: &dyn std::fmt::Display| SharedError::Unavailable(e.to_string());
        let mut messages = match wait {
            None => self.consumer.fetch().max_messages(max).messages().await,
            Some(wait) => self.consumer.batch().max_messages(max).expires(wait).messages().await,
        }
        .map_err(|e| unavailable(&e))?;
        let mut leased = Vec::new();
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                // A pull that ends early (a leader change) keeps what it got.
                Err(error) if !leased.is_empty() => {
                    debug!(%error, "A routing-log pull ended early.");
                    break;
                }
                Err(error) => return Err(unavailable(&error)),
            };
            let (seq, delivered) = match message.info() {
                Ok(info) => (info.stream_sequence, u32::try_from(info.delivered).unwrap_or(1)),
                Err(error) => {
                    warn!(%error, "A routing-log message without delivery info; skipped.");
                    continue;
                }
            };
            let (message, acker) = message.split();
            match decode_event(&message.payload) {
                Ok((published, event)) => leased.push(Leased {
                    event: Arc::new(BufferedEvent::leased(
                        seq,
                        self.topic.clone(),
                        event,
                        published,
                    )),
                    delivered,
                    settle: Box::new(Lease {
                        acker,
                        link: self.link.clone(),
                        key: format!("{}.{seq}", self.epoch),
                        recorded: AtomicBool::new(false),
                    }),
                }),
                Err(problem) => {
                    // Nothing can ever read it; handing it out again would only repeat this.
                    warn!(seq, %problem, "Unreadable routed event dropped from the routing log.");
                    if let Err(error) = acker.ack_with(AckKind::Term).await {
                        debug!(%error, "Terminating an unreadable routed event.");
                    }
                }
            }
        }
        Ok(leased)
    }
}

impl Feed for EventFeed {
    fn fetch(&self, max: usize, wait: Duration) -> BoxFuture<'_, Result<Vec<Leased>, SharedError>> {
        Box::pin(async move {
            let max = max.max(1);
            let now = self.pull(max, None).await?;
            if !now.is_empty() || wait < Duration::from_millis(10) {
                return Ok(now);
            }
            // Wait for one, then take what else is there: a fetch answers as soon as it can.
            let mut first = self.pull(1, Some(wait)).await?;
            if !first.is_empty() && max > 1 {
                first.extend(self.pull(max - 1, None).await?);
            }
            Ok(first)
        })
    }
}

/// A leased event's acknowledgement handle.
struct Lease {
    acker: Acker,
    link: Arc<Link>,
    /// The event's key in the attempts bucket: `<stream epoch>.<stream sequence>`.
    key: String,
    /// Whether the attempts bucket holds a record of the event, which settling it removes.
    recorded: AtomicBool,
}

impl Lease {
    async fn confirmed(&self, kind: AckKind) -> Result<(), SharedError> {
        self.acker.double_ack_with(kind).await.map_err(|e| SharedError::Unavailable(e.to_string()))
    }

    /// Settles for good, then removes the event's attempt record; a record left behind (the
    /// removal failed) names a sequence the stream never hands out again, and lapses.
    async fn settled(&self, kind: AckKind) -> Result<(), SharedError> {
        self.confirmed(kind).await?;
        if self.recorded.load(Ordering::Relaxed)
            && let Err(error) = self.link.attempts.purge(&self.key).await
        {
            debug!(key = %self.key, %error, "Cannot remove a settled event's attempt record.");
        }
        Ok(())
    }
}

impl Settle for Lease {
    fn ack(&self) -> BoxFuture<'_, Result<(), SharedError>> {
        Box::pin(self.settled(AckKind::Ack))
    }

    fn retry_after(&self, delay: Duration) -> BoxFuture<'_, Result<(), SharedError>> {
        Box::pin(self.confirmed(AckKind::Nak(Some(delay))))
    }

    fn renew(&self) -> BoxFuture<'_, Result<(), SharedError>> {
        Box::pin(self.confirmed(AckKind::Progress))
    }

    fn term(&self) -> BoxFuture<'_, Result<(), SharedError>> {
        Box::pin(self.settled(AckKind::Term))
    }

    fn attempts(&self) -> BoxFuture<'_, Result<Option<u32>, SharedError>> {
        Box::pin(async move {
            let entry = self
                .link
                .attempts
                .get(self.key.as_str())
                .await
                .map_err(|e| SharedError::Unavailable(e.to_string()))?;
            let attempts = entry.and_then(|value| std::str::from_utf8(&value).ok()?.parse().ok());
            self.recorded.store(attempts.is_some(), Ordering::Relaxed);
            Ok(attempts)
        })
    }

    fn retry_attempted(
        &self,
        attempts: u32,
        delay: Duration,
    ) -> BoxFuture<'_, Result<(), SharedError>> {
        Box::pin(async move {
            let record = Bytes::from(attempts.to_string());
            if let Err(error) = self.link.attempts.put(&self.key, record).await {
                warn!(key = %self.key, attempts, %error, "Cannot record a routed event's delivery attempts; its next delivery count may be low.");
            }
            self.confirmed(AckKind::Nak(Some(delay))).await
        })
    }
}
