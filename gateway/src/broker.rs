//! The broker: sessions, the subscription tree, retained messages and fan-out.
//!
//! Connection tasks call into one shared `Broker`. The publish path takes the subscription
//! tree's read lock (publishes never wait for one another, only for a SUBSCRIBE being applied),
//! collects the matching sessions, and pushes a `Delivery` into each session's own queue under
//! that session's lock, still under the tree's read lock. On this path locks nest in one
//! order: the tree, then one session, then the journal; none is held across an await.
//!
//! Invariant: a session in the registry is not ended; a session in the subscription tree is
//! in the registry, except briefly while `end_session` removes it from both.

pub mod config;
pub mod message;
pub mod persist;
pub mod recovery;
pub mod retained_index;
pub mod session;
pub mod subscriptions;
pub mod topic_tree;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::config::MqttConfig;
use self::message::{Delivery, Message, SharedKey};
use self::retained_index::RetainedIndex;
use self::session::{Enqueued, Offered, RunRoom, Session, Subscription};
use self::subscriptions::{FilterSubscribers, Subscriber};
use self::topic_tree::TopicTree;
use crate::hooks::{ClientIdentity, Hooks, LifecycleEvent, RoutedMessage, TapRefused};
use crate::mqtt::{Protocol, QoS, ReasonCode, topic};
use crate::store::{Journal, Op, Ticket};

/// The most connections lingering at once (`connection/linger.rs`). A lingering plain TCP
/// connection costs its socket and a task of about 1.5 KB (a TLS one its rustls state besides),
/// so 1024 of them cost a few megabytes and a thousand descriptors beyond the listeners' own
/// limits.
pub const MAX_LINGERING: usize = 1024;

/// Sends what is published on this node to the other nodes of a cluster (`crate::cluster`).
/// Called on the publish path, synchronously, for every message of local origin.
pub trait Forwarder: Send + Sync + 'static {
    fn forward(&self, message: &Arc<Message>) -> Forwarded;
}

/// What a [`Forwarder`] did with a message.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded {
    /// One more thing the acknowledgement waits for.
    pub ticket: Option<Ticket>,
    /// The message comes back to this node through the cluster's ordered log, and is fanned
    /// out here only then: every subscriber, local or not, gets it by that one path.
    pub comes_back: bool,
    /// The key every node picks the serving node of a shared subscription by
    /// ([`ShareSelector`]), for a message fanned out here at once.
    pub share_key: Option<u64>,
}

/// Decides, in a cluster, which node serves a shared subscription group for one message: every
/// node fans out every message, and each must skip the groups another node serves for it, so
/// that one member cluster-wide gets it (`crate::cluster::shared`).
pub trait ShareSelector: Send + Sync + 'static {
    /// Whether this node delivers the message with `key` to its members of `group` on `filter`.
    fn serves(&self, group: &str, filter: &str, key: u64) -> bool;
    /// Called after a shared subscription to `group` on `filter` was added or removed here.
    fn changed(&self, group: &str, filter: &str);
}

/// Where a cluster keeps which node holds each session (`crate::cluster::sessions`). Every
/// CONNECT claims its client id before it attaches, so a session lives on one node at a time
/// and is carried over, with what it missed, from the node that had it.
pub trait SessionDirectory: Send + Sync + 'static {
    /// Makes this node the owner of `client_id`'s session, loading it here when another node
    /// (or an earlier run of this one) had it. The guard is held until the session is
    /// attached: another node's request for the session waits for it.
    fn claim(
        &self,
        client_id: Arc<str>,
        clean_start: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<ClaimGuard, ClaimRefused>> + Send>>;
    /// The session of `client_id` ended here (expired, or its connection closed with expiry 0).
    fn ended(&self, client_id: &Arc<str>);
}

/// Held while a claimed session is being attached.
pub struct ClaimGuard {
    /// The connection's number among its client id's connections, cluster-wide: its
    /// lifecycle events' sequence number.
    pub connection: u64,
    pub hold: Box<dyn Send + Sync>,
}

/// Why a client id could not be claimed (the cluster is unreachable or the claim kept losing).
#[derive(Debug, thiserror::Error)]
#[error("cannot claim the session: {0}")]
pub struct ClaimRefused(pub String);

