//! Routing to webhooks, end to end: real MQTT publishes into the gridmq binary, a real HTTP
//! server (wiremock) as the destination, assertions on the requests it received.

use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::v5;
use gateway_tests::webhook;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// The dead-letter reason of an event the endpoint refused for good.
const NON_RETRIABLE: &str = "NonRetriable";

/// How long a test waits for deliveries before failing.
const WAIT: Duration = Duration::from_secs(20);

/// A config routing every message to namespace topic `t`, whose subscription `hook` pushes to
/// `url` with `destination` extras, retrying after `delays` seconds.
fn config(url: &str, destination: &str, extra: &str) -> String {
    format!(
        r#"
[[routing.routes]]
topic = "telemetry"

[topics.telemetry.eventSubscriptions.hook]
retryDelaysSeconds = [0.2]
{extra}

[topics.telemetry.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "{url}"
{destination}
"#
    )
}

async fn publisher(gridmq: &Gridmq, id: &str) -> v5::Client {
    v5::Client::connect(gridmq.addr, id).await
}

#[tokio::test]
async fn busy_twice_then_ok_delivers_once_with_rising_delivery_count() {
    let server = webhook::accepting().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    let gridmq = Gridmq::start_with_config(&config(&format!("{}/hook", server.uri()), "", ""));
    let client = publisher(&gridmq, "car1").await;
    client.publish("vehicles/car1", v5::QoS::AtLeastOnce, false, b"{\"speed\":3}").await;
    let posts = webhook::wait_all_posts(&server, WAIT, |p| p.len() >= 3).await;
    // Delivered: no more attempts follow.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let posts_after = webhook::all_posts(&server).await;
    assert_eq!(posts_after.len(), 3, "exactly three attempts");
    let counts: Vec<&str> =
        posts.iter().map(|r| webhook::header(r, "aeg-delivery-count")).collect();
    assert_eq!(counts, ["0", "1", "2"], "Event Grid counts earlier attempts");
    let ids: Vec<Value> = posts.iter().map(|r| webhook::events_of(r)[0]["id"].clone()).collect();
    assert!(ids.iter().all(|id| id == &ids[0]), "the same event each time: {ids:?}");
    let event = &webhook::events_of(&posts[2])[0];
    assert_eq!(event["type"], "MQTT.EventPublished");
    assert_eq!(event["subject"], "vehicles/car1");
    assert_eq!(
        webhook::header(&posts[2], "content-type"),
        "application/cloudevents+json; charset=utf-8"
    );
}

#[tokio::test]
async fn bad_request_is_dead_lettered_at_once() {
    let server = webhook::accepting().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(400)).mount(&server).await;
    let mut gridmq = Gridmq::start_with_config(&config(&format!("{}/hook", server.uri()), "", ""));
    let client = publisher(&gridmq, "car1").await;
    client.publish("vehicles/car1", v5::QoS::AtLeastOnce, false, b"x").await;
    webhook::wait_all_posts(&server, WAIT, |p| !p.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(webhook::all_posts(&server).await.len(), 1, "a 400 is not retried");
    drop(client);
    gridmq.terminate(Duration::from_secs(10)).expect("clean exit");
    // The dead letter is in the store, with why.
    let output = std::process::Command::new(gateway_tests::binary())
        .args(["deadletters", "list", "--data-dir"])
        .arg(gridmq.data_dir().path())
        .output()
        .expect("run gridmq deadletters");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["subscription"], "telemetry/hook");
    let properties = &lines[0]["record"]["deadletterProperties"];
    assert_eq!(properties["deliveryattempts"], 1);
    assert_eq!(properties["deadletterreason"], NON_RETRIABLE);
    assert_eq!(properties["deliveryresult"], "BadRequest");
    assert_eq!(lines[0]["record"]["event"]["subject"], "vehicles/car1");
    gateway_tests::schema::validate("dead-letter-record.schema.json", &lines[0]["record"])
        .expect("dead-letter schema");
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let server = webhook::accepting().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let gridmq = Gridmq::start_with_config(&config(
        &format!("{}/hook", server.uri()),
        "timeoutSeconds = 1",
        "",
    ));
    let client = publisher(&gridmq, "car1").await;
    client.publish("vehicles/car1", v5::QoS::AtLeastOnce, false, b"x").await;
    let posts = webhook::wait_all_posts(&server, WAIT, |p| p.len() >= 2).await;
    assert_eq!(webhook::header(&posts[1], "aeg-delivery-count"), "1");
    assert_eq!(webhook::events_of(&posts[0])[0]["id"], webhook::events_of(&posts[1])[0]["id"]);
}

