//! Diagnostic logs end to end: the binary with JSON logs (`--log-format json`, or
//! `log.format = "json"`) writes Event Grid's log categories as one JSON object per line on
//! stderr, each under its own target with Event Grid's fields; under a storm of refused
//! connections a category logs at most its bucket and reports the rest as suppressed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway_tests::clients::v5;
use gateway_tests::{Gridmq, Log};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FAILED_CONNECTIONS: &str = "gridmq::diagnostics::failed_mqtt_connections";

/// A 3.1.1 CONNECT with username `alice`, no client id and no clean session, which the
/// broker must refuse with CONNACK 0x02 (identifier rejected).
const REFUSED_CONNECT: [u8; 21] = [
    0x10, 19, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x80, 0, 60, 0, 0, 0, 5, b'a', b'l', b'i', b'c',
    b'e',
];

/// Sends [`REFUSED_CONNECT`] and checks the refusal on the wire.
async fn refused_connect(addr: SocketAddr) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(&REFUSED_CONNECT).await.expect("write CONNECT");
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await.expect("read CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 2], "CONNACK: identifier rejected");
}

/// Every stderr line, parsed; panics on a line that is not one JSON object.
fn json_lines(log: &Log) -> Vec<Value> {
    log.lines()
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            assert!(value.is_object(), "not an object: {line}");
            value
        })
        .collect()
}

fn with_target(lines: &[Value], target: &str) -> Vec<Value> {
    lines.iter().filter(|line| line["target"] == target).cloned().collect()
}

