//! Prometheus metrics against the real binary: a scripted workload (connects accepted and
//! refused, publishes of each QoS and a denied one, a webhook that fails twice and then takes
//! the event, an event dead-lettered, pull receive, acknowledge, release and reject), then a
//! scrape of `/metrics` whose counters must equal exactly what the workload did.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::v5;
use gateway_tests::http_raw;
use gateway_tests::webhook;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const TOKEN: &str = "metrics-test-admin-token";
const KEY: &str = "bWV0cmljcy10ZXN0LWtleQ==";

/// How long the test waits for the workload's asynchronous parts (deliveries, retries).
const WAIT: Duration = Duration::from_secs(30);

fn config(hook: &str) -> String {
    format!(
        r#"
[management]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"

[metrics]
listen = "127.0.0.1:0"

[http]
listen = "127.0.0.1:0"
access_keys = ["{KEY}"]

[auth]
allow_anonymous = true

[topicSpaces.vehicles]
topicTemplates = ["vehicles/#"]

[permissionBindings.publish]
clientGroupName = "$all"
topicSpaceName = "vehicles"
permission = "Publisher"

[permissionBindings.subscribe]
clientGroupName = "$all"
topicSpaceName = "vehicles"
permission = "Subscriber"

[[routing.routes]]
topic_filter = "vehicles/alerts/#"
topic = "alerts"

[[routing.routes]]
topic_filter = "vehicles/orders/#"
topic = "orders"

[topics.alerts.eventSubscriptions.hook]
retryDelaysSeconds = [0.2]

[topics.alerts.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "{hook}/hook"

[topics.alerts.eventSubscriptions.bad.destination]
endpointType = "WebHook"
endpointUrl = "{hook}/bad"

[topics.orders.eventSubscriptions.work]
deliveryMode = "Queue"
"#
    )
}

/// One HTTP/1.1 exchange with the `auth` headers (none, the access key or a bearer token):
/// status and body text.
async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend_from_slice(auth);
    let response = http_raw::request_within(addr, method, path, &headers, body.as_bytes(), WAIT)
        .await
        .expect("HTTP exchange");
    (response.status, String::from_utf8(response.body).expect("UTF-8"))
}

/// A pull-delivery operation on the `work` subscription with the access key.
async fn pull(api: SocketAddr, operation: &str, body: Value) -> Value {
    let path = format!("/topics/orders/eventsubscriptions/work:{operation}");
    let auth = [("aeg-sas-key", KEY)];
    let (status, body) = exchange(api, "POST", &path, &auth, &body.to_string()).await;
    assert_eq!(status, 200, "{operation}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// The samples of an exposition text: (name, labels) to value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parses the Prometheus text format: `name{k="v",...} value` per line, comments skipped.
fn parse(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
                (key.to_string(), value.trim_end_matches('"').to_string())
            })
            .collect();
        samples.insert((name.to_string(), labels), value.parse().expect("a number"));
    }
    samples
}

/// The value of the series `name` with exactly `labels`, 0 when absent (a counter never
/// incremented is not rendered).
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples.get(&(name.to_string(), labels)).copied().unwrap_or(0.0)
}

async fn scrape(addr: SocketAddr) -> Samples {
    let (status, body) = exchange(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200, "{body}");
    parse(&body)
}

/// A 3.1.1 CONNECT with an empty client id and no clean session: refused with CONNACK 0x02
/// (identifier rejected), as the specification requires.
async fn refused_connect(addr: SocketAddr) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let connect = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x00, 0, 60, 0, 0];
    stream.write_all(&connect).await.expect("write CONNECT");
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .expect("read CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 2]);
}

/// The counters the handshake moves: unanswered connections by reason, and bytes.
fn handshake_counters(samples: &Samples) -> [f64; 5] {
    let unanswered = "gridmq_mqtt_unanswered_connections_total";
    [
        value(samples, unanswered, &[("reason", "closed")]),
        value(samples, unanswered, &[("reason", "malformed")]),
        value(samples, unanswered, &[("reason", "timeout")]),
        value(samples, "gridmq_mqtt_received_bytes_total", &[]),
        value(samples, "gridmq_mqtt_sent_bytes_total", &[]),
    ]
}

