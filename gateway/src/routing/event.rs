//! A published MQTT message as the CloudEvent that Event Grid's routing would produce.
//!
//! Every message becomes one CloudEvent 1.0. A plain message is wrapped in a
//! `MQTT.EventPublished` event; an MQTT 5 message that already is a CloudEvent by the CloudEvents
//! MQTT binding keeps the client's attributes. Enrichments are added later, by
//! [`super::enrich`].
//!
//! # Plain messages (`MQTT.EventPublished`)
//!
//! | Attribute | Value |
//! |---|---|
//! | `specversion` | `1.0` |
//! | `id` | a new random UUID |
//! | `time` | when the broker received the message, with Event Grid's seven fractional digits |
//! | `type` | `MQTT.EventPublished` |
//! | `source` | the namespace name |
//! | `subject` | the topic name (alias resolved) |
//! | `datacontenttype` | the MQTT 5 Content Type, verbatim, when present; else `application/json` for inline JSON, `application/octet-stream` for bytes; absent for an empty payload |
//!
//! The payload becomes `data` by these rules, first match wins ("JSON type" is a media type of
//! the form `*/json` or `*/*+json`, such as `application/json`, `text/json` or
//! `application/geo+json`, with any parameters such as `charset`, compared case-insensitively:
//! [`sinks::media_type::is_json`], the rule the HTTP APIs and the sinks use too):
//!
//! | Message | `data` |
//! |---|---|
//! | empty payload | none (neither `data` nor `data_base64`) |
//! | MQTT 3.1.1 | `data_base64` (3.1.1 has no format indicator or content type) |
//! | v5, PFI ≠ 1 and Content Type absent or not a JSON type | `data_base64` |
//! | v5, payload not valid UTF-8 | `data_base64`, whatever the PFI or Content Type claim |
//! | v5, Content Type is a JSON type, or PFI = 1 without Content Type, and the payload parses as JSON | `data`: the payload text itself, byte for byte (numbers, key order, duplicate keys, escapes and whitespace as published) |
//! | v5, any other UTF-8 payload with Content Type a JSON type or PFI = 1 | `data`: the text as a JSON string |
//!
//! Event Grid documents the JSON value for PFI = 1 without saying what a non-JSON Content Type
//! does. We keep a payload that declares itself `text/plain` (PFI = 1) as a JSON string even when
//! it happens to parse as JSON: the CloudEvents JSON format reads `data` as the text itself
//! whenever `datacontenttype` is not a JSON type, so `"42"` must not turn into the number `42`.
//!
//! # Client CloudEvents (MQTT 5 only)
//!
//! | Mode | Recognised by | Valid when | The event |
//! |---|---|---|---|
//! | structured | Content Type `application/cloudevents+json` (any parameters) | the payload parses as one CloudEvent in the JSON format (`specversion` `1.0`; `id`, `source`, `type` non-empty strings; extension names lowercase `[a-z0-9]`, values strings, booleans or integers within -2^31..2^31-1) | the payload's event exactly as written: attributes, extensions and `data`/`data_base64`, with `data` and extension values kept as the payload's text |
//! | binary | a user property named `specversion` (and no structured Content Type) | `specversion` is `1.0`; `id`, `source`, `type` are present and non-empty; no attribute appears twice | `id`, `source`, `type`, `subject`, `time`, `dataschema` from user properties; `datacontenttype` from the Content Type, else from a `datacontenttype` user property; every other user property whose name is a valid attribute name (lowercase ASCII letters and digits) becomes a string extension attribute; `data` from the payload by the rules above, using that content type |
//!
//! Client attribute values are forwarded verbatim: a missing `time` stays missing (we do not
//! stamp a receive time onto someone else's event) and `time` is not reparsed. User properties
//! whose names are not attribute names (`Content-Encoding`, `my_prop`) are not carried into a
//! binary-mode event; an enrichment can still pick them up.
//!
//! A message that claims to be a CloudEvent but is not a valid one (bad JSON, a missing or empty
//! `id`, `specversion` `0.3`, an attribute given twice) is routed as a plain
//! `MQTT.EventPublished` event instead of being dropped: the publisher already had its PUBACK,
//! and a subscriber can still see what was sent. [`client_event`] tells the caller why, for
//! telemetry. A `application/cloudevents-batch+json` payload is not a single event and other
//! event formats (`application/cloudevents+avro`) are not ones we read, so both route as plain
//! messages, as the binding allows. An MQTT 3.1.1 payload is never read as a CloudEvent, even
//! though the binding implies structured mode there: Event Grid routes every 3.1.1 message as
//! bytes.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use sinks::event::{EventError, format_time, new_id};
use sinks::{CloudEvent, Data, JsonText};

