use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::mqtt::QoS;

/// The access key, base64 as Event Grid shows keys.
const KEY: &str = "c2VjcmV0LWFjY2Vzcy1rZXktMDEyMzQ1Njc4OQ==";
const ADMIN: &str = "test-admin-token-0123456789";

/// A namespace topic `orders` with one webhook subscription (never started: events stay
/// buffered), and `[http]` with small limits so tests can cross them.
fn config(max_buffered: usize) -> Config {
    Config::parse(&format!(
        r#"
        [http]
        access_keys = ["{KEY}"]
        max_request_bytes = 4096
        max_event_bytes = 1024
        max_events_per_request = 5

        [routing]
        max_buffered_events = {max_buffered}

        [[routing.routes]]
        topic = "orders"
        topic_filter = "orders/#"

        [topics.orders.eventSubscriptions.hook.destination]
        endpointType = "WebHook"
        endpointUrl = "http://127.0.0.1:9/hook"
        "#
    ))
    .expect("config")
}

fn state_with(config: &Config, admin_token: Option<&str>) -> Arc<DataPlane> {
    let plan = config.routing_section().plan().expect("plan");
    let router = crate::routing::Router::build(&config.namespace, plan, None, &[])
        .expect("router")
        .expect("routes");
    let mut hooks = Hooks::allow_all();
    hooks.tap = Some(router.clone());
    let broker = Broker::new(config.mqtt.clone(), hooks, None);
    let http = config.http.clone().expect("[http]");
    let state = DataPlane::new(http, admin_token.map(str::to_string), broker, Some(router));
    Arc::new(state.expect("data plane"))
}

fn state() -> Arc<DataPlane> {
    state_with(&config(1000), Some(ADMIN))
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        if self.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&self.body).expect("json")
        }
    }

    fn message(&self) -> String {
        self.json()["error"]["message"].as_str().unwrap_or_default().to_string()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

async fn send(state: &Arc<DataPlane>, request: Request<Body>) -> Answer {
    let response = app(state.clone()).oneshot(request).await.expect("call");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 22).await.expect("body");
    Answer { status, headers, body: body.to_vec() }
}

/// A request with the access key and the given headers.
fn request(
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri).header("aeg-sas-key", KEY);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).expect("request")
}

fn structured(body: &Value) -> Request<Body> {
    request(
        Method::POST,
        "/topics/orders:publish?api-version=2024-06-01",
        &[("content-type", "application/cloudevents+json; charset=utf-8")],
        body.to_string(),
    )
}

fn event(id: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "shop", "type": "order.created", "data": {"n": 1}})
}

/// A SAS token as Event Grid's C# sample (and `sinks`' custom topic sink) writes one.
fn token(resource: &str, key: &str, expiry: &str) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~()*!'".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let unsigned = format!("r={}&e={}", encode(resource), encode(expiry));
    let key = base64::engine::general_purpose::STANDARD.decode(key).expect("base64 key");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let signature = base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&key, unsigned.as_bytes()).as_ref());
    format!("{unsigned}&s={}", encode(&signature))
}

/// `at` as `M/d/yyyy h:mm:ss AM` in UTC.
fn dotnet(at: SystemTime) -> String {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970");
    let at = time::OffsetDateTime::UNIX_EPOCH + since;
    let hour = match at.hour() % 12 {
        0 => 12,
        hour => hour,
    };
    let meridiem = if at.hour() < 12 { "AM" } else { "PM" };
    format!(
        "{}/{}/{} {hour}:{:02}:{:02} {meridiem}",
        u8::from(at.month()),
        at.day(),
        at.year(),
        at.minute(),
        at.second()
    )
}

fn unauthenticated(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(Method::GET).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).expect("request")
}

const LIST: &str = "/mqtt/retainedMessages?topicFilter=%23";

// === credentials ===

#[tokio::test]
async fn health_needs_no_credential_and_everything_else_does() {
    let state = state();
    let answer = send(&state, unauthenticated("/healthz", &[])).await;
    assert_eq!((answer.status, answer.json()), (StatusCode::OK, json!({"status": "ok"})));
    let answer = send(&state, unauthenticated(LIST, &[])).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.json()["error"]["code"], "Unauthorized");
    let answer = send(&state, unauthenticated("/topics/orders:publish", &[])).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "publish is guarded before its method");
}

