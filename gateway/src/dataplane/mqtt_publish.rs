//! `POST /mqtt/messages?topic=...`: an MQTT message published over HTTP, with Event Grid's
//! header map (reference 6.7). The body is the payload; the rest is
//!
//! | MQTT | query | header |
//! |---|---|---|
//! | topic name (required, percent-encoded) | `topic` | |
//! | QoS, 0 or 1 (default 1) | `qos` | `mqtt-qos` |
//! | RETAIN, 0 or 1 (default 0) | `retain` | `mqtt-retain` |
//! | Response Topic (percent-encoded) | | `mqtt-response-topic` |
//! | Correlation Data (base64) | | `mqtt-correlation-data` |
//! | User Properties (base64 of `[{"name":"value"}, ...]`) | | `mqtt-user-properties` |
//! | Content Type | | `content-type` |
//! | Message Expiry Interval, seconds | | `mqtt-message-expiry` |
//! | Payload Format Indicator, 0 or 1 (default 0) | | `mqtt-payload-format-indicator` |
//!
//! A query parameter overrides its header. A bad value is 400 naming the field; a message whose
//! MQTT 5 PUBLISH would exceed `mqtt.max_packet_size` is 413.
//!
//! The message is published as `$http` (the routed event's client name), trusted like an
//! administrator: data-plane credentials are namespace-wide, so no permission binding is
//! consulted, but topics starting with `$` stay reserved. It then takes the path an MQTT 5
//! PUBLISH takes (routing tap, retained message, fan-out), and the 200 comes once what it
//! stored is durable, as a PUBACK would. A routing buffer that refuses it is 503.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;

use super::{ApiError, DataPlane, param, percent_decode_utf8, query_params, read_body};
use crate::broker::message::Message;
use crate::hooks::ClientIdentity;
use crate::mqtt::codec::OutboundPublish;
use crate::mqtt::{Codec, Properties, Protocol, QoS, topic};

/// The client id and authentication name HTTP publishes carry.
pub const HTTP_PUBLISHER: &str = "$http";

pub(super) fn routes() -> Router<Arc<DataPlane>> {
    Router::new().route("/mqtt/messages", post(publish))
}

async fn publish(
    State(state): State<Arc<DataPlane>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let params = query_params(&uri)?;
    let payload =
        read_body(&headers, body, state.config.max_request_bytes, "http.max_request_bytes").await?;
    let message = message_of(&params, &headers, payload)?;
    let size = publish_size(&message, Instant::now());
    let limit = state.broker.config.max_packet_size as usize;
    if size > limit {
        return Err(ApiError::too_large(
            "body",
            format!("the MQTT PUBLISH would be {size} bytes; mqtt.max_packet_size is {limit}"),
        ));
    }
    let identity = ClientIdentity {
        client_id: HTTP_PUBLISHER.into(),
        authentication_name: HTTP_PUBLISHER.into(),
        attributes: BTreeMap::new(),
    };
    match state.broker.publish_from(&identity, Arc::new(message)).await {
        Ok(_) => Ok(StatusCode::OK.into_response()),
        Err(refused) => Err(ApiError::busy(refused.reason)),
    }
}

/// The size of `message` as an MQTT 5 PUBLISH with a packet id, as it would leave now: what
/// `mqtt.max_packet_size` bounds, and the retained-message API's `size`.
pub(super) fn publish_size(message: &Message, now: Instant) -> usize {
    Codec::publish_len(
        &OutboundPublish {
            dup: false,
            qos: message.qos,
            retain: message.retain,
            topic: &message.topic,
            packet_id: (message.qos != QoS::AtMostOnce).then_some(1),
            properties: &message.properties,
            payload: &message.payload,
            topic_alias: None,
            subscription_identifiers: &[],
            message_expiry_interval: message.remaining_expiry(now),
        },
        Protocol::V5,
    )
}

