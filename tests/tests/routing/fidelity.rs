//! Payload fidelity, end to end: a corpus of JSON payloads that `serde_json::Value` would
//! rewrite (numbers, key order, duplicate keys, escapes, whitespace) is published over MQTT 5
//! and over HTTP, and every sink must carry each one byte for byte: a structured webhook, a
//! batch webhook, a binary-mode webhook, pull receive, the dead-letter listing, and an MQTT
//! subscriber of HTTP publishes.
//!
//! The `data` text is cut out of the raw HTTP bodies with `RawValue`, which keeps the text as
//! it is; parsing into `serde_json::Value` here would hide the very rewriting under test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::v5;
use gateway_tests::http_raw;
use gateway_tests::webhook;
use serde_json::value::RawValue;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const KEY: &str = "ZmlkZWxpdHktdGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3";
const TOKEN: &str = "fidelity-admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(30);

/// JSON that `serde_json::Value` would not give back as written.
const CORPUS: [&str; 10] = sinks::event::FIDELITY_CORPUS;

/// How each corpus payload is published; the subject (MQTT topic) names the way and the index.
const WAYS: [&str; 5] = ["mqtt-pfi", "mqtt-content-type", "http-mqtt", "topic", "topic-batch"];

fn config(url: &str) -> String {
    format!(
        r#"
[http]
listen = "127.0.0.1:0"
access_keys = ["{KEY}"]

[management]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"

[auth]
allow_anonymous = true

[topicSpaces.fidelity]
topicTemplates = ["fidelity/#"]

[permissionBindings.publish]
clientGroupName = "$all"
topicSpaceName = "fidelity"
permission = "Publisher"

[permissionBindings.subscribe]
clientGroupName = "$all"
topicSpaceName = "fidelity"
permission = "Subscriber"

[[routing.routes]]
topic = "fidelity"
topic_filter = "fidelity/#"

[topics.fidelity.eventSubscriptions.structured]
retryDelaysSeconds = [0.2]

[topics.fidelity.eventSubscriptions.structured.destination]
endpointType = "WebHook"
endpointUrl = "{url}/structured"

[topics.fidelity.eventSubscriptions.batched]
retryDelaysSeconds = [0.2]

[topics.fidelity.eventSubscriptions.batched.destination]
endpointType = "WebHook"
endpointUrl = "{url}/batched"
maxEventsPerBatch = 8

[topics.fidelity.eventSubscriptions.binary]
retryDelaysSeconds = [0.2]

[topics.fidelity.eventSubscriptions.binary.destination]
endpointType = "WebHook"
endpointUrl = "{url}/binary"
contentMode = "Binary"

[topics.fidelity.eventSubscriptions.refused.destination]
endpointType = "WebHook"
endpointUrl = "{url}/refused"

[topics.fidelity.eventSubscriptions.pull]
deliveryMode = "Queue"
"#
    )
}

/// The subject of corpus entry `index` published `way`.
fn subject(way: &str, index: usize) -> String {
    format!("fidelity/{way}/{index}")
}

/// Every (subject, payload text) the sinks must carry.
fn expected() -> BTreeMap<String, String> {
    let mut expected = BTreeMap::new();
    for way in WAYS {
        for (index, text) in CORPUS.iter().enumerate() {
            expected.insert(subject(way, index), text.to_string());
        }
    }
    expected
}

/// The raw text of member `name` of the JSON object `object`.
fn member<'a>(object: &'a str, name: &str) -> &'a str {
    let members: BTreeMap<String, &RawValue> =
        serde_json::from_str(object).unwrap_or_else(|e| panic!("{e}: {object}"));
    members.get(name).unwrap_or_else(|| panic!("no `{name}` in {object}")).get()
}

/// The raw texts of the elements of the JSON array `array`.
fn elements(array: &str) -> Vec<&str> {
    let items: Vec<&RawValue> =
        serde_json::from_str(array).unwrap_or_else(|e| panic!("{e}: {array}"));
    items.into_iter().map(RawValue::get).collect()
}

/// The `subject` of an event object, decoded, and its `data` text as received.
fn subject_and_data(event: &str) -> (String, String) {
    let subject: String = serde_json::from_str(member(event, "subject")).expect("a string");
    (subject, member(event, "data").to_owned())
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8 body")
}

async fn publish_everything(gridmq: &Gridmq, api: SocketAddr) {
    let client = v5::Client::connect(gridmq.addr, "fidelity-publisher").await;
    for (index, text) in CORPUS.iter().enumerate() {
        let mut pfi = v5::no_properties();
        pfi.payload_format_indicator = Some(1);
        let topic = subject("mqtt-pfi", index);
        client.publish_with(&topic, v5::QoS::AtLeastOnce, false, text.as_bytes(), pfi).await;

        let mut json = v5::no_properties();
        json.content_type = Some("application/json".into());
        let topic = subject("mqtt-content-type", index);
        client.publish_with(&topic, v5::QoS::AtLeastOnce, false, text.as_bytes(), json).await;

        let target =
            format!("/mqtt/messages?topic={}", subject("http-mqtt", index).replace('/', "%2F"));
        let headers = [("aeg-sas-key", KEY), ("content-type", "application/json")];
        let answer = http_raw::request(api, "POST", &target, &headers, text.as_bytes())
            .await
            .expect("HTTP publish into MQTT");
        assert_eq!(answer.status, 200, "{}", answer.error_message());

        let event = |way: &str| {
            format!(
                r#"{{"specversion":"1.0","id":"{way}-{index}","source":"fidelity-test","type":"corpus","subject":"{}","datacontenttype":"application/json","data":{text}}}"#,
                subject(way, index)
            )
        };
        let headers = [("aeg-sas-key", KEY), ("content-type", "application/cloudevents+json")];
        let answer = http_raw::request(
            api,
            "POST",
            "/topics/fidelity:publish",
            &headers,
            event("topic").as_bytes(),
        )
        .await
        .expect("namespace topic publish");
        assert_eq!(answer.status, 200, "{}", answer.error_message());
        let batch = format!("[{}]", event("topic-batch"));
        let headers =
            [("aeg-sas-key", KEY), ("content-type", "application/cloudevents-batch+json")];
        let answer =
            http_raw::request(api, "POST", "/topics/fidelity:publish", &headers, batch.as_bytes())
                .await
                .expect("namespace topic batch publish");
        assert_eq!(answer.status, 200, "{}", answer.error_message());
    }
    client.disconnect().await;
}

