use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use sinks::{CloudEvent, Data};

use super::*;
use crate::config::Config;
use crate::store::{Storage, StoreConfig};

const TOKEN: &str = "unit-admin-token-0123456789";

/// A config with the management API on (so topics can be made at run time) and one declared
/// topic with one declared subscription.
fn config() -> Config {
    Config::parse(&format!(
        "[management]\nadmin_token = \"{TOKEN}\"\n[topics.declared]\n\
         [topics.declared.eventSubscriptions.kept]\ndeliveryMode = \"Queue\"\n"
    ))
    .expect("config")
}

fn build(journal: Option<Arc<crate::store::Journal>>) -> Arc<Router> {
    let config = config();
    let plan = config.routing_section().plan().expect("plan");
    Router::build(&config.namespace, plan, journal, &[]).expect("build").expect("router")
}

fn queue(lock_seconds: u64) -> Value {
    json!({"deliveryConfiguration": {"deliveryMode": "Queue",
        "queue": {"receiveLockDurationInSeconds": lock_seconds}}})
}

fn event(id: &str) -> CloudEvent {
    CloudEvent {
        id: id.into(),
        source: "unit".into(),
        ty: "order.created".into(),
        subject: None,
        time: None,
        datacontenttype: None,
        dataschema: None,
        extensions: BTreeMap::new(),
        data: Data::None,
    }
}

#[tokio::test]
async fn a_change_from_another_node_applies_as_the_same_local_change_would() {
    let router = build(None);
    assert!(router.apply_replicated(TOPICS, "orders", Some(json!({}))).await.expect("topic"));
    assert!(router.has_topic("orders"));
    let changed = router.apply_replicated(SUBSCRIPTIONS, "orders/pull", Some(queue(60))).await;
    assert!(changed.expect("subscription"));
    let first = router.queue("orders", "pull").expect("the queue exists");
    assert_eq!(router.subscription("orders", "pull"), {
        let other = build(None);
        other.put_topic("orders", json!({})).await.expect("topic");
        other.put_subscription("orders", "pull", queue(60)).await.expect("subscription");
        other.subscription("orders", "pull")
    });

    // The same value again (this node's own change, coming back) changes nothing.
    let again = router.apply_replicated(SUBSCRIPTIONS, "orders/pull", Some(queue(60))).await;
    assert!(!again.expect("unchanged"));
    assert!(Arc::ptr_eq(&first, &router.queue("orders", "pull").expect("queue")));

    // A changed subscription gets a successor, and what waited moves over to it.
    router.publish_events("orders", vec![event("e1"), event("e2")]).expect("published");
    assert_eq!(first.waiting(), 2);
    let changed = router.apply_replicated(SUBSCRIPTIONS, "orders/pull", Some(queue(120))).await;
    assert!(changed.expect("changed"));
    let second = router.queue("orders", "pull").expect("queue");
    assert!(!Arc::ptr_eq(&first, &second), "a new queue under the same key");
    assert_eq!(second.waiting(), 2, "the waiting events moved over");
    let received = second.receive(10, Duration::from_millis(100)).await;
    assert_eq!(received.len(), 2);

    // Deletes: the subscription, then the topic; a delete of what is gone changes nothing.
    let deleted = router.apply_replicated(SUBSCRIPTIONS, "orders/pull", None).await;
    assert!(deleted.expect("deleted"));
    assert!(router.queue("orders", "pull").is_none());
    assert!(router.apply_replicated(TOPICS, "orders", None).await.expect("deleted"));
    assert!(!router.has_topic("orders"));
    assert!(!router.apply_replicated(TOPICS, "orders", None).await.expect("nothing to delete"));
}

#[tokio::test]
async fn a_topic_deleted_elsewhere_takes_its_subscriptions_along() {
    let router = build(None);
    router.apply_replicated(TOPICS, "orders", Some(json!({}))).await.expect("topic");
    router.apply_replicated(SUBSCRIPTIONS, "orders/pull", Some(queue(60))).await.expect("sub");
    assert!(router.apply_replicated(TOPICS, "orders", None).await.expect("deleted"));
    assert!(router.queue("orders", "pull").is_none());
    assert_eq!(router.subscription_names("orders"), None);
}

#[tokio::test]
async fn names_the_config_declares_stay_the_configs() {
    let router = build(None);
    let before = router.topic("declared").expect("declared topic");
    let kept = router.queue("declared", "kept").expect("declared queue");
    let retention = json!({"eventRetentionInDays": 3});
    let refused = router.apply_replicated(TOPICS, "declared", Some(retention)).await;
    assert_eq!(refused, Err(TopicsError::Declared("declared".into())));
    let refused = router.apply_replicated(TOPICS, "declared", None).await;
    assert_eq!(refused, Err(TopicsError::Declared("declared".into())));
    let refused = router.apply_replicated(SUBSCRIPTIONS, "declared/kept", Some(queue(120))).await;
    assert_eq!(refused, Err(TopicsError::Declared("declared/kept".into())));
    assert_eq!(router.topic("declared"), Some(before));
    assert!(Arc::ptr_eq(&kept, &router.queue("declared", "kept").expect("queue")));
    // A subscription the config does not declare, of a declared topic, is the API's.
    let added = router.apply_replicated(SUBSCRIPTIONS, "declared/extra", Some(queue(60))).await;
    assert!(added.expect("added"));
}

#[tokio::test]
async fn a_change_this_node_cannot_apply_is_refused_and_changes_nothing() {
    let router = build(None);
    let orphan = router.apply_replicated(SUBSCRIPTIONS, "nowhere/pull", Some(queue(60))).await;
    assert_eq!(orphan, Err(TopicsError::NotFound("topics/nowhere".into())));
    router.apply_replicated(TOPICS, "orders", Some(json!({}))).await.expect("topic");
    let hook = json!({"destination": {"endpointType": "WebHook", "endpointUrl": "not a url"}});
    let refused = router.apply_replicated(SUBSCRIPTIONS, "orders/hook", Some(hook)).await;
    assert!(matches!(refused, Err(TopicsError::Invalid { .. })), "{refused:?}");
    assert_eq!(router.subscription_names("orders"), Some(vec![]));
}

#[tokio::test]
async fn a_change_from_another_node_is_not_stored_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig { data_dir: dir.path().to_path_buf(), ..StoreConfig::default() };
    let storage = Storage::open(&config).expect("store");
    let router = build(storage.journal());
    router.put_topic("local", json!({})).await.expect("local topic");
    router.apply_replicated(TOPICS, "remote", Some(json!({}))).await.expect("remote topic");
    assert!(router.has_topic("remote"));
    drop(router);
    storage.close().await;

    let mut storage = Storage::open(&config).expect("store");
    let snapshot = storage.take_snapshot().expect("snapshot");
    let names: Vec<(&str, &str)> =
        snapshot.resources.iter().map(|(kind, name, _)| (kind.as_str(), name.as_str())).collect();
    assert_eq!(names, [(TOPICS, "local")]);
    storage.close().await;
}
