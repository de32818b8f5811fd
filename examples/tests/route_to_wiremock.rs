//! How to test your routing: start gridmq in-process from your config, publish with an MQTT
//! client, and assert on what your webhook (here a wiremock server) received.
//!
//! Run with `cargo test -p gridmq-examples`.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn vehicle_telemetry_reaches_the_webhook_as_a_cloudevent() {
    // The sink: answers the CloudEvents abuse-protection handshake, then accepts events.
    let sink = MockServer::start().await;
    Mock::given(method("OPTIONS"))
        .respond_with(ResponseTemplate::new(200).insert_header("WebHook-Allowed-Origin", "*"))
        .mount(&sink)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;

    // The gateway, from the same kind of config file `gridmq serve --config` reads; listeners
    // move to ephemeral loopback ports and state stays in memory.
    let config = format!(
        r#"
        [[routing.routes]]
        topic_filter = "vehicles/#"
        topic = "vehicles"

        [routing.enrichments.static]
        site = "plant-7"

        [topics.vehicles.eventSubscriptions.hook.destination]
        endpointType = "WebHook"
        endpointUrl = "{}/hook"
        "#,
        sink.uri()
    );
    let gateway = gateway::embed::Builder::from_toml(&config)
        .expect("valid config")
        .start()
        .await
        .expect("gateway starts");

    // A device publishes one reading, at QoS 1, and waits for its PUBACK.
    let addr = gateway.mqtt_addr();
    let options = MqttOptions::new("car1", addr.ip().to_string(), addr.port());
    let (client, mut events) = AsyncClient::new(options, 10);
    client
        .publish("vehicles/car1", QoS::AtLeastOnce, false, br#"{"speed":42}"#.to_vec())
        .await
        .expect("queue the publish");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("no PUBACK: {other:?}"),
        }
    }

    // The webhook got it as a CloudEvent.
    let event = loop {
        let requests = sink.received_requests().await.unwrap_or_default();
        if let Some(post) = requests.iter().find(|r| r.method.as_str() == "POST") {
            break serde_json::from_slice::<Value>(&post.body).expect("a JSON CloudEvent");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event["type"], "MQTT.EventPublished");
    assert_eq!(event["subject"], "vehicles/car1");
    assert_eq!(event["site"], "plant-7");
    // MQTT 3.1.1 payloads are bytes: the event carries them base64-encoded.
    assert_eq!(event["data_base64"], "eyJzcGVlZCI6NDJ9");

    gateway.shutdown().await;
}
