//! Push delivery across nodes: one node at a time delivers each push subscription, leasing its
//! events from the cluster's routing log; when that node is killed another takes over, and the
//! retry schedule, the delivery counts and the dead letters go on from the log.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use base64::Engine;
use futures_util::StreamExt;
use gateway::mqtt::{Protocol, QoS};
use gateway_tests::cluster::{GridmqCluster, node_id};
use gateway_tests::http::request;
use gateway_tests::webhook;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::traffic::{Published, connect, publish_windowed};

/// How long a test waits for deliveries: a request cut short by a kill comes back once its
/// lease (15 s) ends.
const WAIT: Duration = Duration::from_secs(75);

/// Routes every MQTT publish to namespace topic `telemetry`, whose subscriptions are `extra`.
fn config(extra: &str) -> String {
    format!(
        r#"
[[routing.routes]]
topic = "telemetry"
{extra}
"#
    )
}

/// Subscription `name` pushing to `url`/`name`, with `settings` and `destination` extras.
fn subscription(url: &str, name: &str, settings: &str, destination: &str) -> String {
    format!(
        r#"
[topics.telemetry.eventSubscriptions.{name}]
{settings}

[topics.telemetry.eventSubscriptions.{name}.destination]
endpointType = "WebHook"
endpointUrl = "{url}/{name}"
{destination}
"#
    )
}

const TOKEN: &str = "e2e-admin-token-0123456789";

/// `config` with the management API, and anonymous clients allowed to publish to `vehicles/#`.
fn managed(config: &str) -> String {
    format!(
        r#"{config}
[management]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"

[auth]
allow_anonymous = true

[topicSpaces.vehicles]
topicTemplates = ["vehicles/#"]

[permissionBindings.all-pub]
clientGroupName = "$all"
topicSpaceName = "vehicles"
permission = "Publisher"
"#
    )
}

/// An event's identity: its subject (the MQTT topic) and its payload.
fn identity(event: &Value) -> String {
    let subject = event["subject"].as_str().unwrap_or_default();
    let payload = match event["data_base64"].as_str() {
        Some(data) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        None => match &event["data"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        },
    };
    format!("{subject}#{payload}")
}

/// One POST as the webhook saw it.
#[derive(Debug, Clone)]
struct Seen {
    event: String,
    /// Its `aeg-delivery-count` header.
    count: u32,
    status: u16,
    at: Instant,
}

/// A webhook that answers 503 to the first `fails` requests of each event, then `200` after
/// `delay`, and remembers every request.
#[derive(Clone)]
struct Scripted {
    fails: u32,
    delay: Duration,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    fn new(fails: u32, delay: Duration) -> Scripted {
        Scripted { fails, delay, seen: Arc::default() }
    }

