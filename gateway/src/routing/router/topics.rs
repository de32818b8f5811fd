//! Namespace topics and event subscriptions created, changed and deleted at run time (the
//! management API's `topics` and `topics/{t}/eventSubscriptions`).
//!
//! # Durability and ownership
//! As for the namespace's other resources (`crate::namespace`): a change is stored in the
//! journal (`PutResource`/`DeleteResource`, kinds `topics` and `eventSubscriptions`, the latter
//! named `topic/subscription`) and durable before it is answered, and the config file owns the
//! names it declares (409 for those). At start-up the stored topics and subscriptions are added
//! to the declared ones before the routing buffer is recovered, so their events are kept.
//!
//! # Applying a change
//! A change builds a new [`Topology`] and swaps it in. A changed subscription gets a new
//! dispatcher (or queue) under the same key, and the old one is retired into it: waiting
//! deliveries move over with their attempt counts, requests in flight finish and hand on what
//! they did not deliver, locked queue events become available again. A deleted subscription's
//! events and dead letters are dropped; a deleted topic's subscriptions with it. A topic whose
//! retention changes re-plans its subscriptions. A subscription's delivery mode cannot change
//! (as in Event Grid): delete it and create it again.
//!
//! # Changes from other nodes
//! In cluster mode the journal's resources are the cluster's `resources` bucket, which every
//! node watches (`cluster/resources.rs`). A change another node made comes here through
//! [`Router::apply_replicated`]: the same checks and the same swap and retire as a change
//! through this node's management API, but not stored again (it is stored already). A change
//! equal to what this node has (its own change coming back) changes nothing, and the names this
//! node's config declares stay the config's.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::{BuildError, Router, SYSTEM_TOPIC, Subscriber, Topology};
use crate::routing::config::{SubscriptionConfig, TopicConfig, TopicPlan};
use crate::store::Op;

/// The store's kind of a run-time namespace topic.
pub const TOPICS: &str = "topics";
/// The store's kind of a run-time event subscription, named `topic/subscription`.
pub const SUBSCRIPTIONS: &str = "eventSubscriptions";

/// Whether a stored resource kind belongs to the router.
pub fn is_topic_kind(kind: &str) -> bool {
    topic_kind(kind).is_some()
}

/// The router's kind spelled `kind` ([`TOPICS`] or [`SUBSCRIPTIONS`]), if it is one.
pub fn topic_kind(kind: &str) -> Option<&'static str> {
    [TOPICS, SUBSCRIPTIONS].into_iter().find(|known| *known == kind)
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicsError {
    #[error("{0} not found")]
    NotFound(String),
    /// The field path is relative to the request body (`properties.…`, or `name`).
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error("{0} is declared in the config file; change it there")]
    Declared(String),
}

impl From<crate::routing::config::RoutingConfigError> for TopicsError {
    fn from(error: crate::routing::config::RoutingConfigError) -> TopicsError {
        TopicsError::Invalid { field: error.field, problem: error.problem }
    }
}

/// Where a change comes from: this node's management API, stored before it is answered, or
/// another node's, read from the cluster's store, where it already is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    Cluster,
}

fn invalid(field: &str, problem: impl Into<String>) -> TopicsError {
    TopicsError::Invalid { field: field.into(), problem: problem.into() }
}

