//! Routing under failure: a webhook that goes away and comes back, and a gateway killed with
//! SIGKILL in the middle of delivering. Every acknowledged message must arrive.

use std::collections::BTreeSet;
use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::v5;
use gateway_tests::webhook;
use wiremock::MockServer;

const WAIT: Duration = Duration::from_secs(30);

fn config(url: &str, extra: &str) -> String {
    format!(
        r#"
[[routing.routes]]
topic = "telemetry"

[topics.telemetry.eventSubscriptions.hook]
retryDelaysSeconds = [0.2, 0.5]
{extra}

[topics.telemetry.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "{url}/hook"
maxEventsPerBatch = 20
"#
    )
}

/// The payloads (as text) of every event the server received.
async fn payloads(server: &MockServer) -> Vec<String> {
    let posts = webhook::all_posts(server).await;
    let events = webhook::events(&posts);
    events.iter().map(|event| event["data"].as_str().unwrap_or_default().to_string()).collect()
}

async fn wait_for_all(server: &MockServer, expected: &BTreeSet<String>) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = payloads(server).await;
        let distinct: BTreeSet<String> = got.iter().cloned().collect();
        if expected.is_subset(&distinct) {
            return got;
        }
        let missing = expected.difference(&distinct).count();
        assert!(tokio::time::Instant::now() < deadline, "{missing} events never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn text_payload() -> v5::PublishProperties {
    let mut properties = v5::no_properties();
    properties.payload_format_indicator = Some(1);
    properties
}

#[tokio::test]
async fn an_outage_loses_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = webhook::accepting_on(listener, Duration::ZERO).await;
    let gridmq = Gridmq::start_with_config(&config(&server.uri(), ""));
    let client = v5::Client::connect(gridmq.addr, "car1").await;
    let mut expected = BTreeSet::new();
    // Up: the handshake passes and the first events arrive.
    for n in 0..20 {
        let payload = format!("m{n}");
        client
            .publish_with(
                "vehicles/car1",
                v5::QoS::AtLeastOnce,
                false,
                payload.as_bytes(),
                text_payload(),
            )
            .await;
        expected.insert(payload);
    }
    let before = wait_for_all(&server, &expected).await.len();
    assert!(before >= 20);
    // Down: the port refuses connections while publishing goes on.
    drop(server);
    for n in 20..220 {
        let payload = format!("m{n}");
        client
            .publish_with(
                "vehicles/car1",
                v5::QoS::AtLeastOnce,
                false,
                payload.as_bytes(),
                text_payload(),
            )
            .await;
        expected.insert(payload);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Back on the same address: everything published meanwhile arrives.
    let listener = std::net::TcpListener::bind(addr).expect("rebind the webhook's port");
    let server = webhook::accepting_on(listener, Duration::ZERO).await;
    let after: BTreeSet<String> =
        wait_for_all(&server, &(20..220).map(|n| format!("m{n}")).collect())
            .await
            .into_iter()
            .collect();
    assert_eq!(after.len(), 200, "every event sent during the outage arrives");
}

#[tokio::test]
async fn a_crash_mid_delivery_loses_nothing_acknowledged() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    // A slow endpoint keeps a backlog in the buffer when the gateway dies.
    let server = webhook::accepting_on(listener, Duration::from_millis(100)).await;
    let settings = config(&server.uri(), "")
        .replace("maxEventsPerBatch = 20", "maxEventsPerBatch = 2\nmaxConcurrency = 1");
    let mut gridmq = Gridmq::start_with_config(&settings);
    let client = v5::Client::connect(gridmq.addr, "car1").await;
    let mut expected = BTreeSet::new();
    for n in 0..300 {
        let payload = format!("m{n}");
        client
            .publish_with(
                "vehicles/car1",
                v5::QoS::AtLeastOnce,
                false,
                payload.as_bytes(),
                text_payload(),
            )
            .await;
        expected.insert(payload);
    }
    // Wait for every PUBACK: acknowledged means committed.
    let mut client = client;
    for _ in 0..300 {
        client.puback().await;
    }
    let delivered = payloads(&server).await.len();
    assert!(delivered < 300, "the crash must come mid-delivery ({delivered} delivered)");
    gridmq.kill();
    let data = gridmq.data_dir();
    let _restarted = Gridmq::start_in(data, &settings);
    let got = wait_for_all(&server, &expected).await;
    assert!(got.len() >= 300, "at least once");
}
