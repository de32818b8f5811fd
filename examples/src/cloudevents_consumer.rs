//! A downstream service that consumes gridmq's webhook deliveries the way a Rust service
//! consumes CloudEvents: with the CloudEvents SDK (`cloudevents-sdk`), whose `Event` is what the
//! rest of the service handles.
//!
//! [`events`] turns one request (headers and body) into the events it carries, in the three
//! shapes a gridmq webhook subscription can deliver:
//!
//! - structured, `Content-Type: application/cloudevents+json`: one event in the JSON format, read
//!   by the SDK's HTTP binding;
//! - batched, `Content-Type: application/cloudevents-batch+json`: a JSON array of events. The
//!   SDK's HTTP binding knows no batches (only its reqwest client does, on another reqwest), so
//!   the array is read through the SDK's `Event` deserializer;
//! - binary, `ce-` headers with the data as the body: read by the SDK's HTTP binding, then the
//!   header values are percent-decoded, which the SDK does not do although the CloudEvents HTTP
//!   binding requires it (gridmq encodes spaces, `"`, `%` and non-ASCII characters).
//!
//! [`router`] is the HTTP server around it: it answers the webhook abuse-protection handshake
//! that gridmq sends before the first delivery (`OPTIONS` with `WebHook-Request-Origin`) and hands
//! every parsed event to a bounded channel. A delivery that does not parse is answered 400,
//! which gridmq does not retry: the event goes to the subscription's dead-letter destination.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, AttributesWriter, Event};
use tokio::sync::mpsc;

/// The media type of one event in the JSON format (the HTTP binding's structured mode).
pub const STRUCTURED: &str = "application/cloudevents+json";
/// The media type of a batch, in the CloudEvents HTTP binding.
pub const BATCH: &str = "application/cloudevents-batch+json";

/// Why a request is not a CloudEvents delivery.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not a batch of CloudEvents: {0}")]
    Batch(#[source] serde_json::Error),
    #[error("the request has neither a CloudEvents Content-Type nor a ce-specversion header")]
    NotCloudEvents,
    #[error("the request is not a CloudEvent: {0}")]
    Event(#[source] cloudevents::message::Error),
    #[error("the ce-{attribute} header is not percent-encoded UTF-8 (or, for dataschema, a URL)")]
    HeaderEncoding { attribute: String },
}

/// How a delivery carries its events: the CloudEvents HTTP binding's content modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Structured,
    Batched,
    Binary,
}

impl Mode {
    /// The mode of a request, from its headers; `None` when it carries no CloudEvent.
    pub fn of(headers: &HeaderMap) -> Option<Mode> {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let essence = content_type.and_then(|v| v.split(';').next()).map(str::trim);
        if essence.is_some_and(|essence| essence.eq_ignore_ascii_case(BATCH)) {
            Some(Mode::Batched)
        } else if content_type.is_some_and(|v| v.starts_with(STRUCTURED)) {
            // The SDK's binding tells structured mode by this same prefix.
            Some(Mode::Structured)
        } else if headers.contains_key("ce-specversion") {
            Some(Mode::Binary)
        } else {
            None
        }
    }
}

/// The events one delivery carries, in order.
pub fn events(headers: &HeaderMap, body: Bytes) -> Result<Vec<Event>, ParseError> {
    parse(headers, body).map(|(_, events)| events)
}

fn parse(headers: &HeaderMap, body: Bytes) -> Result<(Mode, Vec<Event>), ParseError> {
    let mode = Mode::of(headers).ok_or(ParseError::NotCloudEvents)?;
    if mode == Mode::Batched {
        let events = serde_json::from_slice(&body).map_err(ParseError::Batch)?;
        return Ok((mode, events));
    }
    let mut event =
        cloudevents::binding::http::to_event(headers, body.into()).map_err(ParseError::Event)?;
    if mode == Mode::Binary {
        percent_decode_attributes(&mut event)?;
    }
    Ok((mode, vec![event]))
}

/// An event as the consumer hands it on, with the mode of the delivery that carried it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mode: Mode,
    pub event: Event,
}

/// The consumer's HTTP server: every path, `OPTIONS` for the handshake and `POST` for
/// deliveries, whose events go to `sink`. A full channel holds the delivery back (gridmq waits,
/// then retries on its timeout); a closed one answers 503, which gridmq retries.
pub fn router(sink: mpsc::Sender<Received>) -> Router {
    Router::new().fallback(receive).with_state(sink)
}

async fn receive(
    State(sink): State<mpsc::Sender<Received>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match method {
        Method::OPTIONS => handshake(&headers),
        Method::POST => match parse(&headers, body) {
            Ok((mode, events)) => {
                for event in events {
                    if sink.send(Received { mode, event }).await.is_err() {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                }
                StatusCode::OK.into_response()
            }
            Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
        },
        _ => (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST, OPTIONS")]).into_response(),
    }
}

/// Answers the CloudEvents webhook abuse-protection handshake by allowing the requesting origin.
pub fn handshake(headers: &HeaderMap) -> Response {
    let origin = headers
        .get("webhook-request-origin")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("*"));
    let mut response = StatusCode::OK.into_response();
    response.headers_mut().insert("webhook-allowed-origin", origin);
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// Percent-decodes the attributes and extensions that came from `ce-` headers. `time` needs
/// none (RFC 3339 text is printable ASCII) and the SDK has already parsed it.
fn percent_decode_attributes(event: &mut Event) -> Result<(), ParseError> {
    let id = percent_decode("id", event.id())?;
    event.set_id(id);
    let source = percent_decode("source", event.source())?;
    event.set_source(source);
    let ty = percent_decode("type", event.ty())?;
    event.set_type(ty);
    if let Some(subject) = event.subject() {
        let subject = percent_decode("subject", subject)?;
        event.set_subject(Some(subject));
    }
    if let Some(schema) = event.dataschema() {
        // The URL parser keeps `%25` as it is, so the header text is decoded before parsing.
        let decoded = percent_decode("dataschema", schema.as_str())?;
        let schema = url::Url::parse(&decoded)
            .map_err(|_| ParseError::HeaderEncoding { attribute: "dataschema".to_owned() })?;
        event.set_dataschema(Some(schema));
    }
    let encoded: Vec<(String, String)> = event
        .iter_extensions()
        .filter_map(|(name, value)| match value {
            ExtensionValue::String(text) if text.contains('%') => {
                Some((name.to_owned(), text.clone()))
            }
            _ => None,
        })
        .collect();
    for (name, text) in encoded {
        let decoded = percent_decode(&name, &text)?;
        event.set_extension(&name, decoded);
    }
    Ok(())
}

/// `%XX` sequences to the bytes they stand for; the result must be UTF-8.
fn percent_decode(attribute: &str, text: &str) -> Result<String, ParseError> {
    let invalid = || ParseError::HeaderEncoding { attribute: attribute.to_owned() };
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        if byte == b'%' {
            let [high, low, ..] = after else {
                return Err(invalid());
            };
            let digit = |d: u8| char::from(d).to_digit(16).ok_or_else(invalid);
            let value = digit(*high)? * 16 + digit(*low)?;
            bytes.push(u8::try_from(value).map_err(|_| invalid())?);
            rest = &after[2..];
        } else {
            bytes.push(byte);
            rest = after;
        }
    }
    String::from_utf8(bytes).map_err(|_| invalid())
}

#[cfg(test)]
mod tests;
