//! The webhook sink against real HTTP servers on 127.0.0.1: what a receiver sees, and how each
//! answer is sorted.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::error::FailureKind;
use crate::event::Data;
use crate::test_util::{client, event, first_tries, header, received};
use crate::{DeliveryProperty, Sink};

async fn accepting_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    server
}

fn sink(server: &MockServer, edit: impl FnOnce(&mut WebhookConfig)) -> WebhookSink {
    let mut config = WebhookConfig::new(format!("{}/hook", server.uri()));
    edit(&mut config);
    WebhookSink::new(config, client(), "orders-sub").unwrap()
}

fn body_json(request: &wiremock::Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

#[tokio::test]
async fn structured_single_event() {
    let server = accepting_server().await;
    let sink = sink(&server, |_| {});
    let events = [event("e1")];
    sink.send(&first_tries(&events)).await.unwrap();

    let requests = received(&server).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/hook");
    assert_eq!(header(request, "content-type"), "application/cloudevents+json; charset=utf-8");
    assert_eq!(header(request, "origin"), "eventgrid.azure.net");
    assert_eq!(header(request, "aeg-delivery-count"), "0");
    assert_eq!(header(request, "aeg-subscription-name"), "orders-sub");
    assert_eq!(header(request, "aeg-event-type"), "Notification");
    assert_eq!(header(request, "aeg-metadata-version"), "1");
    assert_eq!(header(request, "aeg-output-event-id"), "e1");
    assert!(request.headers.get("ce-id").is_none());
    assert_eq!(
        body_json(request),
        serde_json::json!({
            "specversion": "1.0", "id": "e1", "source": "gridmq-ns",
            "type": "MQTT.EventPublished", "subject": "vehicles/7/position",
            "time": "2019-11-18T15:13:39.4589254Z", "datacontenttype": "application/json",
            "mqttqos": 1, "site": "plant 7",
            "data": {"vehicle": {"id": "v7"}, "speed": 12}
        })
    );
}

#[tokio::test]
async fn batching_always_sends_an_array() {
    let server = accepting_server().await;
    let sink = sink(&server, |c| c.max_events_per_batch = 10);
    let events = [event("e1"), event("e2"), event("e3")];

    sink.send(&first_tries(&events[..1])).await.unwrap();
    let batch = [
        Delivery { event: &events[0], delivery_count: 1 },
        Delivery { event: &events[1], delivery_count: 3 },
        Delivery { event: &events[2], delivery_count: 2 },
    ];
    sink.send(&batch).await.unwrap();

    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    let single = &requests[0];
    assert_eq!(header(single, "content-type"), "application/cloudevents-batch+json; charset=utf-8");
    assert_eq!(body_json(single), Value::Array(vec![events[0].to_json()]));
    assert_eq!(header(single, "aeg-output-event-id"), "e1");

    let three = &requests[1];
    assert_eq!(header(three, "content-type"), "application/cloudevents-batch+json; charset=utf-8");
    let body = body_json(three);
    let ids: Vec<&str> =
        body.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["e1", "e2", "e3"]);
    // The highest count in the batch, as attempts made before this one.
    assert_eq!(header(three, "aeg-delivery-count"), "2");
    assert!(three.headers.get("aeg-output-event-id").is_none());
}

