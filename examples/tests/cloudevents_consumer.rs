//! gridmq's webhook deliveries, read by a downstream Rust service with the CloudEvents SDK: an
//! in-process gateway routes MQTT messages to three webhook subscriptions (structured, batched,
//! binary), each pointed at its own `cloudevents_consumer` server on a real socket, and every
//! `cloudevents::Event` the consumers parse is compared with what was published.
//!
//! Run with `cargo test -p gridmq-examples --test cloudevents_consumer`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use cloudevents::event::{ExtensionValue, SpecVersion};
use cloudevents::{AttributesReader, Event};
use gridmq_examples::cloudevents_consumer::{self, Mode, Received};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event as MqttEvent, MqttOptions};
use tokio::sync::{mpsc, oneshot};

/// Event Grid's namespace resource id, as a client may use it for `source`.
const RESOURCE_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/\
                           providers/Microsoft.EventGrid/namespaces/fleet-ns";

/// A consumer server on an ephemeral loopback port, and the events it parsed.
struct Consumer {
    url: String,
    events: mpsc::Receiver<Received>,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Consumer {
    async fn start() -> Consumer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("local address"));
        let (sink, events) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        let app = cloudevents_consumer::router(sink);
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Consumer { url, events, stop, server }
    }

    /// The next `count` events, which must have come in `mode`, waiting at most 20 seconds in
    /// all.
    async fn take(&mut self, count: usize, mode: Mode) -> Vec<Event> {
        let mut taken = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while taken.len() < count {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(received)) => {
                    assert_eq!(received.mode, mode, "{}: {:?}", self.url, received.event);
                    taken.push(received.event);
                }
                other => panic!("{} of {count} events at {}: {other:?}", taken.len(), self.url),
            }
        }
        taken
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.expect("server task").expect("server");
    }
}

/// What was published: topic, payload and MQTT 5 properties.
struct Message {
    topic: &'static str,
    payload: &'static [u8],
    properties: PublishProperties,
    /// Whether the data must arrive as the very bytes published. JSON whose text
    /// re-serialization changes is compared as a value instead: gridmq rewrites JSON data today
    /// (issue 16), and the SDK holds structured JSON data as a `serde_json::Value`, which sorts
    /// keys, whatever gridmq sends.
    exact: bool,
}

impl Message {
    fn is_client_event(&self) -> bool {
        self.properties.user_properties.iter().any(|(name, _)| name == "specversion")
    }

    /// The event's subject: the topic, or the client event's own.
    fn subject(&self) -> &str {
        let own = self.properties.user_properties.iter().find(|(name, _)| name == "subject");
        own.map_or(self.topic, |(_, subject)| subject)
    }

    fn content_type(&self) -> &str {
        match (&self.properties.content_type, self.properties.payload_format_indicator) {
            (Some(content_type), _) => content_type,
            (None, Some(1)) => "application/json",
            (None, _) => "application/octet-stream",
        }
    }
}

fn json_text() -> PublishProperties {
    PublishProperties { payload_format_indicator: Some(1), ..PublishProperties::default() }
}

/// A client CloudEvent in the MQTT binding's binary mode: attributes as user properties.
fn client_event() -> PublishProperties {
    let user = |name: &str, value: &str| (name.to_string(), value.to_string());
    PublishProperties {
        content_type: Some("application/json".into()),
        user_properties: vec![
            user("specversion", "1.0"),
            user("id", "reading-1"),
            user("source", RESOURCE_ID),
            user("type", "Fleet.Reading"),
            user("subject", "reading 1"),
            user("time", "2026-12-04T19:00:00.1234567Z"),
            user("dataschema", "https://schemas.example/reading%20v1.json"),
        ],
        ..PublishProperties::default()
    }
}

