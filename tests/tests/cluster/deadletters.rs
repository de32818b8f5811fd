//! Dead letters and the routing buffer's bound in cluster mode: the dead-letter records are in
//! the cluster's `DLQ` stream, so every node lists the same records under the same ids, deletes
//! them and re-drives them; the bound counts the events waiting in the whole cluster.
//!
//! The records are written the way push and pull delivery write them: Event Grid's record
//! (`sinks::DeadLetterRecord`'s JSON) published to the subscription's subject of `DLQ`. What the
//! routing log holds is read straight from its stream, with a NATS client.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use gateway::cluster::link::Names;
use gateway_tests::clients::v5;
use gateway_tests::cluster::GridmqCluster;
use gateway_tests::http::request;
use serde_json::{Value, json};
use sinks::DeadLetterRecord;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "e2e-admin-token-0123456789";

/// The harness's subject prefix (`tests/src/cluster.rs`).
const PREFIX: &str = "gm";

fn config(extra: &str) -> String {
    format!(
        r#"
[management]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"

[auth]
allow_anonymous = true

[[routing.routes]]
topic = "orders"
{extra}
"#
    )
}

/// Queue subscriptions: nothing leases their events until a receiver asks, so what a re-drive
/// puts back stays in the routing log to be seen.
const QUEUES: &str = r#"
[routing]
max_buffered_events = 4

[topics.orders.eventSubscriptions.audit]
deliveryMode = "Queue"

[topics.orders.eventSubscriptions.other]
deliveryMode = "Queue"
"#;

fn dead_letters_path(subscription: &str) -> String {
    format!("/routing/topics/orders/eventSubscriptions/{subscription}/deadLetters")
}

/// Event Grid's dead-letter record of an event with id `id`, checked to be one.
fn record(id: &str) -> Vec<u8> {
    let json = json!({
        "event": {
            "specversion": "1.0",
            "id": id,
            "source": "gridmq-test",
            "type": "orders.created",
            "time": "2026-12-05T03:00:00Z",
            "datacontenttype": "application/json",
            "data": {"order": id, "amount": 12.50}
        },
        "customDeliveryProperties": {},
        "deadletterProperties": {
            "deadletterreason": "MaxDeliveryAttemptsExceeded",
            "deliveryattempts": 3,
            "deliveryresult": "Busy",
            "publishutc": "2026-12-05T03:00:00.0000000Z",
            "deliveryattemptutc": "2026-12-05T03:01:00.0000000Z"
        }
    });
    let record = DeadLetterRecord::from_json_bytes(json.to_string().as_bytes())
        .expect("Event Grid's dead-letter record");
    record.to_json_bytes()
}

/// Stores a record in the cluster's dead-letter stream, as delivery does; its sequence.
async fn dead_letter(js: &jetstream::Context, subscription: &str, id: &str) -> u64 {
    let subject = Names::new(PREFIX).dead_letter_subject("orders", subscription);
    let ack = js.publish(subject, record(id).into()).await.expect("publish a record");
    ack.await.expect("the record is stored").sequence
}

/// (id, event id) of each record a node lists for `subscription`.
async fn listed(api: SocketAddr, subscription: &str) -> Vec<(u64, String)> {
    let (status, body) =
        request(api, "GET", &dead_letters_path(subscription), TOKEN, None).await.expect("GET");
    assert_eq!(status, 200, "{body}");
    body["value"]
        .as_array()
        .expect("a listing")
        .iter()
        .map(|row| {
            assert_eq!(
                row["record"]["deadletterProperties"]["deadletterreason"],
                "MaxDeliveryAttemptsExceeded"
            );
            (
                row["id"].as_u64().expect("an id"),
                row["record"]["event"]["id"].as_str().expect("an event id").to_string(),
            )
        })
        .collect()
}

