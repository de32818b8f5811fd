//! Pull delivery from queue event subscriptions over the data-plane HTTP API, against the real
//! binary: long poll, acknowledge, release, reject, lock expiry, renewLock, max delivery
//! count, bad tokens, and many receivers sharing thousands of events.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::v5;
use gateway_tests::http_raw;
use serde_json::{Value, json};

const KEY: &str = "cHVsbC1kZWxpdmVyeS10ZXN0LWtleQ==";

fn config() -> String {
    format!(
        r#"
[http]
listen = "127.0.0.1:0"
access_keys = ["{KEY}"]

[[routing.routes]]
topic = "orders"

[topics.orders.eventSubscriptions.plain]
deliveryMode = "Queue"

[topics.orders.eventSubscriptions.short]
deliveryMode = "Queue"
receiveLockDurationInSeconds = 1
maxDeliveryCount = 2

[topics.orders.eventSubscriptions.renewing]
deliveryMode = "Queue"
receiveLockDurationInSeconds = 2
"#
    )
}

/// One request to the data plane with the access key: status and JSON body. Long polls wait
/// up to 30 s, so the response may take that long.
async fn call(api: SocketAddr, path: &str, body: Option<Value>) -> (u16, Value) {
    let headers = [("aeg-sas-key", KEY), ("content-type", "application/json")];
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let within = Duration::from_secs(130);
    let response = http_raw::request_within(api, "POST", path, &headers, body.as_bytes(), within)
        .await
        .expect("HTTP exchange");
    (response.status, response.json().unwrap_or(Value::Null))
}

fn op(subscription: &str, operation: &str) -> String {
    format!("/topics/orders/eventsubscriptions/{subscription}:{operation}")
}

/// Receives from `subscription`: (lock token, delivery count, event) of each event.
async fn receive(
    api: SocketAddr,
    subscription: &str,
    max: usize,
    wait: u64,
) -> Vec<(String, u64, Value)> {
    let path = format!("{}?maxEvents={max}&maxWaitTime={wait}", op(subscription, "receive"));
    let (status, body) = call(api, &path, None).await;
    assert_eq!(status, 200, "{body}");
    body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            (
                item["brokerProperties"]["lockToken"].as_str().unwrap_or_default().to_string(),
                item["brokerProperties"]["deliveryCount"].as_u64().unwrap_or(0),
                item["event"].clone(),
            )
        })
        .collect()
}

async fn tokens_op(
    api: SocketAddr,
    subscription: &str,
    operation: &str,
    tokens: &[&str],
) -> (u16, Value) {
    call(api, &op(subscription, operation), Some(json!({ "lockTokens": tokens }))).await
}

async fn start() -> (Gridmq, SocketAddr, v5::Client) {
    let gridmq = Gridmq::start_with_config(&config());
    let api = gridmq.api.expect("data-plane API");
    let client = v5::Client::connect(gridmq.addr, "shop").await;
    (gridmq, api, client)
}

async fn publish(client: &v5::Client, payload: &str) {
    let mut properties = v5::no_properties();
    properties.payload_format_indicator = Some(1);
    client
        .publish_with("orders/1", v5::QoS::AtLeastOnce, false, payload.as_bytes(), properties)
        .await;
}

#[tokio::test]
async fn long_poll_then_acknowledge() {
    let (_gridmq, api, client) = start().await;
    let waiting = tokio::spawn(async move { receive(api, "plain", 10, 30).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "receive waits for an event");
    publish(&client, "first").await;
    let received = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("returns once an event arrives")
        .expect("task");
    assert_eq!(received.len(), 1);
    let (token, count, event) = &received[0];
    assert_eq!(*count, 1);
    assert_eq!(event["data"], "first");
    assert_eq!(event["type"], "MQTT.EventPublished");
    let (status, body) = tokens_op(api, "plain", "acknowledge", &[token, "not-a-token"]).await;
    assert_eq!(status, 200);
    assert_eq!(body["succeededLockTokens"], json!([token]));
    assert_eq!(body["failedLockTokens"][0]["lockToken"], "not-a-token");
    assert_eq!(body["failedLockTokens"][0]["error"]["code"], "BadToken");
    // Acknowledged means gone.
    assert!(receive(api, "plain", 10, 1).await.is_empty());
    // No token succeeded: still 200, as Event Grid answers, with the token listed as failed.
    let (status, body) = tokens_op(api, "plain", "acknowledge", &[token]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["succeededLockTokens"], json!([]));
    assert_eq!(body["failedLockTokens"][0]["lockToken"], json!(token));
}

#[tokio::test]
async fn release_now_and_with_delay() {
    let (_gridmq, api, client) = start().await;
    publish(&client, "x").await;
    let first = receive(api, "plain", 1, 10).await;
    let (status, _) = tokens_op(api, "plain", "release", &[&first[0].0]).await;
    assert_eq!(status, 200);
    let again = receive(api, "plain", 1, 10).await;
    assert_eq!(again[0].2["id"], first[0].2["id"]);
    assert_eq!(again[0].1, 2, "a released event comes back with a higher delivery count");
    let path = format!("{}?releaseDelayInSeconds=10", op("plain", "release"));
    let (status, _) = call(api, &path, Some(json!({"lockTokens": [again[0].0]}))).await;
    assert_eq!(status, 200);
    assert!(receive(api, "plain", 1, 2).await.is_empty(), "held back for the delay");
    let later = receive(api, "plain", 1, 15).await;
    assert_eq!(later[0].2["id"], first[0].2["id"]);
    let path = format!("{}?releaseDelayInSeconds=7", op("plain", "release"));
    assert_eq!(call(api, &path, Some(json!({"lockTokens": [later[0].0]}))).await.0, 400);
}

#[tokio::test]
async fn lock_expiry_redelivers_and_max_delivery_count_dead_letters() {
    let (mut gridmq, api, client) = start().await;
    publish(&client, "y").await;
    let first = receive(api, "short", 1, 10).await;
    assert_eq!(first[0].1, 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = receive(api, "short", 1, 10).await;
    assert_eq!(second[0].2["id"], first[0].2["id"]);
    assert_eq!(second[0].1, 2, "redelivered with a higher delivery count after the lock expired");
    let (_, body) = tokens_op(api, "short", "acknowledge", &[&first[0].0]).await;
    assert_eq!(body["failedLockTokens"][0]["error"]["code"], "TokenLost");
    assert_eq!(body["failedLockTokens"][0]["error"]["message"], "Token has expired.");
    // maxDeliveryCount = 2: after this lock expires the event is dead-lettered, not delivered.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receive(api, "short", 1, 2).await.is_empty());
    drop(client);
    gridmq.terminate(Duration::from_secs(10)).expect("clean exit");
    let letters = dead_letters(&gridmq, "orders/short");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        letters[0]["record"]["deadletterProperties"]["deadletterreason"],
        "MaxDeliveryAttemptsExceeded"
    );
}

#[tokio::test]
async fn reject_dead_letters() {
    let (mut gridmq, api, client) = start().await;
    publish(&client, "z").await;
    let got = receive(api, "plain", 1, 10).await;
    let (status, body) = tokens_op(api, "plain", "reject", &[&got[0].0]).await;
    assert_eq!((status, body["succeededLockTokens"].clone()), (200, json!([got[0].0])));
    assert!(receive(api, "plain", 1, 1).await.is_empty());
    drop(client);
    gridmq.terminate(Duration::from_secs(10)).expect("clean exit");
    let letters = dead_letters(&gridmq, "orders/plain");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["record"]["deadletterProperties"]["deadletterreason"], "Rejected");
    assert_eq!(letters[0]["record"]["event"]["data"], "z");
}

