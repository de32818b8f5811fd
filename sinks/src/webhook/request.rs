//! Events → one webhook request: headers and body, in the CloudEvents HTTP binding's
//! structured, batch and binary modes, with Event Grid's delivery headers.
//!
//! Every request carries `Origin`, `aeg-subscription-name`, `aeg-delivery-count`,
//! `aeg-event-type: Notification`, `aeg-metadata-version: 1` and the delivery properties;
//! a request of one event also carries `aeg-output-event-id` (its id).
//!
//! `aeg-delivery-count` counts attempts made *before* this one, as Event Grid's does: 0 on the
//! first delivery. For a batch it is the highest count among its events, so a receiver sees
//! that at least one of them is a redelivery.

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, ORIGIN};

use super::config::ContentMode;
use crate::delivery_property::DeliveryProperty;
use crate::error::{DeliveryError, FailureKind};
use crate::event::{CloudEvent, Data};
use crate::http::{BATCH, STRUCTURED};
use crate::sink::Delivery;

/// A request ready to send.
#[derive(Debug)]
pub(super) struct Request {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// What a request needs besides the events.
pub(super) struct Settings<'a> {
    pub mode: ContentMode,
    /// Whether every request is a batch (`maxEventsPerBatch` above 1).
    pub batching: bool,
    pub origin: &'a HeaderValue,
    pub subscription_name: &'a HeaderValue,
    pub properties: &'a [DeliveryProperty],
}

/// The request for `batch` (not empty).
pub(super) fn build(
    settings: &Settings<'_>,
    batch: &[Delivery<'_>],
) -> Result<Request, DeliveryError> {
    let Some(first) = batch.first() else {
        return Err(DeliveryError::new(FailureKind::BadArgument, "no events to send"));
    };
    let mut headers = HeaderMap::new();
    headers.insert(ORIGIN, settings.origin.clone());
    headers.insert("aeg-subscription-name", settings.subscription_name.clone());
    let count = batch.iter().map(|d| d.delivery_count).max().unwrap_or(1).saturating_sub(1);
    headers.insert("aeg-delivery-count", HeaderValue::from(count));
    headers.insert("aeg-event-type", HeaderValue::from_static("Notification"));
    headers.insert("aeg-metadata-version", HeaderValue::from_static("1"));
    if let [single] = batch {
        headers.insert("aeg-output-event-id", header_value("id", &single.event.id)?);
    }
    // Dynamic properties read the first event: one request carries one set of headers.
    for property in settings.properties {
        if let Some(value) = property.value_for(first.event) {
            let name = header_name(property.name())?;
            headers.insert(name, header_value(property.name(), &value)?);
        }
    }
    let body = match settings.mode {
        ContentMode::Binary => {
            let [single] = batch else {
                return Err(DeliveryError::new(
                    FailureKind::BadArgument,
                    format!("binary mode sends one event per request, given {}", batch.len()),
                ));
            };
            binary(single.event, &mut headers)?
        }
        ContentMode::Structured if settings.batching || batch.len() > 1 => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(BATCH));
            crate::event::batch_json_bytes(batch.iter().map(|d| d.event))
        }
        ContentMode::Structured => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(STRUCTURED));
            first.event.to_json_bytes()
        }
    };
    Ok(Request { headers, body })
}

/// Binary mode: attributes into `ce-` headers, the data into the body.
fn binary(event: &CloudEvent, headers: &mut HeaderMap) -> Result<Vec<u8>, DeliveryError> {
    let attributes = [
        ("ce-specversion", Some("1.0")),
        ("ce-id", Some(event.id.as_str())),
        ("ce-source", Some(event.source.as_str())),
        ("ce-type", Some(event.ty.as_str())),
        ("ce-subject", event.subject.as_deref()),
        ("ce-time", event.time.as_deref()),
        ("ce-dataschema", event.dataschema.as_deref()),
    ];
    for (name, value) in attributes {
        if let Some(value) = value {
            headers.insert(name, header_value(name, &percent_encode(value))?);
        }
    }
    for (name, value) in &event.extensions {
        let text = match value.as_string() {
            Some(text) => percent_encode(&text),
            None => value.as_str().to_owned(),
        };
        let header = format!("ce-{}", name.to_ascii_lowercase());
        headers.insert(header_name(&header)?, header_value(&header, &text)?);
    }
    let content_type = match (&event.datacontenttype, &event.data) {
        (Some(content_type), _) => Some(content_type.as_str()),
        (None, Data::Json(_)) => Some("application/json"),
        (None, Data::Binary(_)) => Some("application/octet-stream"),
        (None, Data::None) => None,
    };
    if let Some(content_type) = content_type {
        headers.insert(CONTENT_TYPE, header_value("datacontenttype", content_type)?);
    }
    Ok(match &event.data {
        Data::None => Vec::new(),
        Data::Binary(bytes) => bytes.to_vec(),
        // In the JSON event format, data of a non-JSON media type is held as a string: the
        // body is that text, not a quoted JSON string.
        Data::Json(json)
            if json.is_string() && !content_type.is_some_and(crate::media_type::is_json) =>
        {
            json.as_string().unwrap_or_default().into_bytes()
        }
        // The payload bytes as published, whitespace around the value included.
        Data::Json(json) => json.published().to_vec(),
    })
}

/// What the CloudEvents HTTP binding percent-encodes in a header value: characters outside
/// printable ASCII (non-ASCII bytes always are), space, `"` and `%`.
const HEADER_ENCODED: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'%');

/// The CloudEvents HTTP binding's header encoding, as UTF-8.
fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, HEADER_ENCODED).to_string()
}

fn header_name(name: &str) -> Result<HeaderName, DeliveryError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        DeliveryError::new(
            FailureKind::BadArgument,
            format!("{name:?} cannot be an HTTP header name"),
        )
    })
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, DeliveryError> {
    HeaderValue::from_str(value).map_err(|_| {
        DeliveryError::new(
            FailureKind::BadArgument,
            format!("the value of {name} cannot be an HTTP header"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_follows_the_http_binding() {
        assert_eq!(percent_encode("vehicles/1"), "vehicles/1");
        assert_eq!(percent_encode("a b\"c%d"), "a%20b%22c%25d");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }
}
