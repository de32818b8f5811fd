//! The data plane's MQTT side on any node: a message published over HTTP on one node reaches an
//! MQTT subscriber on another, and a message retained over HTTP on one node is read over HTTP on
//! a third.

use std::net::SocketAddr;
use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::v5;
use gateway_tests::cluster::GridmqCluster;
use gateway_tests::http_raw::{self, Response};

/// The namespace access key (base64, as Event Grid shows keys).
const KEY: &str = "ZGF0YS1wbGFuZS1hY2Nlc3Mta2V5LTAxMjM0NTY3ODk=";

fn config() -> String {
    format!("[http]\nlisten = \"127.0.0.1:0\"\naccess_keys = [\"{KEY}\"]\n")
}

fn api(node: &Gridmq) -> SocketAddr {
    node.api.expect("the data-plane API is announced")
}

async fn call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut all = vec![("aeg-sas-key", KEY)];
    all.extend_from_slice(headers);
    http_raw::request(addr, method, target, &all, body).await.expect("HTTP exchange")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_publish_on_b_reaches_a_subscriber_on_a_and_its_retained_copy_reads_on_c() {
    let cluster = GridmqCluster::start_with(3, &config());
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let mut subscriber = v5::Client::connect(a.addr, "dp-sub").await;
    subscriber.subscribe("plant/#", v5::QoS::AtLeastOnce).await;

    let target = "/mqtt/messages?topic=plant%2Fpress%2F7&qos=1&retain=1";
    let answer = call(api(b), "POST", target, &[], b"pressure 4.2").await;
    assert_eq!(answer.status, 200, "{}", answer.error_message());

    let publish = subscriber.recv().await;
    assert_eq!(&publish.topic[..], b"plant/press/7");
    assert_eq!(&publish.payload[..], b"pressure 4.2");
    assert_eq!(publish.qos, v5::QoS::AtLeastOnce);

    // The retained copy is in the cluster's bucket; C's index follows it within moments.
    let read = "/mqtt/retainedMessages/message?topic=plant%2Fpress%2F7";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let retained = loop {
        let answer = call(api(c), "GET", read, &[], b"").await;
        if answer.status == 200 || tokio::time::Instant::now() >= deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(retained.status, 200, "{}", retained.error_message());
    assert_eq!(retained.body, b"pressure 4.2");
    assert_eq!(retained.header("x-ms-mqtt-topic"), Some("plant/press/7"));
}
