//! The router: routes, enrichments, namespace topics with their dispatchers, the buffer and the
//! dead-letter store, assembled from the config; the broker's routing tap and lifecycle
//! observer; recovery of what the store held; re-driving dead letters.
//!
//! Namespace topics and their subscriptions form a [`Topology`] that the management API can
//! change at run time (`router/topics.rs`): each change builds a new topology and swaps it in,
//! so a routed event sees either the old one or the new one, never half of each.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use serde_json::value::RawValue;
use sinks::CloudEvent;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::buffer::BufferedEvent;
use super::buffer::{Buffer, decode_delivery, decode_event};
use super::config::{Destination, RoutingConfigError, RoutingPlan, SubscriptionPlan, TopicPlan};
use super::dead_letter::DeadLetters;
use super::dispatch::{Dispatcher, Status};
use super::enrich::Enrichments;
use super::filter::Filter;
use super::queue::QueueSubscription;
use crate::access::model::NamespaceSettings;
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

mod dead_letters;
mod preview;
mod reload;
mod topics;

pub use self::preview::Preview;

pub use reload::RouterReload;
pub use topics::{TopicsError, is_topic_kind, topic_kind};

/// Why the router could not be built; each names the field or stored resource.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A routing field, or a subscription whose sink cannot be built from it.
    #[error(transparent)]
    Invalid(#[from] RoutingConfigError),
    #[error("routing: HTTP client: {0}")]
    HttpClient(sinks::ClientError),
    /// A topic the management API stored, e.g. `store: topics[t].properties.publisherType`.
    #[error("store: topics[{name}].{error}")]
    StoredTopic { name: String, error: TopicsError },
    /// A subscription the management API stored that no longer reads.
    #[error("store: eventSubscriptions[{name}]: {error}")]
    StoredSubscription { name: String, error: serde_json::Error },
}

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

    /// When the oldest event not yet settled entered the buffer.
    pub fn oldest(&self) -> Option<SystemTime> {
        match self {
            Subscriber::Push(d) => d.oldest(),
            Subscriber::Queue(q) => q.oldest(),
        }
    }

    /// Deliveries waiting.
    pub fn waiting(&self) -> usize {
        match self {
            Subscriber::Push(d) => d.waiting(),
            Subscriber::Queue(q) => q.waiting(),
        }
    }

    /// Stops taking deliveries and hands those held to `successor`, or settles them.
    pub fn retire(&self, successor: Option<Subscriber>) {
        match self {
            Subscriber::Push(d) => d.retire(successor),
            Subscriber::Queue(q) => q.retire(successor),
        }
    }
}

/// The routes from MQTT topic filters to namespace topics, with the enrichments of the events
/// they make; a config reload replaces them.
#[derive(Debug, Clone, Default)]
struct RouteTable {
    routes: Vec<(String, Arc<str>)>,
    enrichments: Enrichments,
}

/// The namespace topics with their subscriptions (and the system topic's), and the route
/// table, as one value that changes are swapped in as: a routed message takes one snapshot
/// (one read lock and a reference count) for all it does.
#[derive(Clone, Default)]
struct Topology {
    routes: Arc<RouteTable>,
    /// Every namespace topic's plan, subscriptions included (declared and stored).
    definitions: BTreeMap<String, TopicPlan>,
    topics: HashMap<Arc<str>, Vec<Subscriber>>,
    dispatchers: BTreeMap<Arc<str>, Subscriber>,
    /// The properties the management API created each topic (`topic`) and subscription
    /// (`topic/name`) with, as given: what a PATCH applies to.
    raw: HashMap<String, Value>,
}

/// What subscribers are built from.
struct Parts {
    buffer: Arc<Buffer>,
    dead_letters: Arc<DeadLetters>,
    client: reqwest::Client,
    /// Where push dispatchers report whether they run (`/readyz`).
    readiness: Arc<crate::readiness::Readiness>,
}