#[tokio::test]
async fn binary_mode_headers_and_bodies() {
    let server = accepting_server().await;
    let sink = sink(&server, |c| {
        c.content_mode = ContentMode::Binary;
        c.max_events_per_batch = 10;
    });

    let json = event("e1");
    let mut bytes = event("e2");
    bytes.datacontenttype = Some("application/octet-stream".into());
    bytes.data = Data::Binary(Bytes::from_static(b"\x00\x01\xff"));
    let mut text = event("e3");
    text.datacontenttype = Some("text/plain".into());
    text.data = Data::from_json_value(Value::from("hello there"));
    let mut no_type = event("e4");
    no_type.datacontenttype = None;
    no_type.subject = Some("vehicles/ünicode \"quoted\" 100%".into());
    for event in [&json, &bytes, &text, &no_type] {
        sink.send(&[Delivery { event, delivery_count: 2 }]).await.unwrap();
    }

    let requests = received(&server).await;
    assert_eq!(requests.len(), 4);
    let first = &requests[0];
    assert_eq!(header(first, "ce-specversion"), "1.0");
    assert_eq!(header(first, "ce-id"), "e1");
    assert_eq!(header(first, "ce-source"), "gridmq-ns");
    assert_eq!(header(first, "ce-type"), "MQTT.EventPublished");
    assert_eq!(header(first, "ce-subject"), "vehicles/7/position");
    assert_eq!(header(first, "ce-time"), "2019-11-18T15:13:39.4589254Z");
    assert_eq!(header(first, "ce-mqttqos"), "1");
    assert_eq!(header(first, "ce-site"), "plant%207");
    assert!(first.headers.get("ce-datacontenttype").is_none());
    assert_eq!(header(first, "content-type"), "application/json");
    assert_eq!(body_json(first), serde_json::json!({"vehicle": {"id": "v7"}, "speed": 12}));
    assert_eq!(header(first, "aeg-delivery-count"), "1");
    assert_eq!(header(first, "aeg-output-event-id"), "e1");
    assert_eq!(header(first, "origin"), "eventgrid.azure.net");

    assert_eq!(header(&requests[1], "content-type"), "application/octet-stream");
    assert_eq!(requests[1].body, b"\x00\x01\xff");
    assert_eq!(header(&requests[2], "content-type"), "text/plain");
    assert_eq!(requests[2].body, b"hello there");
    assert_eq!(header(&requests[3], "content-type"), "application/json");
    assert_eq!(header(&requests[3], "ce-subject"), "vehicles/%C3%BCnicode%20%22quoted%22%20100%25");

    // Binary mode is one event per request, whatever maxEventsPerBatch says.
    let events = [event("a"), event("b")];
    assert_eq!(sink.batch_len(&first_tries(&events)), 1);
    let error = sink.send(&first_tries(&events)).await.unwrap_err();
    assert_eq!(error.kind, FailureKind::BadArgument);
}

#[tokio::test]
async fn delivery_properties_are_headers() {
    let server = accepting_server().await;
    let sink = sink(&server, |c| {
        c.webhook_origin = "gridmq.example".into();
        c.delivery_attribute_mappings = vec![
            DeliveryProperty::Static {
                name: "x-api-key".into(),
                value: "s3cret".into(),
                is_secret: true,
            },
            DeliveryProperty::Static {
                name: "x-env".into(),
                value: "test".into(),
                is_secret: false,
            },
            DeliveryProperty::Dynamic {
                name: "x-vehicle".into(),
                source_field: "data.vehicle.id".into(),
            },
            DeliveryProperty::Dynamic {
                name: "x-missing".into(),
                source_field: "data.nope".into(),
            },
        ];
    });
    let events = [event("e1")];
    sink.send(&first_tries(&events)).await.unwrap();

    let requests = received(&server).await;
    let request = &requests[0];
    assert_eq!(header(request, "x-api-key"), "s3cret");
    assert_eq!(header(request, "x-env"), "test");
    assert_eq!(header(request, "x-vehicle"), "v7");
    assert!(request.headers.get("x-missing").is_none());
    assert_eq!(header(request, "origin"), "gridmq.example");

    let recorded = sink.custom_delivery_properties(&events[0]);
    assert_eq!(
        recorded.into_iter().collect::<Vec<_>>(),
        [("x-env".to_string(), "test".to_string()), ("x-vehicle".to_string(), "v7".to_string())]
    );
}

#[tokio::test]
async fn dynamic_values_that_cannot_be_headers_fail_without_retry() {
    let server = accepting_server().await;
    let sink = sink(&server, |c| {
        c.delivery_attribute_mappings = vec![DeliveryProperty::Dynamic {
            name: "x-note".into(),
            source_field: "data.note".into(),
        }];
    });
    let mut bad = event("e1");
    bad.data = Data::from_json_value(serde_json::json!({"note": "line\nbreak"}));
    let error = sink.send(&first_tries(&[bad])).await.unwrap_err();
    assert_eq!(error.kind, FailureKind::BadArgument);
    assert!(!error.is_retriable(sink.schedule()));
    assert!(received(&server).await.is_empty());
}

