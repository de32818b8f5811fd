//! Namespace topics and event subscriptions on every node: made, changed and deleted through
//! one node's management API, they appear on the others within a bound, events published on
//! another node's data plane reach the subscription's webhook, a node started afterwards has
//! them, and a name a node's config declares stays as that node declares it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use gateway_tests::cluster::{GridmqCluster, NatsCluster, cluster_config, node_id};
use gateway_tests::http::request;
use gateway_tests::{Gridmq, http_raw, webhook};
use serde_json::{Value, json};

const TOKEN: &str = "e2e-admin-token-0123456789";
const KEY: &str = "ZGF0YS1wbGFuZS1hY2Nlc3Mta2V5LTAxMjM0NTY3ODk=";

/// What a change on one node may take to show on another.
const WITHIN: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(20);

/// The management API and the data plane on free ports, and `extra`.
fn config(extra: &str) -> String {
    format!(
        "[management]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\naccess_keys = [\"{KEY}\"]\n\n{extra}"
    )
}

/// A node's management API.
struct Api(SocketAddr);

impl Api {
    fn of(node: &Gridmq) -> Api {
        Api(node.http.expect("the management API is announced"))
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        request(self.0, method, path, TOKEN, body.as_ref()).await
    }

    /// Sends `method path` and checks that the answer is one of `expected`.
    async fn change(&self, method: &str, path: &str, body: Option<Value>, expected: &[u16]) {
        let (status, answer) = self.call(method, path, body).await.expect(method);
        assert!(expected.contains(&status), "{method} {path}: {status} {answer}");
    }