#[tokio::test]
async fn a_cloudevents_sdk_consumer_reads_every_delivery_mode() {
    let mut structured = Consumer::start().await;
    let mut batched = Consumer::start().await;
    let mut binary = Consumer::start().await;
    let config = format!(
        r#"
        [namespace]
        name = "fleet-ns"

        [[routing.routes]]
        topic_filter = "vehicles/#"
        topic = "vehicles"

        [routing.enrichments.static]
        site = "plant 7"

        [routing.enrichments.dynamic]
        clientname = "${{client.authenticationName}}"
        mqttpfi = "${{mqtt.message.pfi}}"

        [topics.vehicles.eventSubscriptions.structured.destination]
        endpointType = "WebHook"
        endpointUrl = "{}"
        contentMode = "Structured"

        [topics.vehicles.eventSubscriptions.batched.destination]
        endpointType = "WebHook"
        endpointUrl = "{}"
        maxEventsPerBatch = 10

        [topics.vehicles.eventSubscriptions.binary.destination]
        endpointType = "WebHook"
        endpointUrl = "{}"
        contentMode = "Binary"
        "#,
        structured.url, batched.url, binary.url
    );
    let gateway = gateway::embed::Builder::from_toml(&config)
        .expect("valid config")
        .start()
        .await
        .expect("gateway starts");

    let messages = [
        // JSON whose text survives re-serialization; the subject needs percent-encoding in
        // binary mode's ce-subject header.
        Message {
            topic: "vehicles/car 1/état",
            payload: br#"{"a":1}"#,
            properties: json_text(),
            exact: true,
        },
        Message {
            topic: "vehicles/car1/order",
            payload: br#"{"z":1,"a":2}"#,
            properties: json_text(),
            exact: false,
        },
        Message {
            topic: "vehicles/car1/raw",
            payload: b"\x00\x01\xfe\xff",
            properties: PublishProperties::default(),
            exact: true,
        },
        Message {
            topic: "vehicles/car1/ce",
            payload: br#"{"a":1}"#,
            properties: client_event(),
            exact: true,
        },
    ];
    let published = SystemTime::now();
    let addr = gateway.mqtt_addr();
    let mut options = MqttOptions::new("car1", addr.ip().to_string(), addr.port());
    options.set_credentials("car-1", "");
    let (client, mut connection) = AsyncClient::new(options, 10);
    for message in &messages {
        client
            .publish_with_properties(
                message.topic,
                QoS::AtLeastOnce,
                false,
                message.payload.to_vec(),
                message.properties.clone(),
            )
            .await
            .expect("queue the publish");
    }
    let mut acked = 0;
    while acked < messages.len() {
        match tokio::time::timeout(Duration::from_secs(10), connection.poll()).await {
            Ok(Ok(MqttEvent::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            other => panic!("no PUBACK: {other:?}"),
        }
    }

    let deliveries = [
        ("structured", structured.take(messages.len(), Mode::Structured).await),
        ("batched", batched.take(messages.len(), Mode::Batched).await),
        ("binary", binary.take(messages.len(), Mode::Binary).await),
    ];
    let received = SystemTime::now();
    gateway.shutdown().await;
    structured.stop().await;
    batched.stop().await;
    binary.stop().await;

    let mut ids = BTreeMap::new();
    for (mode, events) in &deliveries {
        let by_subject: BTreeMap<&str, &Event> =
            events.iter().map(|event| (event.subject().unwrap_or_default(), event)).collect();
        for message in &messages {
            let subject = message.subject();
            let Some(event) = by_subject.get(subject) else {
                panic!("{mode}: no event with subject {subject:?} in {events:#?}");
            };
            let context = format!("{mode} {subject}");
            assert_eq!(event.specversion(), SpecVersion::V10, "{context}");
            // Every subscription gets the same event.
            let id = ids.entry(subject).or_insert_with(|| event.id().to_owned());
            assert_eq!(event.id(), id, "{context}");
            assert!(!event.id().is_empty(), "{context}");
            let client = message.is_client_event();
            if client {
                assert_eq!(event.id(), "reading-1", "{context}");
                assert_eq!(event.source(), RESOURCE_ID, "{context}");
                assert_eq!(event.ty(), "Fleet.Reading", "{context}");
                // Event Grid's seven fractional digits, read by chrono to the 100 ns.
                let time = event.time().expect("time").to_rfc3339();
                assert_eq!(time, "2026-12-04T19:00:00.123456700+00:00", "{context}");
                let schema = event.dataschema().map(|url| url.as_str());
                assert_eq!(schema, Some("https://schemas.example/reading%20v1.json"), "{context}");
            } else {
                assert_eq!(event.dataschema(), None, "{context}");
                assert_eq!(event.source(), "fleet-ns", "{context}");
                assert_eq!(event.ty(), "MQTT.EventPublished", "{context}");
                let time = *event.time().expect("time");
                assert_eq!(time.timestamp_subsec_nanos() % 100, 0, "{context}: {time}");
                let time = SystemTime::from(time);
                let slack = Duration::from_millis(1);
                assert!(time + slack >= published && time <= received, "{context}");
            }
            assert_eq!(event.datacontenttype(), Some(message.content_type()), "{context}");

            // The enrichments, as extensions. Binary mode carries them as header text, so a
            // number arrives as a string there.
            let mut extensions: Vec<&str> = event.iter_extensions().map(|(name, _)| name).collect();
            extensions.sort_unstable();
            assert_eq!(extensions, ["clientname", "mqttpfi", "site"], "{context}");
            let text = |value: &str| Some(ExtensionValue::String(value.to_owned()));
            assert_eq!(event.extension("site").cloned(), text("plant 7"), "{context}");
            assert_eq!(event.extension("clientname").cloned(), text("car-1"), "{context}");
            let pfi = message.properties.payload_format_indicator.unwrap_or(0);
            let expected_pfi = if *mode == "binary" {
                text(&pfi.to_string())
            } else {
                Some(ExtensionValue::Integer(i64::from(pfi)))
            };
            assert_eq!(event.extension("mqttpfi").cloned(), expected_pfi, "{context}");

            let data = event.data().cloned().expect("data");
            // Binary mode hands over the body's bytes, so gridmq's byte-for-byte carriage shows
            // there even for key order; the SDK holds structured `data` as a JSON value, which
            // sorts keys whatever gridmq sent.
            if message.exact || *mode == "binary" {
                let bytes = Vec::<u8>::try_from(data).expect("data as bytes");
                let shown = String::from_utf8_lossy(&bytes);
                assert_eq!(bytes, message.payload, "{context}: {shown}");
            } else {
                // The same JSON value, whatever its text.
                let value = serde_json::Value::try_from(data).expect("JSON data");
                let published: serde_json::Value = serde_json::from_slice(message.payload).unwrap();
                assert_eq!(value, published, "{context}");
            }
        }
    }
}