#[tokio::test]
async fn access_keys_in_header_or_query() {
    let state = state();
    assert_eq!(
        send(&state, unauthenticated(LIST, &[("aeg-sas-key", KEY)])).await.status,
        StatusCode::OK
    );
    let uri = format!("{LIST}&aeg-sas-key={}", KEY.replace('=', "%3D"));
    assert_eq!(send(&state, unauthenticated(&uri, &[])).await.status, StatusCode::OK);
    let other = base64::engine::general_purpose::STANDARD.encode("another key");
    let answer = send(&state, unauthenticated(LIST, &[("aeg-sas-key", &other)])).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.message().contains("not an access key"), "{}", answer.message());
}

#[tokio::test]
async fn sas_tokens_good_expired_forged_and_out_of_scope() {
    let state = state();
    let later = dotnet(SystemTime::now() + Duration::from_secs(3600));
    let resource = "https://ns.westus2-1.eventgrid.azure.net/mqtt/retainedMessages";
    let good = token(resource, KEY, &later);
    let answer = send(&state, unauthenticated(LIST, &[("aeg-sas-token", &good)])).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.message());
    let authorization = format!("SharedAccessSignature {good}");
    let answer = send(&state, unauthenticated(LIST, &[("authorization", &authorization)])).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.message());

    // A namespace-wide resource (a bare host) and unix-seconds expiries work too.
    let unix = (SystemTime::now() + Duration::from_secs(60))
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let namespace_wide = token("https://ns.westus2-1.eventgrid.azure.net", KEY, &unix.to_string());
    let answer = send(&state, unauthenticated(LIST, &[("aeg-sas-token", &namespace_wide)])).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.message());

    let refused = |token: String, expected: &'static str| {
        let state = state.clone();
        async move {
            let answer = send(&state, unauthenticated(LIST, &[("aeg-sas-token", &token)])).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
            assert!(answer.message().contains(expected), "{} lacks {expected}", answer.message());
        }
    };
    let earlier = dotnet(SystemTime::now() - Duration::from_secs(5));
    refused(token(resource, KEY, &earlier), "expired").await;
    let other = base64::engine::general_purpose::STANDARD.encode("another key");
    refused(token(resource, &other, &later), "signature").await;
    let tampered = good.replace("retainedMessages", "retainedMessageX");
    refused(tampered, "signature").await;
    refused(token("https://ns.example/topics/orders", KEY, &later), "does not cover").await;
    refused("r=x&e=y".into(), "r=<resource>").await;
}

#[tokio::test]
async fn the_admin_bearer_token_only_when_management_has_one() {
    let state = state();
    let bearer = format!("Bearer {ADMIN}");
    assert_eq!(
        send(&state, unauthenticated(LIST, &[("authorization", &bearer)])).await.status,
        StatusCode::OK
    );
    let wrong = "Bearer wrong-token-0123456789";
    assert_eq!(
        send(&state, unauthenticated(LIST, &[("authorization", wrong)])).await.status,
        StatusCode::UNAUTHORIZED
    );
    let without = state_with(&config(1000), None);
    let answer = send(&without, unauthenticated(LIST, &[("authorization", &bearer)])).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.message().contains("[management]"), "{}", answer.message());
}

// === namespace topic publish ===