/// The state every connection shares.
pub struct Broker {
    pub config: MqttConfig,
    pub hooks: Hooks,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    subscriptions: RwLock<TopicTree<FilterSubscribers>>,
    /// Each retained message with the wall-clock time it was stored (the retained-message HTTP
    /// API reports it; after a restart it is the time the message was recovered).
    retained: RwLock<RetainedIndex<(Arc<Message>, SystemTime)>>,
    next_id: AtomicU64,
    /// Sequence numbers of stored deliveries; continues after the highest one recovered.
    next_seq: AtomicU64,
    /// Where durable changes go; `None` in in-memory mode.
    journal: Option<Arc<Journal>>,
    /// The cluster's forwarder, in cluster mode (set once, before clients are served).
    forwarder: std::sync::OnceLock<Arc<dyn Forwarder>>,
    /// The cluster's shared-subscription selector, in cluster mode (set once, like the
    /// forwarder).
    share_selector: std::sync::OnceLock<Arc<dyn ShareSelector>>,
    /// The cluster's session directory, in cluster mode (set once, before clients are served).
    directory: std::sync::OnceLock<Arc<dyn SessionDirectory>>,
    /// Cancelled when the server shuts down (`begin_shutdown`); timers and accept loops watch
    /// it, connections are kicked.
    pub shutdown: CancellationToken,
    /// Set with `shutdown`, for the connections' check on every turn: asking the token takes
    /// a lock, reading this does not.
    stopping: std::sync::atomic::AtomicBool,
    /// Tracks connection tasks and timers, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Slots for connections in their lingering close, [`MAX_LINGERING`] of them:
    /// past the bound, a disconnected client's socket is closed at once.
    pub lingering: Arc<tokio::sync::Semaphore>,
}

/// What [`Broker::census`] counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Census {
    pub sessions: usize,
    pub parked: usize,
    pub retained: usize,
    pub retained_bytes: usize,
}

/// One matching subscription found during fan-out, before overlapping ones are merged.
/// What a fan-out did.
#[derive(Default)]
pub struct Fanout {
    /// Sessions the message was offered to.
    pub matched: usize,
    /// Durable once every stored delivery of the message is.
    pub ticket: Option<Ticket>,
    /// The attached sessions whose queues are past their soft limit: the publisher should
    /// pause until every one of them has drained (see `Session::is_congested`).
    pub congested: Vec<Arc<Session>>,
}

/// What `Broker::deliver` did.
struct Delivered {
    ticket: Option<Ticket>,
    congested: Vec<Arc<Session>>,
    overflowed: Vec<Arc<Session>>,
}

/// Borrows its session from the subscription tree: the fan-out runs under the tree's read
/// lock, so no session's reference count is touched per delivery. Those counts share a cache
/// line with the session's lock, which the subscriber's connection takes on another core, so
/// an `Arc` clone and drop per target would contend with it.
struct Target<'a> {
    session: &'a Arc<Session>,
    qos: QoS,
    retain: bool,
    identifier: Option<u32>,
    shared: Option<Arc<SharedKey>>,
}

impl Broker {
    pub fn new(config: MqttConfig, hooks: Hooks, journal: Option<Arc<Journal>>) -> Arc<Broker> {
        Arc::new(Broker {
            config,
            hooks,
            sessions: Mutex::new(HashMap::new()),
            subscriptions: RwLock::new(TopicTree::new()),
            retained: RwLock::new(RetainedIndex::new()),
            next_id: AtomicU64::new(1),
            next_seq: AtomicU64::new(1),
            journal,
            forwarder: std::sync::OnceLock::new(),
            share_selector: std::sync::OnceLock::new(),
            directory: std::sync::OnceLock::new(),
            shutdown: CancellationToken::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            tasks: TaskTracker::new(),
            lingering: Arc::new(tokio::sync::Semaphore::new(MAX_LINGERING)),
        })
    }

    /// The journal, when the broker persists.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    /// Appends `op` to the journal, if there is one.
    pub fn journal_append(&self, op: impl FnOnce() -> Op) -> Option<Ticket> {
        self.journal.as_ref().map(|journal| journal.append(op()))
    }

    /// Waits until `ticket` is durable.
    pub async fn durable(&self, ticket: Option<Ticket>) {
        if let (Some(journal), Some(ticket)) = (&self.journal, ticket) {
            journal.durable(ticket).await;
        }
    }

    /// Makes later stored sequence numbers start after `seq` (recovery).
    pub(crate) fn seq_at_least(&self, seq: u64) {
        self.next_seq.fetch_max(seq + 1, Ordering::Relaxed);
    }

    /// Stores `session`'s record if it outlives its connection; `disconnected_at_ms` is `None`
    /// while attached.
    pub fn persist_session(
        &self,
        session: &Session,
        disconnected_at_ms: Option<u64>,
    ) -> Option<Ticket> {
        let journal = self.journal.as_ref()?;
        let mut state = session.lock();
        if state.ended || state.expiry_interval == 0 {
            return None;
        }
        state.stored = true;
        Some(journal.append(persist::session_op(&session.client_id, &state, disconnected_at_ms)))
    }