use crate::hooks::RoutedMessage;
use crate::mqtt::{Properties, Protocol};

/// The `type` of every plain routed message.
pub const EVENT_TYPE: &str = "MQTT.EventPublished";

/// The `datacontenttype` of a byte payload without a Content Type.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The `datacontenttype` of inline JSON without a Content Type.
pub const JSON: &str = "application/json";

/// The media type that selects structured mode.
const STRUCTURED: &str = "application/cloudevents+json";

/// Why a message that claims to be a CloudEvent is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    /// A structured-mode payload that is not a CloudEvent in the JSON format.
    #[error("structured-mode payload: {0}")]
    Structured(EventError),
    #[error("specversion must be \"1.0\", found {0:?}")]
    SpecVersion(String),
    #[error("missing required attribute `{0}`")]
    Missing(&'static str),
    #[error("attribute `{0}` must not be empty")]
    Empty(String),
    #[error("attribute `{0}` is given more than once")]
    Repeated(String),
}

/// The CloudEvent routed for `message`, received by the broker at `received`, in the namespace
/// named `namespace`. See the module documentation for the rules.
pub fn to_cloud_event(
    namespace: &str,
    message: &RoutedMessage,
    received: SystemTime,
) -> CloudEvent {
    match client_event(message) {
        Ok(Some(event)) => event,
        Ok(None) | Err(_) => published_event(namespace, message, received),
    }
}

/// The client's own CloudEvent: `Ok(None)` when the message does not claim to be one, an error
/// when it claims to be one but is not valid (it then routes as a plain message).
pub fn client_event(message: &RoutedMessage) -> Result<Option<CloudEvent>, InvalidEvent> {
    if message.protocol != Protocol::V5 {
        return Ok(None);
    }
    let properties = &*message.properties;
    let structured = properties
        .content_type
        .as_deref()
        .is_some_and(|ct| sinks::media_type::essence(ct) == STRUCTURED);
    if structured {
        // The payload is shared, not copied: `data` and extension values are slices of it.
        let event = CloudEvent::from_json(&message.payload).map_err(InvalidEvent::Structured)?;
        check_required(&event)?;
        return Ok(Some(event));
    }
    if properties.user_properties.iter().any(|(name, _)| name == "specversion") {
        return binary_mode(properties, &message.payload).map(Some);
    }
    Ok(None)
}

/// The `MQTT.EventPublished` event wrapping `message`.
fn published_event(namespace: &str, message: &RoutedMessage, received: SystemTime) -> CloudEvent {
    let (pfi, content_type) = match message.protocol {
        Protocol::V5 => (
            message.properties.payload_format_indicator,
            message.properties.content_type.as_deref(),
        ),
        Protocol::V311 => (None, None),
    };
    let data = payload_data(&message.payload, pfi, content_type);
    let datacontenttype = match (content_type, &data) {
        (Some(content_type), _) => Some(content_type.to_owned()),
        (None, Data::Json(_)) => Some(JSON.to_owned()),
        (None, Data::Binary(_)) => Some(OCTET_STREAM.to_owned()),
        (None, Data::None) => None,
    };
    CloudEvent {
        id: new_id(),
        source: namespace.to_owned(),
        ty: EVENT_TYPE.to_owned(),
        subject: Some(message.topic.to_string()),
        time: Some(format_time(received)),
        datacontenttype,
        dataschema: None,
        extensions: BTreeMap::new(),
        data,
    }
}