#[tokio::test]
async fn structured_batch_and_binary_events_are_buffered() {
    let state = state();
    let router = state.router.clone().expect("router");
    let answer = send(&state, structured(&event("1"))).await;
    assert_eq!((answer.status, answer.json()), (StatusCode::OK, json!({})));
    assert_eq!(router.buffered(), 1);

    let batch = json!([event("2"), event("3"), event("4")]);
    let answer = send(
        &state,
        request(
            Method::POST,
            "/topics/orders:publish",
            &[("content-type", "application/cloudevents-batch+json")],
            batch.to_string(),
        ),
    )
    .await;
    assert_eq!((answer.status, answer.json()), (StatusCode::OK, json!({})));
    assert_eq!(router.buffered(), 4);

    let binary = [
        ("ce-specversion", "1.0"),
        ("ce-id", "5"),
        ("ce-source", "shop"),
        ("ce-type", "order.created"),
        ("content-type", "application/json"),
    ];
    let answer =
        send(&state, request(Method::POST, "/topics/orders:publish", &binary, "{\"n\":5}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.message());
    assert_eq!(router.buffered(), 5);
}

#[test]
fn binary_mode_maps_headers_and_body() {
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "7"),
        ("ce-source", "shop%2Feu"),
        ("ce-type", "order.created"),
        ("ce-subject", "orders/7"),
        ("ce-time", "2026-01-01T00:00:00Z"),
        ("ce-region", "west%20eu"),
        ("content-type", "text/plain"),
    ] {
        headers.insert(name, value.parse().expect("header"));
    }
    let events =
        publish::events_of(&headers, Bytes::from_static(b"hello"), 1024, 5).expect("event");
    let event = &events[0];
    assert_eq!(
        (event.id.as_str(), event.source.as_str(), event.ty.as_str()),
        ("7", "shop/eu", "order.created")
    );
    assert_eq!(event.subject.as_deref(), Some("orders/7"));
    assert_eq!(event.time.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(
        event.extensions.get("region").and_then(|v| v.as_string()).as_deref(),
        Some("west eu")
    );
    assert_eq!(event.datacontenttype.as_deref(), Some("text/plain"));
    assert_eq!(event.data, sinks::Data::Binary(Bytes::from_static(b"hello")));

    headers.insert("content-type", "application/json; charset=utf-8".parse().expect("header"));
    let body = Bytes::from_static(b"{ \"a\" : 1E+2, \"a\": 47.782000000000004 }\n");
    let events = publish::events_of(&headers, body.clone(), 1024, 5).expect("event");
    let sinks::Data::Json(json) = &events[0].data else { panic!("{:?}", events[0].data) };
    assert_eq!(json.published(), &body, "the body is the data, byte for byte");

    // `text/json` is JSON here as in MQTT routing: one rule, `sinks::media_type::is_json`.
    headers.insert("content-type", "Text/JSON".parse().expect("header"));
    let body = Bytes::from_static(b"[1, 2]");
    let events = publish::events_of(&headers, body.clone(), 1024, 5).expect("event");
    let sinks::Data::Json(json) = &events[0].data else { panic!("{:?}", events[0].data) };
    assert_eq!(json.published(), &body);
}

#[tokio::test]
async fn malformed_requests_are_400_naming_what_is_wrong() {
    let state = state();
    let check = |request: Request<Body>, status: StatusCode, expected: &'static str| {
        let state = state.clone();
        async move {
            let answer = send(&state, request).await;
            assert_eq!(answer.status, status, "{}", answer.message());
            assert!(answer.message().contains(expected), "{} lacks {expected}", answer.message());
        }
    };
    let batch = |body: String| {
        request(
            Method::POST,
            "/topics/orders:publish",
            &[("content-type", "application/cloudevents-batch+json")],
            body,
        )
    };
    check(
        structured(&json!({"specversion": "1.0", "id": "1", "source": "s"})),
        StatusCode::BAD_REQUEST,
        "type",
    )
    .await;
    check(batch("[]".into()), StatusCode::BAD_REQUEST, "at least one").await;
    let second_bad = vec![event("1"), json!({"specversion": "1.0"})];
    check(batch(Value::from(second_bad).to_string()), StatusCode::BAD_REQUEST, "[1]").await;
    let six: Vec<Value> = (0..6).map(|i| event(&i.to_string())).collect();
    check(batch(Value::from(six).to_string()), StatusCode::BAD_REQUEST, "at most 5").await;
    let no_id = [("ce-specversion", "1.0"), ("ce-source", "s"), ("ce-type", "t")];
    check(
        request(Method::POST, "/topics/orders:publish", &no_id, ""),
        StatusCode::BAD_REQUEST,
        "ce-id",
    )
    .await;
    let with_dct = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "s"),
        ("ce-type", "t"),
        ("ce-datacontenttype", "x"),
    ];
    check(
        request(Method::POST, "/topics/orders:publish", &with_dct, ""),
        StatusCode::BAD_REQUEST,
        "ce-datacontenttype",
    )
    .await;
    let bad_extension = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "s"),
        ("ce-type", "t"),
        ("ce-Bad_Name", "x"),
    ];
    check(
        request(Method::POST, "/topics/orders:publish", &bad_extension, ""),
        StatusCode::BAD_REQUEST,
        "extension",
    )
    .await;
    check(
        request(Method::POST, "/topics/orders:publish", &[("content-type", "text/plain")], "x"),
        StatusCode::BAD_REQUEST,
        "content-type",
    )
    .await;
}

