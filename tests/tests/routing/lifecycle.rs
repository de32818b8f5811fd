//! Lifecycle events, end to end: connections, disconnections and takeovers of real MQTT clients
//! become CloudEvents on the system topic, pushed to a webhook.

use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::{v4, v5};
use gateway_tests::webhook;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn config(url: &str) -> String {
    format!(
        r#"
[namespace]
name = "plant"

[systemTopic.eventSubscriptions.lifecycle.destination]
endpointType = "WebHook"
endpointUrl = "{url}/lifecycle"
"#
    )
}

/// (short type, sequence number, disconnection reason) of each event of `client`.
fn summary(events: &[Value], session: &str) -> Vec<(String, u64, String)> {
    let mut out: Vec<(String, u64, String)> = events
        .iter()
        .filter(|e| e["data"]["clientSessionName"] == session)
        .map(|e| {
            let ty = e["type"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("Microsoft.EventGrid.MQTTClientSession");
            (
                ty.to_string(),
                e["data"]["sequenceNumber"].as_u64().unwrap_or(0),
                e["data"]["disconnectionReason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    // Delivery order is not guaranteed; the sequence numbers order them.
    out.sort_by_key(|e| (e.1, e.0 != "Connected"));
    out
}

#[tokio::test]
async fn connect_disconnect_and_takeover() {
    let server = webhook::accepting().await;
    let gridmq = Gridmq::start_with_config(&config(&server.uri()));
    let first = v5::Client::connect(gridmq.addr, "car1").await;
    first.disconnect().await;
    let second = v4::Client::connect(gridmq.addr, "car1").await;
    // Same client id again: the second connection is taken over.
    let third = v5::Client::connect(gridmq.addr, "car1").await;
    // A connection that just drops.
    drop(third);
    let posts =
        webhook::wait_posts(&server, "/lifecycle", WAIT, |p| webhook::events(p).len() >= 6).await;
    let events = webhook::events(&posts);
    for event in &events {
        let schema = match event["type"].as_str() {
            Some("Microsoft.EventGrid.MQTTClientSessionConnected") => {
                "lifecycle-session-connected.schema.json"
            }
            Some("Microsoft.EventGrid.MQTTClientSessionDisconnected") => {
                "lifecycle-session-disconnected.schema.json"
            }
            other => panic!("unexpected type {other:?}"),
        };
        gateway_tests::schema::validate(schema, event).expect("lifecycle schema");
        gateway_tests::schema::validate_cloudevent(event).expect("CloudEvents schema");
        assert_eq!(event["subject"], "clients/car1/sessions/car1");
        assert_eq!(event["data"]["namespaceName"], "plant");
        // Event Grid's source: the namespace's resource id, placeholders by default.
        assert_eq!(
            event["source"],
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/gridmq/providers/Microsoft.EventGrid/namespaces/plant"
        );
        assert_eq!(event["data"]["clientAuthenticationName"], "car1");
    }
    let expected: Vec<(String, u64, String)> = [
        ("Connected", 1, ""),
        ("Disconnected", 1, "ClientInitiatedDisconnect"),
        ("Connected", 2, ""),
        ("Disconnected", 2, "SessionTakenOver"),
        ("Connected", 3, ""),
        ("Disconnected", 3, "ConnectionLost"),
    ]
    .iter()
    .map(|(t, n, r)| (t.to_string(), *n, r.to_string()))
    .collect();
    assert_eq!(summary(&events, "car1"), expected);
    drop(second);
}