#[tokio::test]
async fn batches_respect_both_limits() {
    let server = MockServer::start().await;
    // A slow handshake lets the events pile up, so that they leave in batches.
    Mock::given(method("OPTIONS"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("WebHook-Allowed-Origin", "*")
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let gridmq = Gridmq::start_with_config(&config(
        &format!("{}/hook", server.uri()),
        "maxEventsPerBatch = 4\npreferredBatchSizeInKilobytes = 2",
        "",
    ));
    let client = publisher(&gridmq, "car1").await;
    // Small events fill batches by count, large ones (about 1 KiB as data_base64) by size.
    for n in 0..18 {
        let payload = if n < 12 { vec![b'a'; 1] } else { vec![b'b'; 600] };
        client.publish("vehicles/car1", v5::QoS::AtLeastOnce, false, &payload).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = 0;
    while seen < 18 {
        assert!(tokio::time::Instant::now() < deadline, "only {seen} of 18 events arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = webhook::all_posts(&server).await.iter().map(|r| webhook::events_of(r).len()).sum();
    }
    let posts = webhook::all_posts(&server).await;
    let mut ids = std::collections::BTreeSet::new();
    for request in &posts {
        assert_eq!(
            webhook::header(request, "content-type"),
            "application/cloudevents-batch+json; charset=utf-8"
        );
        let events = webhook::events_of(request);
        assert!(events.len() <= 4, "at most maxEventsPerBatch events: {}", events.len());
        assert!(
            request.body.len() <= 2048 || events.len() == 1,
            "at most 2 KiB: {}",
            request.body.len()
        );
        for event in events {
            ids.insert(event["id"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(ids.len(), 18, "every event once");
    let sizes: Vec<usize> = posts.iter().map(|r| webhook::events_of(r).len()).collect();
    assert!(sizes.contains(&4), "the count limit was reached: {sizes:?}");
    assert!(
        posts.iter().any(|r| webhook::events_of(r).len() < 4 && r.body.len() > 1024),
        "the size limit cut a batch short: {sizes:?}"
    );
}

#[tokio::test]
async fn binary_and_structured_modes_carry_the_same_event() {
    let server = webhook::accepting().await;
    let url = server.uri();
    let gridmq = Gridmq::start_with_config(&format!(
        r#"
[[routing.routes]]
topic = "telemetry"

[routing.enrichments.static]
site = "plant-7"

[routing.enrichments.dynamic]
clientname = "${{client.authenticationName}}"
mqtttopic = "${{mqtt.message.topicName}}"
priority = "${{mqtt.message.userProperties.priority}}"

[topics.telemetry.eventSubscriptions.structured.destination]
endpointType = "WebHook"
endpointUrl = "{url}/structured"

[topics.telemetry.eventSubscriptions.binary.destination]
endpointType = "WebHook"
endpointUrl = "{url}/binary"
contentMode = "Binary"
"#
    ));
    let client = publisher(&gridmq, "car1").await;
    let mut properties = v5::no_properties();
    properties.payload_format_indicator = Some(1);
    properties.content_type = Some("application/json".into());
    properties.user_properties = vec![("priority".into(), "high".into())];
    client
        .publish_with("vehicles/car1", v5::QoS::AtLeastOnce, false, b"{\"speed\":3}", properties)
        .await;
    let posts = webhook::wait_all_posts(&server, WAIT, |p| p.len() >= 2).await;
    let structured = posts.iter().find(|r| r.url.path() == "/structured").expect("structured");
    let binary = posts.iter().find(|r| r.url.path() == "/binary").expect("binary");
    let event = &webhook::events_of(structured)[0];
    for attribute in
        ["id", "source", "type", "subject", "time", "site", "clientname", "mqtttopic", "priority"]
    {
        assert_eq!(
            webhook::header(binary, &format!("ce-{attribute}")),
            event[attribute].as_str().unwrap_or_default(),
            "attribute {attribute}"
        );
    }
    assert_eq!(webhook::header(binary, "ce-specversion"), "1.0");
    let data: Value = serde_json::from_slice(&binary.body).expect("JSON data");
    assert_eq!(data, event["data"]);
    assert_eq!(event["data"], serde_json::json!({"speed": 3}));
    assert_eq!(event["site"], "plant-7");
    assert_eq!(event["clientname"], "car1");
    assert_eq!(event["mqtttopic"], "vehicles/car1");
    assert_eq!(event["priority"], "high");
    assert_eq!(event["source"], "gridmq");
    gateway_tests::schema::validate("routed-event.schema.json", event)
        .expect("routed-event schema");
    gateway_tests::schema::validate_cloudevent(event).expect("CloudEvents schema");
}

#[tokio::test]
async fn the_handshake_happens_once() {
    let server = webhook::accepting().await;
    let gridmq = Gridmq::start_with_config(&config(&format!("{}/hook", server.uri()), "", ""));
    let client = publisher(&gridmq, "car1").await;
    for _ in 0..5 {
        client.publish("vehicles/car1", v5::QoS::AtLeastOnce, false, b"x").await;
    }
    webhook::wait_all_posts(&server, WAIT, |p| p.len() >= 5).await;
    let requests = server.received_requests().await.unwrap_or_default();
    let options: Vec<&Request> =
        requests.iter().filter(|r| r.method.as_str() == "OPTIONS").collect();
    assert_eq!(options.len(), 1);
    assert_eq!(webhook::header(options[0], "webhook-request-origin"), "eventgrid.azure.net");
    assert!(
        requests.iter().position(|r| r.method.as_str() == "OPTIONS")
            < requests.iter().position(|r| r.method.as_str() == "POST")
    );
}

#[tokio::test]
async fn a_refusing_endpoint_is_not_hammered() {
    let server = MockServer::start().await;
    // No WebHook-Allowed-Origin: the endpoint does not consent.
    Mock::given(method("OPTIONS")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let gridmq = Gridmq::start_with_config(
        &config(&format!("{}/hook", server.uri()), "", "")
            .replace("retryDelaysSeconds = [0.2]", "retryDelaysSeconds = [1]"),
    );
    let client = publisher(&gridmq, "car1").await;
    client.publish("vehicles/car1", v5::QoS::AtLeastOnce, false, b"x").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let requests = server.received_requests().await.unwrap_or_default();
    let options = requests.iter().filter(|r| r.method.as_str() == "OPTIONS").count();
    assert!((1..=5).contains(&options), "validation retried with pauses, not hammered: {options}");
    assert_eq!(
        webhook::all_posts(&server).await.len(),
        0,
        "no event goes to an endpoint that did not consent"
    );
}

#[tokio::test]
async fn custom_topic_destination_gets_batches_with_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path("/api/events"))
        .and(wiremock::matchers::query_param("api-version", "2018-01-01"))
        .and(wiremock::matchers::header("aeg-sas-key", "c2VjcmV0"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let gridmq = Gridmq::start_with_config(&format!(
        r#"
[[routing.routes]]
topic = "telemetry"

[topics.telemetry.eventSubscriptions.forward.destination]
endpointType = "CustomTopic"
endpoint = "{}"
sasKey = "c2VjcmV0"
"#,
        server.uri()
    ));
    let client = publisher(&gridmq, "car1").await;
    client.publish("vehicles/car1", v5::QoS::AtLeastOnce, false, b"x").await;
    let posts = webhook::wait_all_posts(&server, WAIT, |p| !p.is_empty()).await;
    assert_eq!(
        webhook::header(&posts[0], "content-type"),
        "application/cloudevents-batch+json; charset=utf-8"
    );
    let events = webhook::events_of(&posts[0]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["subject"], "vehicles/car1");
    assert!(posts[0].body.starts_with(b"["), "custom topics always get an array");
}
