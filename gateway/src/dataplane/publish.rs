//! `POST /topics/{topic}:publish`: CloudEvents into a namespace topic, as Event Grid takes them.
//!
//! Content modes, by `content-type`:
//! - `application/cloudevents+json`: structured, one event object;
//! - `application/cloudevents-batch+json`: a JSON array of 1 to `http.max_events_per_request`
//!   events;
//! - anything else with a `ce-specversion` header: binary. `ce-id`, `ce-source`, `ce-type` are
//!   required; other `ce-*` headers are attributes or (names of 1–20 of `[a-z0-9]`) extensions,
//!   percent-decoded, as strings; `ce-datacontenttype` must not be sent, since `content-type`
//!   is the data's content type; the body is the data: inline JSON when the content type is
//!   JSON, bytes otherwise.
//!
//! Events are validated as the CloudEvents spec and the SDKs require: `id`, `source` and
//! `type` are non-empty strings; extension names are lowercase `[a-z0-9]` and not a context
//! attribute name (`data`, `data_base64` included); extension values are strings, booleans or
//! integers within the CloudEvents Integer range (-2^31 to 2^31-1). `data` and extension values
//! are kept as the text the client sent (see `sinks::JsonText`), never re-serialized.
//!
//! An event larger than `http.max_event_bytes` or a body larger than `http.max_request_bytes`
//! is 413; a malformed event is 400 naming it (`[3].type: ...` in a batch). The answer, 200
//! `{}`, comes once the events are durable; an unknown topic is 404, a full routing buffer 503.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use serde_json::value::RawValue;
use sinks::event::is_extension_name;
use sinks::{CloudEvent, Data, JsonText};

use super::{ApiError, DataPlane, percent_decode_utf8, read_body};
use crate::routing::router::PublishError;

/// CloudEvents attributes a binary-mode request carries in `ce-*` headers, besides extensions.
const BINARY_ATTRIBUTES: [&str; 7] =
    ["specversion", "id", "source", "type", "subject", "time", "dataschema"];

/// The longest extension attribute name Event Grid accepts.
const MAX_EXTENSION_NAME: usize = 20;

pub(super) fn routes() -> Router<Arc<DataPlane>> {
    // axum cannot match `{topic}:publish` inside one segment: the segment is split here.
    Router::new().route("/topics/{topic_op}", post(publish))
}

async fn publish(
    State(state): State<Arc<DataPlane>>,
    Path(topic_op): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some((topic, "publish")) = topic_op.rsplit_once(':') else {
        return Err(ApiError::not_found(format!(
            "/topics/{topic_op}: the operation is /topics/<topic>:publish"
        )));
    };
    let config = &state.config;
    let body =
        read_body(&headers, body, config.max_request_bytes, "http.max_request_bytes").await?;
    let events = events_of(&headers, body, config.max_event_bytes, config.max_events_per_request)?;
    let Some(router) = &state.router else {
        return Err(no_such_topic(topic));
    };
    let ticket = match router.publish_events(topic, events) {
        Ok(ticket) => ticket,
        Err(PublishError::NoSuchTopic) => return Err(no_such_topic(topic)),
        Err(PublishError::Full) => {
            return Err(ApiError::busy(
                "the routing buffer is full (routing.max_buffered_events); retry later",
            ));
        }
    };
    state.broker.durable(ticket).await;
    Ok(axum::Json(json!({})).into_response())
}