impl Parts {
    /// The subscriber of subscription `name` of `topic`, as planned. Fails when the sink
    /// cannot be built; the error names the field under the subscription's path.
    fn subscriber(
        &self,
        topic: &str,
        name: &str,
        plan: &SubscriptionPlan,
    ) -> Result<Subscriber, RoutingConfigError> {
        let problem = |p: sinks::ConfigProblem| RoutingConfigError {
            field: format!("{}.destination.{}", plan.path, p.field),
            problem: p.problem,
        };
        let sink: Arc<dyn sinks::Sink> = match &plan.destination {
            None => {
                return Ok(Subscriber::Queue(Arc::new(QueueSubscription::new(
                    topic,
                    name,
                    plan.filter.clone(),
                    plan.policy.clone(),
                    plan.lock_duration,
                    self.buffer.clone(),
                    self.dead_letters.clone(),
                ))));
            }
            Some(Destination::WebHook(webhook)) => Arc::new(
                sinks::WebhookSink::new(webhook.clone(), self.client.clone(), name)
                    .map_err(problem)?,
            ),
            Some(Destination::EventHub(hub)) => {
                Arc::new(sinks::EventHubsSink::new(hub.clone(), name).map_err(problem)?)
            }
            Some(Destination::CustomTopic(custom)) => Arc::new(
                sinks::CustomTopicSink::new(custom.clone(), self.client.clone())
                    .map_err(problem)?,
            ),
        };
        Ok(Subscriber::Push(Arc::new(Dispatcher::new(
            topic,
            name,
            plan.filter.clone(),
            sink,
            plan.policy.clone(),
            self.buffer.clone(),
            self.dead_letters.clone(),
            &self.readiness,
        ))))
    }

