//! The retained-message API (reference 6.6).
//!
//! - `GET /mqtt/retainedMessages/message?topic=<topic name>`: the payload as the body, with
//!   `x-ms-mqtt-topic` (percent-encoded), `x-ms-mqtt-qos`, `x-ms-mqtt-size` (the message as an
//!   MQTT 5 PUBLISH, in bytes), `x-ms-mqtt-expiry` (RFC 3339, when the message expires) and
//!   `x-ms-mqtt-last-modified` (RFC 3339); `content-type` is the message's, or
//!   `application/octet-stream`. 404 when the topic holds no retained message.
//! - `GET /mqtt/retainedMessages?topicFilter=<filter>&maxResults=1..100` (default 100), then
//!   `?continuationToken=<token>` from `nextLink`: `{"nextLink": null | "<url>",
//!   "retainedMessages": [{"topic", "qos", "size", "expiry", "lastModifiedTime"}]}`, ordered by
//!   topic. Exactly one of `topicFilter` and `continuationToken` is required (400 otherwise).
//!
//! The continuation token carries the filter and the last topic returned, so paging needs no
//! server state: a message retained or cleared between pages shows up, or not, by its place in
//! topic order. Each page walks every match of the filter (the retained index is not ordered).
//! `lastModifiedTime` is when the broker stored the message; after a restart, when it was
//! recovered (the store does not keep it).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::mqtt_publish::publish_size;
use super::{ApiError, DataPlane, param, percent_encode, query_params};
use crate::broker::message::Message;
use crate::mqtt::{QoS, topic};

/// The most messages one page may list, and the default.
const MAX_RESULTS: usize = 100;

pub(super) fn routes() -> Router<Arc<DataPlane>> {
    Router::new()
        .route("/mqtt/retainedMessages/message", get(get_message))
        .route("/mqtt/retainedMessages", get(list))
}

async fn get_message(State(state): State<Arc<DataPlane>>, uri: Uri) -> Result<Response, ApiError> {
    let params = query_params(&uri)?;
    let name = param(&params, "topic")
        .ok_or_else(|| ApiError::bad_request("topic", "the query parameter is required"))?;
    if !topic::valid_topic_name(name) {
        return Err(ApiError::bad_request("topic", "not a valid MQTT topic name"));
    }
    let found = state.broker.retained_entries(name).into_iter().find(|(m, _)| &*m.topic == name);
    let Some((message, modified)) = found else {
        return Err(ApiError::not_found(format!("no retained message on topic `{name}`")));
    };
    let now = Instant::now();
    let mut response = message.payload.clone().into_response();
    let headers = response.headers_mut();
    let content_type =
        message.properties.content_type.as_deref().unwrap_or("application/octet-stream");
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("content-type", content_type.to_string());
    set("x-ms-mqtt-topic", percent_encode(name));
    set("x-ms-mqtt-qos", qos_number(message.qos).to_string());
    set("x-ms-mqtt-size", publish_size(&message, now).to_string());
    if let Some(expiry) = expiry_time(&message, now) {
        set("x-ms-mqtt-expiry", expiry);
    }
    set("x-ms-mqtt-last-modified", sinks::event::format_time(modified));
    Ok(response)
}

async fn list(
    State(state): State<Arc<DataPlane>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = query_params(&uri)?;
    let max_results = match param(&params, "maxResults") {
        None => MAX_RESULTS,
        Some(text) => {
            text.parse::<usize>().ok().filter(|n| (1..=MAX_RESULTS).contains(n)).ok_or_else(
                || ApiError::bad_request("maxResults", format!("must be 1 to {MAX_RESULTS}")),
            )?
        }
    };
    let (filter, after) = match (param(&params, "topicFilter"), param(&params, "continuationToken"))
    {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "topicFilter",
                "give topicFilter or continuationToken, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "topicFilter",
                "topicFilter or continuationToken is required",
            ));
        }
        (Some(filter), None) => {
            let shared = topic::split_shared(filter).map(|s| s.is_some()).unwrap_or(true);
            if shared || !topic::valid_topic_filter(filter) {
                return Err(ApiError::bad_request("topicFilter", "not a valid MQTT topic filter"));
            }
            (filter.to_string(), None)
        }
        (None, Some(token)) => {
            let (filter, after) = decode_token(token)?;
            (filter, Some(after))
        }
    };
    let mut entries: Vec<(Arc<Message>, SystemTime)> = state
        .broker
        .retained_entries(&filter)
        .into_iter()
        .filter(|(message, _)| after.as_deref().is_none_or(|after| &*message.topic > after))
        .collect();
    entries.sort_by(|(a, _), (b, _)| a.topic.cmp(&b.topic));
    let more = entries.len() > max_results;
    entries.truncate(max_results);
    let now = Instant::now();
    let items: Vec<Value> = entries
        .iter()
        .map(|(message, modified)| {
            json!({
                "topic": &*message.topic,
                "qos": qos_number(message.qos),
                "size": publish_size(message, now),
                "expiry": expiry_time(message, now),
                "lastModifiedTime": sinks::event::format_time(*modified),
            })
        })
        .collect();
    let next_link = match entries.last() {
        Some((last, _)) if more => {
            let token = encode_token(&filter, &last.topic);
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let path = format!(
                "/mqtt/retainedMessages?continuationToken={token}&maxResults={max_results}"
            );
            Value::from(match host {
                Some(host) => format!("http://{host}{path}"),
                None => path,
            })
        }
        _ => Value::Null,
    };
    Ok(axum::Json(json!({ "nextLink": next_link, "retainedMessages": items })).into_response())
}

fn qos_number(qos: QoS) -> u8 {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}

/// When `message` expires, in RFC 3339, if it does.
fn expiry_time(message: &Message, now: Instant) -> Option<String> {
    let left = message.expires_at?.saturating_duration_since(now);
    Some(sinks::event::format_time(SystemTime::now() + left))
}

/// A continuation token: URL-safe base64 of `{"f": filter, "a": last topic returned}`.
fn encode_token(filter: &str, after: &str) -> String {
    let json = json!({ "f": filter, "a": after }).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_token(token: &str) -> Result<(String, String), ApiError> {
    let invalid = || ApiError::bad_request("continuationToken", "not a token this API issued");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&json).map_err(|_| invalid())?;
    match (value.get("f").and_then(Value::as_str), value.get("a").and_then(Value::as_str)) {
        (Some(filter), Some(after)) if topic::valid_topic_filter(filter) => {
            Ok((filter.to_string(), after.to_string()))
        }
        _ => Err(invalid()),
    }
}