    /// A process-unique id for sessions and connections.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The live session for `client_id`, if any.
    pub fn session(&self, client_id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().get(client_id).cloned()
    }

    /// Registers `session` unless a live session already holds its client id; returns whether
    /// it was registered.
    pub fn register(&self, session: &Arc<Session>) -> bool {
        let mut sessions = self.sessions.lock();
        if sessions.contains_key(&session.client_id) {
            return false;
        }
        sessions.insert(session.client_id.clone(), session.clone());
        true
    }

    /// Starts the broker's shutdown: cancels its token (accept loops and timers stop) and asks
    /// every attached connection to close with 0x8B. Connections learn of it through their
    /// session, as they do of a takeover, rather than each waiting on the token: a waiter in
    /// every connection's future would be memory every idle connection keeps. A connection
    /// attached after this sees the cancelled token before it waits for anything.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        self.shutdown.cancel();
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        for session in sessions {
            session.kick(ReasonCode::ServerShuttingDown);
        }
    }

    /// Whether `begin_shutdown` was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Every live session, for the console's listing; not for a hot path.
    pub fn sessions_snapshot(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().values().cloned().collect()
    }

    /// The number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Counts for the metrics scrape: sessions, parked connections, each session's queue depth
    /// (handed to `depth`, never kept per client) and the retained messages with their payload
    /// bytes. Takes each session's lock in turn, never two at once.
    pub fn census(&self, mut depth: impl FnMut(usize)) -> Census {
        let sessions = self.sessions_snapshot();
        let mut census = Census { sessions: sessions.len(), ..Census::default() };
        for session in sessions {
            let state = session.lock();
            census.parked += usize::from(state.is_parked());
            depth(state.queue.len());
        }
        let retained = self.retained.read();
        retained.for_each(|_, (message, _)| {
            census.retained += 1;
            census.retained_bytes += message.payload.len();
        });
        census
    }

    /// Installs the cluster's forwarder; a second call is ignored.
    pub fn set_forwarder(&self, forwarder: Arc<dyn Forwarder>) {
        let _ = self.forwarder.set(forwarder);
    }

    /// Installs the cluster's session directory; a second call is ignored.
    pub fn set_directory(&self, directory: Arc<dyn SessionDirectory>) {
        let _ = self.directory.set(directory);
    }

    /// The cluster's session directory, in cluster mode.
    pub fn directory(&self) -> Option<&Arc<dyn SessionDirectory>> {
        self.directory.get()
    }

    /// In cluster mode, stores a connected client's will at CONNECT, marked "connected" with
    /// its delay: if this node dies, the node that adopts the session publishes it once, the
    /// delay after adopting it (`recovery::CONNECTED_WILL`).
    pub fn store_connect_will(
        &self,
        client_id: &Arc<str>,
        will: &Arc<Message>,
        delay_secs: u32,
    ) -> Option<Ticket> {
        self.directory.get()?;
        let delay_ms = u64::from(delay_secs) * 1000;
        let header =
            crate::store::WillRecord { publish_at_ms: recovery::CONNECTED_WILL | delay_ms };
        self.journal_append(|| {
            let bytes: Arc<[u8]> =
                crate::store::record::encode_with_message(&header, will.record()).into();
            Op::PutWill(client_id.clone(), bytes)
        })
    }

    /// In cluster mode, deletes the will stored at CONNECT once the connection ended without
    /// scheduling it (a normal DISCONNECT, or a shutdown).
    pub fn forget_connect_will(&self, client_id: &Arc<str>) {
        if self.directory.get().is_some() {
            self.journal_append(|| Op::DeleteWill(client_id.clone()));
        }
    }

    /// Takes a session out of this broker because another node takes it over: out of the
    /// registry and the subscription tree, its timers (expiry, will) disarmed, and nothing
    /// journaled, so that its stored state stays whole for the node that loads it. The caller
    /// has waited for its connection to let go.
    pub fn evict(&self, session: &Arc<Session>) {
        let filters: Vec<String> = {
            let mut state = session.lock();
            // A timer compares the generation it was started with: none of them fires now.
            state.generation += 1;
            state.stored = false;
            state.will_pending = false;
            state.subscriptions.keys().cloned().collect()
        };
        self.unlink(session, &filters);
    }

    /// Removes `session`'s subscriptions to `filters` from the tree and the session from the
    /// registry.
    fn unlink(&self, session: &Arc<Session>, filters: &[String]) {
        {
            let mut tree = self.subscriptions.write();
            for filter in filters {
                let (group, inner) = split(filter);
                if let Some(subscribers) = tree.get_mut(inner) {
                    subscribers.remove(group, session.id);
                }
                tree.remove_if(inner, FilterSubscribers::is_empty);
            }
        }
        for filter in filters {
            let (group, inner) = split(filter);
            self.share_changed(group, inner);
        }
        let mut sessions = self.sessions.lock();
        if sessions.get(&session.client_id).is_some_and(|s| Arc::ptr_eq(s, session)) {
            sessions.remove(&session.client_id);
        }
    }

    /// Offers a message the session missed while it moved between nodes (replayed from the
    /// cluster's log) to this one session, as `fan_out` would have: at the highest QoS its
    /// matching subscriptions grant, with their identifiers, and not for a No Local one when
    /// `message.publisher` is this session. Shared subscriptions are not replayed: their
    /// messages went to the group's other members.
    pub fn offer_replayed(
        &self,
        session: &Arc<Session>,
        message: &Arc<Message>,
    ) -> Option<Offered> {
        let (qos, retain, ids) = {
            let state = session.lock();
            let mut found: Option<(QoS, bool, Vec<u32>)> = None;
            for (filter, subscription) in &state.subscriptions {
                if split(filter).0.is_some() || !topic::matches(filter, &message.topic) {
                    continue;
                }
                let options = &subscription.options;
                if options.no_local && message.publisher == session.id {
                    continue;
                }
                let (qos, retain, ids) = found.get_or_insert((QoS::AtMostOnce, false, Vec::new()));
                *qos = (*qos).max(options.qos.min(message.qos));
                *retain |= options.retain_as_published && message.retain;
                ids.extend(subscription.identifier);
            }
            found?
        };
        let delivery = Delivery {
            message: message.clone(),
            qos,
            retain,
            subscription_ids: ids.into_boxed_slice(),
            shared: None,
            seq: 0,
            elidable: None,
        };
        Some(self.offer(session, delivery))
    }

    fn forward(&self, message: &Arc<Message>) -> Forwarded {
        match self.forwarder.get() {
            Some(forwarder) => forwarder.forward(message),
            None => Forwarded { ticket: None, comes_back: false, share_key: None },
        }
    }

    /// Installs the cluster's shared-subscription selector; a second call is ignored.
    pub fn set_share_selector(&self, selector: Arc<dyn ShareSelector>) {
        let _ = self.share_selector.set(selector);
    }

    /// Tells the selector that this node's members of `group` on `filter` changed.
    fn share_changed(&self, group: Option<&str>, filter: &str) {
        if let (Some(group), Some(selector)) = (group, self.share_selector.get()) {
            selector.changed(group, filter);
        }
    }

    /// Offers `message` to one member of this node's `group` on `filter`, as a fan-out would;
    /// returns whether the group has a member here. For a message another node should have
    /// delivered to the group and could not (`crate::cluster::shared`).
    pub fn fan_out_shared(&self, message: &Arc<Message>, group: &str, filter: &str) -> bool {
        let member = {
            let tree = self.subscriptions.read();
            let group =
                tree.get(filter).and_then(|subs| subs.shared.iter().find(|g| g.name == group));
            group
                .and_then(|group| group.pick(None))
                .map(|s| (s.session.clone(), s.options, s.identifier))
        };
        let Some((session, options, identifier)) = member else { return false };
        let delivery = Delivery {
            message: message.clone(),
            qos: options.qos.min(message.qos),
            retain: options.retain_as_published && message.retain,
            subscription_ids: identifier.into_iter().collect(),
            shared: Some(Arc::new(SharedKey {
                group: group.to_string(),
                filter: filter.to_string(),
            })),
            seq: 0,
            elidable: None,
        };
        self.offer(&session, delivery);
        true
    }

    /// Whether a session of this node is a member of `group` on `filter`.
    pub fn has_shared_group(&self, group: &str, filter: &str) -> bool {
        let tree = self.subscriptions.read();
        tree.get(filter).is_some_and(|subs| subs.shared.iter().any(|g| g.name == group))
    }

    /// Publishes a message of this node's: forwarded to the other nodes in cluster mode, and
    /// fanned out here (see [`Broker::fan_out`]), unless it comes back through the cluster's
    /// log. Such a message counts as matched: which nodes' subscribers it reaches is not known
    /// when it is acknowledged.
    pub fn publish(&self, message: &Arc<Message>) -> Fanout {
        let forwarded = self.forward(message);
        if forwarded.comes_back {
            return Fanout { matched: 1, ticket: forwarded.ticket, congested: Vec::new() };
        }
        let mut fanout = self.fan_out_with(message, forwarded.share_key);
        fanout.ticket = fanout.ticket.max(forwarded.ticket);
        fanout
    }

    /// Fans `message` out to every matching subscription; returns how many sessions it was
    /// offered to. Overlapping subscriptions of one session yield one delivery at the highest
    /// granted QoS carrying every matching subscription identifier. The ticket, when there is
    /// one, is durable once every stored delivery of the message is. Messages from other
    /// nodes come here directly; this node's go through [`Broker::publish`].
    pub fn fan_out(&self, message: &Arc<Message>) -> Fanout {
        self.fan_out_with(message, None)
    }

    /// [`Broker::fan_out`] of a message every node of a cluster fans out, with the key they
    /// all pick a shared subscription's serving node by ([`ShareSelector`]).
    pub fn fan_out_keyed(&self, message: &Arc<Message>, key: u64) -> Fanout {
        self.fan_out_with(message, Some(key))
    }

    fn fan_out_with(&self, message: &Arc<Message>, key: Option<u64>) -> Fanout {
        let selector = key.and_then(|key| Some((self.share_selector.get()?, key)));
        let mut targets = Vec::new();
        let mut direct_filters = 0;
        let tree = self.subscriptions.read();
        tree.for_each_match(&message.topic, |filter, subscribers| {
            if !subscribers.direct.is_empty() {
                direct_filters += 1;
            }
            targets.reserve(subscribers.direct.len() + subscribers.shared.len());
            for s in &subscribers.direct {
                if s.options.no_local && s.session.id == message.publisher {
                    continue;
                }
                targets.push(Target {
                    session: &s.session,
                    qos: s.options.qos.min(message.qos),
                    retain: s.options.retain_as_published && message.retain,
                    identifier: s.identifier,
                    shared: None,
                });
            }
            for group in &subscribers.shared {
                if let Some((selector, key)) = selector
                    && !selector.serves(&group.name, filter, key)
                {
                    continue;
                }
                if let Some(s) = group.pick(None) {
                    targets.push(Target {
                        session: &s.session,
                        qos: s.options.qos.min(message.qos),
                        retain: s.options.retain_as_published && message.retain,
                        identifier: s.identifier,
                        shared: Some(Arc::new(SharedKey {
                            group: group.name.clone(),
                            filter: filter.to_string(),
                        })),
                    });
                }
            }
        });
        let matched = targets.len();
        let may_overlap = direct_filters > 1;
        let delivered = self.deliver(message, targets, may_overlap);
        // Ending an overflowed session takes the tree's write lock.
        drop(tree);
        for session in &delivered.overflowed {
            self.overflow(session);
        }
        Fanout { matched, ticket: delivered.ticket, congested: delivered.congested }
    }

    /// Fans out the start of a run of QoS 0 or QoS 1 messages that one client published, none
    /// of them retained: what a burst read from a telemetry publisher usually is. The messages
    /// at the head of `messages` that share its topic and QoS are a run: the subscription tree
    /// is walked once, and each subscriber takes the run under one lock of its session and one
    /// wake-up, instead of one of each per message. In a fan-out to a thousand subscribers
    /// those were most of the publisher's time (rumqttd batches the same way).
    ///
    /// Flow control: first every subscriber says how much room it has (`Session::reserve_run`),
    /// and only as many messages as all have room for (at least one) are queued; the caller
    /// keeps the rest until its pause is over. A topic that a shared subscription or more than
    /// one filter matches goes one message at a time through `publish`, which handles group
    /// picks and overlapping subscriptions. Returns how many messages were fanned out, with
    /// what `publish` returns for each of them: every message of a run has the same
    /// subscribers.
    pub fn publish_run(&self, messages: &[Arc<Message>]) -> (usize, Fanout) {
        let Some(first) = messages.first() else { return (0, Fanout::default()) };
        let run =
            messages.iter().take_while(|m| m.topic == first.topic && m.qos == first.qos).count();
        if run == 1 {
            return (1, self.publish(first));
        }
        if self.forwarder.get().is_some() && first.qos != QoS::AtMostOnce {
            // Cluster mode: a QoS 1 run comes back through the log, so there is no run to
            // fan out here; one message at a time keeps each one's forwarding in order.
            return (1, self.publish(first));
        }
        let mut targets: Vec<(&Arc<Session>, QoS, Option<u32>)> = Vec::new();
        let mut filters = 0;
        let mut shared = false;
        // Held while the run is queued, for the reason given at `Target`.
        let tree = self.subscriptions.read();
        tree.for_each_match(&first.topic, |_, subscribers| {
            filters += usize::from(!subscribers.direct.is_empty());
            shared |= !subscribers.shared.is_empty();
            targets.reserve(subscribers.direct.len());
            for s in &subscribers.direct {
                if !(s.options.no_local && s.session.id == first.publisher) {
                    targets.push((&s.session, s.options.qos.min(first.qos), s.identifier));
                }
            }
        });
        if shared || filters > 1 {
            drop(tree);
            return (1, self.publish(first));
        }
        let rooms: Vec<RunRoom> =
            targets.iter().map(|(session, ..)| session.reserve_run(run, &self.config)).collect();
        let take = rooms.iter().map(|r| r.room).min().unwrap_or(run).clamp(1, run);
        let mut fanout = Fanout { matched: targets.len(), ..Fanout::default() };
        let mut overflowed = Vec::new();
        for ((session, qos, identifier), room) in targets.into_iter().zip(rooms) {
            let deliveries = messages[..take].iter().map(|message| Delivery {
                message: message.clone(),
                qos,
                retain: false,
                subscription_ids: identifier.into_iter().collect(),
                shared: None,
                seq: 0,
                elidable: None,
            });
            let next_seq = || self.next_seq.fetch_add(1, Ordering::Relaxed);
            let offered = session.enqueue_run(
                deliveries,
                room.reserved,
                &self.config,
                self.journal.as_deref(),
                next_seq,
            );
            fanout.ticket = fanout.ticket.max(offered.ticket);
            if offered.congested {
                fanout.congested.push(session.clone());
            }
            if offered.overflow {
                overflowed.push(session.clone());
            }
        }
        drop(tree);
        for session in &overflowed {
            self.overflow(session);
        }
        // Cluster mode: a QoS 0 run goes to the other nodes too, message by message.
        for message in &messages[..take] {
            self.forward(message);
        }
        (take, fanout)
    }

    /// Sets, replaces or (empty payload) clears the retained message of its topic.
    pub fn retain(&self, message: &Arc<Message>) -> Option<Ticket> {
        let mut retained = self.retained.write();
        if message.payload.is_empty() {
            retained.remove(&message.topic).is_some().then_some(())?;
            self.journal_append(|| Op::DeleteRetained(message.topic.clone()))
        } else {
            retained.insert(&message.topic, (message.clone(), SystemTime::now()));
            self.journal_append(|| Op::PutRetained(message.topic.clone(), message.record().into()))
        }
    }

    /// Applies a retained message set or cleared on another node (no journaling: it came
    /// from the store). `None` clears the topic.
    pub fn apply_retained(&self, topic: &str, message: Option<Arc<Message>>) {
        match message {
            Some(message) if !message.payload.is_empty() => self.restore_retained(message),
            _ => {
                self.retained.write().remove(topic);
            }
        }
    }

    /// Puts a recovered retained message back (no journaling: it came from the store).
    pub(crate) fn restore_retained(&self, message: Arc<Message>) {
        let topic = message.topic.clone();
        self.retained.write().insert(&topic, (message, SystemTime::now()));
    }

    /// The unexpired retained messages matching `filter`.
    pub fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        self.retained_entries(filter).into_iter().map(|(message, _)| message).collect()
    }

    /// The unexpired retained messages matching `filter` (a topic name matches only itself),
    /// each with the time it was stored, in no particular order.
    pub fn retained_entries(&self, filter: &str) -> Vec<(Arc<Message>, SystemTime)> {
        let now = tokio::time::Instant::now();
        let mut found = Vec::new();
        self.retained.read().for_each_matching(filter, |_, (message, modified)| {
            if !message.is_expired(now) {
                found.push((message.clone(), *modified));
            }
        });
        found
    }

    /// Drops retained messages whose expiry has passed.
    pub fn purge_expired_retained(&self) {
        let now = tokio::time::Instant::now();
        self.retained.write().retain(|_, (message, _)| !message.is_expired(now));
    }

    /// Publishes a message that no MQTT connection carried (the HTTP publish API) as an MQTT 5
    /// PUBLISH from `identity` would be: the routing tap takes it, the retained message of its
    /// topic is set or cleared, it is fanned out, and the call returns once everything it
    /// stored is durable, so the caller may acknowledge it. Authorization is the caller's, and
    /// so is `message.publisher` (0: no session, so No Local never drops it). A congested
    /// subscriber does not slow this publisher down: there is no socket to stop reading.
    pub async fn publish_from(
        &self,
        identity: &ClientIdentity,
        message: Arc<Message>,
    ) -> Result<ReasonCode, TapRefused> {
        let mut ticket = None;
        if let Some(tap) = &self.hooks.tap
            && tap.active()
        {
            let routed = RoutedMessage {
                publisher: identity.clone(),
                protocol: Protocol::V5,
                topic: message.topic.clone(),
                qos: message.qos,
                retain: message.retain,
                payload: message.payload.clone(),
                properties: message.properties.clone(),
            };
            ticket = tap.accept(&routed)?;
        }
        if message.retain {
            ticket = ticket.max(self.retain(&message));
        }
        let fanout = self.publish(&message);
        self.durable(ticket.max(fanout.ticket)).await;
        let matched = fanout.matched > 0;
        Ok(if matched { ReasonCode::Success } else { ReasonCode::NoMatchingSubscribers })
    }

    /// Adds or replaces `session`'s subscription to `filter`; returns whether the session
    /// already had it. The session record is journaled by the caller (`persist_session`), once
    /// per SUBSCRIBE packet.
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &str,
        subscription: Subscription,
    ) -> bool {
        let (group, inner) = split(filter);
        let subscriber = Subscriber {
            session: session.clone(),
            options: subscription.options,
            identifier: subscription.identifier,
        };
        let existed = self.subscriptions.write().entry(inner).insert(group, subscriber);
        session.lock().subscriptions.insert(filter.to_string(), subscription);
        self.share_changed(group, inner);
        existed
    }

    /// Removes `session`'s subscription to `filter`; returns whether it existed.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        let known = session.lock().subscriptions.remove(filter).is_some();
        let (group, inner) = split(filter);
        let mut tree = self.subscriptions.write();
        let removed = tree.get_mut(inner).is_some_and(|subs| subs.remove(group, session.id));
        tree.remove_if(inner, FilterSubscribers::is_empty);
        drop(tree);
        self.share_changed(group, inner);
        known || removed
    }

    /// Discards a session: its subscriptions, queue and in-flight messages. Messages it got
    /// through shared subscriptions and had not finished go to other members of their groups.
    pub fn end_session(&self, session: &Arc<Session>) {
        let (filters, shared) = {
            let mut state = session.lock();
            if state.ended {
                return;
            }
            state.ended = true;
            if state.stored
                && let Some(journal) = &self.journal
            {
                journal.append(Op::DeleteSession(session.client_id.clone()));
            }
            let filters: Vec<String> = state.subscriptions.drain().map(|(f, _)| f).collect();
            let shared = state.take_shared();
            state.queue.clear();
            state.inflight.clear();
            state.inbound_qos2.clear();
            (filters, shared)
        };
        self.unlink(session, &filters);
        if let Some(directory) = self.directory.get() {
            directory.ended(&session.client_id);
        }
        self.redistribute(shared, session);
    }

    /// Hands deliveries that a leaving member of a shared subscription did not finish to
    /// another member of the same group. With no other member they are dropped, counted.
    pub fn redistribute(&self, deliveries: Vec<Delivery>, leaving: &Session) {
        for delivery in deliveries {
            if delivery.seq != 0
                && let Some(journal) = &self.journal
            {
                journal.delete_entry(&leaving.client_id, delivery.seq, delivery.elidable);
            }
            let Some(key) = delivery.shared.clone() else { continue };
            let target = {
                let tree = self.subscriptions.read();
                tree.get(&key.filter)
                    .and_then(|subs| subs.shared.iter().find(|g| g.name == key.group))
                    .and_then(|group| group.pick(Some(leaving.id)))
                    .map(|s| (s.session.clone(), s.options.qos, s.identifier))
            };
            match target {
                Some((session, granted, identifier)) => {
                    let redelivery = Delivery {
                        qos: granted.min(delivery.message.qos),
                        subscription_ids: identifier.into_iter().collect(),
                        seq: 0,
                        elidable: None,
                        ..delivery
                    };
                    self.offer(&session, redelivery);
                }
                None => {
                    crate::telemetry::catalogue::DROPPED_NO_SHARED_MEMBER.increment(1);
                }
            }
        }
    }

    /// Offers a delivery to one session, ending the session if its queue overflows under the
    /// `end-session` policy.
    pub fn offer(&self, session: &Arc<Session>, delivery: Delivery) -> Offered {
        let next_seq = || self.next_seq.fetch_add(1, Ordering::Relaxed);
        let offered = session.enqueue(delivery, &self.config, self.journal.as_deref(), next_seq);
        if offered.outcome == Enqueued::Overflow {
            self.overflow(session);
        }
        offered
    }

    /// Ends the session after `delay` unless the client reattaches first (`generation`).
    pub fn schedule_expiry(
        self: &Arc<Self>,
        session: Arc<Session>,
        generation: u64,
        delay: Duration,
    ) {
        self.after(delay, move |broker| {
            let expired = {
                let state = session.lock();
                state.attached.is_none() && state.generation == generation && !state.ended
            };
            if expired {
                broker.end_session(&session);
                broker
                    .hooks
                    .emit(LifecycleEvent::SessionExpired { client_id: session.client_id.clone() });
            }
        });
    }

    /// Publishes a will after `delay` unless the client reattaches first (`generation`). A
    /// delayed will of a stored session is stored too, so it survives a restart.
    pub fn schedule_will(
        self: &Arc<Self>,
        will: Arc<Message>,
        session: Arc<Session>,
        generation: u64,
        delay: Duration,
    ) {
        if delay.is_zero() {
            self.publish_will(&will);
            // The will a cluster stored at CONNECT is spent.
            self.forget_connect_will(&session.client_id);
            return;
        }
        let stored = {
            let mut state = session.lock();
            state.will_pending = true;
            state.stored && !state.ended
        };
        if stored {
            let at = crate::store::record::now_ms() + delay.as_millis() as u64;
            let header = crate::store::WillRecord { publish_at_ms: at };
            self.journal_append(|| {
                let bytes: Arc<[u8]> =
                    crate::store::record::encode_with_message(&header, will.record()).into();
                Op::PutWill(session.client_id.clone(), bytes)
            });
        }
        self.after(delay, move |broker| {
            let resumed = {
                let mut state = session.lock();
                let resumed = state.generation != generation && !state.ended;
                if !resumed {
                    state.will_pending = false;
                }
                resumed
            };
            if !resumed {
                broker.publish_will(&will);
                if stored {
                    broker.journal_append(|| Op::DeleteWill(session.client_id.clone()));
                }
            }
        });
    }

    /// Runs `then` after `delay` on a tracked task, unless the broker shuts down first.
    fn after(self: &Arc<Self>, delay: Duration, then: impl FnOnce(&Broker) + Send + 'static) {
        let broker = self.clone();
        self.tasks.spawn(async move {
            if broker.shutdown.run_until_cancelled(tokio::time::sleep(delay)).await.is_some() {
                then(&broker);
            }
        });
    }

    fn publish_will(&self, will: &Arc<Message>) {
        if will.retain {
            self.retain(will);
        }
        self.publish(will);
    }

    /// Publishes a will now (a recovered will whose delay passed while the broker was down).
    pub(crate) fn publish_will_now(&self, will: &Arc<Message>) {
        self.publish_will(will);
    }

    /// Merges overlapping non-shared targets of one session, then enqueues.
    /// `may_overlap` is false when the targets came from a single filter's direct
    /// subscribers (each session at most once): the sort that brings a session's targets
    /// together is then skipped, which for a fan-out to a thousand subscribers is most of the
    /// cost of this function.
    /// Sessions that overflow under the `end-session` policy are returned rather than ended
    /// here, because the caller holds the subscription tree's read lock and ending a session
    /// takes its write lock.
    fn deliver(
        &self,
        message: &Arc<Message>,
        mut targets: Vec<Target<'_>>,
        may_overlap: bool,
    ) -> Delivered {
        let mut last = None;
        let mut congested = Vec::new();
        let mut overflowed = Vec::new();
        if may_overlap && targets.len() > 1 {
            targets.sort_unstable_by_key(|t| (t.shared.is_some(), Arc::as_ptr(t.session) as usize));
        }
        let mut iter = targets.into_iter().peekable();
        while let Some(mut target) = iter.next() {
            let mut ids: Vec<u32> = target.identifier.into_iter().collect();
            if target.shared.is_none() {
                while let Some(next) =
                    iter.next_if(|n| n.shared.is_none() && Arc::ptr_eq(n.session, target.session))
                {
                    target.qos = target.qos.max(next.qos);
                    target.retain |= next.retain;
                    ids.extend(next.identifier);
                }
            }
            let delivery = Delivery {
                message: message.clone(),
                qos: target.qos,
                retain: target.retain,
                subscription_ids: ids.into_boxed_slice(),
                shared: target.shared,
                seq: 0,
                elidable: None,
            };
            let next_seq = || self.next_seq.fetch_add(1, Ordering::Relaxed);
            let offered =
                target.session.enqueue(delivery, &self.config, self.journal.as_deref(), next_seq);
            last = last.max(offered.ticket);
            if offered.outcome == Enqueued::Overflow {
                overflowed.push(target.session.clone());
            }
            if offered.congested {
                congested.push(target.session.clone());
            }
        }
        Delivered { ticket: last, congested, overflowed }
    }

    /// The `end-session` queue policy: kick the client with 0x97 and discard the session.
    fn overflow(&self, session: &Arc<Session>) {
        // A kicked connection counts its own drop when it ends; an offline session is counted
        // here.
        if !session.kick(ReasonCode::QuotaExceeded) {
            crate::telemetry::catalogue::dropped_session(ReasonCode::QuotaExceeded);
        }
        self.end_session(session);
    }
}

/// Splits a subscribed filter into its shared group (if any) and the filter the tree stores.
fn split(filter: &str) -> (Option<&str>, &str) {
    match topic::split_shared(filter) {
        Ok(Some((group, inner))) => (Some(group), inner),
        _ => (None, filter),
    }
}