/// Adds the stored topics and subscriptions to `definitions`, planned, skipping names the
/// config declares. The error names the stored resource and the field.
pub(super) fn merge_stored(
    definitions: &mut BTreeMap<String, TopicPlan>,
    raw: &mut std::collections::HashMap<String, Value>,
    declared: &std::collections::HashSet<String>,
    stored: &[(String, String, Vec<u8>)],
) -> Result<(), BuildError> {
    let mut subscriptions = Vec::new();
    for (kind, name, body) in stored {
        if !is_topic_kind(kind) {
            continue;
        }
        if declared.contains(name) {
            tracing::warn!(%kind, %name, "The config declares this resource: the stored one is ignored.");
            continue;
        }
        if kind == TOPICS {
            let topic = parse_topic(body)
                .map_err(|error| BuildError::StoredTopic { name: name.clone(), error })?;
            definitions.insert(name.clone(), topic.plan(&format!("store: topics.{name}"))?);
            raw.insert(name.clone(), serde_json::from_slice(body).unwrap_or(Value::Null));
        } else {
            subscriptions.push((name, body));
        }
    }
    for (name, body) in subscriptions {
        let Some((topic, sub)) = name.split_once('/') else { continue };
        let config: SubscriptionConfig = serde_json::from_slice(body)
            .map_err(|error| BuildError::StoredSubscription { name: name.clone(), error })?;
        let Some(definition) = definitions.get_mut(topic) else {
            tracing::warn!(%name, "A stored event subscription's topic is gone; it is ignored.");
            continue;
        };
        let path = match declared.contains(topic) {
            true => format!("topics.{topic}.eventSubscriptions.{sub}"),
            false => format!("store: topics.{topic}.eventSubscriptions.{sub}"),
        };
        let plan = config.plan(&path, sub, definition.config.retention())?;
        definition.config.event_subscriptions.insert(sub.to_string(), config);
        definition.subscriptions.insert(sub.to_string(), plan);
        raw.insert(name.clone(), serde_json::from_slice(body).unwrap_or(Value::Null));
    }
    Ok(())
}

/// A stored or requested topic body; its subscriptions are separate resources.
fn parse_topic(body: &[u8]) -> Result<TopicConfig, TopicsError> {
    let properties: Value =
        serde_json::from_slice(body).map_err(|e| invalid("properties", e.to_string()))?;
    topic_of(properties)
}

fn topic_of(properties: Value) -> Result<TopicConfig, TopicsError> {
    let topic: TopicConfig = serde_path_to_error::deserialize(properties).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "properties".into() } else { format!("properties.{path}") };
        TopicsError::Invalid { field, problem: error.into_inner().to_string() }
    })?;
    if !topic.event_subscriptions.is_empty() {
        return Err(invalid(
            "properties.eventSubscriptions",
            "create event subscriptions as topics/{topic}/eventSubscriptions/{name}",
        ));
    }
    topic.validate("properties")?;
    Ok(topic)
}

fn subscription_of(properties: Value) -> Result<SubscriptionConfig, TopicsError> {
    serde_path_to_error::deserialize(properties).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "properties".into() } else { format!("properties.{path}") };
        TopicsError::Invalid { field, problem: error.into_inner().to_string() }
    })
}

impl Router {
    /// The namespace topics' names, in order.
    pub fn topic_names(&self) -> Vec<String> {
        self.topology().definitions.keys().cloned().collect()
    }

    /// A namespace topic's properties in ARM shape.
    pub fn topic(&self, name: &str) -> Option<Value> {
        self.topology().definitions.get(name).map(|topic| topic.config.to_arm())
    }

    /// The names of `topic`'s subscriptions; `None` without such a topic.
    pub fn subscription_names(&self, topic: &str) -> Option<Vec<String>> {
        let topology = self.topology();
        Some(topology.definitions.get(topic)?.subscriptions.keys().cloned().collect())
    }

    /// An event subscription's properties in ARM shape.
    pub fn subscription(&self, topic: &str, name: &str) -> Option<Value> {
        let topology = self.topology();
        let plan = topology.definitions.get(topic)?.subscriptions.get(name)?;
        Some(crate::routing::arm::to_arm(plan))
    }

    /// Creates or changes a namespace topic; returns whether it existed.
    pub async fn put_topic(&self, name: &str, properties: Value) -> Result<bool, TopicsError> {
        let _serial = self.changes.lock().await;
        self.put_topic_serialized(name, properties, Origin::Local).await
    }

    /// Changes a namespace topic by a JSON merge patch (RFC 7386) of the properties it was
    /// created with, as ARM's PATCH does.
    pub async fn patch_topic(&self, name: &str, patch: Value) -> Result<(), TopicsError> {
        let _serial = self.changes.lock().await;
        self.check_not_declared(name)?;
        let Some(mut properties) = self.topology().raw.get(name).cloned() else {
            return Err(TopicsError::NotFound(format!("topics/{name}")));
        };
        merge_patch(&mut properties, patch);
        self.put_topic_serialized(name, properties, Origin::Local).await.map(|_| ())
    }

