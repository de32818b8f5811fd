//! The router: routes, enrichments, namespace topics with their dispatchers, the buffer and the
//! dead-letter store, assembled from the config; the broker's routing tap and lifecycle
//! observer; recovery of what the store held; re-driving dead letters.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::value::RawValue;
use sinks::{CloudEvent, DeadLetterRecord};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::buffer::BufferedEvent;
use super::buffer::{Buffer, decode_delivery, decode_event};
use super::config::{Destination, SubscriptionConfig};
use super::dead_letter::DeadLetters;
use super::dispatch::{Dispatcher, Status};
use super::enrich::Enrichments;
use super::filter::Filter;
use super::queue::QueueSubscription;
use crate::config::Config;
use crate::hooks::{LifecycleEvent, LifecycleObserver, RoutedMessage, RoutingTap, TapRefused};
use crate::mqtt::ReasonCode;
use crate::store::{Journal, Op, RoutingTable, Ticket};

/// The name under which the system topic's rows are stored (`$` cannot start a topic name).
pub const SYSTEM_TOPIC: &str = "$system";

/// Least time between two log lines about a full routing buffer.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Lifecycle events waiting to be turned into CloudEvents. When full, a lifecycle event is
/// dropped, logged and counted in `gridmq_lifecycle_events_dropped_total`: connection tasks
/// never wait for lifecycle events.
const LIFECYCLE_QUEUE: usize = 10_000;

/// An event subscription: pushed by a dispatcher, or a queue consumers pull from.
#[derive(Clone)]
pub enum Subscriber {
    Push(Arc<Dispatcher>),
    Queue(Arc<QueueSubscription>),
}

impl Subscriber {
    /// `topic/subscription`.
    pub fn key(&self) -> &Arc<str> {
        match self {
            Subscriber::Push(d) => &d.key,
            Subscriber::Queue(q) => &q.key,
        }
    }

    pub fn topic(&self) -> &Arc<str> {
        match self {
            Subscriber::Push(d) => &d.topic,
            Subscriber::Queue(q) => &q.topic,
        }
    }

    pub fn name(&self) -> &Arc<str> {
        match self {
            Subscriber::Push(d) => &d.name,
            Subscriber::Queue(q) => &q.name,
        }
    }

    pub fn filter(&self) -> &Filter {
        match self {
            Subscriber::Push(d) => &d.filter,
            Subscriber::Queue(q) => &q.filter,
        }
    }

    /// Queues a delivery of `event` after `attempts` attempts, due at `at`.
    pub fn enqueue(&self, event: Arc<BufferedEvent>, attempts: u32, at: SystemTime) {
        match self {
            Subscriber::Push(d) => d.enqueue(event, attempts, at),
            Subscriber::Queue(q) => q.enqueue(event, attempts, at),
        }
    }

    /// Deliveries waiting.
    pub fn waiting(&self) -> usize {
        match self {
            Subscriber::Push(d) => d.waiting(),
            Subscriber::Queue(q) => q.waiting(),
        }
    }
}

/// Why events could not be published to a namespace topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("no such namespace topic")]
    NoSuchTopic,
    #[error("routing buffer full (routing.max_buffered_events)")]
    Full,
}

/// A recovered delivery: its subscription, attempts made, next attempt.
type Owed = (Subscriber, u32, SystemTime);

/// What the router knows of one subscription, for the management API.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionInfo {
    pub topic: String,
    pub name: String,
    /// `Push` or `Queue`.
    pub delivery_mode: &'static str,
    /// Deliveries waiting for their next attempt or receive (not counting requests in
    /// flight or locked events).
    pub waiting: usize,
    /// Queue subscriptions: events under a receive lock.
    pub locked: usize,
    pub dead_letters: usize,
    /// Push subscriptions: the endpoint's validation state.
    pub endpoint: Option<Status>,
}