#[tokio::test]
async fn connections_that_end_before_a_connack_and_handshake_bytes_are_counted() {
    let config = "[mqtt]\nconnect_timeout_secs = 1\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let gridmq = Gridmq::start_with_config(config);
    let metrics = gridmq.metrics.expect("metrics listener");
    let before = handshake_counters(&scrape(metrics).await);

    // Refused: the 14-byte CONNECT in, the 4-byte CONNACK out.
    refused_connect(gridmq.addr).await;
    // Closed after 7 bytes, half a CONNECT.
    let mut half = tokio::net::TcpStream::connect(gridmq.addr).await.expect("connect");
    half.write_all(&[0x10, 12, 0, 4, b'M', b'Q', b'T']).await.expect("write");
    drop(half);
    // A 3.1.1 CONNECT with the reserved flag set: malformed, answered by a close alone.
    let mut malformed = tokio::net::TcpStream::connect(gridmq.addr).await.expect("connect");
    let connect = [0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x01, 0, 60, 0, 0];
    malformed.write_all(&connect).await.expect("write CONNECT");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, malformed.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "closed without an answer: {read:?} {rest:?}");
    // Silent: closed after the connect timeout.
    let mut silent = tokio::net::TcpStream::connect(gridmq.addr).await.expect("connect");
    let read = tokio::time::timeout(WAIT, silent.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "closed after the timeout: {read:?}");

    let expected = [1.0, 1.0, 1.0, 14.0 + 7.0 + 14.0, 4.0];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = handshake_counters(&scrape(metrics).await);
        let moved: Vec<f64> = now.iter().zip(before).map(|(now, before)| now - before).collect();
        if moved == expected {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "moved {moved:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_scripted_workload_is_counted_exactly() {
    // /hook fails twice and then takes the event (the webhook's default), /bad never does.
    let hook = webhook::accepting().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .and(path("/bad"))
        .respond_with(ResponseTemplate::new(400))
        .mount(&hook)
        .await;

    let gridmq = Gridmq::start_with_config(&config(&hook.uri()));
    let management = gridmq.http.expect("management API");
    let api = gridmq.api.expect("data-plane API");
    let metrics = gridmq.metrics.expect("metrics listener");

    // Connects: three accepted (one leaves again), two refused.
    let brief = v5::Client::connect(gridmq.addr, "brief").await;
    brief.disconnect().await;
    let mut subscriber = v5::Client::connect(gridmq.addr, "subscriber").await;
    let mut publisher = v5::Client::connect(gridmq.addr, "publisher").await;
    for _ in 0..2 {
        refused_connect(gridmq.addr).await;
    }

    // Two publishes of each QoS to a subscriber at QoS 2, none of them routed.
    subscriber.subscribe("vehicles/data", v5::QoS::ExactlyOnce).await;
    for qos in [v5::QoS::AtMostOnce, v5::QoS::AtLeastOnce, v5::QoS::ExactlyOnce] {
        for _ in 0..2 {
            publisher.publish("vehicles/data", qos, false, b"reading").await;
            match qos {
                v5::QoS::AtMostOnce => {}
                v5::QoS::AtLeastOnce => {
                    assert_eq!(publisher.puback().await.reason, v5::PubAckReason::Success)
                }
                v5::QoS::ExactlyOnce => {
                    publisher.pubcomp().await;
                }
            }
        }
    }
    for _ in 0..6 {
        subscriber.recv().await;
    }

    // A publish outside the granted topic space: PUBACK 0x87.
    publisher.publish("forbidden/x", v5::QoS::AtLeastOnce, false, b"no").await;
    assert_eq!(publisher.puback().await.reason, v5::PubAckReason::NotAuthorized);

    // One routed alert: `hook` answers 503, 503, then 200; `bad` answers 400 (dead-lettered).
    publisher.publish("vehicles/alerts/1", v5::QoS::AtLeastOnce, false, b"{}").await;
    publisher.puback().await;
    // Three routed orders, received, then one each acknowledged, released and rejected.
    for _ in 0..3 {
        publisher.publish("vehicles/orders/1", v5::QoS::AtLeastOnce, false, b"{}").await;
        publisher.puback().await;
    }
    let received = pull(api, "receive?maxEvents=10&maxWaitTime=5", json!(null)).await;
    let received = received["value"].as_array().cloned().unwrap_or_default();
    assert_eq!(received.len(), 3, "{received:?}");
    let token = |i: usize| received[i]["brokerProperties"]["lockToken"].clone();
    pull(api, "acknowledge", json!({"lockTokens": [token(0)]})).await;
    pull(api, "release", json!({"lockTokens": [token(1)]})).await;
    pull(api, "reject", json!({"lockTokens": [token(2)]})).await;
    // A second acknowledge of the same token, and a token that was never issued.
    pull(api, "acknowledge", json!({"lockTokens": [token(0), "not-a-token"]})).await;

    // Deliveries and retries happen in the background: wait for the last of them.
    let hook = [("topic", "alerts"), ("subscription", "hook")];
    let bad = [("topic", "alerts"), ("subscription", "bad")];
    let deadline = tokio::time::Instant::now() + WAIT;
    let samples = loop {
        let samples = scrape(metrics).await;
        let done = value(&samples, "gridmq_subscription_delivered_events_total", &hook) == 1.0
            && value(&samples, "gridmq_subscription_dead_lettered_events_total", &bad) == 1.0;
        if done || tokio::time::Instant::now() > deadline {
            break samples;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let attempts = "gridmq_mqtt_connection_attempts_total";
    assert_eq!(value(&samples, attempts, &[("result", "success"), ("reason", "Success")]), 3.0);
    let refused = [("result", "failure"), ("reason", "ClientIdentifierNotValid")];
    assert_eq!(value(&samples, attempts, &refused), 2.0);
    assert_eq!(value(&samples, "gridmq_mqtt_connections", &[]), 2.0);

    let published = "gridmq_mqtt_published_messages_total";
    let ok = |qos| [("qos", qos), ("result", "success"), ("reason", "Success")];
    assert_eq!(value(&samples, published, &ok("0")), 2.0);
    // Two to `vehicles/data`, one alert, three orders.
    assert_eq!(value(&samples, published, &ok("1")), 6.0);
    assert_eq!(value(&samples, published, &ok("2")), 2.0);
    let denied = [("qos", "1"), ("result", "failure"), ("reason", "NotAuthorized")];
    assert_eq!(value(&samples, published, &denied), 1.0);
    for qos in ["0", "1", "2"] {
        let delivered = value(&samples, "gridmq_mqtt_delivered_messages_total", &[("qos", qos)]);
        assert_eq!(delivered, 2.0, "QoS {qos}");
    }
    let subscribe = [("operation", "subscribe"), ("result", "success")];
    assert_eq!(value(&samples, "gridmq_mqtt_subscription_operations_total", &subscribe), 1.0);
    assert!(value(&samples, "gridmq_mqtt_received_bytes_total", &[]) > 0.0);
    assert!(value(&samples, "gridmq_mqtt_sent_bytes_total", &[]) > 0.0);

    let routed = [("result", "success")];
    assert_eq!(value(&samples, "gridmq_routing_routed_messages_total", &routed), 4.0);
    assert_eq!(value(&samples, "gridmq_subscription_delivered_events_total", &hook), 1.0);
    let busy = [("topic", "alerts"), ("subscription", "hook"), ("error", "Busy")];
    assert_eq!(value(&samples, "gridmq_subscription_failed_deliveries_total", &busy), 2.0);
    let refused = [("topic", "alerts"), ("subscription", "bad"), ("error", "BadRequest")];
    assert_eq!(value(&samples, "gridmq_subscription_failed_deliveries_total", &refused), 1.0);
    assert_eq!(value(&samples, "gridmq_subscription_dead_lettered_events_total", &bad), 1.0);
    assert_eq!(value(&samples, "gridmq_subscription_dead_lettered_events_total", &hook), 0.0);
    let timing = "gridmq_subscription_destination_processing_seconds_count";
    assert_eq!(value(&samples, timing, &hook), 3.0, "one timing per attempt");
    assert_eq!(value(&samples, timing, &bad), 1.0);

    let work = [("topic", "orders"), ("subscription", "work")];
    assert_eq!(value(&samples, "gridmq_pull_received_events_total", &work), 3.0);
    assert_eq!(value(&samples, "gridmq_pull_acknowledged_events_total", &work), 1.0);
    assert_eq!(value(&samples, "gridmq_pull_released_events_total", &work), 1.0);
    assert_eq!(value(&samples, "gridmq_pull_rejected_events_total", &work), 1.0);
    let refused = [
        ("topic", "orders"),
        ("subscription", "work"),
        ("operation", "acknowledge"),
        ("code", "BadToken"),
    ];
    assert_eq!(value(&samples, "gridmq_pull_failed_settles_total", &refused), 2.0);
    assert_eq!(value(&samples, "gridmq_subscription_dead_lettered_events_total", &work), 1.0);
    // The released order is still owed.
    assert_eq!(value(&samples, "gridmq_topic_backlog_events", &[("topic", "orders")]), 1.0);

    // The histograms are rendered with their buckets.
    let names: std::collections::BTreeSet<&str> = samples.keys().map(|(n, _)| n.as_str()).collect();
    for histogram in [
        "gridmq_subscription_destination_processing_seconds",
        "gridmq_store_commit_seconds",
        "gridmq_store_commit_ops",
        "gridmq_session_queue_depth",
    ] {
        for part in ["_bucket", "_sum", "_count"] {
            assert!(names.contains(format!("{histogram}{part}").as_str()), "{histogram}{part}");
        }
    }
    assert!(value(&samples, "gridmq_store_commit_seconds_count", &[]) > 0.0);
    assert!(value(&samples, "gridmq_process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&samples, "gridmq_process_open_fds", &[]) > 3.0);
    assert_eq!(value(&samples, "gridmq_sessions", &[]), 2.0);

    // On the management listener, the same text needs the admin token.
    assert_eq!(exchange(management, "GET", "/metrics", &[], "").await.0, 401);
    let bearer = format!("Bearer {TOKEN}");
    let bearer = [("authorization", bearer.as_str())];
    let (status, body) = exchange(management, "GET", "/metrics", &bearer, "").await;
    assert_eq!(status, 200);
    assert!(body.contains("gridmq_mqtt_connection_attempts_total"), "{body}");
    // The metrics listener serves nothing else.
    assert_eq!(exchange(metrics, "GET", "/clients", &bearer, "").await.0, 404);
}

/// The `gridmq_*` metric families named in `text`, histogram and summary suffixes taken off.
fn families(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("gridmq_") {
        let name: String =
            rest[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[start + name.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        names.insert(family.to_string());
    }
    names
}

#[tokio::test]
async fn every_metric_is_documented_and_the_dashboard_uses_only_real_ones() {
    let root = gateway_tests::repo_file("");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let table = readme.split("## Monitoring").nth(1).expect("a Monitoring section");
    let documented = families(table.split("\n## ").next().unwrap_or(table));
    let dashboard = std::fs::read_to_string(root.join("examples/grafana-dashboard.json"))
        .expect("the dashboard");
    serde_json::from_str::<Value>(&dashboard).expect("the dashboard is JSON");
    for family in families(&dashboard) {
        assert!(documented.contains(&family), "the dashboard uses {family}, not in README");
    }
    // What a running gateway renders (after a little traffic) is in the table.
    let gridmq = Gridmq::start_with_config("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let client = v5::Client::connect(gridmq.addr, "one").await;
    client.disconnect().await;
    let (status, body) =
        exchange(gridmq.metrics.expect("metrics"), "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    let rendered = families(&body);
    assert!(rendered.contains("gridmq_mqtt_connection_attempts_total"), "{body}");
    for family in rendered {
        assert!(documented.contains(&family), "{family} is rendered but not in README");
    }
}

#[tokio::test]
async fn metrics_turned_off_are_not_served() {
    let gridmq =
        Gridmq::start_with_config("[metrics]\nenabled = false\nlisten = \"127.0.0.1:0\"\n");
    let client = v5::Client::connect(gridmq.addr, "one").await;
    client.disconnect().await;
    let (status, _) = exchange(gridmq.metrics.expect("metrics"), "GET", "/metrics", &[], "").await;
    assert_eq!(status, 404);
}