    /// Polls `GET path` until `done` holds for (status, body), for at most [`WITHIN`]; returns
    /// how long it took.
    async fn wait_for(&self, path: &str, done: impl Fn(u16, &Value) -> bool) -> Result<Duration> {
        let since = Instant::now();
        loop {
            let (status, body) = self.call("GET", path, None).await?;
            if done(status, &body) {
                return Ok(since.elapsed());
            }
            if since.elapsed() > WITHIN {
                bail!("GET {path} on {}: still {status} {body} after {WITHIN:?}", self.0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Publishes one CloudEvent of `ty` to namespace topic `topic` through `node`'s data plane;
/// returns the status.
async fn publish(node: &Gridmq, topic: &str, id: &str, ty: &str) -> Result<u16> {
    let api = node.api.expect("the data plane is announced");
    let event = json!({"specversion": "1.0", "id": id, "source": "shop", "type": ty,
        "data": {"id": id}});
    let headers = [("aeg-sas-key", KEY), ("content-type", "application/cloudevents+json")];
    let target = format!("/topics/{topic}:publish");
    let answer =
        http_raw::request(api, "POST", &target, &headers, event.to_string().as_bytes()).await?;
    Ok(answer.status)
}

/// The ids of the events the webhook received on `/hook`.
async fn delivered(server: &wiremock::MockServer) -> Vec<String> {
    let events = webhook::events(&webhook::posts(server, "/hook").await);
    events.iter().filter_map(|e| e["id"].as_str().map(str::to_string)).collect()
}

fn push_to(url: &str) -> Value {
    json!({"properties": {"deliveryConfiguration": {"deliveryMode": "Push", "push": {
        "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url}}}}}})
}

const SUBSCRIPTION: &str = "/topics/orders/eventSubscriptions/hook";

// Multi-threaded: the harness blocks while it starts processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_made_on_a_takes_events_on_c_and_changes_reach_every_node() -> Result<()> {
    let server = webhook::accepting().await;
    let cluster = GridmqCluster::start_with(3, &config(""));
    let [a, b, c] = [0, 1, 2].map(|i| Api::of(&cluster.nodes[i]));

    a.change("PUT", "/topics/orders", Some(json!({"properties": {}})), &[201]).await;
    let hook = push_to(&format!("{}/hook", server.uri()));
    a.change("PUT", SUBSCRIPTION, Some(hook), &[201]).await;
    let shown = c.wait_for(SUBSCRIPTION, |status, _| status == 200).await?;
    let (status, topic) = c.call("GET", "/topics/orders", None).await?;
    assert_eq!(status, 200, "{topic}");
    assert_eq!(topic["properties"]["eventRetentionInDays"], 7, "the default: {topic}");

    // An event published on C reaches the webhook, through the subscription C now has.
    assert_eq!(publish(&cluster.nodes[2], "orders", "from-c", "order.created").await?, 200);
    webhook::wait_posts(&server, "/hook", WAIT, |p| !webhook::events(p).is_empty()).await;
    assert_eq!(delivered(&server).await, ["from-c"]);

    // A PATCH on B reaches A: A's subscription now takes only `order.created`.
    let patch = json!({"properties": {"filtersConfiguration": {
        "includedEventTypes": ["order.created"]}}});
    b.change("PATCH", SUBSCRIPTION, Some(patch), &[200]).await;
    let types =
        |body: &Value| body["properties"]["filtersConfiguration"]["includedEventTypes"].clone();
    let patched = a
        .wait_for(SUBSCRIPTION, |status, body| {
            status == 200 && types(body) == json!(["order.created"])
        })
        .await?;
    for (id, ty) in [("skipped-on-a", "order.deleted"), ("from-a", "order.created")] {
        assert_eq!(publish(&cluster.nodes[0], "orders", id, ty).await?, 200);
    }

    // A node that starts now reads the topic and the patched subscription from the cluster.
    let d = Gridmq::start_with_config(&cluster_config(&cluster.nats, &node_id(3), &config("")));
    let (status, body) = Api::of(&d).call("GET", SUBSCRIPTION, None).await?;
    assert_eq!((status, types(&body)), (200, json!(["order.created"])), "{body}");
    assert_eq!(publish(&d, "orders", "from-d", "order.created").await?, 200);
    webhook::wait_posts(&server, "/hook", WAIT, |p| webhook::events(p).len() >= 3).await;
    // A while longer, for an event that should not come.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ids = delivered(&server).await;
    ids.sort();
    assert_eq!(ids, ["from-a", "from-c", "from-d"], "the filter patched on B applies on A");

    // A DELETE on C takes the topic and its subscription off A, B and D.
    c.change("DELETE", "/topics/orders", None, &[200]).await;
    for api in [a, b, Api::of(&d)] {
        api.wait_for("/topics/orders", |status, _| status == 404).await?;
        let (status, body) = api.call("GET", SUBSCRIPTION, None).await?;
        assert_eq!(status, 404, "{body}");
    }
    assert_eq!(publish(&cluster.nodes[0], "orders", "gone", "order.created").await?, 404);
    eprintln!("A's change showed on C after {shown:?}; B's patch on A after {patched:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_a_node_declares_stays_as_its_config_says() -> Result<()> {
    let nats = NatsCluster::start(3);
    // Only A declares `orders` (retention 1 day) and its queue subscription `pull` (60 s locks).
    let declared = "[topics.orders]\neventRetentionInDays = 1\n\n\
                    [topics.orders.eventSubscriptions.pull]\ndeliveryMode = \"Queue\"\n";
    let configs = [config(declared), config(""), config("")];
    let nodes = (0..3)
        .map(|i| Gridmq::start_with_config(&cluster_config(&nats, &node_id(i), &configs[i])))
        .collect();
    let cluster = GridmqCluster { nodes, nats };
    let [a, b, c] = [0, 1, 2].map(|i| Api::of(&cluster.nodes[i]));
    let retention = json!({"properties": {"eventRetentionInDays": 3}});
    let (status, body) = b.call("PUT", "/topics/orders", Some(retention)).await?;
    ensure!(status == 201, "B does not declare orders: {status} {body}");
    let queue = json!({"properties": {"deliveryConfiguration": {"deliveryMode": "Queue",
        "queue": {"receiveLockDurationInSeconds": 120}}}});
    b.change("PUT", "/topics/orders/eventSubscriptions/pull", Some(queue), &[201]).await;
    // Changes apply on each node in the order they were made: once a later one shows on A,
    // A has had the ones above.
    b.change("PUT", "/topics/marker", Some(json!({"properties": {}})), &[201]).await;
    a.wait_for("/topics/marker", |status, _| status == 200).await?;
    c.wait_for("/topics/marker", |status, _| status == 200).await?;

    let lock = |body: &Value| {
        body["properties"]["deliveryConfiguration"]["queue"]["receiveLockDurationInSeconds"].clone()
    };
    let (_, topic) = a.call("GET", "/topics/orders", None).await?;
    assert_eq!(topic["properties"]["eventRetentionInDays"], 1, "A keeps its own: {topic}");
    let (_, pull) = a.call("GET", "/topics/orders/eventSubscriptions/pull", None).await?;
    assert_eq!(lock(&pull), 60, "A keeps its own: {pull}");
    let (_, topic) = c.call("GET", "/topics/orders", None).await?;
    assert_eq!(topic["properties"]["eventRetentionInDays"], 3, "C takes B's: {topic}");
    let (_, pull) = c.call("GET", "/topics/orders/eventSubscriptions/pull", None).await?;
    assert_eq!(lock(&pull), 120, "C takes B's: {pull}");

    // A delete from B does not take A's declared topic away either.
    b.change("DELETE", "/topics/orders", None, &[200]).await;
    b.change("DELETE", "/topics/marker", None, &[200]).await;
    a.wait_for("/topics/marker", |status, _| status == 404).await?;
    c.wait_for("/topics/orders", |status, _| status == 404).await?;
    let (status, pull) = a.call("GET", "/topics/orders/eventSubscriptions/pull", None).await?;
    assert_eq!((status, lock(&pull)), (200, json!(60)), "{pull}");
    Ok(())
}