    async fn mount(&self, server: &MockServer, name: &str) {
        Mock::given(method("POST"))
            .and(path(format!("/{name}")))
            .respond_with(self.clone())
            .with_priority(1)
            .mount(server)
            .await;
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits until every event of `expected` got a 200; panics naming what is missing.
    async fn wait_delivered(&self, expected: &BTreeSet<String>) -> Vec<Seen> {
        let deadline = Instant::now() + WAIT;
        loop {
            let seen = self.seen();
            let delivered: BTreeSet<&String> =
                seen.iter().filter(|s| s.status == 200).map(|s| &s.event).collect();
            let missing: Vec<&String> =
                expected.iter().filter(|e| !delivered.contains(e)).collect();
            if missing.is_empty() {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{} events never delivered: {missing:?}",
                missing.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let events = webhook::events_of(request);
        let event = events.first().map(identity).unwrap_or_default();
        let count = webhook::header(request, "aeg-delivery-count").parse().unwrap_or(u32::MAX);
        let mut seen = self.seen.lock().expect("lock");
        let before = seen.iter().filter(|s| s.event == event).count();
        let status = if u32::try_from(before).unwrap_or(u32::MAX) < self.fails { 503 } else { 200 };
        seen.push(Seen { event, count, status, at: Instant::now() });
        ResponseTemplate::new(status).set_delay(if status == 200 {
            self.delay
        } else {
            Duration::ZERO
        })
    }
}

/// Publishes `per_node` QoS 1 events from a client on each node, to `vehicles/<node>`; the
/// identities of the acknowledged ones.
async fn publish_on_every_node(cluster: &GridmqCluster, per_node: u64) -> BTreeSet<String> {
    let mut acked = BTreeSet::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let topic = format!("vehicles/{}", node_id(i));
        let client = connect(node.addr, &format!("pub-{i}"), Protocol::V5).await.expect("connect");
        let stop = Arc::new(AtomicBool::new(false));
        let sent =
            publish_windowed(client, &topic, QoS::AtLeastOnce, 4, per_node, stop, WAIT).await;
        assert_eq!(sent.acked.len() as u64, per_node, "node {i}: {sent:?}");
        acked.extend(sent.acked.iter().map(|seq| format!("{topic}#{seq}")));
    }
    acked
}

/// The NATS cluster's JetStream, as a test client.
async fn jetstream(cluster: &GridmqCluster) -> jetstream::Context {
    let client = async_nats::connect(cluster.nats.client_urls()).await.expect("connect to NATS");
    jetstream::new(client)
}

/// Which node holds the claim on subscription `name` of `telemetry`, as the `dispatch` bucket
/// says: its index.
async fn holder(js: &jetstream::Context, name: &str) -> Option<usize> {
    let bucket = js.get_key_value("gm_dispatch").await.ok()?;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("telemetry/{name}"));
    let value = bucket.get(key).await.ok()??;
    let node = std::str::from_utf8(&value).ok()?.split('/').next()?.to_string();
    (0..26).find(|&i| node_id(i) == node)
}

/// Waits for a holder of `name`'s claim other than `not`.
async fn wait_holder(js: &jetstream::Context, name: &str, not: Option<usize>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = holder(js, name).await.filter(|&found| Some(found) != not) {
            return found;
        }
        assert!(Instant::now() < deadline, "no node (other than {not:?}) claimed {name}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many events of subscription `name` of `telemetry` have their delivery attempts recorded
/// in the `attempts` bucket (keys `<stream epoch>.<sequence in EVENTS>`).
async fn recorded_attempts(js: &jetstream::Context, name: &str) -> usize {
    let (Ok(bucket), Ok(stream)) =
        (js.get_key_value("gm_attempts").await, js.get_stream("GM_EVENTS").await)
    else {
        return 0;
    };
    let Ok(keys) = bucket.keys().await else { return 0 };
    let keys: Vec<String> = keys.filter_map(|key| async move { key.ok() }).collect().await;
    let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let subject = format!("gm.ev.{}.{}", b64("telemetry"), b64(name));
    let mut recorded = 0;
    for key in keys {
        let Some(seq) = key.rsplit('.').next().and_then(|seq| seq.parse::<u64>().ok()) else {
            continue;
        };
        if let Ok(message) = stream.get_raw_message(seq).await {
            recorded += usize::from(message.subject.as_str() == subject);
        }
    }
    recorded
}

/// The dead-letter records in the `DLQ` stream.
async fn dead_letters(js: &jetstream::Context) -> Vec<Value> {
    let Ok(mut stream) = js.get_stream("GM_DLQ").await else { return Vec::new() };
    let Ok(info) = stream.info().await else { return Vec::new() };
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut records = Vec::new();
    for seq in first.max(1)..=last {
        if let Ok(message) = stream.get_raw_message(seq).await {
            records.push(serde_json::from_slice(&message.payload).expect("a JSON record"));
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_schedule_goes_on_after_the_delivering_node_is_killed() {
    let server = webhook::accepting().await;
    let hook = Scripted::new(2, Duration::ZERO);
    hook.mount(&server, "hook").await;
    let doomed = Scripted::new(u32::MAX, Duration::ZERO);
    doomed.mount(&server, "doomed").await;
    let url = server.uri();
    let subscriptions = [
        subscription(&url, "hook", "retryDelaysSeconds = [2]", ""),
        subscription(&url, "doomed", "retryDelaysSeconds = [1]\nmaxDeliveryCount = 2", ""),
    ];
    let mut cluster = GridmqCluster::start_with(3, &config(&subscriptions.concat()));
    let js = jetstream(&cluster).await;
    let delivering = wait_holder(&js, "hook", None).await;

    let expected = publish_on_every_node(&cluster, 4).await;
    // A few attempts failed, the cluster recorded each, and none succeeded yet: the schedule is
    // under way, between two attempts. Then its node dies.
    let deadline = Instant::now() + WAIT;
    loop {
        let failed: BTreeSet<String> = hook.seen().into_iter().map(|s| s.event).collect();
        if failed.len() >= 3 && recorded_attempts(&js, "hook").await >= failed.len() {
            break;
        }
        assert!(Instant::now() < deadline, "first attempts missing: {:?}", hook.seen());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(hook.seen().iter().all(|s| s.status == 503), "killed mid-schedule");
    let killed_at = Instant::now();
    cluster.nodes[delivering].kill();
    let successor = wait_holder(&js, "hook", Some(delivering)).await;
    let takeover = killed_at.elapsed();
    eprintln!("node {delivering} killed; node {successor} delivers after {takeover:?}");
    assert!(takeover < Duration::from_secs(15), "took {takeover:?} to take over");

    let seen = hook.wait_delivered(&expected).await;
    // Each event's 200 came after two 503s, and every request counted the attempts before it,
    // also for events the killed node had leased and not sent yet.
    for event in &expected {
        let requests: Vec<&Seen> = seen.iter().filter(|s| &s.event == event).collect();
        let ok = requests.iter().position(|s| s.status == 200).expect("delivered");
        assert!(ok >= 2, "{event}: a 200 after fewer than two 503s: {requests:?}");
        let counts: Vec<u32> = requests[..=ok].iter().map(|s| s.count).collect();
        let attempts: Vec<u32> = (0..=ok as u32).collect();
        assert_eq!(counts, attempts, "{event}: delivery counts: {requests:?}");
    }

    // The subscription that always fails: each event dead-lettered with Event Grid's record.
    let deadline = Instant::now() + WAIT;
    let records = loop {
        let records = dead_letters(&js).await;
        let lettered: BTreeSet<String> = records.iter().map(|r| identity(&r["event"])).collect();
        if expected.is_subset(&lettered) {
            break records;
        }
        assert!(Instant::now() < deadline, "dead letters missing: {records:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for record in &records {
        let properties = &record["deadletterProperties"];
        assert_eq!(properties["deadletterreason"], "MaxDeliveryAttemptsExceeded", "{record}");
        assert_eq!(properties["deliveryattempts"], 2, "{record}");
        assert_eq!(properties["deliveryresult"], "Busy", "{record}");
        gateway_tests::schema::validate("dead-letter-record.schema.json", record)
            .expect("dead-letter schema");
    }
    eprintln!("{} dead letters for {} events", records.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_events_acknowledged_while_a_node_is_killed_all_reach_the_webhook() {
    let server = webhook::accepting().await;
    let hook = Scripted::new(0, Duration::ZERO);
    hook.mount(&server, "hook").await;
    let mut cluster =
        GridmqCluster::start_with(3, &config(&subscription(&server.uri(), "hook", "", "")));
    let js = jetstream(&cluster).await;
    let delivering = wait_holder(&js, "hook", None).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let topic = format!("vehicles/{}", node_id(i));
        let client = connect(node.addr, &format!("pub-{i}"), Protocol::V5).await.expect("connect");
        let stop = stop.clone();
        publishers.push((
            topic.clone(),
            tokio::spawn(async move {
                publish_windowed(client, &topic, QoS::AtLeastOnce, 8, u64::MAX, stop, WAIT).await
            }),
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.nodes[delivering].kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let mut expected = BTreeSet::new();
    for (topic, task) in publishers {
        let sent: Published = task.await.expect("publisher");
        eprintln!("{topic}: {} acknowledged, ended: {:?}", sent.acked.len(), sent.ended);
        expected.extend(sent.acked.iter().map(|seq| format!("{topic}#{seq}")));
    }
    assert!(expected.len() > 30, "too few publishes to mean anything: {}", expected.len());

    let seen = hook.wait_delivered(&expected).await;
    let mut copies: BTreeMap<&String, usize> = BTreeMap::new();
    for s in &seen {
        *copies.entry(&s.event).or_default() += 1;
    }
    let duplicates: usize = copies.values().map(|n| n - 1).sum();
    let first = seen.iter().map(|s| s.at).min().expect("requests");
    let last = seen.iter().map(|s| s.at).max().expect("requests");
    eprintln!(
        "{} acknowledged events, {} requests ({:.0}/s at the webhook over {:?}), {duplicates} \
         duplicates, 0 missing",
        expected.len(),
        seen.len(),
        seen.len() as f64 / (last - first).as_secs_f64().max(0.001),
        last - first
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_node_sends_at_a_time() {
    let server = webhook::accepting().await;
    let delay = Duration::from_millis(300);
    let hook = Scripted::new(0, delay);
    hook.mount(&server, "hook").await;
    let destination = "maxConcurrency = 1";
    let cluster = GridmqCluster::start_with(
        3,
        &config(&subscription(&server.uri(), "hook", "", destination)),
    );
    let js = jetstream(&cluster).await;
    wait_holder(&js, "hook", None).await;

    let expected = publish_on_every_node(&cluster, 4).await;
    let seen = hook.wait_delivered(&expected).await;
    // With one request at a time, each request arrives after the previous one was answered.
    let mut arrivals: Vec<Instant> = seen.iter().map(|s| s.at).collect();
    arrivals.sort();
    let closest = arrivals.windows(2).map(|w| w[1] - w[0]).min().expect("requests");
    eprintln!("{} requests, closest {closest:?} apart", arrivals.len());
    assert!(closest >= delay * 9 / 10, "two requests in flight at once: {closest:?} apart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutting_down_hands_its_subscription_on_at_once() {
    let server = webhook::accepting().await;
    let hook = Scripted::new(0, Duration::ZERO);
    hook.mount(&server, "hook").await;
    let mut cluster =
        GridmqCluster::start_with(3, &config(&subscription(&server.uri(), "hook", "", "")));
    let js = jetstream(&cluster).await;
    let delivering = wait_holder(&js, "hook", None).await;

    // What happens to the claim, as the bucket records it: the holder's keepings, then its
    // release (a delete), where a claim left to lapse would go without one.
    let bucket = js.get_key_value("gm_dispatch").await.expect("the dispatch bucket");
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("telemetry/hook");
    let mut changes = bucket.watch(&key).await.expect("watch the claim");
    let stopped_at = Instant::now();
    let exit = tokio::task::block_in_place(|| {
        cluster.nodes[delivering].terminate(Duration::from_secs(10))
    });
    assert!(exit.is_some_and(|status| status.success()), "clean exit: {exit:?}");
    let holder_prefix = format!("{}/", node_id(delivering));
    let released = loop {
        let change = tokio::time::timeout(Duration::from_secs(20), changes.next())
            .await
            .expect("the claim changes")
            .expect("a change")
            .expect("a readable change");
        let keeping = change.operation == async_nats::jetstream::kv::Operation::Put
            && change.value.starts_with(holder_prefix.as_bytes());
        if !keeping {
            break change;
        }
    };
    assert_eq!(
        released.operation,
        async_nats::jetstream::kv::Operation::Delete,
        "the claim was not released: {released:?}"
    );
    let successor = wait_holder(&js, "hook", Some(delivering)).await;
    let handover = stopped_at.elapsed();
    eprintln!("node {delivering} stopped; node {successor} delivers after {handover:?}");

    let survivors: Vec<usize> = (0..3).filter(|&i| i != delivering).collect();
    let mut expected = BTreeSet::new();
    for i in survivors {
        let topic = format!("vehicles/{}", node_id(i));
        let client = connect(cluster.nodes[i].addr, &format!("pub-{i}"), Protocol::V5)
            .await
            .expect("connect");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = publish_windowed(client, &topic, QoS::AtLeastOnce, 4, 3, stop, WAIT).await;
        expected.extend(sent.acked.iter().map(|seq| format!("{topic}#{seq}")));
    }
    assert_eq!(expected.len(), 6);
    hook.wait_delivered(&expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_shows_the_subscriptions_backlog() {
    let server = webhook::accepting().await;
    let hook = Scripted::new(u32::MAX, Duration::ZERO);
    hook.mount(&server, "hook").await;
    let hook_config = subscription(&server.uri(), "hook", "retryDelaysSeconds = [60]", "");
    let cluster = GridmqCluster::start_with(3, &managed(&config(&hook_config)));
    let js = jetstream(&cluster).await;
    wait_holder(&js, "hook", None).await;

    let expected = publish_on_every_node(&cluster, 2).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &cluster.nodes {
        let api = node.http.expect("the management API is announced");
        loop {
            let (status, listing) =
                request(api, "GET", "/routing/subscriptions", TOKEN, None).await.expect("GET");
            assert_eq!(status, 200, "{listing}");
            let found =
                listing["value"].as_array().and_then(|v| v.iter().find(|s| s["name"] == "hook"));
            let waiting = found.and_then(|s| s["waiting"].as_u64());
            if waiting == Some(expected.len() as u64) {
                break;
            }
            assert!(Instant::now() < deadline, "{api}: {listing}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_subscription_goes_on_and_a_deleted_ones_events_are_removed() {
    let server = webhook::accepting().await;
    let failing = Scripted::new(u32::MAX, Duration::ZERO);
    failing.mount(&server, "failing").await;
    let gone = Scripted::new(u32::MAX, Duration::ZERO);
    gone.mount(&server, "gone").await;
    let changed = Scripted::new(0, Duration::ZERO);
    changed.mount(&server, "changed").await;
    let cluster = GridmqCluster::start_with(3, &managed(&config("[topics.telemetry]")));
    let url = server.uri();
    let body = |path: &str, delay: u32| {
        json!({"properties": {"retryDelaysSeconds": [delay], "deliveryConfiguration": {
            "deliveryMode": "Push", "push": {"destination": {"endpointType": "WebHook",
                "properties": {"endpointUrl": format!("{url}/{path}")}}}}}})
    };
    let apis: Vec<SocketAddr> =
        cluster.nodes.iter().map(|n| n.http.expect("the management API is announced")).collect();
    let path = |name: &str| format!("/topics/telemetry/eventSubscriptions/{name}");
    // A change made on one node, then seen on every node: `to` is the endpoint it names now,
    // none once it is deleted.
    let change = |on: usize, method: &'static str, name: &'static str, to: Option<&'static str>| {
        let (apis, path, url) = (apis.clone(), path(name), url.clone());
        let body =
            (method == "PUT").then(|| to.map(|to| body(to, if to == "gone" { 60 } else { 1 })));
        async move {
            let (status, answer) = request(apis[on], method, &path, TOKEN, body.flatten().as_ref())
                .await
                .expect("request");
            assert!((200..300).contains(&status), "{method} {path}: {answer}");
            let deadline = Instant::now() + Duration::from_secs(20);
            for api in apis {
                loop {
                    let (status, answer) =
                        request(api, "GET", &path, TOKEN, None).await.expect("GET");
                    let applied = match to {
                        Some(to) => {
                            status == 200 && answer.to_string().contains(&format!("{url}/{to}\""))
                        }
                        None => status == 404,
                    };
                    if applied {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{method} {path} not applied on {api}: {answer}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    change(0, "PUT", "moved", Some("failing")).await;
    change(1, "PUT", "gone", Some("gone")).await;

    let expected = publish_on_every_node(&cluster, 2).await;
    let deadline = Instant::now() + WAIT;
    loop {
        // Both are under way; their events wait in the log, tried or not (a subscription rests
        // after each failure, and a webhook gives up after 10 attempts).
        if !failing.seen().is_empty() && !gone.seen().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "first attempts: {:?} {:?}",
            failing.seen(),
            gone.seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    change(1, "PUT", "moved", Some("changed")).await;
    change(2, "DELETE", "gone", None).await;
    // The changed subscription's events go on to its new endpoint.
    changed.wait_delivered(&expected).await;
    // The deleted one's consumer and events are gone from the routing log.
    let js = jetstream(&cluster).await;
    let stream = js.get_stream("GM_EVENTS").await.expect("the events stream");
    let b64 = |name: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name);
    let consumer = format!("ev-{}", b64("telemetry/gone"));
    let subject = format!("gm.ev.{}.{}", b64("telemetry"), b64("gone"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let consumer_left = stream.consumer_info(&consumer).await.is_ok();
        let events_left = stream.get_first_raw_message_by_subject(&subject, 1).await.is_ok();
        if !consumer_left && !events_left {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "consumer left: {consumer_left}, events left: {events_left}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_sends_nothing_once_another_took_over() {
    let server = webhook::accepting().await;
    let delay = Duration::from_millis(300);
    let hook = Scripted::new(0, delay);
    hook.mount(&server, "hook").await;
    let destination = "maxConcurrency = 1";
    let cluster = GridmqCluster::start_with(
        3,
        &config(&subscription(&server.uri(), "hook", "", destination)),
    );
    let js = jetstream(&cluster).await;
    let paused = wait_holder(&js, "hook", None).await;
    let signal = |name: &str| {
        let pid = cluster.nodes[paused].pid().to_string();
        let status = std::process::Command::new("kill").args([name, &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {name} {pid}");
    };

    // Frozen, as a stalled node is: it cannot keep its claim, and another node takes it. Once
    // it runs again it finds the claim taken and does not send alongside the new holder.
    signal("-STOP");
    let successor = wait_holder(&js, "hook", Some(paused)).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != paused).collect();
    let mut expected = BTreeSet::new();
    for round in 0..2 {
        for &i in &others {
            let topic = format!("vehicles/{}/{round}", node_id(i));
            let client = connect(cluster.nodes[i].addr, &format!("pub-{i}-{round}"), Protocol::V5)
                .await
                .expect("connect");
            let stop = Arc::new(AtomicBool::new(false));
            let sent = publish_windowed(client, &topic, QoS::AtLeastOnce, 4, 3, stop, WAIT).await;
            assert_eq!(sent.acked.len(), 3, "{sent:?}");
            expected.extend(sent.acked.iter().map(|seq| format!("{topic}#{seq}")));
        }
        if round == 0 {
            signal("-CONT");
        }
    }
    hook.wait_delivered(&expected).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut arrivals: Vec<Instant> = hook.seen().iter().map(|s| s.at).collect();
    arrivals.sort();
    let closest = arrivals.windows(2).map(|w| w[1] - w[0]).min().expect("requests");
    eprintln!(
        "node {paused} paused, node {successor} took over; {} requests, closest {closest:?} apart",
        arrivals.len()
    );
    assert!(closest >= delay * 9 / 10, "two requests in flight at once: {closest:?} apart");
    assert_eq!(holder(&js, "hook").await, Some(successor), "the paused node did not take it back");
}