/// A binary-mode event: attributes in user properties, data in the payload.
fn binary_mode(properties: &Properties, payload: &Bytes) -> Result<CloudEvent, InvalidEvent> {
    let mut attributes: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, value) in &properties.user_properties {
        // `data` and `data_base64` are not attributes; in binary mode the payload is the data.
        if !is_attribute_name(name) || name == "data" {
            continue;
        }
        if attributes.insert(name, value).is_some() {
            return Err(InvalidEvent::Repeated(name.clone()));
        }
    }
    match attributes.remove("specversion") {
        Some("1.0") => {}
        Some(other) => return Err(InvalidEvent::SpecVersion(other.to_owned())),
        None => return Err(InvalidEvent::Missing("specversion")),
    }
    let mut required = |name: &'static str| match attributes.remove(name) {
        Some(value) => Ok(value.to_owned()),
        None => Err(InvalidEvent::Missing(name)),
    };
    let id = required("id")?;
    let source = required("source")?;
    let ty = required("type")?;
    let mut optional = |name: &str| attributes.remove(name).map(str::to_owned);
    let subject = optional("subject");
    let time = optional("time");
    let dataschema = optional("dataschema");
    // The binding maps Content Type to `datacontenttype`; the user property is only a fallback
    // for clients that set the attribute the way they set all the others.
    let datacontenttype = properties.content_type.clone().or(optional("datacontenttype"));
    let extensions = attributes
        .into_iter()
        .map(|(name, value)| (name.to_owned(), JsonText::string(value)))
        .collect();
    let data =
        payload_data(payload, properties.payload_format_indicator, datacontenttype.as_deref());
    let event =
        CloudEvent { id, source, ty, subject, time, datacontenttype, dataschema, extensions, data };
    check_required(&event)?;
    Ok(event)
}

/// CloudEvents requires non-empty `id`, `source` and `type`, and non-empty optional attributes
/// when they are present; the JSON reader only checks that they are strings.
fn check_required(event: &CloudEvent) -> Result<(), InvalidEvent> {
    let attributes = [
        ("id", Some(&event.id)),
        ("source", Some(&event.source)),
        ("type", Some(&event.ty)),
        ("subject", event.subject.as_ref()),
        ("time", event.time.as_ref()),
        ("datacontenttype", event.datacontenttype.as_ref()),
        ("dataschema", event.dataschema.as_ref()),
    ];
    match attributes.into_iter().find(|(_, value)| value.is_some_and(|v| v.is_empty())) {
        Some((name, _)) => Err(InvalidEvent::Empty(name.to_owned())),
        None => Ok(()),
    }
}

/// The payload as event data, by the rules in the module documentation.
fn payload_data(payload: &Bytes, pfi: Option<u8>, content_type: Option<&str>) -> Data {
    if payload.is_empty() {
        return Data::None;
    }
    let json_type = content_type.is_some_and(sinks::media_type::is_json);
    if !json_type && pfi != Some(1) {
        return Data::Binary(payload.clone());
    }
    let Ok(text) = std::str::from_utf8(payload) else {
        return Data::Binary(payload.clone());
    };
    if (json_type || content_type.is_none())
        && let Ok(json) = JsonText::parse(payload.clone())
    {
        return Data::Json(json);
    }
    Data::Json(JsonText::string(text))
}

/// CloudEvents attribute names are lowercase ASCII letters and digits. Context attribute names
/// (`id`, `subject`) pass too; `data_base64` does not.
fn is_attribute_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests;
