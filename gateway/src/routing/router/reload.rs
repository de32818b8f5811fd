//! A config reload of the router: routes, enrichments, namespace topics and event
//! subscriptions from the file, applied as one swap of the [`Topology`] (see `crate::reload`).
//!
//! Ownership follows the management API's rules (`router/topics.rs`): the file owns the topics
//! and subscriptions (`topic/name`) it declares. A name the new file declares takes the file's
//! definition (a stored copy the management API made is deleted); a name only the old file
//! declared is deleted; topics and subscriptions the management API created under other names
//! stay, as do API-created subscriptions of a topic the file still declares. An API-created
//! subscription of a topic the file no longer declares goes with its topic.
//!
//! An unchanged subscription keeps its dispatcher or queue, with everything in flight. A
//! changed one gets a new one under the same key, and the old one is retired into it, as a
//! management API change does; a removed one's deliveries and dead letters are dropped. The
//! system topic's subscriptions need a restart (`crate::reload` reports them).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::topics::{SUBSCRIPTIONS, TOPICS};
use super::{RouteTable, Router, SYSTEM_TOPIC, Subscriber, Topology};
use crate::routing::config::{RoutingConfigError, RoutingPlan};
#[cfg(test)]
use crate::routing::queue::QueueSubscription;
use crate::store::Op;

/// A validated reload of the router, not applied yet.
pub struct RouterReload {
    next: Topology,
    has_routes: bool,
    declared: HashSet<String>,
    /// Stored topics and subscriptions the reload takes over or removes.
    deletes: Vec<Op>,
}

impl Router {
    /// Waits for changes in progress and keeps others out while the guard lives: a reload
    /// plans and applies under it.
    pub async fn lock_changes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// Plans a reload to the checked routing section `plan`: builds the new topology, with new
    /// dispatchers only for what changed. Nothing changes until [`Router::apply_reload`]. The
    /// error names the field, as at start-up.
    pub fn plan_reload(&self, plan: RoutingPlan) -> Result<RouterReload, RoutingConfigError> {
        let current = self.topology();
        let old_declared = self.declared.read().clone();
        let RoutingPlan { routes, enrichments, topics, .. } = plan;
        let declared = super::declared_names(&topics);
        let mut definitions = topics;
        let mut raw = HashMap::new();
        let mut deletes = Vec::new();
        for (name, definition) in &current.definitions {
            if !old_declared.contains(name) {
                if !declared.contains(name) {
                    // Created through the management API, and still its own.
                    definitions.insert(name.clone(), definition.clone());
                    raw.extend(
                        current
                            .raw
                            .iter()
                            .filter(|(key, _)| {
                                *key == name
                                    || key
                                        .strip_prefix(name.as_str())
                                        .is_some_and(|rest| rest.starts_with('/'))
                            })
                            .map(|(key, value)| (key.clone(), value.clone())),
                    );
                    continue;
                }
                deletes.push(Op::DeleteResource(TOPICS.into(), name.as_str().into()));
            }
            for (sub, sub_config) in &definition.config.event_subscriptions {
                let key = format!("{name}/{sub}");
                if old_declared.contains(&key) {
                    continue;
                }
                if declared.contains(&key) {
                    deletes.push(Op::DeleteResource(SUBSCRIPTIONS.into(), key.as_str().into()));
                    continue;
                }
                match definitions.get_mut(name) {
                    Some(kept) => {
                        // Planned again: the file may have changed the topic's retention.
                        let path = format!("topics.{name}.eventSubscriptions.{sub}");
                        let sub_plan = sub_config.plan(&path, sub, kept.config.retention())?;
                        kept.config.event_subscriptions.insert(sub.clone(), sub_config.clone());
                        kept.subscriptions.insert(sub.clone(), sub_plan);
                        if let Some(value) = current.raw.get(&key) {
                            raw.insert(key, value.clone());
                        }
                    }
                    None => {
                        deletes.push(Op::DeleteResource(SUBSCRIPTIONS.into(), key.as_str().into()))
                    }
                }
            }
        }
        let has_routes = !routes.is_empty();
        let mut next = Topology {
            routes: Arc::new(RouteTable { routes, enrichments }),
            definitions: BTreeMap::new(),
            topics: HashMap::new(),
            dispatchers: BTreeMap::new(),
            raw,
        };
        for (name, topic) in &definitions {
            let retention = topic.config.retention();
            let before =
                current.definitions.get(name).filter(|d| d.config.retention() == retention);
            let entry = next.topics.entry(name.as_str().into()).or_default();
            for (sub, sub_plan) in &topic.subscriptions {
                let key = format!("{name}/{sub}");
                let unchanged = before
                    .and_then(|d| d.config.event_subscriptions.get(sub))
                    .filter(|old| Some(*old) == topic.config.event_subscriptions.get(sub))
                    .and_then(|_| current.dispatchers.get(key.as_str()).cloned());
                let subscriber = match unchanged {
                    Some(subscriber) => subscriber,
                    None => self.parts.subscriber(name, sub, sub_plan)?,
                };
                next.dispatchers.insert(subscriber.key().clone(), subscriber.clone());
                entry.push(subscriber);
            }
        }
        if let Some(system) = current.topics.get(SYSTEM_TOPIC) {
            next.topics.insert(SYSTEM_TOPIC.into(), system.clone());
            for subscriber in system {
                next.dispatchers.insert(subscriber.key().clone(), subscriber.clone());
            }
        }
        next.definitions = definitions;
        Ok(RouterReload { next, has_routes, declared, deletes })
    }

    /// Applies a planned reload: stores what it takes over or removes, swaps the topology in,
    /// hands the deliveries of changed subscriptions to their successors and drops those of
    /// removed ones.
    pub async fn apply_reload(&self, plan: RouterReload) {
        for op in plan.deletes {
            self.store(op).await;
        }
        for (_, topic) in &plan.next.routes.routes {
            if !plan.next.definitions.contains_key(topic.as_ref()) {
                tracing::warn!(topic = %topic, "A route names a namespace topic that does not exist: its events are dropped until the topic is created.");
            }
        }
        let current = self.topology();
        let mut replaced = Vec::new();
        let mut removed = Vec::new();
        for (key, old) in &current.dispatchers {
            match plan.next.dispatchers.get(key) {
                Some(new) if same(new, old) => {}
                Some(_) => replaced.push(old.clone()),
                None => removed.push(old.clone()),
            }
        }
        *self.declared.write() = plan.declared;
        self.swap(plan.next, replaced);
        self.has_routes.store(plan.has_routes, Ordering::Relaxed);
        for old in removed {
            self.dead_letters.take(old.key(), None);
            old.retire(None);
        }
    }
}

/// Whether two subscribers are the same dispatcher or queue.
fn same(a: &Subscriber, b: &Subscriber) -> bool {
    match (a, b) {
        (Subscriber::Push(a), Subscriber::Push(b)) => Arc::ptr_eq(a, b),
        (Subscriber::Queue(a), Subscriber::Queue(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
