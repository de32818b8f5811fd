//! The data-plane HTTP API end to end, against the gridmq binary: HTTP publishes reaching an
//! MQTT 5 subscriber with every mapped property, namespace topic publishes (structured, batch,
//! binary) reaching a webhook subscription, and the retained-message API.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use gateway_tests::Gridmq;
use gateway_tests::clients::v5;
use gateway_tests::http_raw::{self, Response};
use gateway_tests::webhook;
use serde_json::json;

/// The namespace access key (base64, as Event Grid shows keys).
const KEY: &str = "ZGF0YS1wbGFuZS1hY2Nlc3Mta2V5LTAxMjM0NTY3ODk=";

/// How long a test waits for webhook deliveries.
const WAIT: Duration = Duration::from_secs(20);

/// `[http]` on a free port, accepting [`KEY`].
fn plain_config() -> String {
    format!("[http]\nlisten = \"127.0.0.1:0\"\naccess_keys = [\"{KEY}\"]\n")
}

fn api(gridmq: &Gridmq) -> SocketAddr {
    gridmq.api.expect("the data-plane API is announced")
}

/// One request with the access key in `aeg-sas-key`.
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

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn http_publish_reaches_an_mqtt5_subscriber_with_every_property() {
    let gridmq = Gridmq::start_with_config(&plain_config());
    let mut subscriber = v5::Client::connect(gridmq.addr, "car1").await;
    let mut filter = v5::Filter::new("vehicles/car1/#", v5::QoS::AtLeastOnce);
    filter.preserve_retain = true;
    subscriber.subscribe_filters(vec![filter], None).await;

    let user_properties = base64(br#"[{"Urgency":"alert"},{"RequestId":"r-42"}]"#);
    let correlation = base64(b"\x00corr\xff");
    let headers = [
        ("mqtt-qos", "0"),
        ("mqtt-retain", "1"),
        ("mqtt-response-topic", "vehicles%2Fcar1%2Fcommand%2Fresponse"),
        ("mqtt-correlation-data", correlation.as_str()),
        ("mqtt-user-properties", user_properties.as_str()),
        ("content-type", "application/json"),
        ("mqtt-message-expiry", "600"),
        ("mqtt-payload-format-indicator", "1"),
    ];
    // The query's qos=1 overrides the header's 0.
    let target = "/mqtt/messages?topic=vehicles%2Fcar1%2Fcommand%2Funlock&qos=1&api-version=2025-02-15-preview";
    let answer = call(api(&gridmq), "POST", target, &headers, br#"{"when":"now"}"#).await;
    assert_eq!(answer.status, 200, "{}", answer.error_message());

    let publish = subscriber.recv().await;
    assert_eq!(&publish.topic[..], b"vehicles/car1/command/unlock");
    assert_eq!(&publish.payload[..], br#"{"when":"now"}"#);
    assert_eq!(publish.qos, v5::QoS::AtLeastOnce);
    assert!(publish.retain, "retain as published");
    let p = publish.properties.expect("properties");
    assert_eq!(p.response_topic.as_deref(), Some("vehicles/car1/command/response"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"\x00corr\xff"[..]));
    assert_eq!(
        p.user_properties,
        [("Urgency".to_string(), "alert".to_string()), ("RequestId".into(), "r-42".into())]
    );
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    let expiry = p.message_expiry_interval.expect("message expiry");
    assert!((590..=600).contains(&expiry), "expiry {expiry}");
    assert_eq!(p.payload_format_indicator, Some(1));

    // Retained: a later subscriber gets it with the RETAIN flag.
    let mut late = v5::Client::connect(gridmq.addr, "car1-late").await;
    late.subscribe("vehicles/car1/command/unlock", v5::QoS::AtLeastOnce).await;
    let retained = late.recv().await;
    assert!(retained.retain);
    assert_eq!(&retained.payload[..], br#"{"when":"now"}"#);

    // QoS 0 by header, no retain, no properties.
    let target = "/mqtt/messages?topic=vehicles%2Fcar1%2Fping";
    let answer = call(api(&gridmq), "POST", target, &[("mqtt-qos", "0")], b"ping").await;
    assert_eq!(answer.status, 200);
    let publish = subscriber.recv().await;
    assert_eq!((publish.qos, publish.retain), (v5::QoS::AtMostOnce, false));
    assert_eq!(&publish.payload[..], b"ping");

    // Refusals name the field; no credential is 401.
    let target = "/mqtt/messages?topic=vehicles%2F%2B";
    let answer = call(api(&gridmq), "POST", target, &[], b"x").await;
    assert_eq!(answer.status, 400);
    assert!(answer.error_message().starts_with("topic:"), "{}", answer.error_message());
    let answer = http_raw::request(api(&gridmq), "POST", "/mqtt/messages?topic=a", &[], b"x")
        .await
        .expect("HTTP exchange");
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json().expect("json")["error"]["code"], "Unauthorized");
    subscriber.recv_none().await;
}

// === namespace topics ===

/// Namespace topic `orders` pushing to `url`; the route exists only so that the router (which
/// holds the namespace topics) is built, and matches nothing published here.
fn routed_config(url: &str) -> String {
    format!(
        r#"
[http]
listen = "127.0.0.1:0"
access_keys = ["{KEY}"]

[[routing.routes]]
topic = "orders"
topic_filter = "unused/#"

[topics.orders.eventSubscriptions.hook]
retryDelaysSeconds = [0.2]

[topics.orders.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "{url}"
"#
    )
}

/// A SAS token as Event Grid's C# sample (and our custom topic sink) writes one.
fn sas_token(resource: &str, key: &str, expires: SystemTime) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~()*!'".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let since = expires.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970");
    let at = time::OffsetDateTime::UNIX_EPOCH + since;
    let twelve = match at.hour() % 12 {
        0 => 12,
        hour => hour,
    };
    let meridiem = if at.hour() < 12 { "AM" } else { "PM" };
    let expiry = format!(
        "{}/{}/{} {twelve}:{:02}:{:02} {meridiem}",
        u8::from(at.month()),
        at.day(),
        at.year(),
        at.minute(),
        at.second()
    );
    let unsigned = format!("r={}&e={}", encode(resource), encode(&expiry));
    let key = base64::engine::general_purpose::STANDARD.decode(key).expect("base64 key");
    let key = ring_hmac(&key, unsigned.as_bytes());
    format!("{unsigned}&s={}", encode(&base64(&key)))
}

/// HMAC-SHA256 of `data` under `key`.
fn ring_hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, data).as_ref().to_vec()
}

#[tokio::test]
async fn namespace_topic_publishes_reach_a_webhook_in_every_content_mode() {
    let server = webhook::accepting().await;
    let gridmq = Gridmq::start_with_config(&routed_config(&format!("{}/hook", server.uri())));
    let addr = api(&gridmq);
    let event = |id: &str| {
        json!({"specversion": "1.0", "id": id, "source": "shop", "type": "order.created",
               "subject": format!("orders/{id}"), "data": {"id": id}})
    };

    let structured = [("content-type", "application/cloudevents+json; charset=utf-8")];
    let body = event("s1").to_string();
    let answer = call(addr, "POST", "/topics/orders:publish", &structured, body.as_bytes()).await;
    assert_eq!((answer.status, answer.json().expect("json")), (200, json!({})));

    // The batch authenticates with a SAS token scoped to the topic.
    let resource = "https://ns.example.net/topics/orders";
    let token = sas_token(resource, KEY, SystemTime::now() + Duration::from_secs(600));
    let authorization = format!("SharedAccessSignature {token}");
    let batch = json!([event("b1"), event("b2")]).to_string();
    let headers = [
        ("content-type", "application/cloudevents-batch+json; charset=utf-8"),
        ("authorization", authorization.as_str()),
    ];
    let answer = http_raw::request(
        addr,
        "POST",
        "/topics/orders:publish?api-version=2024-06-01",
        &headers,
        batch.as_bytes(),
    )
    .await
    .expect("HTTP exchange");
    assert_eq!(answer.status, 200, "{}", answer.error_message());

    let binary = [
        ("ce-specversion", "1.0"),
        ("ce-id", "bin1"),
        ("ce-source", "shop%2Feu"),
        ("ce-type", "order.created"),
        ("ce-region", "west%20eu"),
        ("content-type", "application/json"),
    ];
    let answer = call(addr, "POST", "/topics/orders:publish", &binary, br#"{"id":"bin1"}"#).await;
    assert_eq!(answer.status, 200, "{}", answer.error_message());

    let posts =
        webhook::wait_posts(&server, "/hook", WAIT, |p| webhook::events(p).len() >= 4).await;
    let events = webhook::events(&posts);
    let by_id = |id: &str| {
        events.iter().find(|e| e["id"] == id).unwrap_or_else(|| panic!("{id} in {events:?}"))
    };
    for id in ["s1", "b1", "b2"] {
        let e = by_id(id);
        assert_eq!(
            (&e["type"], &e["source"], &e["data"]),
            (&json!("order.created"), &json!("shop"), &json!({"id": id}))
        );
        assert_eq!(e["subject"], format!("orders/{id}"));
    }
    let binary = by_id("bin1");
    assert_eq!(binary["source"], "shop/eu");
    assert_eq!(binary["region"], "west eu");
    assert_eq!(binary["datacontenttype"], "application/json");
    assert_eq!(binary["data"], json!({"id": "bin1"}));

    // An unknown topic is 404; a token for another topic is 401.
    let body = event("x").to_string();
    let answer = call(addr, "POST", "/topics/nope:publish", &structured, body.as_bytes()).await;
    assert_eq!(answer.status, 404);
    let other = sas_token(
        "https://ns.example.net/topics/other",
        KEY,
        SystemTime::now() + Duration::from_secs(600),
    );
    let headers = [structured[0], ("aeg-sas-token", other.as_str())];
    let answer =
        http_raw::request(addr, "POST", "/topics/orders:publish", &headers, body.as_bytes())
            .await
            .expect("HTTP exchange");
    assert_eq!(answer.status, 401);
}

// === retained messages ===

#[tokio::test]
async fn retained_messages_are_read_and_listed_with_continuation() {
    let gridmq = Gridmq::start_with_config(&plain_config());
    let addr = api(&gridmq);
    let publisher = v5::Client::connect(gridmq.addr, "sensor").await;
    for n in 0..5 {
        let topic = format!("site/room{n}/temp");
        publisher.publish(&topic, v5::QoS::AtLeastOnce, true, format!("{n}").as_bytes()).await;
    }
    publisher.publish("elsewhere", v5::QoS::AtLeastOnce, true, b"x").await;
    let target = "/mqtt/messages?topic=site%2Froom9%2Ftemp&retain=1";
    let headers = [("mqtt-message-expiry", "3600"), ("content-type", "text/plain")];
    let answer = call(addr, "POST", target, &headers, b"nine").await;
    assert_eq!(answer.status, 200);

    // The MQTT publishes are acknowledged asynchronously: wait until all are retained.
    let deadline = tokio::time::Instant::now() + WAIT;
    let target = "/mqtt/retainedMessages/message?topic=site%2Froom4%2Ftemp";
    loop {
        if call(addr, "GET", target, &[], b"").await.status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "site/room4/temp never retained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let target =
        "/mqtt/retainedMessages/message?topic=site%2Froom9%2Ftemp&api-version=2025-11-16-preview";
    let answer = call(addr, "GET", target, &[], b"").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"nine");
    assert_eq!(answer.header("x-ms-mqtt-topic"), Some("site/room9/temp"));
    assert_eq!(answer.header("x-ms-mqtt-qos"), Some("1"));
    assert_eq!(answer.header("content-type"), Some("text/plain"));
    let size: usize = answer.header("x-ms-mqtt-size").expect("size").parse().expect("a number");
    assert!(size > "site/room9/temp".len() + 4, "size {size}");
    assert!(answer.header("x-ms-mqtt-expiry").is_some_and(|t| t.ends_with('Z')));
    assert!(answer.header("x-ms-mqtt-last-modified").is_some_and(|t| t.ends_with('Z')));
    let missing = "/mqtt/retainedMessages/message?topic=site%2Fnone";
    assert_eq!(call(addr, "GET", missing, &[], b"").await.status, 404);

    let mut target =
        "/mqtt/retainedMessages?topicFilter=site%2F%2B%2Ftemp&maxResults=2".to_string();
    let mut topics = Vec::new();
    let mut pages = 0;
    loop {
        let answer = call(addr, "GET", &target, &[], b"").await;
        assert_eq!(answer.status, 200, "{}", answer.error_message());
        let body = answer.json().expect("json");
        pages += 1;
        for item in body["retainedMessages"].as_array().expect("an array") {
            topics.push(item["topic"].as_str().expect("topic").to_string());
            assert_eq!(item["qos"], 1);
            assert!(item["lastModifiedTime"].is_string());
        }
        let Some(link) = body["nextLink"].as_str() else { break };
        let prefix = format!("http://{addr}");
        target = link.strip_prefix(&prefix).unwrap_or_else(|| panic!("{link}")).to_string();
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> =
        [0, 1, 2, 3, 4, 9].iter().map(|n| format!("site/room{n}/temp")).collect();
    assert_eq!(topics, expected);

    let both = "/mqtt/retainedMessages?topicFilter=a&continuationToken=b";
    assert_eq!(call(addr, "GET", both, &[], b"").await.status, 400);
    assert_eq!(call(addr, "GET", "/mqtt/retainedMessages", &[], b"").await.status, 400);
}
