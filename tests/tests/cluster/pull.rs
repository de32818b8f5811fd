//! Pull delivery across nodes: a queue subscription's events are received on any node, and
//! their lock tokens are acknowledged, released, rejected and renewed on any node. The node
//! that received an event holds its lock: when that node expires the lock the event comes back
//! at once, and when that node dies its tokens answer `TokenLost` and the event comes back
//! after the routing log's ack wait, one delivery count higher.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway_tests::azure_sdk::{self, Target};
use gateway_tests::clients::v5;
use gateway_tests::cluster::GridmqCluster;
use gateway_tests::http_raw;
use serde_json::{Value, json};

const KEY: &str = "Y2x1c3Rlci1wdWxsLWRlbGl2ZXJ5LWtleQ==";

/// The subscription's lock duration: short, so that expiry and the log's ack wait (this plus
/// 5 s) fit in a test.
const LOCK_SECS: u64 = 6;

/// The management API's admin token, where a test turns it on.
const ADMIN: &str = "cluster-pull-admin";

fn config() -> String {
    format!(
        r#"
[http]
listen = "127.0.0.1:0"
access_keys = ["{KEY}"]

[[routing.routes]]
topic = "orders"

[topics.orders.eventSubscriptions.pull]
deliveryMode = "Queue"
receiveLockDurationInSeconds = {LOCK_SECS}

[topics.orders.eventSubscriptions.short]
deliveryMode = "Queue"
receiveLockDurationInSeconds = 1
maxDeliveryCount = 2

[topics.orders.eventSubscriptions.short.filters]
subjectBeginsWith = "orders/capped"

[topics.orders.eventSubscriptions.sdk]
deliveryMode = "Queue"
receiveLockDurationInSeconds = 60
"#
    )
}

fn api(cluster: &GridmqCluster, node: usize) -> SocketAddr {
    cluster.nodes[node].api.expect("the data-plane API is announced")
}

/// One request to a node's data plane with the access key: status and JSON body.
async fn call(api: SocketAddr, path: &str, body: Option<Value>) -> (u16, Value) {
    let headers = [("aeg-sas-key", KEY), ("content-type", "application/json")];
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let within = Duration::from_secs(60);
    let response = http_raw::request_within(api, "POST", path, &headers, body.as_bytes(), within)
        .await
        .expect("HTTP exchange");
    (response.status, response.json().unwrap_or(Value::Null))
}

fn op(operation: &str) -> String {
    op_on("pull", operation)
}

fn op_on(subscription: &str, operation: &str) -> String {
    format!("/topics/orders/eventsubscriptions/{subscription}:{operation}")
}

/// One received event: its lock token, delivery count and data.
#[derive(Debug)]
struct Got {
    token: String,
    count: u64,
    data: String,
}

async fn receive(api: SocketAddr, max: usize, wait: u64) -> Vec<Got> {
    receive_on(api, "pull", max, wait).await
}

async fn receive_on(api: SocketAddr, subscription: &str, max: usize, wait: u64) -> Vec<Got> {
    let path = format!("{}?maxEvents={max}&maxWaitTime={wait}", op_on(subscription, "receive"));
    let (status, body) = call(api, &path, None).await;
    assert_eq!(status, 200, "{body}");
    body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| Got {
            token: item["brokerProperties"]["lockToken"].as_str().unwrap_or_default().into(),
            count: item["brokerProperties"]["deliveryCount"].as_u64().unwrap_or(0),
            data: item["event"]["data"].as_str().unwrap_or_default().into(),
        })
        .collect()
}

/// Receives until `count` events came or `within` passed.
async fn receive_all(api: SocketAddr, count: usize, within: Duration) -> Vec<Got> {
    receive_all_on(api, "pull", count, within).await
}

async fn receive_all_on(
    api: SocketAddr,
    subscription: &str,
    count: usize,
    within: Duration,
) -> Vec<Got> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        got.extend(receive_on(api, subscription, count - got.len(), 5).await);
    }
    got.sort_by(|a, b| a.data.cmp(&b.data));
    got
}

/// An operation on lock tokens: (succeeded tokens, failed (token, code)).
async fn settle(
    api: SocketAddr,
    operation: &str,
    tokens: &[&str],
) -> (Vec<String>, Vec<(String, String)>) {
    settle_on(api, "pull", operation, tokens).await
}

