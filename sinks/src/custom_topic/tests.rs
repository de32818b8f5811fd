//! The custom topic sink against a real HTTP server on 127.0.0.1.

use std::time::SystemTime;

use base64::Engine as _;
use serde_json::Value;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::test_util::{client, event, first_tries, header, received};

const KEY_BASE64: &str = "c2VjcmV0LXRvcGljLWtleS1mb3ItdGVzdHMtb25seSE=";

async fn topic_server(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/events"))
        .and(query_param("api-version", "2018-01-01"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

fn key_sink(server: &MockServer) -> CustomTopicSink {
    let config = CustomTopicConfig {
        sas_key: Some("the-key".into()),
        ..CustomTopicConfig::new(server.uri())
    };
    CustomTopicSink::new(config, client()).unwrap()
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8().unwrap().into_owned()
}

/// `M/d/yyyy h:mm:ss AM` (UTC) as Unix seconds.
fn parse_expiry(text: &str) -> i64 {
    let parts: Vec<&str> = text.split(' ').collect();
    let [date, clock, meridiem] = parts[..] else { panic!("{text}") };
    let date: Vec<u32> = date.split('/').map(|n| n.parse().unwrap()).collect();
    let clock: Vec<u32> = clock.split(':').map(|n| n.parse().unwrap()).collect();
    let hour = clock[0] % 12 + if meridiem == "PM" { 12 } else { 0 };
    let month = time::Month::try_from(date[0] as u8).unwrap();
    let day = time::Date::from_calendar_date(date[2] as i32, month, date[1] as u8).unwrap();
    let at = day.with_hms(hour as u8, clock[1] as u8, clock[2] as u8).unwrap();
    at.assume_utc().unix_timestamp()
}

#[tokio::test]
async fn publishes_a_batch_with_the_key() {
    let server = topic_server(ResponseTemplate::new(200)).await;
    let sink = key_sink(&server);
    let events = [event("e1"), event("e2")];
    assert_eq!(sink.validate().await, Ok(()));
    sink.send(&first_tries(&events)).await.unwrap();
    sink.send(&first_tries(&events[..1])).await.unwrap();

    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(header(request, "aeg-sas-key"), "the-key");
        assert!(request.headers.get("aeg-sas-token").is_none());
        assert_eq!(
            header(request, "content-type"),
            "application/cloudevents-batch+json; charset=utf-8"
        );
    }
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body, Value::Array(vec![events[0].to_json(), events[1].to_json()]));
    // One event still goes as an array.
    let body: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(body, Value::Array(vec![events[0].to_json()]));
}

#[tokio::test]
async fn publishes_with_a_signed_token() {
    let server = topic_server(ResponseTemplate::new(200)).await;
    let config = CustomTopicConfig {
        sas_token_key: Some(KEY_BASE64.into()),
        sas_token_ttl_seconds: 600,
        ..CustomTopicConfig::new(format!("{}/api/events", server.uri()))
    };
    let sink = CustomTopicSink::new(config, client()).unwrap();
    let before = SystemTime::now();
    sink.send(&first_tries(&[event("e1")])).await.unwrap();

    let requests = received(&server).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert!(request.headers.get("aeg-sas-key").is_none());
    let token = header(request, "aeg-sas-token");
    let (unsigned, signature) = token.split_once("&s=").unwrap();

    // The signature is HMAC-SHA256 over "r=..&e=.." with the decoded key.
    let key = base64::engine::general_purpose::STANDARD.decode(KEY_BASE64).unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let signature =
        base64::engine::general_purpose::STANDARD.decode(percent_decode(signature)).unwrap();
    ring::hmac::verify(&key, unsigned.as_bytes(), &signature).unwrap();

    // The resource is the URL posted to; the expiry lies about ten minutes ahead.
    let (resource, expiry) = unsigned.strip_prefix("r=").unwrap().split_once("&e=").unwrap();
    assert_eq!(
        percent_decode(resource),
        format!("{}/api/events?api-version=2018-01-01", server.uri())
    );
    let expires = parse_expiry(&percent_decode(expiry));
    let after = SystemTime::now();
    let unix = |at: SystemTime| at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(expires >= unix(before) + 599 && expires <= unix(after) + 600, "{expiry}");
}

#[tokio::test]
async fn failures_are_classified_for_topics() {
    let events = [event("e1")];
    let server = topic_server(ResponseTemplate::new(401).set_body_raw(
        r#"{"error":{"code":"Unauthorized","message":"The request authorization key is not authorized for T."}}"#,
        "application/json",
    ))
    .await;
    let sink = key_sink(&server);
    let error = sink.send(&first_tries(&events)).await.unwrap_err();
    assert_eq!((error.kind, error.status), (FailureKind::Unauthorized, Some(401)));
    assert!(error.detail.contains("Unauthorized: The request authorization key"), "{error}");
    assert!(!error.is_retriable(sink.schedule()));

    let expectations = [
        (400, false),
        (403, false),
        (413, false),
        (404, true),
        (408, true),
        (429, true),
        (500, true),
        (503, true),
    ];
    for (status, retriable) in expectations {
        let server = topic_server(ResponseTemplate::new(status)).await;
        let sink = key_sink(&server);
        let error = sink.send(&first_tries(&events)).await.unwrap_err();
        assert_eq!(error.status, Some(status));
        assert_eq!(error.is_retriable(Schedule::CustomTopic), retriable, "HTTP {status}");
    }
}

#[tokio::test]
async fn batch_len_and_settings() {
    let server = topic_server(ResponseTemplate::new(200)).await;
    let config = CustomTopicConfig {
        sas_key: Some("k".into()),
        max_events_per_batch: 2,
        max_concurrency: 3,
        ..CustomTopicConfig::new(server.uri())
    };
    let sink = CustomTopicSink::new(config, client()).unwrap();
    let events = [event("a"), event("b"), event("c")];
    assert_eq!(sink.batch_len(&first_tries(&events)), 2);
    assert_eq!(sink.max_concurrency(), 3);
    assert_eq!(sink.schedule(), Schedule::CustomTopic);
    assert!(!format!("{sink:?}").contains("\"k\""));
}