#[tokio::test]
async fn batch_len_honours_both_limits() {
    let server = accepting_server().await;
    let mut big = event("big");
    big.data = Data::from_json_value(Value::from("x".repeat(3000)));
    let events = [event("a"), event("b"), event("c"), event("d"), event("e")];

    let by_count = sink(&server, |c| c.max_events_per_batch = 3);
    assert_eq!(by_count.batch_len(&first_tries(&events)), 3);
    let unbatched = sink(&server, |_| {});
    assert_eq!(unbatched.batch_len(&first_tries(&events)), 1);

    // Each sample event is about 260 bytes as JSON: three fit in 1 KiB with `[`, `,` and `]`,
    // four do not.
    let size = events[0].to_json_bytes().len();
    assert!((250..300).contains(&size), "{size}");
    let by_size = sink(&server, |c| {
        c.max_events_per_batch = 100;
        c.preferred_batch_size_in_kilobytes = 1;
    });
    assert_eq!(by_size.batch_len(&first_tries(&events)), 3);
    let oversize = [big, event("a")];
    assert_eq!(by_size.batch_len(&first_tries(&oversize)), 1);
    assert_eq!(by_size.batch_len(&[]), 0);
}

#[tokio::test]
async fn statuses_are_classified() {
    let server = MockServer::start().await;
    let sink = sink(&server, |_| {});
    let events = [event("e1")];
    for status in [200, 201, 202, 203, 204] {
        server.reset().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
        assert_eq!(sink.send(&first_tries(&events)).await, Ok(()), "HTTP {status}");
    }
    let failures = [
        (205, FailureKind::Other(205), true),
        (302, FailureKind::Other(302), true),
        (400, FailureKind::BadRequest, false),
        (401, FailureKind::Unauthorized, false),
        (403, FailureKind::Forbidden, false),
        (404, FailureKind::NotFound, false),
        (408, FailureKind::TimedOut, true),
        (413, FailureKind::PayloadTooLarge, false),
        (414, FailureKind::UriTooLong, false),
        (429, FailureKind::Busy, true),
        (500, FailureKind::ServiceError, true),
        (503, FailureKind::Busy, true),
    ];
    for (status, kind, retriable) in failures {
        server.reset().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_string("receiver says no"))
            .mount(&server)
            .await;
        let error = sink.send(&first_tries(&events)).await.unwrap_err();
        assert_eq!((error.kind, error.status), (kind, Some(status)), "HTTP {status}");
        assert_eq!(error.is_retriable(sink.schedule()), retriable, "HTTP {status}");
        assert!(error.detail.contains("receiver says no"), "{error}");
    }
}

#[tokio::test]
async fn a_slow_endpoint_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let sink = sink(&server, |c| c.timeout_seconds = 1);
    let started = std::time::Instant::now();
    let error = sink.send(&first_tries(&[event("e1")])).await.unwrap_err();
    assert_eq!((error.kind, error.status), (FailureKind::TimedOut, None), "{error}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(error.is_retriable(sink.schedule()));
}

#[tokio::test]
async fn a_closed_port_is_a_socket_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = WebhookConfig::new(format!("http://127.0.0.1:{port}/hook"));
    let sink = WebhookSink::new(config, client(), "sub").unwrap();
    let error = sink.send(&first_tries(&[event("e1")])).await.unwrap_err();
    assert_eq!((error.kind, error.status), (FailureKind::SocketError, None), "{error}");
    assert!(error.is_retriable(sink.schedule()));
    let error = sink.validate().await.unwrap_err();
    assert_eq!(error.kind, FailureKind::SocketError, "{error}");
}

#[tokio::test]
async fn empty_batches_send_nothing() {
    let server = accepting_server().await;
    assert_eq!(sink(&server, |_| {}).send(&[]).await, Ok(()));
    assert!(received(&server).await.is_empty());
}

// === the abuse-protection handshake ===

async fn handshake_server(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("OPTIONS")).respond_with(response).mount(&server).await;
    server
}