async fn settle_on(
    api: SocketAddr,
    subscription: &str,
    operation: &str,
    tokens: &[&str],
) -> (Vec<String>, Vec<(String, String)>) {
    let path = op_on(subscription, operation);
    let (status, body) = call(api, &path, Some(json!({ "lockTokens": tokens }))).await;
    assert_eq!(status, 200, "{operation}: {body}");
    let succeeded = body["succeededLockTokens"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect();
    let failed = body["failedLockTokens"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let token = f["lockToken"].as_str().unwrap_or_default().to_string();
            (token, f["error"]["code"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    (succeeded, failed)
}

async fn publish(client: &v5::Client, payload: &str) {
    publish_to(client, "orders/1", payload).await;
}

async fn publish_to(client: &v5::Client, topic: &str, payload: &str) {
    let mut properties = v5::no_properties();
    properties.payload_format_indicator = Some(1);
    client.publish_with(topic, v5::QoS::AtLeastOnce, false, payload.as_bytes(), properties).await;
}

fn ok(token: &str) -> (Vec<String>, Vec<(String, String)>) {
    (vec![token.to_string()], Vec::new())
}

fn failed(token: &str, code: &str) -> (Vec<String>, Vec<(String, String)>) {
    (Vec::new(), vec![(token.to_string(), code.to_string())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_one_node_settle_on_any_other() {
    let cluster = GridmqCluster::start_with(3, &config());
    let (a, b, c) = (api(&cluster, 0), api(&cluster, 1), api(&cluster, 2));
    let client = v5::Client::connect(cluster.nodes[1].addr, "shop").await;
    for payload in ["e1", "e2", "e3", "e4"] {
        publish(&client, payload).await;
    }

    // Received on A: A holds the four locks.
    let got = receive_all(a, 4, Duration::from_secs(20)).await;
    let data: Vec<&str> = got.iter().map(|g| g.data.as_str()).collect();
    assert_eq!(data, ["e1", "e2", "e3", "e4"], "{got:#?}");
    assert!(got.iter().all(|g| g.count == 1), "{got:#?}");
    let received_at = Instant::now();
    let [e1, e2, e3, e4] = [&got[0], &got[1], &got[2], &got[3]];

    // Acknowledged on C; a second acknowledge, on B, fails.
    assert_eq!(settle(c, "acknowledge", &[&e1.token]).await, ok(&e1.token));
    assert_eq!(settle(b, "acknowledge", &[&e1.token]).await, failed(&e1.token, "BadToken"));

    // Released on B, for 10 s (the shortest delay Event Grid allows but none); its token is
    // then spent: a late acknowledge fails.
    let (status, body) = call(
        b,
        &format!("{}?releaseDelayInSeconds=10", op("release")),
        Some(json!({ "lockTokens": [&e2.token] })),
    )
    .await;
    assert_eq!((status, &body["succeededLockTokens"]), (200, &json!([&e2.token])), "{body}");
    let released_at = Instant::now();
    assert_eq!(settle(c, "acknowledge", &[&e2.token]).await, failed(&e2.token, "BadToken"));

    // Rejected on C: dead-lettered with Event Grid's record, in the cluster's dead-letter stream.
    assert_eq!(settle(c, "reject", &[&e4.token]).await, ok(&e4.token));
    let record = dead_letter(&cluster, "pull").await;
    assert_eq!(record["event"]["data"], "e4", "{record}");
    assert_eq!(record["deadletterProperties"]["deadletterreason"], "Rejected", "{record}");
    assert_eq!(record["deadletterProperties"]["deliveryattempts"], 1, "{record}");

    // Renewed on A past the lock duration: still held, so B acknowledges it after the first
    // lock would have expired.
    tokio::time::sleep_until((received_at + Duration::from_secs(LOCK_SECS - 3)).into()).await;
    assert_eq!(settle(a, "renewLock", &[&e3.token]).await, ok(&e3.token));
    tokio::time::sleep_until((received_at + Duration::from_secs(LOCK_SECS + 1)).into()).await;
    assert_eq!(settle(b, "acknowledge", &[&e3.token]).await, ok(&e3.token));

    // The released event comes back after its delay, counted twice, and nothing else does.
    // Received on A again, the node its first token names: that stale token still settles
    // nothing, and the new one settles it.
    let again = receive_all(a, 1, Duration::from_secs(30)).await;
    let waited = released_at.elapsed();
    assert_eq!(again.len(), 1, "{again:#?}");
    assert_eq!((again[0].data.as_str(), again[0].count), ("e2", 2), "{again:#?}");
    assert!(waited >= Duration::from_secs(9), "back after {waited:?}, released for 10 s");
    assert_eq!(settle(b, "acknowledge", &[&e2.token]).await, failed(&e2.token, "BadToken"));
    assert_eq!(settle(b, "acknowledge", &[&again[0].token]).await, ok(&again[0].token));
    assert!(receive(c, 10, 2).await.is_empty(), "every event was settled");

    // The Azure SDK acknowledges on C what A received from the other subscription; an unknown
    // token fails with the code the SDK reads.
    let sdk = receive_all_on(a, "sdk", 4, Duration::from_secs(20)).await;
    assert_eq!(sdk.len(), 4, "{sdk:#?}");
    let tokens: Vec<&str> = sdk.iter().map(|g| g.token.as_str()).collect();
    let scenario = format!("acknowledge:{},not-a-token", tokens.join(","));
    let endpoint = format!("http://{c}");
    let target =
        Target { endpoint: &endpoint, key: KEY, topic: "orders", subscription: "sdk", ca: None };
    let report = azure_sdk::run(&scenario, &target).await;
    assert_eq!(report["acknowledge"]["succeeded"], json!(tokens), "{report:#}");
    assert_eq!(report["acknowledge"]["failed"][0]["code"], "BadToken", "{report:#}");
    assert!(receive_on(b, "sdk", 10, 1).await.is_empty(), "the SDK settled them all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_comes_back_at_once_and_a_dead_owner_s_after_the_ack_wait() {
    let mut cluster = GridmqCluster::start_with(3, &config());
    let (a, b, c) = (api(&cluster, 0), api(&cluster, 1), api(&cluster, 2));
    let client = v5::Client::connect(cluster.nodes[0].addr, "shop").await;

    // Received on A and left alone: A expires the lock itself and hands the event back, well
    // before the log's ack wait (lock duration + 5 s) would; the late token is lost.
    publish(&client, "expiring").await;
    let first = receive_all(a, 1, Duration::from_secs(20)).await;
    assert_eq!((first[0].data.as_str(), first[0].count), ("expiring", 1), "{first:#?}");
    let received_at = Instant::now();
    let again = receive_all(c, 1, Duration::from_secs(20)).await;
    let waited = received_at.elapsed();
    assert_eq!((again[0].data.as_str(), again[0].count), ("expiring", 2), "{again:#?}");
    assert!(
        waited >= Duration::from_secs(LOCK_SECS - 1) && waited < Duration::from_secs(LOCK_SECS + 4),
        "back after {waited:?}, lock {LOCK_SECS} s"
    );
    assert_eq!(
        settle(b, "acknowledge", &[&first[0].token]).await,
        failed(&first[0].token, "TokenLost")
    );
    assert_eq!(settle(b, "acknowledge", &[&again[0].token]).await, ok(&again[0].token));

    // Received on B, which then dies: its tokens are lost everywhere, and the event comes back
    // once the log's ack wait is over, counted one higher.
    publish(&client, "orphaned").await;
    let held = receive_all(b, 1, Duration::from_secs(20)).await;
    assert_eq!((held[0].data.as_str(), held[0].count), ("orphaned", 1), "{held:#?}");
    tokio::task::block_in_place(|| cluster.nodes[1].kill());
    let killed_at = Instant::now();
    for node in [a, c] {
        for operation in ["acknowledge", "renewLock", "reject"] {
            let answer = settle(node, operation, &[&held[0].token]).await;
            assert_eq!(answer, failed(&held[0].token, "TokenLost"), "{operation}");
        }
    }
    let back = receive_all(c, 1, Duration::from_secs(30)).await;
    assert_eq!(back.len(), 1, "the event comes back after its owner died");
    assert_eq!((back[0].data.as_str(), back[0].count), ("orphaned", 2), "{back:#?}");
    let waited = killed_at.elapsed();
    assert!(waited < Duration::from_secs(LOCK_SECS + 5 + 5), "back after {waited:?}");
    assert_eq!(settle(a, "acknowledge", &[&back[0].token]).await, ok(&back[0].token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_past_the_count_are_dead_lettered_and_a_stopping_node_hands_its_locks_back() {
    let mut cluster = GridmqCluster::start_with(3, &config());
    let (a, b, c) = (api(&cluster, 0), api(&cluster, 1), api(&cluster, 2));
    let client = v5::Client::connect(cluster.nodes[0].addr, "shop").await;

    // Three nodes receiving at once never hold the same event; one request on A settles the
    // locks of all three.
    let events: Vec<String> = (0..60).map(|i| format!("many-{i:02}")).collect();
    for event in &events {
        publish(&client, event).await;
    }
    let receivers = [a, b, c].map(|node| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let received = receive(node, 7, 2).await
                && !received.is_empty()
            {
                got.extend(received);
            }
            got
        })
    });
    let mut got = Vec::new();
    let mut per_node = Vec::new();
    for receiver in receivers {
        let from_node = receiver.await.expect("receiver");
        per_node.push(from_node.len());
        got.extend(from_node);
    }
    let mut data: Vec<&str> = got.iter().map(|g| g.data.as_str()).collect();
    data.sort_unstable();
    assert_eq!(data, events, "each event once, per node {per_node:?}");
    assert!(got.iter().all(|g| g.count == 1));
    let tokens: Vec<&str> = got.iter().map(|g| g.token.as_str()).collect();
    let (succeeded, failures) = settle(a, "acknowledge", &tokens).await;
    assert_eq!((succeeded.len(), failures), (60, Vec::new()), "per node {per_node:?}");
    drain(&cluster, "sdk", 60).await;

    // maxDeliveryCount 2 (a subscription that takes only this event): received on A, then on B once A's lock expired; the third delivery
    // is a dead letter, whichever node would have made it.
    publish_to(&client, "orders/capped", "capped").await;
    let mut counts = Vec::new();
    for node in [a, b] {
        let got = receive_all_on(node, "short", 1, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 1, "{got:#?}");
        counts.push((got[0].data.clone(), got[0].count));
    }
    assert_eq!(counts, [("capped".to_string(), 1), ("capped".to_string(), 2)]);
    assert!(receive_on(c, "short", 1, 5).await.is_empty(), "no third delivery");
    let record = dead_letter(&cluster, "short").await;
    assert_eq!(record["event"]["data"], "capped", "{record}");
    let properties = &record["deadletterProperties"];
    assert_eq!(properties["deadletterreason"], "MaxDeliveryAttemptsExceeded", "{record}");
    assert_eq!(properties["deliveryattempts"], 2, "{record}");

    // C stops cleanly while it holds a lock: the event is back at once, not after the log's
    // ack wait (lock duration + 5 s), and C's token is lost.
    // ("capped" went to this subscription too.)
    publish(&client, "held").await;
    let pulled = receive_all(c, 2, Duration::from_secs(20)).await;
    let data: Vec<(&str, u64)> = pulled.iter().map(|g| (g.data.as_str(), g.count)).collect();
    assert_eq!(data, [("capped", 1), ("held", 1)], "{pulled:#?}");
    assert_eq!(settle(c, "acknowledge", &[&pulled[0].token]).await, ok(&pulled[0].token));
    let held = &pulled[1..];
    let stopped_at = Instant::now();
    let status =
        tokio::task::block_in_place(|| cluster.nodes[2].terminate(Duration::from_secs(15)));
    assert!(status.is_some(), "node C stops within 15 s");
    let back = receive_all(a, 1, Duration::from_secs(20)).await;
    let waited = stopped_at.elapsed();
    assert_eq!((back[0].data.as_str(), back[0].count), ("held", 2), "{back:#?}");
    assert!(waited < Duration::from_secs(LOCK_SECS + 2), "back after {waited:?}");
    assert_eq!(
        settle(b, "acknowledge", &[&held[0].token]).await,
        failed(&held[0].token, "TokenLost")
    );
    assert_eq!(settle(b, "acknowledge", &[&back[0].token]).await, ok(&back[0].token));
}

/// Receives and acknowledges `count` events of `subscription` on node A.
async fn drain(cluster: &GridmqCluster, subscription: &str, count: usize) {
    let got = receive_all_on(api(cluster, 0), subscription, count, Duration::from_secs(30)).await;
    assert_eq!(got.len(), count, "{subscription}");
    let tokens: Vec<&str> = got.iter().map(|g| g.token.as_str()).collect();
    for chunk in tokens.chunks(100) {
        let (succeeded, failures) =
            settle_on(api(cluster, 0), subscription, "acknowledge", chunk).await;
        assert_eq!((succeeded.len(), failures), (chunk.len(), Vec::new()), "{subscription}");
    }
}

/// The last record of a subscription's dead-letter subject, read from JetStream.
async fn dead_letter(cluster: &GridmqCluster, subscription: &str) -> Value {
    let client = async_nats::connect(cluster.nats.url(0)).await.expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("GM_DLQ").await.expect("the dead-letter stream");
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let subject = format!("gm.dlq.{}.{}", b64("orders"), b64(subscription));
    let message = stream.get_last_raw_message_by_subject(&subject).await.expect("a dead letter");
    serde_json::from_slice(&message.payload).expect("a JSON record")
}

/// The management API's view of subscription `name` of `orders` on `node`: (waiting, locked).
async fn counted(cluster: &GridmqCluster, node: usize, name: &str) -> (u64, u64) {
    let http = cluster.nodes[node].http.expect("the management API is announced");
    let (status, listing) =
        gateway_tests::http::request(http, "GET", "/routing/subscriptions", ADMIN, None)
            .await
            .expect("GET /routing/subscriptions");
    assert_eq!(status, 200, "{listing}");
    let found = listing["value"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["topic"] == "orders" && s["name"] == name))
        .cloned()
        .unwrap_or(Value::Null);
    (found["waiting"].as_u64().unwrap_or(u64::MAX), found["locked"].as_u64().unwrap_or(u64::MAX))
}

/// Waits until node `node` shows `expected` (waiting, locked) for subscription `pull`.
async fn wait_counted(cluster: &GridmqCluster, node: usize, expected: (u64, u64)) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = counted(cluster, node, "pull").await;
        if seen == expected {
            return;
        }
        assert!(Instant::now() < deadline, "node {node}: {seen:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

// A queue's events are in the cluster's log, so every node counts them: what waits, and what
// another node received and holds locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_counts_a_queues_waiting_and_locked_events() {
    let managed = format!(
        "{}\n[management]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN}\"\n",
        config()
    );
    let cluster = GridmqCluster::start_with(3, &managed);
    // Through A's data plane: [management] turns access control on, so MQTT would need grants.
    let headers = [("aeg-sas-key", KEY), ("content-type", "application/cloudevents+json")];
    for id in ["c1", "c2", "c3"] {
        let event = json!({"specversion": "1.0", "id": id, "source": "test", "type": "t",
            "subject": "orders/1", "data": id});
        let body = event.to_string();
        let answer = http_raw::request(
            api(&cluster, 0),
            "POST",
            "/topics/orders:publish",
            &headers,
            body.as_bytes(),
        )
        .await
        .expect("publish");
        assert_eq!(answer.status, 200, "{}", answer.error_message());
    }
    wait_counted(&cluster, 2, (3, 0)).await;
    let got = receive_all(api(&cluster, 1), 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    wait_counted(&cluster, 2, (2, 1)).await;
    wait_counted(&cluster, 0, (2, 1)).await;

    // B's token acknowledged twice on C: the second is refused, and counted once, by C.
    assert_eq!(settle(api(&cluster, 2), "acknowledge", &[&got[0].token]).await, ok(&got[0].token));
    let again = settle(api(&cluster, 2), "acknowledge", &[&got[0].token]).await;
    assert_eq!(again, failed(&got[0].token, "BadToken"));
    assert_eq!(failed_settles(&cluster, 2).await, 1.0);
    assert_eq!(failed_settles(&cluster, 1).await, 0.0);
}

/// Node `node`'s `gridmq_pull_failed_settles_total` for acknowledges of `orders/pull` refused
/// with `BadToken`, from its management API's `/metrics` (0 when absent).
async fn failed_settles(cluster: &GridmqCluster, node: usize) -> f64 {
    let http = cluster.nodes[node].http.expect("the management API is announced");
    let bearer = format!("Bearer {ADMIN}");
    let answer = http_raw::request(http, "GET", "/metrics", &[("authorization", &bearer)], b"")
        .await
        .expect("GET /metrics");
    assert_eq!(answer.status, 200);
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    let labels = [
        "topic=\"orders\"",
        "subscription=\"pull\"",
        "operation=\"acknowledge\"",
        "code=\"BadToken\"",
    ];
    text.lines()
        .filter(|line| line.starts_with("gridmq_pull_failed_settles_total{"))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}