/// Compares what one sink carried with what was published.
fn check(sink: &str, carried: Vec<(String, String)>) {
    let expected = expected();
    assert_eq!(carried.len(), expected.len(), "{sink}: {carried:#?}");
    let carried: BTreeMap<String, String> = carried.into_iter().collect();
    for (subject, text) in &expected {
        let got = carried.get(subject).unwrap_or_else(|| panic!("{sink}: nothing for {subject}"));
        assert_eq!(got, text, "{sink}: {subject}");
    }
}

#[tokio::test]
async fn every_sink_carries_json_payloads_byte_for_byte() {
    let server = webhook::accepting().await;
    Mock::given(method("POST"))
        .and(path("/refused"))
        .respond_with(ResponseTemplate::new(400))
        .with_priority(1)
        .mount(&server)
        .await;
    let gridmq = Gridmq::start_with_config(&config(&server.uri()));
    let api = gridmq.api.expect("data-plane API");
    let management = gridmq.http.expect("management API");
    let mut subscriber = v5::Client::connect(gridmq.addr, "fidelity-subscriber").await;
    subscriber.subscribe("fidelity/http-mqtt/#", v5::QoS::AtLeastOnce).await;

    publish_everything(&gridmq, api).await;
    let total = expected().len();

    // HTTP publish into MQTT: the subscriber gets the body as the payload.
    for _ in 0..CORPUS.len() {
        let publish = subscriber.recv().await;
        let topic = text(&publish.topic).to_owned();
        let index: usize = topic.rsplit('/').next().and_then(|i| i.parse().ok()).expect("index");
        assert_eq!(text(&publish.payload), CORPUS[index], "{topic}");
    }

    // Structured mode: one event per request.
    let posts = webhook::wait_posts(&server, "/structured", WAIT, |p| p.len() >= total).await;
    check("structured", posts.iter().map(|r| subject_and_data(text(&r.body))).collect());

    // Batches: arrays of up to 8 events.
    let count = |posts: &[wiremock::Request]| {
        posts.iter().map(|r| elements(text(&r.body)).len()).sum::<usize>()
    };
    let posts = webhook::wait_posts(&server, "/batched", WAIT, |p| count(p) >= total).await;
    assert!(posts.iter().any(|r| elements(text(&r.body)).len() > 1), "some request is a batch");
    let carried = posts
        .iter()
        .flat_map(|r| elements(text(&r.body)).into_iter().map(subject_and_data).collect::<Vec<_>>())
        .collect();
    check("batched", carried);

    // Binary mode: the body is the payload.
    let posts = webhook::wait_posts(&server, "/binary", WAIT, |p| p.len() >= total).await;
    let carried = posts
        .iter()
        .map(|r| {
            let subject = r.headers.get("ce-subject").and_then(|v| v.to_str().ok());
            (subject.expect("ce-subject").to_owned(), text(&r.body).to_owned())
        })
        .collect();
    check("binary", carried);

    // Pull receive: the raw receive response.
    let mut carried = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while carried.len() < total && tokio::time::Instant::now() < deadline {
        let target = "/topics/fidelity/eventsubscriptions/pull:receive?maxEvents=100&maxWaitTime=2";
        let answer = http_raw::request(api, "POST", target, &[("aeg-sas-key", KEY)], b"")
            .await
            .expect("receive");
        assert_eq!(answer.status, 200, "{}", answer.error_message());
        let body = text(&answer.body);
        for item in elements(member(body, "value")) {
            carried.push(subject_and_data(member(item, "event")));
        }
    }
    check("pull receive", carried);

    // Dead letters: every event the refusing endpoint answered 400 to.
    let target = "/routing/topics/fidelity/eventSubscriptions/refused/deadLetters";
    let bearer = format!("Bearer {TOKEN}");
    let deadline = tokio::time::Instant::now() + WAIT;
    let carried = loop {
        let answer =
            http_raw::request(management, "GET", target, &[("authorization", &bearer)], b"")
                .await
                .expect("dead-letter listing");
        assert_eq!(answer.status, 200, "{}", answer.error_message());
        let body = text(&answer.body).to_owned();
        let records: Vec<(String, String)> = elements(member(&body, "value"))
            .into_iter()
            .map(|item| subject_and_data(member(member(item, "record"), "event")))
            .collect();
        if records.len() >= total || tokio::time::Instant::now() >= deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    check("dead letters", carried);
}