    async fn put_topic_serialized(
        &self,
        name: &str,
        properties: Value,
        origin: Origin,
    ) -> Result<bool, TopicsError> {
        check_name(name)?;
        self.check_not_declared(name)?;
        let mut topic = topic_of(properties.clone())?;
        let current = self.topology();
        let existing = current.definitions.get(name);
        let mut next = Topology::clone(&current);
        let mut replaced = Vec::new();
        if let Some(existing) = existing {
            topic.event_subscriptions = existing.config.event_subscriptions.clone();
            next.topics.remove(name);
            for sub in topic.event_subscriptions.keys() {
                if let Some(old) = next.dispatchers.remove(format!("{name}/{sub}").as_str()) {
                    replaced.push(old);
                }
            }
        }
        // The topic's own fields were checked above, so what fails here is an existing
        // subscription under the new retention.
        let existing_subscription = |e: crate::routing::config::RoutingConfigError| {
            invalid(
                &e.field,
                format!("{} (with this topic's retention, an existing subscription)", e.problem),
            )
        };
        let topic = topic.plan("properties").map_err(existing_subscription)?;
        self.parts
            .add_topic(&mut next, name, &topic.subscriptions)
            .map_err(existing_subscription)?;
        next.definitions.insert(name.to_string(), topic);
        let body = json_bytes(&properties);
        next.raw.insert(name.to_string(), properties);
        if origin == Origin::Local {
            self.store(Op::PutResource(TOPICS.into(), name.into(), body)).await;
        }
        self.swap(next, replaced);
        tracing::info!(topic = %name, "Namespace topic changed.");
        Ok(existing.is_some())
    }

    /// Deletes a namespace topic and its subscriptions; returns whether it existed.
    pub async fn delete_topic(&self, name: &str) -> Result<bool, TopicsError> {
        let _serial = self.changes.lock().await;
        self.delete_topic_serialized(name, Origin::Local).await
    }

    async fn delete_topic_serialized(
        &self,
        name: &str,
        origin: Origin,
    ) -> Result<bool, TopicsError> {
        check_name(name)?;
        self.check_not_declared(name)?;
        let current = self.topology();
        let Some(definition) = current.definitions.get(name) else { return Ok(false) };
        let mut next = Topology::clone(&current);
        next.definitions.remove(name);
        next.topics.remove(name);
        next.raw.remove(name);
        let mut removed = Vec::new();
        for sub in definition.subscriptions.keys() {
            let key = format!("{name}/{sub}");
            if let Some(old) = next.dispatchers.remove(key.as_str()) {
                removed.push(old);
            }
            next.raw.remove(&key);
            if origin == Origin::Local {
                self.store(Op::DeleteResource(SUBSCRIPTIONS.into(), key.into())).await;
            }
        }
        if origin == Origin::Local {
            self.store(Op::DeleteResource(TOPICS.into(), name.into())).await;
        }
        *self.topology.write() = Arc::new(next);
        for old in removed {
            self.dead_letters.take(old.key(), None);
            old.retire(None);
            if origin == Origin::Local {
                self.forget_shared(name, old.name()).await;
            }
        }
        tracing::info!(topic = %name, "Namespace topic deleted.");
        Ok(true)
    }

    /// Creates or changes an event subscription of `topic`; returns whether it existed.
    pub async fn put_subscription(
        &self,
        topic: &str,
        name: &str,
        properties: Value,
    ) -> Result<bool, TopicsError> {
        let _serial = self.changes.lock().await;
        self.put_subscription_serialized(topic, name, properties, Origin::Local).await
    }

    /// Changes an event subscription by a JSON merge patch (RFC 7386) of the properties it was
    /// created with, as ARM's PATCH does.
    pub async fn patch_subscription(
        &self,
        topic: &str,
        name: &str,
        patch: Value,
    ) -> Result<(), TopicsError> {
        let _serial = self.changes.lock().await;
        let key = format!("{topic}/{name}");
        self.check_not_declared(&key)?;
        let Some(mut properties) = self.topology().raw.get(&key).cloned() else {
            return Err(TopicsError::NotFound(format!("topics/{topic}/eventSubscriptions/{name}")));
        };
        merge_patch(&mut properties, patch);
        self.put_subscription_serialized(topic, name, properties, Origin::Local).await.map(|_| ())
    }