/// Waits until the log has `count` lines of `target`; returns them.
async fn wait_for(log: &Log, target: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = with_target(&json_lines(log), target);
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "only {} {target} lines: {:#?}",
            found.len(),
            log.lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_refused_connection_is_one_json_line_with_event_grids_fields() {
    let (gridmq, log) = Gridmq::start_logged("", &["--log-format", "json"], "warn");
    refused_connect(gridmq.addr).await;
    let line = wait_for(&log, FAILED_CONNECTIONS, 1).await.remove(0);
    assert_eq!(line["level"], "WARN");
    let fields = &line["fields"];
    assert_eq!(fields["category"], "FailedMqttConnections");
    assert_eq!(fields["operationName"], "Connect");
    assert_eq!(fields["clientIdentity"], "alice");
    assert_eq!(fields["sessionName"], "");
    assert_eq!(fields["protocol"], "MQTT3");
    assert_eq!(fields["clientIp"], "127.0.0.1");
    assert_eq!(fields["resultSignature"], "ClientIdentifierNotValid");
    assert!(fields["resultDescription"].as_str().is_some_and(|d| d.contains("clean session")));
    assert!(line["timestamp"].is_string());
}

/// Anonymous clients may publish to and subscribe to `vehicles/#` only.
const ACCESS: &str = r#"
[log]
format = "json"

[auth]
allow_anonymous = true

[topicSpaces.vehicles]
topicTemplates = ["vehicles/#"]

[permissionBindings.pub]
clientGroupName = "$all"
topicSpaceName = "vehicles"
permission = "Publisher"

[permissionBindings.sub]
clientGroupName = "$all"
topicSpaceName = "vehicles"
permission = "Subscriber"
"#;

#[tokio::test]
async fn each_category_logs_under_its_own_target() {
    let (gridmq, log) = Gridmq::start_logged(ACCESS, &[], "warn,gridmq::diagnostics=info");
    let mut client = v5::Client::connect(gridmq.addr, "car1").await;
    let connected =
        wait_for(&log, "gridmq::diagnostics::successful_mqtt_connections", 1).await.remove(0);
    assert_eq!(connected["fields"]["sessionName"], "car1");
    assert_eq!(connected["fields"]["clientIdentity"], "car1");
    assert_eq!(connected["fields"]["protocol"], "MQTT5");
    assert_eq!(connected["level"], "INFO");

    client.publish("secret/x", v5::QoS::AtLeastOnce, false, b"no").await;
    let published =
        wait_for(&log, "gridmq::diagnostics::failed_mqtt_published_messages", 1).await.remove(0);
    let fields = &published["fields"];
    assert_eq!(fields["category"], "FailedMqttPublishedMessages");
    assert_eq!(fields["topicName"], "secret/x");
    assert_eq!(fields["qos"], 1);
    assert_eq!(fields["resultSignature"], "NotAuthorized");
    assert_eq!(fields["sessionName"], "car1");

    let granted = client.subscribe("secret/#", v5::QoS::AtLeastOnce).await;
    assert!(!matches!(granted, v5::SubscribeReasonCode::Success(_)), "{granted:?}");
    let subscribed = wait_for(&log, "gridmq::diagnostics::failed_mqtt_subscription_operations", 1)
        .await
        .remove(0);
    assert_eq!(subscribed["fields"]["topicFilter"], "secret/#");
    assert_eq!(subscribed["fields"]["operationName"], "Subscribe");
    assert_eq!(subscribed["fields"]["resultSignature"], "NotAuthorized");

    client.disconnect().await;
    let gone = wait_for(&log, "gridmq::diagnostics::mqtt_disconnections", 1).await.remove(0);
    assert_eq!(gone["fields"]["sessionName"], "car1");
    assert_eq!(gone["fields"]["resultSignature"], "ClientInitiatedDisconnect");
}

#[tokio::test]
async fn a_storm_of_refused_connections_logs_at_most_the_bucket_and_counts_the_rest() {
    const STORM: usize = 200;
    const RATE: usize = 5;
    let config = format!("[log]\nformat = \"json\"\ndiagnostic_events_per_second = {RATE}\n");
    let (mut gridmq, log) = Gridmq::start_logged(&config, &[], "warn");
    let started = Instant::now();
    let storm: Vec<_> = (0..STORM).map(|_| tokio::spawn(refused_connect(gridmq.addr))).collect();
    for attempt in storm {
        attempt.await.expect("a refused connection");
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The summary comes every 10 s and at shutdown.
    gridmq.terminate(Duration::from_secs(10)).expect("a clean exit");
    let summaries = wait_for(&log, "gridmq::diagnostics::suppressed", 1).await;
    let lines = json_lines(&log);
    let logged = with_target(&lines, FAILED_CONNECTIONS).len();
    let suppressed: u64 = with_target(&lines, "gridmq::diagnostics::suppressed")
        .iter()
        .filter(|s| s["fields"]["category"] == "failed_mqtt_connections")
        .map(|s| s["fields"]["suppressed"].as_u64().expect("a count"))
        .sum();
    let most = RATE + (elapsed * RATE as f64).ceil() as usize;
    assert!(
        (RATE..=most).contains(&logged),
        "{logged} events logged in {elapsed:.2} s at {RATE}/s with a burst of {RATE}"
    );
    assert_eq!(
        logged + suppressed as usize,
        STORM,
        "every refusal logged or counted: {summaries:#?}"
    );
    assert_eq!(summaries[0]["level"], "WARN");
    assert_eq!(json!(summaries[0]["fields"]["category"]), json!("failed_mqtt_connections"));
}

#[tokio::test]
async fn a_refused_data_plane_request_is_logged_by_route_not_by_path() {
    let config = "[http]\nlisten = \"127.0.0.1:0\"\naccess_keys = [\"a2V5LW9uZQ==\"]\n";
    let (gridmq, log) = Gridmq::start_logged(config, &["--log-format", "json"], "warn");
    let api = gridmq.api.expect("the data-plane API");
    let response = gateway_tests::http_raw::request(
        api,
        "POST",
        "/mqtt/messages?topic=vehicles%2Fcar1",
        &[("aeg-sas-key", "d3Jvbmc="), ("content-type", "text/plain")],
        b"hello",
    )
    .await
    .expect("HTTP request");
    assert_eq!(response.status, 401);
    let line =
        wait_for(&log, "gridmq::diagnostics::failed_http_data_plane_operations", 1).await.remove(0);
    let fields = &line["fields"];
    assert_eq!(fields["category"], "FailedHttpDataPlaneOperations");
    assert_eq!(fields["operationName"], "/mqtt/messages");
    assert_eq!(fields["method"], "POST");
    assert_eq!(fields["authenticationType"], "SasKey");
    assert_eq!(fields["resultSignature"], 401);
    assert!(!line.to_string().contains("car1"), "no topic in the line: {line}");
}