    /// Adds the subscribers of `topic`'s planned subscriptions to `topology`.
    fn add_topic(
        &self,
        topology: &mut Topology,
        topic: &str,
        subscriptions: &BTreeMap<String, SubscriptionPlan>,
    ) -> Result<(), RoutingConfigError> {
        let entry = topology.topics.entry(topic.into()).or_default();
        for (name, plan) in subscriptions {
            let subscriber = self.subscriber(topic, name, plan)?;
            topology.dispatchers.insert(subscriber.key().clone(), subscriber.clone());
            entry.push(subscriber);
        }
        Ok(())
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
    /// The namespace's resource id: lifecycle events' `source`.
    resource_id: String,
    /// Whether the route table has a route: a publish with none to match skips the snapshot.
    has_routes: std::sync::atomic::AtomicBool,
    topology: parking_lot::RwLock<Arc<Topology>>,
    parts: Parts,
    /// Where run-time changes to topics and subscriptions are stored (`None`: in memory).
    journal: Option<Arc<Journal>>,
    /// Topics and subscriptions (`topic/name`) the config file declares: read-only through the
    /// management API. A config reload replaces them.
    declared: parking_lot::RwLock<std::collections::HashSet<String>>,
    /// Where dispatchers added at run time run, once started.
    runner: std::sync::OnceLock<(TaskTracker, CancellationToken)>,
    /// Serializes run-time changes, so none is lost between validation and swap.
    changes: tokio::sync::Mutex<()>,
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
    /// Builds the router of namespace `namespace` from the checked routing section `plan`,
    /// over `journal` (`None`: in-memory), with the topics and subscriptions the management API
    /// stored (`stored`: kind, name, JSON; other kinds are skipped). `None` when there is no
    /// route, no event subscription and no management API (namespace topics without routes
    /// still take events from the data-plane publish API).
    pub fn build(
        namespace: &NamespaceSettings,
        plan: RoutingPlan,
        journal: Option<Arc<Journal>>,
        stored: &[(String, String, Vec<u8>)],
    ) -> Result<Option<Arc<Router>>, BuildError> {
        Router::build_with(
            namespace,
            plan,
            journal,
            stored,
            crate::readiness::Readiness::new(),
            None,
        )
    }

    /// [`Router::build`], with its push dispatchers reporting to `readiness`, and in cluster
    /// mode its events in the cluster's routing log `shared` (which needs a journal).
    pub fn build_with(
        namespace: &NamespaceSettings,
        plan: RoutingPlan,
        journal: Option<Arc<Journal>>,
        stored: &[(String, String, Vec<u8>)],
        readiness: Arc<crate::readiness::Readiness>,
        shared: Option<Arc<dyn super::shared::SharedLog>>,
    ) -> Result<Option<Arc<Router>>, BuildError> {
        let lifecycle_on = !plan.system.is_empty();
        let has_subscriptions = plan.topics.values().any(|t| !t.subscriptions.is_empty());
        let stored_topics = stored.iter().any(|(kind, ..)| topics::is_topic_kind(kind));
        if plan.routes.is_empty()
            && !lifecycle_on
            && !has_subscriptions
            && !plan.runtime_topics
            && !stored_topics
        {
            return Ok(None);
        }
        let buffer = Arc::new(match (&journal, shared) {
            (Some(journal), Some(shared)) => {
                Buffer::shared(journal.clone(), plan.max_buffered_events, shared)
            }
            _ => Buffer::new(journal.clone(), plan.max_buffered_events),
        });
        let dead_letters = Arc::new(DeadLetters::new(journal.clone()));
        let client = sinks::http_client().map_err(BuildError::HttpClient)?;
        let parts =
            Parts { buffer: buffer.clone(), dead_letters: dead_letters.clone(), client, readiness };
        let declared = declared_names(&plan.topics);
        let mut definitions = plan.topics;
        let mut raw = HashMap::new();
        topics::merge_stored(&mut definitions, &mut raw, &declared, stored)?;
        let has_routes = std::sync::atomic::AtomicBool::new(!plan.routes.is_empty());
        let routes = Arc::new(RouteTable { routes: plan.routes, enrichments: plan.enrichments });
        let mut topology = Topology { raw, routes, ..Topology::default() };
        for (name, topic) in &definitions {
            parts.add_topic(&mut topology, name, &topic.subscriptions)?;
        }
        if lifecycle_on {
            parts.add_topic(&mut topology, SYSTEM_TOPIC, &plan.system)?;
        }
        topology.definitions = definitions;
        for (_, topic) in &topology.routes.routes {
            if !topology.definitions.contains_key(topic.as_ref()) {
                tracing::warn!(topic = %topic, "A route names a namespace topic that does not exist yet: its events are dropped until the topic is created.");
            }
        }
        let (sender, receiver) = if lifecycle_on {
            let (sender, receiver) = mpsc::channel(LIFECYCLE_QUEUE);
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        Ok(Some(Arc::new(Router {
            namespace: namespace.name.clone(),
            resource_id: namespace.resource_id(),
            has_routes,
            topology: parking_lot::RwLock::new(Arc::new(topology)),
            parts,
            journal,
            declared: parking_lot::RwLock::new(declared),
            runner: std::sync::OnceLock::new(),
            changes: tokio::sync::Mutex::new(()),
            buffer,
            dead_letters,
            lifecycle: parking_lot::Mutex::new(receiver),
            lifecycle_sender: sender,
            sequences: parking_lot::Mutex::new(HashMap::new()),
            full_logged: std::sync::atomic::AtomicU64::new(0),
        })))
    }

    /// The current topology.
    fn topology(&self) -> Arc<Topology> {
        self.topology.read().clone()
    }

    /// The lifecycle observer to register with the broker, when the system topic has
    /// subscriptions.
    pub fn observer(&self) -> Option<Arc<dyn LifecycleObserver>> {
        self.lifecycle_sender
            .clone()
            .map(|sender| Arc::new(LifecycleTap { sender }) as Arc<dyn LifecycleObserver>)
    }

    /// Whether messages are routed (at least one route, as the last reload left them).
    pub fn routes_messages(&self) -> bool {
        self.has_routes.load(std::sync::atomic::Ordering::Relaxed)
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
        let topology = self.topology();
        for (key, seq, record) in rows.remove(&RoutingTable::Deliveries).unwrap_or_default() {
            let dispatcher = topology.dispatchers.get(key.as_str());
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
            if self.buffer.shared_log().is_some() {
                // Kept here from before this node joined a cluster: the cluster's log takes
                // them over (their attempts start again), and the local rows go. The cluster's
                // store commits the log's part first, so a crash between the two repeats the
                // hand-over rather than losing the events.
                let topic: Arc<str> = topic.into();
                let keys: Vec<&Arc<str>> = deliveries.iter().map(|(d, ..)| d.key()).collect();
                self.buffer.hand_over(&topic, event, published, &keys);
                for key in keys {
                    self.buffer.append(Op::DeleteRouting(
                        RoutingTable::Deliveries,
                        key.clone(),
                        seq,
                    ));
                }
                self.buffer.append(Op::DeleteRouting(RoutingTable::Events, topic, seq));
                restored += 1;
                continue;
            }
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
        let _ = self.runner.set((tasks.clone(), shutdown.clone()));
        for subscriber in self.topology().dispatchers.values() {
            if let Subscriber::Push(dispatcher) = subscriber
                && dispatcher.start_once()
            {
                tasks.spawn(dispatcher.clone().run(tasks.clone(), shutdown.clone()));
            }
        }
        if let Some(receiver) = self.lifecycle.lock().take() {
            tasks.spawn(self.clone().lifecycle_loop(receiver, shutdown.clone()));
        }
    }

    /// Every subscription with its backlog, dead letters and endpoint state.
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        self.topology()
            .dispatchers
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

    /// For each subscription with events not yet settled, its topic (`systemTopic` for the
    /// system topic) and the age in seconds of its oldest such event.
    pub fn oldest_pending(&self) -> Vec<(String, f64)> {
        let now = SystemTime::now();
        self.topology()
            .dispatchers
            .values()
            .filter_map(|s| {
                let age = now.duration_since(s.oldest()?).unwrap_or_default().as_secs_f64();
                let topic = match s.topic() {
                    topic if &**topic == SYSTEM_TOPIC => "systemTopic".to_string(),
                    topic => topic.to_string(),
                };
                Some((topic, age))
            })
            .collect()
    }

    /// Events buffered for delivery.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether namespace topic `topic` exists.
    pub fn has_topic(&self, topic: &str) -> bool {
        topic != SYSTEM_TOPIC && self.topology().topics.contains_key(topic)
    }

    /// Publishes CloudEvents straight to namespace topic `topic` (the HTTP publish API): each
    /// goes to the subscriptions whose filters take it. Returns the ticket that makes them
    /// durable; the caller answers once it is committed.
    pub fn publish_events(
        &self,
        topic: &str,
        events: Vec<CloudEvent>,
    ) -> Result<Option<Ticket>, PublishError> {
        let topology = self.topology();
        let Some((topic, _)) =
            topology.topics.get_key_value(topic).filter(|_| topic != SYSTEM_TOPIC)
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
    pub fn queue(&self, topic: &str, subscription: &str) -> Option<Arc<QueueSubscription>> {
        match self.dispatcher(topic, subscription)? {
            Subscriber::Queue(queue) if topic != SYSTEM_TOPIC => Some(queue),
            _ => None,
        }
    }

    /// Every queue subscription, the system topic's included.
    pub fn queues(&self) -> Vec<Arc<QueueSubscription>> {
        let topology = self.topology();
        let queues = topology.dispatchers.values().filter_map(|subscriber| match subscriber {
            Subscriber::Queue(queue) => Some(queue.clone()),
            Subscriber::Push(_) => None,
        });
        queues.collect()
    }

    fn dispatcher(&self, topic: &str, subscription: &str) -> Option<Subscriber> {
        let topic = if topic == "systemTopic" { SYSTEM_TOPIC } else { topic };
        self.topology().dispatchers.get(format!("{topic}/{subscription}").as_str()).cloned()
    }

    /// Admits `event` to `topic` for the subscriptions whose filters take it.
    fn admit(
        &self,
        topic: &Arc<str>,
        event: CloudEvent,
        now: SystemTime,
    ) -> Result<Option<Ticket>, super::buffer::Full> {
        self.admit_in(&self.topology(), topic, event, now)
    }

    /// [`Router::admit`] in a snapshot of the topology the caller already holds.
    fn admit_in(
        &self,
        topology: &Topology,
        topic: &Arc<str>,
        event: CloudEvent,
        now: SystemTime,
    ) -> Result<Option<Ticket>, super::buffer::Full> {
        let Some(dispatchers) = topology.topics.get(topic) else { return Ok(None) };
        let takers: Vec<&Subscriber> =
            dispatchers.iter().filter(|d| d.filter().matches(&event)).collect();
        if takers.is_empty() {
            crate::telemetry::catalogue::UNMATCHED.increment(1);
            return Ok(None);
        }
        let keys: Vec<&Arc<str>> = takers.iter().map(|d| d.key()).collect();
        let (buffered, ticket) = self.buffer.admit(topic, event, now, &keys)?;
        if self.buffer.shared_log().is_some() {
            // The cluster's log holds the deliveries; subscriptions lease them from there.
            return Ok(ticket);
        }
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
            let Some(Some(event)) = shutdown.run_until_cancelled(events.recv()).await else {
                return;
            };
            let now = SystemTime::now();
            let source = self.resource_id.as_str();
            let namespace = self.namespace.as_str();
            let cloud_event = match &event {
                LifecycleEvent::Connected { identity, connection, sequence, .. } => {
                    let seq = {
                        let mut sequences = self.sequences.lock();
                        let seq = sequences.entry(identity.client_id.clone()).or_insert(0);
                        *seq = sequence.unwrap_or(*seq + 1);
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
                        namespace,
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
                        namespace,
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
                    namespace,
                    name,
                    authentication_name,
                    *enabled,
                    attributes,
                    created.unwrap_or(now),
                    now,
                    now,
                ),
                LifecycleEvent::ClientDeleted { name, authentication_name } => {
                    super::lifecycle::client_deleted(
                        source,
                        namespace,
                        name,
                        authentication_name,
                        now,
                    )
                }
                LifecycleEvent::SessionExpired { .. } => continue,
            };
            if self.admit(&topic, cloud_event, now).is_err() {
                tracing::error!("Routing buffer full; a lifecycle event was dropped.");
                metrics::counter!(crate::telemetry::catalogue::LIFECYCLE_DROPPED).increment(1);
            }
        }
    }
}

impl RoutingTap for Router {
    fn active(&self) -> bool {
        self.routes_messages()
    }

    fn accept(&self, message: &RoutedMessage) -> Result<Option<Ticket>, TapRefused> {
        if !self.routes_messages() {
            return Ok(None);
        }
        let topology = self.topology();
        let mut topics: Vec<&Arc<str>> = Vec::new();
        for (filter, topic) in &topology.routes.routes {
            if !topics.contains(&topic) && crate::mqtt::topic::matches(filter, &message.topic) {
                topics.push(topic);
            }
        }
        let Some((last, others)) = topics.split_last() else { return Ok(None) };
        let now = SystemTime::now();
        let mut event = super::event::to_cloud_event(&self.namespace, message, now);
        topology.routes.enrichments.apply(message, &mut event);
        // The event is built once; only a message routed to several topics is copied.
        let mut ticket = None;
        for topic in others {
            ticket = ticket.max(
                self.admit_in(&topology, topic, event.clone(), now)
                    .map_err(|_| self.refuse(message, now))?,
            );
        }
        ticket = ticket.max(
            self.admit_in(&topology, last, event, now).map_err(|_| self.refuse(message, now))?,
        );
        crate::telemetry::catalogue::ROUTED_OK.increment(1);
        Ok(ticket)
    }
}

impl Router {
    /// The refusal of a publish the full buffer cannot take; logged at most every
    /// `LOG_EVERY`, not once per refused publish.
    fn refuse(&self, message: &RoutedMessage, now: SystemTime) -> TapRefused {
        use std::sync::atomic::Ordering::Relaxed;
        crate::telemetry::catalogue::routed_failed("buffer_full");
        let now_ms = super::buffer::millis(now);
        let last = self.full_logged.load(Relaxed);
        if now_ms.saturating_sub(last) >= LOG_EVERY.as_millis() as u64
            && self.full_logged.compare_exchange(last, now_ms, Relaxed, Relaxed).is_ok()
        {
            tracing::warn!(topic = %message.topic, buffered = self.buffer.len(), "Routing buffer full; publishes are refused until deliveries catch up (see gridmq_routing_routed_messages_total, result \"failure\").");
        }
        TapRefused {
            code: ReasonCode::QuotaExceeded,
            reason: "routing buffer full (routing.max_buffered_events)".into(),
        }
    }
}

/// The names the config file declares: its topics, and its subscriptions as `topic/name`.
fn declared_names(topics: &BTreeMap<String, TopicPlan>) -> std::collections::HashSet<String> {
    let mut declared = std::collections::HashSet::new();
    for (name, topic) in topics {
        declared.insert(name.clone());
        for sub in topic.subscriptions.keys() {
            declared.insert(format!("{name}/{sub}"));
        }
    }
    declared
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
            metrics::counter!(crate::telemetry::catalogue::LIFECYCLE_DROPPED).increment(1);
        }
    }
}
