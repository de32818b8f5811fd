//! Shared test helpers: sample events and reading what a test server received.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::event::{CloudEvent, Data, JsonText};
use crate::sink::Delivery;

/// A routed-message-like event with JSON data and two extensions.
pub(crate) fn event(id: &str) -> CloudEvent {
    CloudEvent {
        id: id.into(),
        source: "gridmq-ns".into(),
        ty: "MQTT.EventPublished".into(),
        subject: Some("vehicles/7/position".into()),
        time: Some("2019-11-18T15:13:39.4589254Z".into()),
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        extensions: BTreeMap::from([
            ("mqttqos".into(), JsonText::from_value(&Value::from(1))),
            ("site".into(), JsonText::string("plant 7")),
        ]),
        data: Data::from_json_value(serde_json::json!({"vehicle": {"id": "v7"}, "speed": 12})),
    }
}

/// First deliveries of `events`.
pub(crate) fn first_tries(events: &[CloudEvent]) -> Vec<Delivery<'_>> {
    events.iter().map(|event| Delivery { event, delivery_count: 1 }).collect()
}

/// A header of a received request as text ("" when absent).
pub(crate) fn header<'r>(request: &'r wiremock::Request, name: &str) -> &'r str {
    request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The requests a server received, in order.
pub(crate) async fn received(server: &wiremock::MockServer) -> Vec<wiremock::Request> {
    server.received_requests().await.unwrap_or_default()
}

/// The HTTP client the sinks use.
pub(crate) fn client() -> reqwest::Client {
    crate::http::http_client().unwrap()
}