/// The message a request describes, validated.
fn message_of(
    params: &[(String, String)],
    headers: &HeaderMap,
    payload: Bytes,
) -> Result<Message, ApiError> {
    let header = |name: &'static str| -> Result<Option<&str>, ApiError> {
        match headers.get(name) {
            None => Ok(None),
            Some(value) => value
                .to_str()
                .map(|text| Some(text.trim()))
                .map_err(|_| ApiError::bad_request(name, "not visible ASCII")),
        }
    };
    let either = |query: &str, name: &'static str| -> Result<Option<(String, String)>, ApiError> {
        if let Some(value) = param(params, query) {
            return Ok(Some((query.to_string(), value.to_string())));
        }
        Ok(header(name)?.map(|value| (name.to_string(), value.to_string())))
    };

    let topic = param(params, "topic")
        .ok_or_else(|| ApiError::bad_request("topic", "the query parameter is required"))?;
    check_topic("topic", topic)?;
    let qos = match either("qos", "mqtt-qos")? {
        None => QoS::AtLeastOnce,
        Some((_, v)) if v == "1" => QoS::AtLeastOnce,
        Some((_, v)) if v == "0" => QoS::AtMostOnce,
        Some((field, _)) => return Err(ApiError::bad_request(&field, "must be 0 or 1")),
    };
    let retain = match either("retain", "mqtt-retain")? {
        None => false,
        Some((_, v)) if v == "1" || v.eq_ignore_ascii_case("true") => true,
        Some((_, v)) if v == "0" || v.eq_ignore_ascii_case("false") => false,
        Some((field, _)) => return Err(ApiError::bad_request(&field, "must be 0 or 1")),
    };

    let mut properties = Properties::default();
    if let Some(value) = header("mqtt-response-topic")? {
        let response_topic = percent_decode_utf8(value).ok_or_else(|| {
            ApiError::bad_request("mqtt-response-topic", "not UTF-8 once percent-decoded")
        })?;
        check_topic("mqtt-response-topic", &response_topic)?;
        properties.response_topic = Some(response_topic);
    }
    if let Some(value) = header("mqtt-correlation-data")? {
        let data = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| ApiError::bad_request("mqtt-correlation-data", "not base64"))?;
        properties.correlation_data = Some(data.into());
    }
    if let Some(value) = header("mqtt-user-properties")? {
        properties.user_properties = user_properties(value)?;
    }
    if let Some(value) = header("content-type")? {
        properties.content_type = Some(value.to_string());
    }
    let expiry = match header("mqtt-message-expiry")? {
        None => None,
        Some(value) => Some(value.parse::<u32>().map_err(|_| {
            ApiError::bad_request("mqtt-message-expiry", "must be seconds, 0 to 4294967295")
        })?),
    };
    match header("mqtt-payload-format-indicator")? {
        None | Some("0") => {}
        Some("1") => {
            if std::str::from_utf8(&payload).is_err() {
                return Err(ApiError::bad_request(
                    "body",
                    "mqtt-payload-format-indicator is 1 but the payload is not UTF-8",
                ));
            }
            properties.payload_format_indicator = Some(1);
        }
        Some(_) => {
            return Err(ApiError::bad_request("mqtt-payload-format-indicator", "must be 0 or 1"));
        }
    }
    Ok(Message {
        topic: topic.into(),
        payload,
        qos,
        retain,
        properties: properties.into_shared(),
        expires_at: expiry.map(|secs| Instant::now() + Duration::from_secs(u64::from(secs))),
        publisher: 0,
        record: OnceLock::new(),
    })
}

/// A topic name an HTTP publish may use: valid, without wildcards, not reserved (`$`).
fn check_topic(field: &str, name: &str) -> Result<(), ApiError> {
    if !topic::valid_topic_name(name) {
        return Err(ApiError::bad_request(
            field,
            "not a valid MQTT topic name (empty, too long, or holding + # or U+0000)",
        ));
    }
    if name.starts_with('$') {
        return Err(ApiError::bad_request(field, "topics starting with $ are reserved"));
    }
    Ok(())
}

/// `mqtt-user-properties`: base64 of a JSON array of one-pair objects, in order.
fn user_properties(value: &str) -> Result<Vec<(String, String)>, ApiError> {
    const FIELD: &str = "mqtt-user-properties";
    let shape = "must be base64 of a JSON array of one-pair objects, e.g. [{\"name\":\"value\"}]";
    let json = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| ApiError::bad_request(FIELD, shape))?;
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&json) else {
        return Err(ApiError::bad_request(FIELD, shape));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let problem = || ApiError::bad_request(&format!("{FIELD}[{index}]"), shape);
            let Value::Object(pair) = item else { return Err(problem()) };
            let mut pairs = pair.into_iter();
            match (pairs.next(), pairs.next()) {
                (Some((name, Value::String(value))), None) => Ok((name, value)),
                _ => Err(problem()),
            }
        })
        .collect()
}
