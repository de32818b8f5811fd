use serde_json::json;

use super::*;
use crate::config::Config;

const TOKEN: &str = "unit-admin-token-0123456789";

fn config(subscriptions: &str) -> Config {
    Config::parse(&format!(
        "[management]\nadmin_token = \"{TOKEN}\"\n[topics.declared]\n{subscriptions}"
    ))
    .expect("config")
}

fn plan(config: &Config) -> crate::routing::config::RoutingPlan {
    config.routing_section().plan().expect("plan")
}

fn build(config: &Config) -> Result<Option<Arc<Router>>, super::super::BuildError> {
    Router::build(&config.namespace, plan(config), None, &[])
}

const KEPT: &str = "[topics.declared.eventSubscriptions.kept]\ndeliveryMode = \"Queue\"\n";
const CHANGED: &str = "[topics.declared.eventSubscriptions.changed]\ndeliveryMode = \"Queue\"\n";
const CHANGED_NEW: &str = "[topics.declared.eventSubscriptions.changed]\ndeliveryMode = \"Queue\"\n\
                           receiveLockDurationInSeconds = 120\n";
const GONE: &str = "[topics.declared.eventSubscriptions.gone]\ndeliveryMode = \"Queue\"\n";

#[tokio::test]
async fn a_reload_keeps_unchanged_and_api_made_subscriptions_and_replaces_the_rest() {
    let router = build(&config(&format!("{KEPT}{CHANGED}{GONE}"))).expect("build").expect("router");
    let queue = json!({"deliveryConfiguration": {"deliveryMode": "Queue"}});
    router.put_topic("api-made", json!({})).await.expect("topic");
    router.put_subscription("api-made", "pull", queue.clone()).await.expect("subscription");
    router.put_subscription("declared", "api-sub", queue).await.expect("subscription");
    let kept = router.queue("declared", "kept").expect("kept");
    let changed = router.queue("declared", "changed").expect("changed");

    let plan = router.plan_reload(plan(&config(&format!("{KEPT}{CHANGED_NEW}")))).expect("valid");
    assert!(router.queue("declared", "gone").is_some(), "nothing changes before applying");
    router.apply_reload(plan).await;

    let same = |a: &Arc<QueueSubscription>, b: &Arc<QueueSubscription>| Arc::ptr_eq(a, b);
    assert!(same(&router.queue("declared", "kept").expect("kept"), &kept), "unchanged");
    assert!(!same(&router.queue("declared", "changed").expect("changed"), &changed));
    assert!(router.queue("declared", "gone").is_none(), "no longer declared");
    assert!(router.queue("api-made", "pull").is_some(), "the API's topic stays");
    assert!(router.queue("declared", "api-sub").is_some(), "the API's subscription stays");
    assert!(!router.routes_messages());
}

#[tokio::test]
async fn a_subscription_that_cannot_be_built_refuses_the_reload() {
    let router = build(&config(KEPT)).expect("build").expect("router");
    let broken = "[topics.declared.eventSubscriptions.hook]\n\
                  [topics.declared.eventSubscriptions.hook.destination]\n\
                  endpointType = \"WebHook\"\nendpointUrl = \"not a url\"\n";
    // Start-up refuses this file; planning refuses such a subscription on its own too, so a
    // reload never half-applies when a check lives only where the sink is built.
    let mut config = config(KEPT);
    let invalid = Config::parse(&format!("[topics.declared]\n{broken}"));
    assert!(invalid.is_err(), "start-up refuses the same file");
    let (sub, hook) = toml_subscription(broken);
    config.topics.get_mut("declared").expect("topic").event_subscriptions.insert(sub, hook);
    let error = config.routing_section().plan().and_then(|plan| router.plan_reload(plan));
    let error = error.err().expect("refused").to_string();
    assert!(error.contains("topics.declared.eventSubscriptions.hook.destination"), "{error}");
    assert!(router.queue("declared", "kept").is_some(), "nothing changed");
}

/// The one subscription `[topics.declared.eventSubscriptions.NAME]` of `text`, parsed without
/// validation.
fn toml_subscription(text: &str) -> (String, crate::routing::config::SubscriptionConfig) {
    #[derive(serde::Deserialize)]
    struct File {
        topics: std::collections::BTreeMap<String, crate::routing::config::TopicConfig>,
    }
    let file: File = toml::from_str(text).expect("toml");
    let topic = file.topics.into_values().next().expect("topic");
    topic.event_subscriptions.into_iter().next().expect("subscription")
}