/// (subscription, dead-letter count) of the subscriptions with any, as a node reports them.
async fn dead_letter_counts(api: SocketAddr) -> Vec<(String, u64)> {
    let answer = call(api, "GET", "/routing/subscriptions", None).await;
    let mut counts: Vec<(String, u64)> = answer["value"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["deadLetters"].as_u64().expect("a count"),
            )
        })
        .filter(|(_, count)| *count > 0)
        .collect();
    counts.sort();
    counts
}

async fn call(api: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = request(api, method, path, TOKEN, body.as_ref()).await.expect("call");
    assert_eq!(status, 200, "{method} {path}: {answer}");
    answer
}

/// The events waiting in the routing log for `subscription` of `orders`: (published time,
/// event) of each, oldest first. Read message by message from the stream's leader, without a
/// consumer (a work-queue stream refuses a second consumer on a subscription's subject).
async fn waiting(js: &jetstream::Context, subscription: &str) -> Vec<Value> {
    let stream = js.get_stream("GM_EVENTS").await.expect("the EVENTS stream");
    let subject = Names::new(PREFIX).event_subject("orders", subscription);
    let mut events = Vec::new();
    let mut next = 1;
    loop {
        match stream.get_first_raw_message_by_subject(&subject, next).await {
            Ok(message) => {
                // The buffer's record: the published time (8 bytes), then the CloudEvent.
                let event = serde_json::from_slice(&message.payload[8..]).expect("an event");
                events.push(event);
                next = message.sequence + 1;
            }
            Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {
                return events;
            }
            Err(error) => panic!("read the EVENTS stream: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_deleted_and_redriven_from_any_node() {
    let cluster = GridmqCluster::start_with(3, &config(QUEUES));
    let api = |i: usize| cluster.nodes[i].http.expect("the management API is announced");
    let (a, b, c) = (api(0), api(1), api(2));
    let nats = async_nats::connect(cluster.nats.client_urls()).await.expect("connect to NATS");
    let js = jetstream::new(nats);

    let ids = [
        dead_letter(&js, "audit", "ev-1").await,
        dead_letter(&js, "audit", "ev-2").await,
        dead_letter(&js, "audit", "ev-3").await,
    ];
    let others = dead_letter(&js, "other", "ev-other").await;
    let expected: Vec<(u64, String)> =
        ids.iter().zip(["ev-1", "ev-2", "ev-3"]).map(|(id, ev)| (*id, ev.to_string())).collect();

    // The same records under the same ids on A and on C, and only this subscription's; every
    // node counts them.
    assert_eq!(dead_letter_counts(b).await, [("audit".to_string(), 3), ("other".to_string(), 1)]);
    assert_eq!(listed(a, "audit").await, expected);
    assert_eq!(listed(c, "audit").await, expected);
    assert_eq!(listed(a, "other").await, [(others, "ev-other".to_string())]);

    // Deleting on B: another subscription's id is skipped, as an unknown one is.
    let path = dead_letters_path("audit");
    let answer = call(b, "DELETE", &path, Some(json!({"ids": [ids[0], others, 999_999]}))).await;
    assert_eq!(answer, json!({"deleted": 1}));
    assert_eq!(listed(a, "audit").await, expected[1..]);
    assert_eq!(listed(c, "other").await, [(others, "ev-other".to_string())]);

    // Re-driving one on C puts its event back for that subscription alone, then drops the
    // record, on every node.
    let redrive = format!("{path}/redrive");
    assert!(waiting(&js, "audit").await.is_empty());
    let answer = call(c, "POST", &redrive, Some(json!({"ids": [ids[1]]}))).await;
    assert_eq!(answer, json!({"redriven": 1}));
    assert_eq!(listed(a, "audit").await, expected[2..]);
    assert_eq!(listed(b, "audit").await, expected[2..]);
    let back = waiting(&js, "audit").await;
    assert_eq!(back.len(), 1, "{back:#?}");
    assert_eq!(back[0]["id"], "ev-2");
    assert_eq!(back[0]["data"], json!({"order": "ev-2", "amount": 12.50}));
    assert!(waiting(&js, "other").await.is_empty(), "re-driven for one subscription only");

    // Re-driving the rest from A.
    assert_eq!(call(a, "POST", &redrive, None).await, json!({"redriven": 1}));
    assert!(listed(c, "audit").await.is_empty());
    let ids_back: Vec<Value> =
        waiting(&js, "audit").await.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids_back, [json!("ev-2"), json!("ev-3")]);

    // Deleting all of a subscription's records on B.
    assert_eq!(call(b, "DELETE", &dead_letters_path("other"), None).await, json!({"deleted": 1}));
    assert!(listed(a, "other").await.is_empty());

    // The same record re-driven on two nodes at once is put back once.
    let id = dead_letter(&js, "other", "ev-twice").await;
    let body = Some(json!({"ids": [id]}));
    let other = format!("{}/redrive", dead_letters_path("other"));
    let (on_a, on_b) =
        tokio::join!(call(a, "POST", &other, body.clone()), call(b, "POST", &other, body));
    let redriven = [&on_a, &on_b].map(|answer| answer["redriven"].as_u64().expect("a count"));
    assert!(redriven.contains(&1), "{on_a} {on_b}");
    let back: Vec<Value> = waiting(&js, "other").await.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(back, [json!("ev-twice")]);
    assert!(listed(c, "other").await.is_empty());
    assert_eq!(dead_letter_counts(c).await, []);

    // The routing log now holds 3 events and takes 4: a re-drive puts back what fits and
    // leaves the rest dead-lettered. The log's count is read every 500 ms.
    let fits = dead_letter(&js, "audit", "ev-fits").await;
    let stays = dead_letter(&js, "audit", "ev-stays").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(call(b, "POST", &redrive, None).await, json!({"redriven": 1}));
    assert_eq!(listed(a, "audit").await, [(stays, "ev-stays".to_string())]);
    let ids_back: Vec<Value> =
        waiting(&js, "audit").await.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids_back, [json!("ev-2"), json!("ev-3"), json!("ev-fits")], "record {fits}");

    // A record without a readable event stays dead-lettered; one that is not JSON (no
    // gridmq node writes one) is not listed.
    let subject = Names::new(PREFIX).dead_letter_subject("orders", "other");
    let odd = js.publish(subject.clone(), r#"{"event": 5}"#.into()).await.expect("publish");
    let odd = odd.await.expect("stored").sequence;
    js.publish(subject, "not JSON".into()).await.expect("publish").await.expect("stored");
    let other_path = dead_letters_path("other");
    assert_eq!(
        call(c, "POST", &format!("{other_path}/redrive"), None).await,
        json!({"redriven": 0})
    );
    let listing = call(a, "GET", &other_path, None).await;
    assert_eq!(listing, json!({"value": [{"id": odd, "record": {"event": 5}}]}));

    // An unknown subscription is 404, as in single-node mode.
    let (status, _) =
        request(a, "GET", &dead_letters_path("nope"), TOKEN, None).await.expect("GET");
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_command_says_a_cluster_nodes_dead_letters_are_in_the_cluster_until_a_single_node_runs_there()
 {
    let cluster = GridmqCluster::start_with(3, &config(QUEUES));
    for command in [&["list"][..], &["redrive", "--subscription", "orders/audit"][..]] {
        let output = std::process::Command::new(gateway_tests::binary())
            .arg("deadletters")
            .args(command)
            .arg("--data-dir")
            .arg(cluster.nodes[1].data_dir().path())
            .output()
            .expect("run gridmq deadletters");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command:?} must fail: {stderr}");
        assert!(stderr.contains("cluster node") && stderr.contains("GM_DLQ"), "{stderr}");
        assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
    }

    // The same directory run by a single node afterwards: its own store holds its dead letters
    // again, and the command reads them.
    let data = cluster.nodes[1].data_dir();
    drop(cluster);
    drop(gateway_tests::Gridmq::start_in(data.clone(), ""));
    let output = std::process::Command::new(gateway_tests::binary())
        .args(["deadletters", "list", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run gridmq deadletters");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_the_dead_letter_routes_answer_503() {
    let mut cluster = GridmqCluster::start_with(3, &config(QUEUES));
    let api = cluster.nodes[0].http.expect("the management API is announced");
    assert!(listed(api, "audit").await.is_empty());
    for i in 0..3 {
        cluster.nats.kill(i);
    }
    let path = dead_letters_path("audit");
    for (method, path) in
        [("GET", path.clone()), ("DELETE", path.clone()), ("POST", format!("{path}/redrive"))]
    {
        let started = std::time::Instant::now();
        let (status, body) = request(api, method, &path, TOKEN, None).await.expect("an answer");
        assert_eq!(status, 503, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "ServiceUnavailable", "{body}");
        assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    }
}

/// Publishes QoS 1 messages to `orders/<n>` on `addr`, one at a time, until one is refused or
/// `most` were acknowledged; the payloads acknowledged and the refusal's reason code.
async fn publish_until_refused(
    addr: SocketAddr,
    most: usize,
) -> (Vec<String>, Option<v5::PubAckReason>) {
    let mut client = v5::Client::connect(addr, "filler").await;
    let mut acknowledged = Vec::new();
    for n in 0..most {
        let payload = format!("reading-{n}");
        let mut properties = v5::no_properties();
        properties.payload_format_indicator = Some(1);
        client
            .publish_with(
                &format!("orders/{n}"),
                v5::QoS::AtLeastOnce,
                false,
                payload.as_bytes(),
                properties,
            )
            .await;
        let puback = client.puback().await;
        if puback.reason != v5::PubAckReason::Success {
            client.disconnect().await;
            return (acknowledged, Some(puback.reason));
        }
        acknowledged.push(payload);
        // Well below the count's refresh (500 ms), so the bound is seen within a few publishes.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    client.disconnect().await;
    (acknowledged, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_routing_log_refuses_publishes_and_keeps_what_it_acknowledged() {
    const BOUND: usize = 20;
    let server = MockServer::start().await;
    // Down: the handshake and every delivery are answered 503.
    Mock::given(any()).respond_with(ResponseTemplate::new(503)).mount(&server).await;
    // No management API and no [auth]: no access control, so anyone may publish.
    let hook = format!(
        r#"
[[routing.routes]]
topic = "orders"

[routing]
max_buffered_events = {BOUND}

[topics.orders.eventSubscriptions.hook]
retryDelaysSeconds = [600]

[topics.orders.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "{}/hook"
"#,
        server.uri()
    );
    let cluster = GridmqCluster::start_with(3, &hook);
    let nats = async_nats::connect(cluster.nats.client_urls()).await.expect("connect to NATS");
    let js = jetstream::new(nats);

    let (acknowledged, refused) = publish_until_refused(cluster.nodes[0].addr, 200).await;
    assert_eq!(refused, Some(v5::PubAckReason::QuotaExceeded), "after {}", acknowledged.len());
    assert!(acknowledged.len() >= BOUND, "refused after {} acknowledged", acknowledged.len());
    // Admissions between two counts may pass the bound; a count comes every 500 ms.
    assert!(acknowledged.len() < BOUND + 30, "{} acknowledged", acknowledged.len());

    // The bound is the cluster's: another node refuses too, once it has counted again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (more, refused) = publish_until_refused(cluster.nodes[2].addr, 1).await;
    let held = waiting(&js, "hook").await.len();
    assert_eq!(
        (more.len(), refused),
        (0, Some(v5::PubAckReason::QuotaExceeded)),
        "{} acknowledged on A, {held} held",
        acknowledged.len()
    );

    // Every acknowledged event waits in the routing log, once.
    let events = waiting(&js, "hook").await;
    let data: Vec<String> =
        events.iter().map(|e| e["data"].as_str().unwrap_or_default().to_string()).collect();
    let distinct: BTreeSet<&String> = data.iter().collect();
    assert_eq!(distinct.len(), data.len(), "an event is there twice: {data:?}");
    assert_eq!(distinct, acknowledged.iter().collect(), "{data:?}");
}