#[tokio::test]
async fn handshake_accepted() {
    for allowed in ["eventgrid.azure.net", "*"] {
        let server = handshake_server(
            ResponseTemplate::new(200)
                .insert_header("WebHook-Allowed-Origin", allowed)
                .insert_header("Allow", "POST"),
        )
        .await;
        let sink = sink(&server, |_| {});
        assert_eq!(sink.validate().await, Ok(()), "{allowed}");

        let requests = received(&server).await;
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method.as_str(), "OPTIONS");
        assert_eq!(request.url.path(), "/hook");
        assert_eq!(header(request, "webhook-request-origin"), "eventgrid.azure.net");
        assert!(request.headers.get("webhook-request-callback").is_none());
        assert!(request.headers.get("webhook-request-rate").is_none());
    }
}

#[tokio::test]
async fn handshake_with_a_configured_origin() {
    let server = handshake_server(
        ResponseTemplate::new(200).insert_header("WebHook-Allowed-Origin", "gridmq.example"),
    )
    .await;
    let sink = sink(&server, |c| c.webhook_origin = "gridmq.example".into());
    assert_eq!(sink.validate().await, Ok(()));
    assert_eq!(header(&received(&server).await[0], "webhook-request-origin"), "gridmq.example");
}

#[tokio::test]
async fn handshake_refused() {
    let server = handshake_server(ResponseTemplate::new(200)).await;
    let error = sink(&server, |_| {}).validate().await.unwrap_err();
    assert_eq!((error.kind, error.status), (FailureKind::ValidationFailed, Some(200)));
    assert!(error.detail.contains("no WebHook-Allowed-Origin"), "{error}");

    let server = handshake_server(
        ResponseTemplate::new(200).insert_header("WebHook-Allowed-Origin", "someone.else"),
    )
    .await;
    let error = sink(&server, |_| {}).validate().await.unwrap_err();
    assert_eq!(error.kind, FailureKind::ValidationFailed);
    assert!(error.detail.contains("someone.else"), "{error}");

    let server = handshake_server(ResponseTemplate::new(405)).await;
    let error = sink(&server, |_| {}).validate().await.unwrap_err();
    assert_eq!((error.kind, error.status), (FailureKind::Other(405), Some(405)));
    assert!(error.detail.contains("does not answer"), "{error}");

    let server =
        handshake_server(ResponseTemplate::new(503).insert_header("WebHook-Allowed-Origin", "*"))
            .await;
    let error = sink(&server, |_| {}).validate().await.unwrap_err();
    assert_eq!(error.kind, FailureKind::Busy);
}

/// JSON data goes out as it came: in place in structured and batch bodies, and as the exact
/// published bytes (whitespace around the value included) in a binary-mode body.
#[tokio::test]
async fn json_data_is_sent_as_published() {
    let published = Bytes::from_static(b" {\"z\":1,\"a\":47.782000000000004,\"a\":1E+2}\n");
    let mut event = event("e1");
    event.data = Data::Json(crate::event::JsonText::parse(published.clone()).unwrap());
    let expected = r#"{"z":1,"a":47.782000000000004,"a":1E+2}"#;
    for mode in [ContentMode::Structured, ContentMode::Binary] {
        let server = accepting_server().await;
        let sink = sink(&server, |c| c.content_mode = mode);
        sink.send(&[Delivery { event: &event, delivery_count: 1 }]).await.unwrap();
        let body = received(&server).await.remove(0).body;
        let body = String::from_utf8(body).unwrap();
        match mode {
            ContentMode::Binary => assert_eq!(body.as_bytes(), &published[..]),
            ContentMode::Structured => {
                assert!(body.ends_with(&format!(r#""data":{expected}}}"#)), "{body}")
            }
        }
    }
    let server = accepting_server().await;
    let sink = sink(&server, |c| c.max_events_per_batch = 10);
    let deliveries = [
        Delivery { event: &event, delivery_count: 1 },
        Delivery { event: &event, delivery_count: 1 },
    ];
    sink.send(&deliveries).await.unwrap();
    let body = String::from_utf8(received(&server).await.remove(0).body).unwrap();
    assert_eq!(body.matches(&format!(r#""data":{expected}}}"#)).count(), 2, "{body}");
}