/// The routing pipeline.
pub struct Router {
    namespace: String,
    routes: Vec<(String, Arc<str>)>,
    enrichments: Enrichments,
    topics: HashMap<Arc<str>, Vec<Subscriber>>,
    dispatchers: BTreeMap<Arc<str>, Subscriber>,
    buffer: Arc<Buffer>,
    dead_letters: Arc<DeadLetters>,
    lifecycle: parking_lot::Mutex<Option<mpsc::Receiver<LifecycleEvent>>>,
    lifecycle_sender: Option<mpsc::Sender<LifecycleEvent>>,
    /// Lifecycle sequence numbers by client id, as last stored.
    sequences: parking_lot::Mutex<HashMap<Arc<str>, u64>>,
    /// When a full buffer was last logged (ms since the epoch).
    full_logged: std::sync::atomic::AtomicU64,
}

impl Router {
    /// Builds the router `config` asks for, over `journal` (`None`: in-memory). `None` when
    /// the config has no route and no event subscription (namespace topics without routes
    /// still take events from the data-plane publish API).
    pub fn build(
        config: &Config,
        journal: Option<Arc<Journal>>,
    ) -> Result<Option<Arc<Router>>, String> {
        let system = config.system_topic.as_ref().map(|s| &s.event_subscriptions);
        let lifecycle_on = system.is_some_and(|subs| !subs.is_empty());
        let has_subscriptions = config.topics.values().any(|t| !t.event_subscriptions.is_empty());
        if config.routing.routes.is_empty() && !lifecycle_on && !has_subscriptions {
            return Ok(None);
        }
        let enrichments = Enrichments::parse(
            &config.routing.enrichments.static_,
            &config.routing.enrichments.dynamic,
        )
        .map_err(|e| format!("{}: {}", e.field, e.problem))?;
        let buffer = Arc::new(Buffer::new(journal.clone(), config.routing.max_buffered_events));
        let dead_letters = Arc::new(DeadLetters::new(journal));
        let client = sinks::http_client().map_err(|e| format!("routing: HTTP client: {e}"))?;
        let mut topics: HashMap<Arc<str>, Vec<Subscriber>> = HashMap::new();
        let mut dispatchers = BTreeMap::new();
        let mut add = |topic: &str,
                       path: String,
                       subs: &BTreeMap<String, SubscriptionConfig>,
                       retention: Duration|
         -> Result<(), String> {
            let entry = topics.entry(topic.into()).or_default();
            for (name, sub) in subs {
                let path = format!("{path}.eventSubscriptions.{name}");
                let plan = sub.plan(&path, name, retention).map_err(|e| e.to_string())?;
                let problem = |p: sinks::ConfigProblem| format!("{path}.destination.{p}");
                let sink: Arc<dyn sinks::Sink> = match &sub.destination {
                    None => {
                        let queue = Arc::new(QueueSubscription::new(
                            topic,
                            name,
                            plan.filter,
                            plan.policy,
                            plan.lock_duration,
                            buffer.clone(),
                            dead_letters.clone(),
                        ));
                        let subscriber = Subscriber::Queue(queue);
                        dispatchers.insert(subscriber.key().clone(), subscriber.clone());
                        entry.push(subscriber);
                        continue;
                    }
                    Some(Destination::WebHook(webhook)) => Arc::new(
                        sinks::WebhookSink::new(webhook.clone(), client.clone(), name)
                            .map_err(problem)?,
                    ),
                    Some(Destination::EventHub(hub)) => Arc::new(
                        sinks::EventHubsSink::new(hub.clone(), name.as_str()).map_err(problem)?,
                    ),
                    Some(Destination::CustomTopic(custom)) => Arc::new(
                        sinks::CustomTopicSink::new(custom.clone(), client.clone())
                            .map_err(problem)?,
                    ),
                };
                let subscriber = Subscriber::Push(Arc::new(Dispatcher::new(
                    topic,
                    name,
                    plan.filter,
                    sink,
                    plan.policy,
                    buffer.clone(),
                    dead_letters.clone(),
                )));
                dispatchers.insert(subscriber.key().clone(), subscriber.clone());
                entry.push(subscriber);
            }
            Ok(())
        };
        for (name, topic) in &config.topics {
            let retention = Duration::from_secs(u64::from(topic.event_retention_in_days) * 86_400);
            add(name, format!("topics.{name}"), &topic.event_subscriptions, retention)?;
        }
        if let Some(subs) = system {
            add(SYSTEM_TOPIC, "systemTopic".into(), subs, Duration::from_secs(7 * 86_400))?;
        }
        let routes = config
            .routing
            .routes
            .iter()
            .map(|route| (route.topic_filter.clone(), Arc::<str>::from(route.topic.as_str())))
            .collect();
        let (sender, receiver) = if lifecycle_on {
            let (sender, receiver) = mpsc::channel(LIFECYCLE_QUEUE);
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        Ok(Some(Arc::new(Router {
            namespace: config.namespace.name.clone(),
            routes,
            enrichments,
            topics,
            dispatchers,
            buffer,
            dead_letters,
            lifecycle: parking_lot::Mutex::new(receiver),
            lifecycle_sender: sender,
            sequences: parking_lot::Mutex::new(HashMap::new()),
            full_logged: std::sync::atomic::AtomicU64::new(0),
        })))
    }

    /// The lifecycle observer to register with the broker, when the system topic has
    /// subscriptions.
    pub fn observer(&self) -> Option<Arc<dyn LifecycleObserver>> {
        self.lifecycle_sender
            .clone()
            .map(|sender| Arc::new(LifecycleTap { sender }) as Arc<dyn LifecycleObserver>)
    }

    /// Whether messages are routed (at least one route).
    pub fn routes_messages(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Puts back what the store held: buffered events with their delivery state, dead letters
    /// and lifecycle sequence numbers. Rows of subscriptions no longer configured are deleted.
    pub fn recover(&self, mut rows: BTreeMap<RoutingTable, Vec<(String, u64, Vec<u8>)>>) {
        let mut events: BTreeMap<(String, u64), (SystemTime, CloudEvent)> = BTreeMap::new();
        for (topic, seq, record) in rows.remove(&RoutingTable::Events).unwrap_or_default() {
            match decode_event(&record) {
                Ok(event) => {
                    events.insert((topic, seq), event);
                }
                Err(problem) => {
                    tracing::error!(%topic, seq, %problem, "Unreadable buffered event dropped.");
                    self.buffer.append(Op::DeleteRouting(RoutingTable::Events, topic.into(), seq));
                }
            }
        }
        let mut owed: BTreeMap<(String, u64), Vec<Owed>> = BTreeMap::new();
        let mut orphans = 0usize;
        for (key, seq, record) in rows.remove(&RoutingTable::Deliveries).unwrap_or_default() {
            let dispatcher = self.dispatchers.get(key.as_str());
            let state = decode_delivery(&record);
            let topic =
                key.rsplit_once('/').map(|(topic, _)| topic.to_string()).unwrap_or_default();
            match (dispatcher, state) {
                (Some(dispatcher), Ok((attempts, next)))
                    if events.contains_key(&(topic.clone(), seq)) =>
                {
                    owed.entry((topic, seq)).or_default().push((
                        dispatcher.clone(),
                        attempts,
                        next,
                    ));
                }
                _ => {
                    orphans += 1;
                    self.buffer.append(Op::DeleteRouting(
                        RoutingTable::Deliveries,
                        key.into(),
                        seq,
                    ));
                }
            }
        }
        let mut restored = 0usize;
        for ((topic, seq), (published, event)) in events {
            let Some(deliveries) = owed.remove(&(topic.clone(), seq)) else {
                self.buffer.append(Op::DeleteRouting(RoutingTable::Events, topic.into(), seq));
                continue;
            };
            let buffered =
                self.buffer.restore(topic.into(), seq, event, published, deliveries.len());
            for (dispatcher, attempts, next) in deliveries {
                dispatcher.enqueue(buffered.clone(), attempts, next);
            }
            restored += 1;
        }
        let mut dead = 0usize;
        for (key, seq, record) in rows.remove(&RoutingTable::DeadLetters).unwrap_or_default() {
            match serde_json::from_slice::<Box<RawValue>>(&record) {
                Ok(record) => {
                    self.dead_letters.restore(key.into(), seq, record);
                    dead += 1;
                }
                Err(error) => {
                    tracing::error!(%key, seq, %error, "Unreadable dead-letter record skipped.")
                }
            }
        }
        let mut sequences = self.sequences.lock();
        for (name, _, record) in rows.remove(&RoutingTable::Counters).unwrap_or_default() {
            if let (Some(client), Ok(bytes)) =
                (name.strip_prefix("lifecycle/"), <[u8; 8]>::try_from(record.as_slice()))
            {
                sequences.insert(client.into(), u64::from_le_bytes(bytes));
            }
        }
        if orphans > 0 {
            tracing::warn!(
                deliveries = orphans,
                "Deliveries of subscriptions no longer configured were dropped."
            );
        }
        tracing::info!(events = restored, dead_letters = dead, "Recovered the routing buffer.");
    }

    /// Starts every dispatcher and the lifecycle task; they stop on `shutdown`.
    pub fn start(self: &Arc<Self>, tasks: &TaskTracker, shutdown: &CancellationToken) {
        for subscriber in self.dispatchers.values() {
            if let Subscriber::Push(dispatcher) = subscriber {
                tasks.spawn(dispatcher.clone().run(tasks.clone(), shutdown.clone()));
            }
        }
        if let Some(receiver) = self.lifecycle.lock().take() {
            tasks.spawn(self.clone().lifecycle_loop(receiver, shutdown.clone()));
        }
    }

    /// Every subscription with its backlog, dead letters and endpoint state.
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        self.dispatchers
            .values()
            .map(|s| SubscriptionInfo {
                topic: match s.topic() {
                    topic if &**topic == SYSTEM_TOPIC => "systemTopic".to_string(),
                    topic => topic.to_string(),
                },
                name: s.name().to_string(),
                delivery_mode: match s {
                    Subscriber::Push(_) => "Push",
                    Subscriber::Queue(_) => "Queue",
                },
                waiting: s.waiting(),
                locked: match s {
                    Subscriber::Push(_) => 0,
                    Subscriber::Queue(queue) => queue.locked(),
                },
                dead_letters: self.dead_letters.list(s.key()).len(),
                endpoint: match s {
                    Subscriber::Push(dispatcher) => Some(dispatcher.status()),
                    Subscriber::Queue(_) => None,
                },
            })
            .collect()
    }

    /// Events buffered for delivery.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The dead letters of a subscription (`topic` is `systemTopic` for the system topic);
    /// `None` when there is no such subscription.
    pub fn dead_letters(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Option<Vec<(u64, Box<RawValue>)>> {
        let subscriber = self.dispatcher(topic, subscription)?;
        Some(self.dead_letters.list(subscriber.key()))
    }

    /// Deletes dead letters (`ids`, or all); how many were deleted.
    pub fn delete_dead_letters(
        &self,
        topic: &str,
        subscription: &str,
        ids: Option<&[u64]>,
    ) -> Option<usize> {
        let subscriber = self.dispatcher(topic, subscription)?;
        Some(self.dead_letters.take(subscriber.key(), ids).len())
    }

    /// Sends dead letters (`ids`, or all) to their subscription again, as new deliveries with
    /// a fresh attempt count and time to live; how many were re-driven. Stops early when the
    /// buffer is full, leaving the rest dead-lettered.
    pub fn redrive(&self, topic: &str, subscription: &str, ids: Option<&[u64]>) -> Option<usize> {
        let dispatcher = self.dispatcher(topic, subscription)?.clone();
        let key = dispatcher.key().clone();
        let mut redriven = 0;
        let records = self.dead_letters.take(&key, ids);
        let mut records = records.into_iter();
        for (seq, record) in records.by_ref() {
            let Ok(event) = DeadLetterRecord::event_of(record.get().as_bytes()) else {
                tracing::error!(subscription = %key, seq, "Dead-letter record without a readable event kept.");
                self.dead_letters.add(&key, record);
                continue;
            };
            let now = SystemTime::now();
            match self.buffer.admit(dispatcher.topic(), event, now, &[&key]) {
                Ok((buffered, _)) => {
                    dispatcher.enqueue(buffered, 0, now);
                    redriven += 1;
                }
                Err(_) => {
                    self.dead_letters.add(&key, record);
                    break;
                }
            }
        }
        for (_, record) in records {
            self.dead_letters.add(&key, record);
        }
        Some(redriven)
    }

    /// Whether namespace topic `topic` exists.
    pub fn has_topic(&self, topic: &str) -> bool {
        topic != SYSTEM_TOPIC && self.topics.contains_key(topic)
    }

    /// Publishes CloudEvents straight to namespace topic `topic` (the HTTP publish API): each
    /// goes to the subscriptions whose filters take it. Returns the ticket that makes them
    /// durable; the caller answers once it is committed.
    pub fn publish_events(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
    ) -> Result<Option<Ticket>, PublishError> {
        let Some((topic, _)) = self.topics.get_key_value(topic).filter(|_| self.has_topic(topic))
        else {
            return Err(PublishError::NoSuchTopic);
        };
        let topic = topic.clone();
        let now = SystemTime::now();
        let mut ticket = None;
        for event in events {
            let admitted = self.admit(&topic, event, now).map_err(|_| PublishError::Full)?;
            ticket = ticket.max(admitted);
        }
        Ok(ticket)
    }

    /// The queue subscription `subscription` of namespace topic `topic`, if it is one.
    pub fn queue(&self, topic: &str, subscription: &str) -> Option<&Arc<QueueSubscription>> {
        match self.dispatcher(topic, subscription)? {
            Subscriber::Queue(queue) if topic != SYSTEM_TOPIC => Some(queue),
            _ => None,
        }
    }

    fn dispatcher(&self, topic: &str, subscription: &str) -> Option<&Subscriber> {
        let topic = if topic == "systemTopic" { SYSTEM_TOPIC } else { topic };
        self.dispatchers.get(format!("{topic}/{subscription}").as_str())
    }

    /// Admits `event` to `topic` for the subscriptions whose filters take it.
    fn admit(
        &self,
        topic: &Arc<str>,
        event: CloudEvent,
        now: SystemTime,
    ) -> Result<Option<Ticket>, super::buffer::Full> {
        let Some(dispatchers) = self.topics.get(topic) else { return Ok(None) };
        let takers: Vec<&Subscriber> =
            dispatchers.iter().filter(|d| d.filter().matches(&event)).collect();
        if takers.is_empty() {
            metrics::counter!("gridmq_routing_unmatched_total").increment(1);
            return Ok(None);
        }
        let keys: Vec<&Arc<str>> = takers.iter().map(|d| d.key()).collect();
        let (buffered, ticket) = self.buffer.admit(topic, event, now, &keys)?;
        for dispatcher in takers {
            dispatcher.enqueue(buffered.clone(), 0, now);
        }
        Ok(ticket)
    }

    async fn lifecycle_loop(
        self: Arc<Self>,
        mut events: mpsc::Receiver<LifecycleEvent>,
        shutdown: CancellationToken,
    ) {
        // Sequence numbers of connections that are up, so that a Disconnected carries its
        // Connected's number even when a takeover's new connection was counted first.
        let mut connections: HashMap<u64, u64> = HashMap::new();
        let topic: Arc<str> = SYSTEM_TOPIC.into();
        loop {
            let event = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
                () = shutdown.cancelled() => return,
            };
            let now = SystemTime::now();
            let source = self.namespace.as_str();
            let cloud_event = match &event {
                LifecycleEvent::Connected { identity, connection, .. } => {
                    let seq = {
                        let mut sequences = self.sequences.lock();
                        let seq = sequences.entry(identity.client_id.clone()).or_insert(0);
                        *seq += 1;
                        *seq
                    };
                    connections.insert(*connection, seq);
                    self.buffer.append(Op::PutRouting(
                        RoutingTable::Counters,
                        format!("lifecycle/{}", identity.client_id).into(),
                        0,
                        seq.to_le_bytes().to_vec().into(),
                    ));
                    super::lifecycle::session_connected(
                        source,
                        source,
                        &identity.authentication_name,
                        &identity.client_id,
                        seq,
                        now,
                    )
                }
                LifecycleEvent::Disconnected { identity, connection, reason } => {
                    let seq = connections.remove(connection).unwrap_or_else(|| {
                        self.sequences.lock().get(&identity.client_id).copied().unwrap_or(1)
                    });
                    super::lifecycle::session_disconnected(
                        source,
                        source,
                        &identity.authentication_name,
                        &identity.client_id,
                        seq,
                        reason,
                        now,
                    )
                }
                LifecycleEvent::ClientChanged {
                    name,
                    authentication_name,
                    enabled,
                    attributes,
                    created,
                } => super::lifecycle::client_created_or_updated(
                    source,
                    source,
                    name,
                    authentication_name,
                    *enabled,
                    attributes,
                    created.unwrap_or(now),
                    now,
                    now,
                ),
                LifecycleEvent::ClientDeleted { name, authentication_name } => {
                    super::lifecycle::client_deleted(source, source, name, authentication_name, now)
                }
                LifecycleEvent::SessionExpired { .. } => continue,
            };
            if self.admit(&topic, cloud_event, now).is_err() {
                tracing::error!("Routing buffer full; a lifecycle event was dropped.");
                metrics::counter!("gridmq_lifecycle_events_dropped_total").increment(1);
            }
        }
    }
}

impl RoutingTap for Router {
    fn accept(&self, message: &RoutedMessage) -> Result<Option<Ticket>, TapRefused> {
        let mut topics: Vec<&Arc<str>> = Vec::new();
        for (filter, topic) in &self.routes {
            if !topics.contains(&topic) && crate::mqtt::topic::matches(filter, &message.topic) {
                topics.push(topic);
            }
        }
        let Some((last, others)) = topics.split_last() else { return Ok(None) };
        let now = SystemTime::now();
        let mut event = super::event::to_cloud_event(&self.namespace, message, now);
        self.enrichments.apply(message, &mut event);
        // The event is built once; only a message routed to several topics is copied.
        let mut ticket = None;
        for topic in others {
            ticket = ticket
                .max(self.admit(topic, event.clone(), now).map_err(|_| self.refuse(message, now))?);
        }
        ticket = ticket.max(self.admit(last, event, now).map_err(|_| self.refuse(message, now))?);
        Ok(ticket)
    }
}

impl Router {
    /// The refusal of a publish the full buffer cannot take; logged at most every
    /// `LOG_EVERY`, not once per refused publish.
    fn refuse(&self, message: &RoutedMessage, now: SystemTime) -> TapRefused {
        use std::sync::atomic::Ordering::Relaxed;
        metrics::counter!("gridmq_routing_refused_total").increment(1);
        let now_ms = super::buffer::millis(now);
        let last = self.full_logged.load(Relaxed);
        if now_ms.saturating_sub(last) >= LOG_EVERY.as_millis() as u64
            && self.full_logged.compare_exchange(last, now_ms, Relaxed, Relaxed).is_ok()
        {
            tracing::warn!(topic = %message.topic, buffered = self.buffer.len(), "Routing buffer full; publishes are refused until deliveries catch up (see gridmq_routing_refused_total).");
        }
        TapRefused {
            code: ReasonCode::QuotaExceeded,
            reason: "routing buffer full (routing.max_buffered_events)".into(),
        }
    }
}

/// Hands lifecycle events from connection tasks to the router's lifecycle task.
struct LifecycleTap {
    sender: mpsc::Sender<LifecycleEvent>,
}

impl LifecycleObserver for LifecycleTap {
    fn on_event(&self, event: &LifecycleEvent) {
        if matches!(event, LifecycleEvent::SessionExpired { .. }) {
            return;
        }
        if self.sender.try_send(event.clone()).is_err() {
            tracing::error!("Lifecycle queue full; a lifecycle event was dropped.");
            metrics::counter!("gridmq_lifecycle_events_dropped_total").increment(1);
        }
    }
}