    async fn put_subscription_serialized(
        &self,
        topic: &str,
        name: &str,
        properties: Value,
        origin: Origin,
    ) -> Result<bool, TopicsError> {
        check_name(name)?;
        let key = format!("{topic}/{name}");
        self.check_not_declared(&key)?;
        let current = self.topology();
        let Some(definition) = current.definitions.get(topic) else {
            return Err(TopicsError::NotFound(format!("topics/{topic}")));
        };
        let config = subscription_of(properties.clone())?;
        let plan = config.plan("properties", name, definition.config.retention())?;
        let subscriber = self.parts.subscriber(topic, name, &plan)?;
        let old = current.dispatchers.get(key.as_str()).cloned();
        if let Some(old) = &old
            && matches!(old, Subscriber::Push(_)) != matches!(subscriber, Subscriber::Push(_))
        {
            return Err(invalid(
                "properties.deliveryConfiguration.deliveryMode",
                "the delivery mode of an event subscription cannot change; delete it and \
                 create it again",
            ));
        }
        let mut next = Topology::clone(&current);
        if let Some(definition) = next.definitions.get_mut(topic) {
            definition.config.event_subscriptions.insert(name.to_string(), config);
            definition.subscriptions.insert(name.to_string(), plan);
        }
        let list = next.topics.entry(topic.into()).or_default();
        list.retain(|s| s.key().as_ref() != key);
        list.push(subscriber.clone());
        next.dispatchers.insert(subscriber.key().clone(), subscriber);
        let body = json_bytes(&properties);
        next.raw.insert(key.clone(), properties);
        if origin == Origin::Local {
            self.store(Op::PutResource(SUBSCRIPTIONS.into(), key.as_str().into(), body)).await;
        }
        let existed = old.is_some();
        self.swap(next, old.into_iter().collect());
        tracing::info!(subscription = %key, "Event subscription changed.");
        Ok(existed)
    }

    /// Deletes an event subscription; returns whether it existed.
    pub async fn delete_subscription(&self, topic: &str, name: &str) -> Result<bool, TopicsError> {
        let _serial = self.changes.lock().await;
        self.delete_subscription_serialized(topic, name, Origin::Local).await
    }

    async fn delete_subscription_serialized(
        &self,
        topic: &str,
        name: &str,
        origin: Origin,
    ) -> Result<bool, TopicsError> {
        let key = format!("{topic}/{name}");
        self.check_not_declared(&key)?;
        let current = self.topology();
        if !current.definitions.contains_key(topic) {
            return Err(TopicsError::NotFound(format!("topics/{topic}")));
        }
        let Some(old) = current.dispatchers.get(key.as_str()).cloned() else { return Ok(false) };
        let mut next = Topology::clone(&current);
        if let Some(definition) = next.definitions.get_mut(topic) {
            definition.config.event_subscriptions.remove(name);
            definition.subscriptions.remove(name);
        }
        if let Some(list) = next.topics.get_mut(topic) {
            list.retain(|s| s.key().as_ref() != key);
        }
        next.dispatchers.remove(key.as_str());
        next.raw.remove(&key);
        if origin == Origin::Local {
            self.store(Op::DeleteResource(SUBSCRIPTIONS.into(), key.as_str().into())).await;
        }
        *self.topology.write() = Arc::new(next);
        self.dead_letters.take(old.key(), None);
        old.retire(None);
        if origin == Origin::Local {
            self.forget_shared(topic, name).await;
        }
        tracing::info!(subscription = %key, "Event subscription deleted.");
        Ok(true)
    }

