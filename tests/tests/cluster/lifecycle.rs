//! Lifecycle events across nodes: every node pushes the system topic to the same webhook, and
//! each event reaches it once, from the node where it happened, with Event Grid's sequence
//! numbers going on from node to node.

use std::time::Duration;

use gateway_tests::clients::v5;
use gateway_tests::cluster::GridmqCluster;
use gateway_tests::http::request;
use gateway_tests::webhook;
use serde_json::{Value, json};
use wiremock::MockServer;

const TOKEN: &str = "e2e-admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

/// How long the webhook is watched after the expected events arrived, for a second copy.
const SETTLE: Duration = Duration::from_secs(3);

fn config(url: &str) -> String {
    format!(
        r#"
[management]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"

[auth]
allow_anonymous = true

[systemTopic.eventSubscriptions.lifecycle.destination]
endpointType = "WebHook"
endpointUrl = "{url}/lifecycle"
"#
    )
}

/// Waits for `count` events on the webhook, then a while longer; returns every event that came.
async fn settled_events(server: &MockServer, count: usize) -> Vec<Value> {
    webhook::wait_posts(server, "/lifecycle", WAIT, |p| webhook::events(p).len() >= count).await;
    tokio::time::sleep(SETTLE).await;
    webhook::events(&webhook::posts(server, "/lifecycle").await)
}

/// The event's type without Event Grid's prefix.
fn short_type(event: &Value) -> &str {
    event["type"].as_str().unwrap_or_default().trim_start_matches("Microsoft.EventGrid.MQTT")
}

/// (short type, sequence number) of each event, checked to be of `client` and each once, in
/// sequence order.
fn numbered(events: &[Value], client: &str) -> Vec<(String, u64)> {
    let mut ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap_or_default()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "an event came twice: {events:#?}");
    let mut seen: Vec<(String, u64)> = events
        .iter()
        .map(|e| {
            assert_eq!(e["subject"], format!("clients/{client}/sessions/{client}"));
            (short_type(e).to_string(), e["data"]["sequenceNumber"].as_u64().unwrap_or(0))
        })
        .collect();
    // Delivery order across nodes is not guaranteed; the sequence numbers order them.
    seen.sort_by_key(|(ty, seq)| (*seq, ty != "ClientSessionConnected"));
    seen
}

/// A Connected and a Disconnected numbered 1, then 2, … up to `connections`.
fn pairs(connections: u64) -> Vec<(String, u64)> {
    (1..=connections)
        .flat_map(|seq| {
            [("ClientSessionConnected".to_string(), seq), ("ClientSessionDisconnected".into(), seq)]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moving_from_a_to_c_is_numbered_on_and_reported_once() {
    let server = webhook::accepting().await;
    let cluster = GridmqCluster::start_with(3, &config(&server.uri()));
    let (a, c) = (cluster.nodes[0].addr, cluster.nodes[2].addr);

    v5::Client::connect(a, "rover").await.disconnect().await;
    v5::Client::connect(c, "rover").await.disconnect().await;

    let events = settled_events(&server, 4).await;
    assert_eq!(numbered(&events, "rover"), pairs(2), "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_is_numbered_on_its_node_and_on_the_next() {
    let server = webhook::accepting().await;
    let cluster = GridmqCluster::start_with(3, &config(&server.uri()));
    let (a, b) = (cluster.nodes[0].addr, cluster.nodes[1].addr);
    let persistent = |addr| {
        let mut options = v5::options(addr, "probe");
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(60));
        options
    };

    // Twice on A, where the session stays between the two, then on B, which takes it over.
    for addr in [a, a, b] {
        v5::Client::connect_with(persistent(addr)).await.expect("connect").disconnect().await;
    }

    let events = settled_events(&server, 6).await;
    assert_eq!(numbered(&events, "probe"), pairs(3), "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_created_on_a_and_deleted_on_c_is_reported_once_each_by_the_cluster() {
    let server = webhook::accepting().await;
    let cluster = GridmqCluster::start_with(3, &config(&server.uri()));
    let api = cluster.nodes[0].http.expect("the management API is announced");

    let body = json!({"properties": {"authenticationName": "dev-1"}});
    let (status, answer) =
        request(api, "PUT", "/clients/dev1", TOKEN, Some(&body)).await.expect("PUT");
    assert_eq!(status, 201, "{answer}");

    let events = settled_events(&server, 1).await;
    let types: Vec<&str> = events.iter().map(short_type).collect();
    assert_eq!(types, ["ClientCreatedOrUpdated"], "{events:#?}");
    assert_eq!(events[0]["subject"], "clients/dev1");

    // Deleted through C: one more event, not one per node.
    let api = cluster.nodes[2].http.expect("the management API is announced");
    let (status, answer) =
        request(api, "DELETE", "/clients/dev1", TOKEN, None).await.expect("DELETE");
    assert!(matches!(status, 200 | 204), "{status} {answer}");
    let events = settled_events(&server, 2).await;
    let types: Vec<&str> = events.iter().map(short_type).collect();
    assert_eq!(types, ["ClientCreatedOrUpdated", "ClientDeleted"], "{events:#?}");
    assert_eq!(events[1]["subject"], "clients/dev1");
}