/// The events of a request in whichever content mode it uses.
pub(super) fn events_of(
    headers: &HeaderMap,
    body: Bytes,
    max_event_bytes: usize,
    max_events: usize,
) -> Result<Vec<CloudEvent>, ApiError> {
    let content_type = header_text(headers, "content-type").unwrap_or_default();
    let media_type = sinks::media_type::essence(content_type);
    match media_type.as_str() {
        "application/cloudevents+json" => {
            if body.len() > max_event_bytes {
                return Err(ApiError::too_large(
                    "event",
                    format!("larger than http.max_event_bytes ({max_event_bytes} bytes)"),
                ));
            }
            // `data` and extension values stay slices of the body, as the client wrote them.
            let event = CloudEvent::from_json(&body)
                .map_err(|error| ApiError::bad_request("body", error))?;
            Ok(vec![event])
        }
        "application/cloudevents-batch+json" => {
            let not_json = |error: serde_json::Error| {
                ApiError::bad_request("body", format!("not JSON: {error}"))
            };
            let batch: &RawValue = serde_json::from_slice(&body).map_err(not_json)?;
            if !batch.get().starts_with('[') {
                return Err(ApiError::bad_request("body", "a batch must be a JSON array"));
            }
            // Each element is read as text, never as a `Value`: see `JsonText`.
            let values: Vec<&RawValue> = serde_json::from_str(batch.get()).map_err(not_json)?;
            if values.is_empty() {
                return Err(ApiError::bad_request("body", "a batch needs at least one event"));
            }
            if values.len() > max_events {
                return Err(ApiError::bad_request(
                    "body",
                    format!(
                        "{} events; at most {max_events} per request \
                         (http.max_events_per_request)",
                        values.len()
                    ),
                ));
            }
            values
                .into_iter()
                .enumerate()
                .map(|(index, value)| {
                    let field = format!("[{index}]");
                    if value.get().len() > max_event_bytes {
                        return Err(ApiError::too_large(
                            &field,
                            format!("larger than http.max_event_bytes ({max_event_bytes} bytes)"),
                        ));
                    }
                    CloudEvent::from_raw(&body, value)
                        .map_err(|error| ApiError::bad_request(&field, error))
                })
                .collect()
        }
        _ if headers.contains_key("ce-specversion") => {
            binary_event(headers, body, max_event_bytes).map(|event| vec![event])
        }
        _ => Err(ApiError::bad_request(
            "content-type",
            format!(
                "`{content_type}`: use application/cloudevents+json, \
                 application/cloudevents-batch+json, or binary mode with ce-* headers"
            ),
        )),
    }
}

/// A binary-mode event: attributes from `ce-*` headers, data from the body.
fn binary_event(
    headers: &HeaderMap,
    body: Bytes,
    max_event_bytes: usize,
) -> Result<CloudEvent, ApiError> {
    let mut size = body.len();
    let mut attributes: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else { continue };
        let field = name.as_str();
        size += name.as_str().len() + value.len();
        if attribute == "datacontenttype" {
            return Err(ApiError::bad_request(
                field,
                "must not be sent in binary mode: content-type is the data's content type",
            ));
        }
        let known = BINARY_ATTRIBUTES.contains(&attribute);
        let valid_extension = attribute.len() <= MAX_EXTENSION_NAME && is_extension_name(attribute);
        if !known && !valid_extension {
            return Err(ApiError::bad_request(
                field,
                format!(
                    "an extension name is 1 to {MAX_EXTENSION_NAME} of [a-z0-9] and not a \
                     CloudEvents context attribute"
                ),
            ));
        }
        let text = value
            .to_str()
            .ok()
            .and_then(percent_decode_utf8)
            .ok_or_else(|| ApiError::bad_request(field, "not UTF-8 once percent-decoded"))?;
        if attributes.insert(attribute.to_string(), text).is_some() {
            return Err(ApiError::bad_request(field, "sent more than once"));
        }
    }
    if size > max_event_bytes {
        return Err(ApiError::too_large(
            "event",
            format!("larger than http.max_event_bytes ({max_event_bytes} bytes)"),
        ));
    }
    match attributes.remove("specversion").as_deref() {
        Some("1.0") => {}
        other => {
            let found = other.unwrap_or_default();
            return Err(ApiError::bad_request(
                "ce-specversion",
                format!("must be \"1.0\", found {found:?}"),
            ));
        }
    }
    let mut required = |name: &str| {
        let field = format!("ce-{name}");
        match attributes.remove(name) {
            None => Err(ApiError::bad_request(&field, "required in binary mode")),
            Some(value) if value.is_empty() => {
                Err(ApiError::bad_request(&field, "must not be empty"))
            }
            Some(value) => Ok(value),
        }
    };
    let id = required("id")?;
    let source = required("source")?;
    let ty = required("type")?;
    let subject = attributes.remove("subject");
    let time = attributes.remove("time");
    let dataschema = attributes.remove("dataschema");
    let extensions =
        attributes.into_iter().map(|(name, text)| (name, JsonText::string(&text))).collect();
    let content_type = header_text(headers, "content-type").map(str::to_string);
    let data = match &content_type {
        _ if body.is_empty() => Data::None,
        Some(content_type) if sinks::media_type::is_json(content_type) => {
            // The body is kept as sent; it is only checked to be JSON.
            Data::Json(JsonText::parse(body).map_err(|error| {
                ApiError::bad_request("body", format!("not JSON though content-type is: {error}"))
            })?)
        }
        _ => Data::Binary(body),
    };
    Ok(CloudEvent {
        id,
        source,
        ty,
        subject,
        time,
        datacontenttype: content_type,
        dataschema,
        extensions,
        data,
    })
}

fn no_such_topic(topic: &str) -> ApiError {
    ApiError::not_found(format!("namespace topic `{topic}` not found"))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}