    /// In cluster mode, a subscription deleted through this node leaves the cluster's routing
    /// log with its waiting events and its dead letters. Only the node that made the change does
    /// this: another node applying it late must not purge a subscription created again since
    /// under the same name.
    async fn forget_shared(&self, topic: &str, name: &str) {
        let Some(shared) = self.buffer.shared_log() else { return };
        if let Err(error) = shared.remove(topic, name).await {
            tracing::warn!(topic, subscription = name, %error, "Cannot remove a deleted subscription's events from the cluster.");
        }
        if let Err(error) = shared.delete_dead_letters(topic, name, None).await {
            tracing::warn!(topic, subscription = name, %error, "Cannot remove a deleted subscription's dead letters from the cluster.");
        }
    }

    /// Applies a change another node made to topic or subscription `name` (kind [`TOPICS`] or
    /// [`SUBSCRIPTIONS`], the latter named `topic/subscription`): a put of `properties` as that
    /// node's management API was given them, or a delete (`None`). Returns whether anything
    /// changed: a change equal to what this node has (its own, coming back) changes nothing.
    /// Refused as the same change through this node's API would be, and with
    /// [`TopicsError::Declared`] for a name this node's config declares.
    pub async fn apply_replicated(
        &self,
        kind: &str,
        name: &str,
        properties: Option<Value>,
    ) -> Result<bool, TopicsError> {
        let _serial = self.changes.lock().await;
        self.check_not_declared(name)?;
        // `raw` holds every topic and subscription the API made, as it was given, and only
        // those: a put equal to it, or a delete of what it does not hold, is already applied.
        if self.topology().raw.get(name) == properties.as_ref() {
            return Ok(false);
        }
        match kind {
            TOPICS => match properties {
                Some(properties) => {
                    self.put_topic_serialized(name, properties, Origin::Cluster).await?;
                    Ok(true)
                }
                None => self.delete_topic_serialized(name, Origin::Cluster).await,
            },
            SUBSCRIPTIONS => {
                let Some((topic, sub)) = name.split_once('/') else {
                    return Err(invalid("name", "is not `topic/subscription`"));
                };
                match properties {
                    Some(properties) => {
                        self.put_subscription_serialized(topic, sub, properties, Origin::Cluster)
                            .await?;
                        Ok(true)
                    }
                    None => self.delete_subscription_serialized(topic, sub, Origin::Cluster).await,
                }
            }
            other => Err(invalid("kind", format!("{other} is not a kind the router owns"))),
        }
    }

    fn check_not_declared(&self, name: &str) -> Result<(), TopicsError> {
        if self.declared.read().contains(name) {
            return Err(TopicsError::Declared(name.to_string()));
        }
        Ok(())
    }

    /// Appends `op` to the journal and waits until it is durable.
    pub(super) async fn store(&self, op: Op) {
        if let Some(journal) = &self.journal {
            let ticket = journal.append(op);
            journal.durable(ticket).await;
        }
    }

    /// Swaps `next` in, retires each of `replaced` into its successor in `next` (or settles
    /// its deliveries when it has none), and starts the new dispatchers.
    pub(super) fn swap(&self, next: Topology, replaced: Vec<Subscriber>) {
        let next = Arc::new(next);
        *self.topology.write() = next.clone();
        for old in replaced {
            let successor = next.dispatchers.get(old.key()).cloned();
            old.retire(successor);
        }
        let Some((tasks, shutdown)) = self.runner.get() else { return };
        for subscriber in next.dispatchers.values() {
            if let Subscriber::Push(dispatcher) = subscriber
                && dispatcher.start_once()
            {
                tasks.spawn(dispatcher.clone().run(tasks.clone(), shutdown.clone()));
            }
        }
    }
}

fn check_name(name: &str) -> Result<(), TopicsError> {
    if name == SYSTEM_TOPIC {
        return Err(invalid("name", "is reserved"));
    }
    crate::access::model::check_resource_name(name).map_err(|p| invalid("name", p))
}

/// Applies a JSON merge patch: objects merge key by key, `null` removes, anything else
/// replaces.
fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(fields) = target {
        for (key, value) in patch {
            if value.is_null() {
                fields.remove(&key);
            } else {
                merge_patch(fields.entry(key).or_insert(Value::Null), value);
            }
        }
    }
}

fn json_bytes(value: &Value) -> Arc<[u8]> {
    value.to_string().into_bytes().into()
}

#[cfg(test)]
mod tests;
