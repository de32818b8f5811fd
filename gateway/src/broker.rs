//! The broker: sessions, the subscription tree, retained messages and fan-out.
//!
//! Connection tasks call into one shared `Broker`. The publish path takes the subscription
//! tree's read lock (publishes never wait for one another, only for a SUBSCRIBE being applied),
//! collects the matching sessions, and pushes a `Delivery` into each session's own queue under
//! that session's lock. No global lock is held while a session is locked for enqueueing.
//!
//! Invariant: a session in the registry is not ended; a session in the subscription tree is
//! in the registry, except briefly while `end_session` removes it from both.

pub mod config;
pub mod message;
pub mod retained_index;
pub mod session;
pub mod subscriptions;
pub mod topic_tree;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::config::MqttConfig;
use self::message::{Delivery, Message, SharedKey};
use self::retained_index::RetainedIndex;
use self::session::{Enqueued, Session, Subscription};
use self::subscriptions::{FilterSubscribers, Subscriber};
use self::topic_tree::TopicTree;
use crate::hooks::{Hooks, LifecycleEvent};
use crate::mqtt::{QoS, ReasonCode, topic};

/// The state every connection shares.
pub struct Broker {
    pub config: MqttConfig,
    pub hooks: Hooks,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    subscriptions: RwLock<TopicTree<FilterSubscribers>>,
    retained: RwLock<RetainedIndex<Arc<Message>>>,
    next_id: AtomicU64,
    /// Cancelled when the server shuts down; timers and connections watch it.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks and timers, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

/// One matching subscription found during fan-out, before overlapping ones are merged.
struct Target {
    session: Arc<Session>,
    qos: QoS,
    retain: bool,
    identifier: Option<u32>,
    shared: Option<Arc<SharedKey>>,
}

impl Broker {
    pub fn new(config: MqttConfig, hooks: Hooks) -> Arc<Broker> {
        Arc::new(Broker {
            config,
            hooks,
            sessions: Mutex::new(HashMap::new()),
            subscriptions: RwLock::new(TopicTree::new()),
            retained: RwLock::new(RetainedIndex::new()),
            next_id: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
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

    /// The number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Fans `message` out to every matching subscription; returns how many sessions it was
    /// offered to. Overlapping subscriptions of one session yield one delivery at the highest
    /// granted QoS carrying every matching subscription identifier.
    pub fn publish(&self, message: &Arc<Message>) -> usize {
        let mut targets = Vec::new();
        self.subscriptions.read().for_each_match(&message.topic, |filter, subscribers| {
            for s in &subscribers.direct {
                if s.options.no_local && s.session.id == message.publisher {
                    continue;
                }
                targets.push(Target {
                    session: s.session.clone(),
                    qos: s.options.qos.min(message.qos),
                    retain: s.options.retain_as_published && message.retain,
                    identifier: s.identifier,
                    shared: None,
                });
            }
            for group in &subscribers.shared {
                if let Some(s) = group.pick(None) {
                    targets.push(Target {
                        session: s.session.clone(),
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
        let count = targets.len();
        self.deliver(message, targets);
        count
    }

    /// Sets, replaces or (empty payload) clears the retained message of its topic.
    pub fn retain(&self, message: &Arc<Message>) {
        let mut retained = self.retained.write();
        if message.payload.is_empty() {
            retained.remove(&message.topic);
        } else {
            retained.insert(&message.topic, message.clone());
        }
    }

    /// The unexpired retained messages matching `filter`.
    pub fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let now = tokio::time::Instant::now();
        let mut found = Vec::new();
        self.retained.read().for_each_matching(filter, |_, message| {
            if !message.is_expired(now) {
                found.push(message.clone());
            }
        });
        found
    }

    /// Drops retained messages whose expiry has passed.
    pub fn purge_expired_retained(&self) {
        let now = tokio::time::Instant::now();
        self.retained.write().retain(|_, message| !message.is_expired(now));
    }

    /// Adds or replaces `session`'s subscription to `filter`; returns whether the session
    /// already had it.
    pub fn subscribe(&self, session: &Arc<Session>, filter: &str, subscription: Subscription) -> bool {
        let (group, inner) = split(filter);
        let subscriber = Subscriber {
            session: session.clone(),
            options: subscription.options,
            identifier: subscription.identifier,
        };
        let existed = self.subscriptions.write().entry(inner).insert(group, subscriber);
        session.lock().subscriptions.insert(filter.to_string(), subscription);
        existed
    }

    /// Removes `session`'s subscription to `filter`; returns whether it existed.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        let known = session.lock().subscriptions.remove(filter).is_some();
        let (group, inner) = split(filter);
        let mut tree = self.subscriptions.write();
        let removed = tree.get_mut(inner).is_some_and(|subs| subs.remove(group, session.id));
        tree.remove_if(inner, FilterSubscribers::is_empty);
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
            let filters: Vec<String> = state.subscriptions.drain().map(|(f, _)| f).collect();
            let shared = state.take_shared();
            state.queue.clear();
            state.queued_bytes = 0;
            state.inflight.clear();
            state.inbound_qos2.clear();
            (filters, shared)
        };
        {
            let mut tree = self.subscriptions.write();
            for filter in &filters {
                let (group, inner) = split(filter);
                if let Some(subscribers) = tree.get_mut(inner) {
                    subscribers.remove(group, session.id);
                }
                tree.remove_if(inner, FilterSubscribers::is_empty);
            }
        }
        {
            let mut sessions = self.sessions.lock();
            if sessions.get(&session.client_id).is_some_and(|s| Arc::ptr_eq(s, session)) {
                sessions.remove(&session.client_id);
            }
        }
        self.redistribute(shared, session.id);
    }

    /// Hands deliveries that a leaving member of a shared subscription did not finish to
    /// another member of the same group. With no other member they are dropped, counted.
    pub fn redistribute(&self, deliveries: Vec<Delivery>, leaving: u64) {
        for delivery in deliveries {
            let Some(key) = delivery.shared.clone() else { continue };
            let target = {
                let tree = self.subscriptions.read();
                tree.get(&key.filter)
                    .and_then(|subs| subs.shared.iter().find(|g| g.name == key.group))
                    .and_then(|group| group.pick(Some(leaving)))
                    .map(|s| (s.session.clone(), s.options.qos, s.identifier))
            };
            match target {
                Some((session, granted, identifier)) => {
                    let redelivery = Delivery {
                        qos: granted.min(delivery.message.qos),
                        subscription_ids: identifier.into_iter().collect(),
                        ..delivery
                    };
                    self.offer(&session, redelivery);
                }
                None => {
                    metrics::counter!("gridmq_shared_messages_dropped_total").increment(1);
                }
            }
        }
    }

    /// Offers a delivery to one session, ending the session if its queue overflows under the
    /// `end-session` policy.
    pub fn offer(&self, session: &Arc<Session>, delivery: Delivery) {
        if session.enqueue(delivery, &self.config) == Enqueued::Overflow {
            self.overflow(session);
        }
    }

    /// Ends the session after `delay` unless the client reattaches first (`generation`).
    pub fn schedule_expiry(self: &Arc<Self>, session: Arc<Session>, generation: u64, delay: Duration) {
        let broker = self.clone();
        let token = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = token.cancelled() => return,
            }
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

    /// Publishes a will after `delay` unless the client reattaches first (`generation`).
    pub fn schedule_will(
        self: &Arc<Self>,
        will: Arc<Message>,
        session: Arc<Session>,
        generation: u64,
        delay: Duration,
    ) {
        if delay.is_zero() {
            self.publish_will(&will);
            return;
        }
        let broker = self.clone();
        let token = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = token.cancelled() => return,
            }
            let resumed = {
                let state = session.lock();
                state.generation != generation && !state.ended
            };
            if !resumed {
                broker.publish_will(&will);
            }
        });
    }

    fn publish_will(&self, will: &Arc<Message>) {
        if will.retain {
            self.retain(will);
        }
        self.publish(will);
    }

    /// Merges overlapping non-shared targets of one session, then enqueues.
    fn deliver(&self, message: &Arc<Message>, mut targets: Vec<Target>) {
        if targets.len() > 1 {
            targets.sort_by_key(|t| (t.shared.is_some(), Arc::as_ptr(&t.session) as usize));
        }
        let mut iter = targets.into_iter().peekable();
        while let Some(mut target) = iter.next() {
            let mut ids: Vec<u32> = target.identifier.into_iter().collect();
            if target.shared.is_none() {
                while let Some(next) =
                    iter.next_if(|n| n.shared.is_none() && Arc::ptr_eq(&n.session, &target.session))
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
                subscription_ids: ids,
                shared: target.shared,
            };
            self.offer(&target.session, delivery);
        }
    }

    /// The `end-session` queue policy: kick the client with 0x97 and discard the session.
    fn overflow(&self, session: &Arc<Session>) {
        metrics::counter!("gridmq_session_overflows_total").increment(1);
        let kick = session.lock().attached.as_ref().map(|a| a.kick.clone());
        if let Some(kick) = kick {
            let _ = kick.try_send(ReasonCode::QuotaExceeded);
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