#[tokio::test]
async fn limits_unknown_topics_and_a_full_buffer() {
    let state = state();
    let big = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": "x".repeat(1100)});
    let answer = send(&state, structured(&big)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.message().contains("http.max_event_bytes"), "{}", answer.message());
    let huge: Vec<Value> = (0..5).map(|i| json!({"specversion": "1.0", "id": i.to_string(), "source": "s", "type": "t", "data": "x".repeat(900)})).collect();
    let answer = send(
        &state,
        request(
            Method::POST,
            "/topics/orders:publish",
            &[("content-type", "application/cloudevents-batch+json")],
            Value::from(huge).to_string(),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.message().contains("http.max_request_bytes"), "{}", answer.message());

    let answer = send(
        &state,
        request(
            Method::POST,
            "/topics/nope:publish",
            &[("content-type", "application/cloudevents+json")],
            event("1").to_string(),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json()["error"]["code"], "NotFound");
    let answer = send(&state, request(Method::POST, "/topics/orders:delete", &[], "")).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    let small = state_with(&config(1), None);
    assert_eq!(send(&small, structured(&event("1"))).await.status, StatusCode::OK);
    let answer = send(&small, structured(&event("2"))).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.header("retry-after"), "1");
}

// === HTTP publish into MQTT, retained messages ===

fn mqtt(topic: &str, headers: &[(&str, &str)], payload: &'static [u8]) -> Request<Body> {
    request(Method::POST, &format!("/mqtt/messages?topic={topic}"), headers, payload)
}

#[tokio::test]
async fn an_http_publish_is_retained_with_its_properties_and_routed() {
    let state = state();
    let router = state.router.clone().expect("router");
    let properties = base64::engine::general_purpose::STANDARD
        .encode(r#"[{"Urgency":"alert"},{"RequestId":"r1"}]"#);
    let correlation = base64::engine::general_purpose::STANDARD.encode("corr");
    let headers = [
        ("mqtt-retain", "1"),
        ("mqtt-qos", "0"),
        ("mqtt-response-topic", "orders%2Freplies"),
        ("mqtt-correlation-data", correlation.as_str()),
        ("mqtt-user-properties", properties.as_str()),
        ("content-type", "text/plain"),
        ("mqtt-message-expiry", "600"),
        ("mqtt-payload-format-indicator", "1"),
    ];
    // The query's qos overrides the header's.
    let answer = send(
        &state,
        request(Method::POST, "/mqtt/messages?topic=orders%2F1&qos=1", &headers, "héllo"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.message());
    assert!(answer.body.is_empty());
    assert_eq!(router.buffered(), 1, "the route orders/# took it");

    let retained = state.broker.retained_matching("orders/1");
    let message = &retained[0];
    assert_eq!(message.qos, QoS::AtLeastOnce);
    assert!(message.retain);
    let p = &message.properties;
    assert_eq!(p.response_topic.as_deref(), Some("orders/replies"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"corr"[..]));
    assert_eq!(
        p.user_properties,
        [("Urgency".into(), "alert".into()), ("RequestId".into(), "r1".into())]
    );
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.payload_format_indicator, Some(1));
    assert!(message.expires_at.is_some());

    let answer = send(
        &state,
        request(Method::GET, "/mqtt/retainedMessages/message?topic=orders%2F1", &[], ""),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "héllo".as_bytes());
    assert_eq!(answer.header("x-ms-mqtt-topic"), "orders/1");
    assert_eq!(answer.header("x-ms-mqtt-qos"), "1");
    assert_eq!(answer.header("content-type"), "text/plain");
    assert!(answer.header("x-ms-mqtt-size").parse::<usize>().expect("size") > 6);
    assert!(answer.header("x-ms-mqtt-expiry").ends_with('Z'));
    assert!(answer.header("x-ms-mqtt-last-modified").ends_with('Z'));
    let answer = send(
        &state,
        request(Method::GET, "/mqtt/retainedMessages/message?topic=orders%2F2", &[], ""),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    // An empty retained publish clears it.
    let answer = send(&state, mqtt("orders%2F1", &[("mqtt-retain", "1")], b"")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(state.broker.retained_matching("orders/1").is_empty());
}

#[tokio::test]
async fn bad_http_publishes_are_refused_naming_the_field() {
    let state = state();
    let check = |request: Request<Body>, status: StatusCode, expected: &'static str| {
        let state = state.clone();
        async move {
            let answer = send(&state, request).await;
            assert_eq!(answer.status, status, "{}", answer.message());
            assert!(answer.message().contains(expected), "{} lacks {expected}", answer.message());
        }
    };
    check(request(Method::POST, "/mqtt/messages", &[], "x"), StatusCode::BAD_REQUEST, "topic")
        .await;
    check(mqtt("a%2F%2B", &[], b"x"), StatusCode::BAD_REQUEST, "topic").await;
    check(mqtt("%24SYS%2Fx", &[], b"x"), StatusCode::BAD_REQUEST, "reserved").await;
    check(mqtt("a", &[("mqtt-qos", "2")], b"x"), StatusCode::BAD_REQUEST, "mqtt-qos").await;
    check(
        request(Method::POST, "/mqtt/messages?topic=a&qos=2", &[], "x"),
        StatusCode::BAD_REQUEST,
        "qos",
    )
    .await;
    check(mqtt("a", &[("mqtt-retain", "yes")], b"x"), StatusCode::BAD_REQUEST, "mqtt-retain").await;
    check(
        mqtt("a", &[("mqtt-response-topic", "r%2F%23")], b"x"),
        StatusCode::BAD_REQUEST,
        "mqtt-response-topic",
    )
    .await;
    check(
        mqtt("a", &[("mqtt-correlation-data", "***")], b"x"),
        StatusCode::BAD_REQUEST,
        "mqtt-correlation-data",
    )
    .await;
    let not_pairs = base64::engine::general_purpose::STANDARD.encode(r#"[{"a":"1","b":"2"}]"#);
    check(
        mqtt("a", &[("mqtt-user-properties", &not_pairs)], b"x"),
        StatusCode::BAD_REQUEST,
        "mqtt-user-properties[0]",
    )
    .await;
    check(
        mqtt("a", &[("mqtt-message-expiry", "-1")], b"x"),
        StatusCode::BAD_REQUEST,
        "mqtt-message-expiry",
    )
    .await;
    check(
        mqtt("a", &[("mqtt-payload-format-indicator", "1")], b"\xff"),
        StatusCode::BAD_REQUEST,
        "UTF-8",
    )
    .await;

    let mut config = config(1000);
    config.mqtt.max_packet_size = 64;
    let small = state_with(&config, None);
    let answer = send(&small, mqtt("a", &[], &[b'x'; 100])).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.message().contains("mqtt.max_packet_size"), "{}", answer.message());
}

#[tokio::test]
async fn retained_messages_are_listed_in_pages() {
    let state = state();
    for n in 0..5 {
        let answer =
            send(&state, mqtt(&format!("fleet%2Fcar{n}"), &[("mqtt-retain", "1")], b"on")).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    send(&state, mqtt("other", &[("mqtt-retain", "1")], b"x")).await;
    let mut uri = "/mqtt/retainedMessages?topicFilter=fleet%2F%2B&maxResults=2".to_string();
    let mut topics = Vec::new();
    let mut pages = 0;
    loop {
        let answer = send(&state, request(Method::GET, &uri, &[("host", "gw.example")], "")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.message());
        let body = answer.json();
        pages += 1;
        for item in body["retainedMessages"].as_array().expect("array") {
            assert_eq!(item["qos"], 1);
            assert!(item["size"].as_u64().expect("size") > 0);
            assert_eq!(item["expiry"], Value::Null);
            assert!(item["lastModifiedTime"].as_str().expect("time").ends_with('Z'));
            topics.push(item["topic"].as_str().expect("topic").to_string());
        }
        match body["nextLink"].as_str() {
            Some(link) => {
                uri = link.strip_prefix("http://gw.example").expect("absolute link").to_string()
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(topics, ["fleet/car0", "fleet/car1", "fleet/car2", "fleet/car3", "fleet/car4"]);

    for (uri, expected) in [
        ("/mqtt/retainedMessages", "required"),
        ("/mqtt/retainedMessages?topicFilter=a&continuationToken=b", "not both"),
        ("/mqtt/retainedMessages?continuationToken=garbage", "continuationToken"),
        ("/mqtt/retainedMessages?topicFilter=a&maxResults=101", "maxResults"),
        ("/mqtt/retainedMessages?topicFilter=a%2F%23%2Fb", "topicFilter"),
    ] {
        let answer = send(&state, request(Method::GET, uri, &[], "")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(answer.message().contains(expected), "{uri}: {}", answer.message());
    }
}

// === what the Azure SDKs send and expect ===

#[tokio::test]
async fn a_shared_access_key_authorization_is_an_access_key() {
    let state = state();
    let sdk = format!("SharedAccessKey {KEY}");
    let answer = send(&state, unauthenticated(LIST, &[("authorization", &sdk)])).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.message());
    let other =
        format!("SharedAccessKey {}", base64::engine::general_purpose::STANDARD.encode("x"));
    let answer = send(&state, unauthenticated(LIST, &[("authorization", &other)])).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.message().contains("SharedAccessKey"), "{}", answer.message());
}

#[tokio::test]
async fn every_ga_api_version_and_none_are_accepted_and_others_get_400() {
    let state = state();
    for version in ["", "&api-version=2023-11-01", "&api-version=2024-06-01"] {
        let answer = send(&state, request(Method::GET, &format!("{LIST}{version}"), &[], "")).await;
        assert_eq!(answer.status, StatusCode::OK, "{version}: {}", answer.message());
    }
    for version in ["2018-01-01", "2024-06-02", "latest", ""] {
        let uri = format!("{LIST}&api-version={version}");
        let answer = send(&state, request(Method::GET, &uri, &[], "")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{version}");
        assert_eq!(answer.json()["error"]["code"], "UnsupportedApiVersion");
        assert!(answer.message().contains(&format!("'{version}'")), "{}", answer.message());
        assert!(answer.message().contains("2024-06-01"), "{}", answer.message());
    }
}

#[tokio::test]
async fn axums_own_error_answers_use_event_grids_body() {
    let state = state();
    let expect = |answer: &Answer, status: StatusCode, code: &str| {
        assert_eq!(answer.status, status, "{:?}", String::from_utf8_lossy(&answer.body));
        assert!(answer.header("content-type").starts_with("application/json"));
        assert_eq!(answer.json()["error"]["code"], code, "{}", answer.json());
        assert!(!answer.message().is_empty(), "{}", answer.json());
    };
    // No route, with and without a credential.
    let answer = send(&state, request(Method::GET, "/no/such/path", &[], "")).await;
    expect(&answer, StatusCode::NOT_FOUND, "NotFound");
    let answer = send(&state, unauthenticated("/nothing", &[])).await;
    expect(&answer, StatusCode::NOT_FOUND, "NotFound");
    // A route, with the wrong method: 405 keeps its Allow header.
    let answer = send(&state, request(Method::GET, "/topics/orders:publish", &[], "")).await;
    expect(&answer, StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed");
    assert!(answer.header("allow").contains("POST"), "{:?}", answer.headers);
    // A body past axum's own limit on a pull operation.
    let op = "/topics/orders/eventsubscriptions/hook:acknowledge";
    let big = vec![b' '; 3 << 20];
    let answer = send(&state, request(Method::POST, op, &[], big)).await;
    expect(&answer, StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
    // A path segment that is not UTF-8 once decoded: axum's Path rejection.
    let answer = send(&state, request(Method::POST, "/topics/%FF:publish", &[], "")).await;
    expect(&answer, StatusCode::BAD_REQUEST, "BadRequest");
}

fn queue_state() -> Arc<DataPlane> {
    let config = Config::parse(&format!(
        r#"
        [http]
        access_keys = ["{KEY}"]

        [[routing.routes]]
        topic = "orders"

        [topics.orders.eventSubscriptions.queue]
        deliveryMode = "Queue"
        receiveLockDurationInSeconds = 60
        "#
    ))
    .expect("config");
    state_with(&config, None)
}

#[tokio::test]
async fn settle_operations_answer_200_with_failed_tokens_in_event_grids_shape() {
    let state = queue_state();
    for id in ["1", "2"] {
        assert_eq!(send(&state, structured(&event(id))).await.status, StatusCode::OK);
    }
    let op = |name: &str| {
        format!("/topics/orders/eventsubscriptions/queue:{name}?api-version=2024-06-01")
    };
    let received = send(
        &state,
        request(Method::POST, &op("receive").replace("?", "?maxEvents=2&maxWaitTime=1&"), &[], ""),
    )
    .await;
    assert_eq!(received.status, StatusCode::OK, "{}", received.message());
    let tokens: Vec<String> = received.json()["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|item| item["brokerProperties"]["lockToken"].as_str().expect("token").to_string())
        .collect();
    assert_eq!(tokens.len(), 2);

    let settle = |name: &str, tokens: Vec<&str>| {
        let state = state.clone();
        let uri = op(name);
        let body = json!({ "lockTokens": tokens }).to_string();
        async move {
            let headers = [("content-type", "application/json")];
            send(&state, request(Method::POST, &uri, &headers, body)).await
        }
    };
    // Every token failed: still 200.
    let answer = settle("acknowledge", vec!["not-a-token"]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({
            "succeededLockTokens": [],
            "failedLockTokens": [{
                "lockToken": "not-a-token",
                "error": {"code": "BadToken", "message": "Token is not valid for this subscription."},
            }],
        })
    );
    for name in ["renewLock", "release", "reject"] {
        let answer = settle(name, vec!["nope"]).await;
        assert_eq!(answer.status, StatusCode::OK, "{name}");
        assert_eq!(answer.json()["failedLockTokens"][0]["error"]["code"], "BadToken", "{name}");
    }
    // Mixed: one succeeds, one fails.
    let answer = settle("renewLock", vec![tokens[0].as_str(), "nope"]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["succeededLockTokens"], json!([tokens[0]]));
    assert_eq!(answer.json()["failedLockTokens"][0]["lockToken"], "nope");
    let answer = settle("acknowledge", tokens.iter().map(String::as_str).collect()).await;
    assert_eq!(answer.json(), json!({"succeededLockTokens": tokens, "failedLockTokens": []}));
}

/// CloudEvents validation as the spec and the SDKs require; the 400 names the attribute.
#[tokio::test]
async fn events_are_validated_as_the_sdks_require() {
    let state = state();
    let base = || json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
    let cases = [
        ("id", json!(""), "`id` must not be empty"),
        ("source", json!(""), "`source` must not be empty"),
        ("type", json!(""), "`type` must not be empty"),
        ("Region", json!("eu"), "`Region`"),
        ("my_ext", json!("x"), "`my_ext`"),
        ("count", json!(2_147_483_648_u64), "`count` is outside the CloudEvents Integer range"),
        ("low", json!(-2_147_483_649_i64), "`low` is outside"),
        ("ratio", json!(0.5), "`ratio` must be a string, an integer or a boolean"),
    ];
    for (name, value, expected) in cases {
        let mut event = base();
        event[name] = value;
        let answer = send(&state, structured(&event)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{event}");
        assert!(answer.message().contains(expected), "{} lacks {expected}", answer.message());
    }
    let no_source =
        [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", ""), ("ce-type", "t")];
    let answer =
        send(&state, request(Method::POST, "/topics/orders:publish", &no_source, "")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.message().contains("ce-source"), "{}", answer.message());
    let reserved = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "s"),
        ("ce-type", "t"),
        ("ce-data", "x"),
    ];
    let answer = send(&state, request(Method::POST, "/topics/orders:publish", &reserved, "")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.message().contains("ce-data"), "{}", answer.message());
    let mut fine = base();
    fine["min"] = json!(-2_147_483_648_i64);
    fine["flag"] = json!(true);
    assert_eq!(send(&state, structured(&fine)).await.status, StatusCode::OK, "valid");
}