#[tokio::test]
async fn renew_lock_keeps_the_event() {
    let (_gridmq, api, client) = start().await;
    publish(&client, "r").await;
    let got = receive(api, "renewing", 1, 10).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (status, body) = tokens_op(api, "renewing", "renewLock", &[&got[0].0]).await;
        assert_eq!(status, 200, "{body}");
    }
    // Three seconds after receive, past the 2 s lock without renewal: still ours.
    assert!(receive(api, "renewing", 1, 1).await.is_empty());
    let (status, _) = tokens_op(api, "renewing", "acknowledge", &[&got[0].0]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn concurrent_receivers_never_share_an_event() {
    let (_gridmq, api, client) = start().await;
    const EVENTS: usize = 2000;
    for n in 0..EVENTS {
        publish(&client, &format!("e{n}")).await;
    }
    let mut receivers = Vec::new();
    for _ in 0..8 {
        receivers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            loop {
                let got = receive(api, "plain", 100, 2).await;
                if got.is_empty() {
                    return acknowledged;
                }
                let tokens: Vec<&str> = got.iter().map(|(t, _, _)| t.as_str()).collect();
                let (status, body) = tokens_op(api, "plain", "acknowledge", &tokens).await;
                assert_eq!(status, 200);
                assert_eq!(body["failedLockTokens"], json!([]), "a lock was lost or shared");
                acknowledged.extend(
                    got.into_iter()
                        .map(|(_, _, e)| e["data"].as_str().unwrap_or_default().to_string()),
                );
            }
        }));
    }
    let mut all = Vec::new();
    for receiver in receivers {
        all.extend(receiver.await.expect("receiver"));
    }
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(all.len(), EVENTS, "each event acknowledged exactly once");
    assert_eq!(distinct.len(), EVENTS);
}

/// The dead letters of `subscription` in a stopped gateway's data directory.
fn dead_letters(gridmq: &Gridmq, subscription: &str) -> Vec<Value> {
    let output = std::process::Command::new(gateway_tests::binary())
        .args(["deadletters", "list", "--subscription", subscription, "--data-dir"])
        .arg(gridmq.data_dir().path())
        .output()
        .expect("run gridmq deadletters");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

#[tokio::test]
async fn the_cli_prints_the_settle_answer_and_fails_when_a_token_failed() {
    let (_gridmq, api, client) = start().await;
    publish(&client, "cli").await;
    let got = receive(api, "plain", 1, 10).await;
    let ack = |tokens: Vec<String>| {
        let mut command = std::process::Command::new(gateway_tests::binary());
        command
            .args(["topics", "ack", "--topic", "orders", "--subscription", "plain"])
            .args(tokens)
            .env("GRIDMQ_API_URL", format!("http://{api}"))
            .env("GRIDMQ_ACCESS_KEY", KEY);
        command.output().expect("run gridmq topics ack")
    };
    let output = ack(vec![got[0].0.clone(), "not-a-token".into()]);
    assert!(!output.status.success(), "a failed token fails the command");
    let answer: Value = serde_json::from_slice(&output.stdout).expect("the answer on stdout");
    assert_eq!(answer["succeededLockTokens"], json!([got[0].0]));
    assert_eq!(answer["failedLockTokens"][0]["error"]["code"], "BadToken");
    assert!(String::from_utf8_lossy(&output.stderr).contains("BadToken"));
    publish(&client, "cli-2").await;
    let got = receive(api, "plain", 1, 10).await;
    let output = ack(vec![got[0].0.clone()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
