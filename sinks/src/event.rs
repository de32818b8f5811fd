//! The CloudEvent as gridmq routes it: required attributes, the optional ones Event Grid uses,
//! extension attributes, and data that is either JSON or bytes.
//!
//! We keep our own small type instead of `cloudevents-sdk`'s `Event`: that type holds `time` as a
//! chrono `DateTime` and `source` as a parsed URL, so a client's own attribute strings would be
//! rewritten on the way through (Event Grid forwards them verbatim, and writes its own times with
//! seven fractional digits), and it brings chrono and url into the tree for nothing else.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;
use serde_json::value::RawValue;

mod json_text;

pub use json_text::{FIDELITY_CORPUS, JsonText, JsonTextError};

/// A CloudEvents 1.0 event.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    /// The `type` attribute.
    pub ty: String,
    pub subject: Option<String>,
    /// RFC 3339, kept as written.
    pub time: Option<String>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    /// Extension attributes: JSON strings, integers or booleans, as their text.
    pub extensions: BTreeMap<String, JsonText>,
    pub data: Data,
}

/// The event's payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    None,
    /// JSON, written inline as `data`, exactly as published.
    Json(JsonText),
    /// Bytes, written as `data_base64` in JSON formats.
    Binary(Bytes),
}

impl Data {
    /// JSON data built in code (lifecycle events, tests), serialized once.
    pub fn from_json_value(value: Value) -> Data {
        Data::Json(JsonText::from_value(&value))
    }
}

/// Why bytes are not a CloudEvent in the JSON format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("missing required attribute `{0}`")]
    Missing(&'static str),
    #[error("attribute `{0}` must be a string")]
    NotAString(String),
    #[error("attribute `{0}` must not be empty")]
    Empty(&'static str),
    #[error("specversion must be \"1.0\", found {0}")]
    SpecVersion(String),
    #[error("data_base64 is not valid base64")]
    Base64,
    #[error("both data and data_base64 are present")]
    BothData,
    #[error("extension attribute `{0}` must be a string, an integer or a boolean")]
    Extension(String),
    #[error(
        "extension attribute `{0}` is outside the CloudEvents Integer range \
         -2147483648 to 2147483647"
    )]
    IntegerRange(String),
    #[error("extension attribute name `{0}` must be lowercase letters a-z and digits 0-9")]
    ExtensionName(String),
}

/// The attribute names that are not extensions.
pub const CONTEXT_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

/// Whether `name` may name an extension attribute: lowercase ASCII letters and digits, and not
/// one of [`CONTEXT_ATTRIBUTES`]. The CloudEvents SDKs refuse anything else.
pub fn is_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !CONTEXT_ATTRIBUTES.contains(&name)
}

impl CloudEvent {
    /// Writes the event in the JSON event format (structured mode). `data` and extension
    /// values are written as the text they arrived as; nothing is parsed.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use base64::Engine as _;
        out.extend_from_slice(br#"{"specversion":"1.0","id":"#);
        write_string(out, &self.id);
        out.extend_from_slice(br#","source":"#);
        write_string(out, &self.source);
        out.extend_from_slice(br#","type":"#);
        write_string(out, &self.ty);
        let optional = [
            ("subject", &self.subject),
            ("time", &self.time),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                write_name(out, name);
                write_string(out, value);
            }
        }
        for (name, value) in &self.extensions {
            write_name(out, name);
            out.extend_from_slice(value.as_str().as_bytes());
        }
        match &self.data {
            Data::None => {}
            Data::Json(json) => {
                write_name(out, "data");
                out.extend_from_slice(json.as_str().as_bytes());
            }
            Data::Binary(bytes) => {
                write_name(out, "data_base64");
                out.push(b'"');
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD.encode(bytes).as_bytes(),
                );
                out.push(b'"');
            }
        }
        out.push(b'}');
    }

    /// The event serialized in the JSON event format.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let data = match &self.data {
            Data::None => 0,
            Data::Json(json) => json.published().len(),
            Data::Binary(bytes) => bytes.len() * 4 / 3 + 4,
        };
        let mut out = Vec::with_capacity(256 + data);
        self.write_json(&mut out);
        out
    }

    /// The event as a `serde_json` value, for tests and schema checks. Parsing loses what
    /// `Value` cannot hold (duplicate keys, exact numbers), so no delivery path uses it.
    pub fn to_json(&self) -> Value {
        serde_json::from_slice(&self.to_json_bytes()).unwrap_or(Value::Null)
    }

    /// Reads an event in the JSON event format. `data` and extension values are slices of
    /// `input`, kept as written.
    pub fn from_json(input: &Bytes) -> Result<CloudEvent, EventError> {
        let raw: &RawValue = serde_json::from_slice(input).map_err(json_error)?;
        CloudEvent::from_raw(input, raw)
    }

    /// Reads an event in the JSON event format from borrowed bytes (copied once).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<CloudEvent, EventError> {
        CloudEvent::from_json(&Bytes::copy_from_slice(bytes))
    }

    /// Reads the event `raw`, which must be a slice of `input` (as `RawValue`s deserialized
    /// from `input` are): a batch element, or the `event` member of a dead-letter record.
    pub fn from_raw(input: &Bytes, raw: &RawValue) -> Result<CloudEvent, EventError> {
        use base64::Engine as _;
        if !raw.get().starts_with('{') {
            return Err(EventError::NotAnObject);
        }
        let mut map: BTreeMap<String, &RawValue> =
            serde_json::from_str(raw.get()).map_err(json_error)?;
        match map.remove("specversion") {
            Some(version) if string(version).as_deref() == Some("1.0") => {}
            Some(other) => return Err(EventError::SpecVersion(other.get().to_owned())),
            None => return Err(EventError::Missing("specversion")),
        }
        let mut required = |name: &'static str| match map.remove(name).map(string) {
            Some(Some(value)) if value.is_empty() => Err(EventError::Empty(name)),
            Some(Some(value)) => Ok(value),
            Some(None) => Err(EventError::NotAString(name.into())),
            None => Err(EventError::Missing(name)),
        };
        let id = required("id")?;
        let source = required("source")?;
        let ty = required("type")?;
        let mut optional = |name: &str| match map.remove(name) {
            None => Ok(None),
            Some(value) if value.get() == "null" => Ok(None),
            Some(value) => {
                string(value).map(Some).ok_or_else(|| EventError::NotAString(name.into()))
            }
        };
        let subject = optional("subject")?;
        let time = optional("time")?;
        let datacontenttype = optional("datacontenttype")?;
        let dataschema = optional("dataschema")?;
        let slice = |value: &RawValue| JsonText::trusted(input.slice_ref(value.get().as_bytes()));
        let data = match (map.remove("data"), map.remove("data_base64")) {
            (Some(_), Some(_)) => return Err(EventError::BothData),
            (Some(value), None) => Data::Json(slice(value)),
            (None, Some(encoded)) => {
                let encoded =
                    string(encoded).ok_or_else(|| EventError::NotAString("data_base64".into()))?;
                Data::Binary(
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded.as_bytes())
                        .map_err(|_| EventError::Base64)?
                        .into(),
                )
            }
            (None, None) => Data::None,
        };
        let mut extensions = BTreeMap::new();
        for (name, value) in map {
            if !is_extension_name(&name) {
                return Err(EventError::ExtensionName(name));
            }
            check_extension_value(&name, value.get())?;
            extensions.insert(name, slice(value));
        }
        Ok(CloudEvent {
            id,
            source,
            ty,
            subject,
            time,
            datacontenttype,
            dataschema,
            extensions,
            data,
        })
    }
}

/// Writes a batch of events (`application/cloudevents-batch+json`): a JSON array.
pub fn batch_json_bytes<'e>(events: impl IntoIterator<Item = &'e CloudEvent>) -> Vec<u8> {
    let mut out = vec![b'['];
    for (index, event) in events.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        event.write_json(&mut out);
    }
    out.push(b']');
    out
}

/// Extension values are strings, booleans or CloudEvents Integers (32-bit signed); a JSON
/// number with a fraction or an exponent is none of these.
fn check_extension_value(name: &str, text: &str) -> Result<(), EventError> {
    match text.as_bytes().first() {
        Some(b'"') => Ok(()),
        _ if text == "true" || text == "false" => Ok(()),
        Some(b'-' | b'0'..=b'9') => match text.parse::<i128>() {
            Ok(n) if i32::try_from(n).is_ok() => Ok(()),
            Ok(_) => Err(EventError::IntegerRange(name.to_owned())),
            // Digits only, yet too long for i128: out of range as well.
            Err(_) if text.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit()) => {
                Err(EventError::IntegerRange(name.to_owned()))
            }
            Err(_) => Err(EventError::Extension(name.to_owned())),
        },
        _ => Err(EventError::Extension(name.to_owned())),
    }
}

/// The decoded string when `value` is a JSON string.
fn string(value: &RawValue) -> Option<String> {
    value.get().starts_with('"').then(|| serde_json::from_str(value.get()).ok()).flatten()
}

fn json_error(error: serde_json::Error) -> EventError {
    EventError::Json(error.to_string())
}

/// Writes `,"name":`.
fn write_name(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    write_string(out, name);
    out.push(b':');
}

/// Writes `text` as a JSON string.
fn write_string(out: &mut Vec<u8>, text: &str) {
    // Writing into a `Vec` cannot fail, nor can serializing a `str`.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// A new unique event id: a random (version 4) UUID in its usual text form.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `at` as Event Grid writes times: RFC 3339 in UTC with seven fractional digits, e.g.
/// `2019-11-18T15:13:39.4589254Z`.
pub fn format_time(at: std::time::SystemTime) -> String {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let datetime = time::OffsetDateTime::UNIX_EPOCH + since;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        datetime.year(),
        u8::from(datetime.month()),
        datetime.day(),
        datetime.hour(),
        datetime.minute(),
        datetime.second(),
        datetime.nanosecond() / 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let mut extensions = BTreeMap::new();
        extensions.insert("site".to_string(), JsonText::string("plant-7"));
        extensions.insert("mqttpfi".to_string(), json("0"));
        for data in [
            Data::None,
            Data::Json(json(r#"{"speed": 3.10, "speed": 1E+2}"#)),
            Data::Binary(Bytes::from_static(b"\x00\x01")),
        ] {
            let event = CloudEvent {
                id: new_id(),
                source: "ns".into(),
                ty: "MQTT.EventPublished".into(),
                subject: Some("vehicles/1".into()),
                time: Some(format_time(std::time::SystemTime::now())),
                datacontenttype: None,
                dataschema: None,
                extensions: extensions.clone(),
                data,
            };
            let back = CloudEvent::from_json_bytes(&event.to_json_bytes()).unwrap();
            assert_eq!(back, event);
        }
    }

    fn json(text: &'static str) -> JsonText {
        JsonText::parse(Bytes::from_static(text.as_bytes())).unwrap()
    }

    #[test]
    fn data_and_extensions_are_written_as_received() {
        let text = r#"{ "specversion" : "1.0", "id":"1","source":"s","type":"t",
            "big": 2147483647, "name": "\u00e9",
            "data" : {"z":1,"a":2,"a":47.782000000000004, "n":123456789012345678901234567890} }"#;
        let event = CloudEvent::from_json_bytes(text.as_bytes()).unwrap();
        let written = String::from_utf8(event.to_json_bytes()).unwrap();
        assert_eq!(
            written,
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","big":2147483647,"name":"\u00e9","data":{"z":1,"a":2,"a":47.782000000000004, "n":123456789012345678901234567890}}"#
        );
    }

    #[test]
    fn validates_as_the_sdks_do() {
        let check = |extra: &str, expected: EventError| {
            let text =
                format!(r#"{{"specversion":"1.0","id":"1","source":"s","type":"t"{extra}}}"#);
            assert_eq!(CloudEvent::from_json_bytes(text.as_bytes()).unwrap_err(), expected);
        };
        check(r#","Site":"x""#, EventError::ExtensionName("Site".into()));
        check(r#","my_ext":"x""#, EventError::ExtensionName("my_ext".into()));
        check(r#","big":2147483648"#, EventError::IntegerRange("big".into()));
        check(r#","small":-2147483649"#, EventError::IntegerRange("small".into()));
        check(
            r#","huge":123456789012345678901234567890123456789012"#,
            EventError::IntegerRange("huge".into()),
        );
        check(r#","ratio":1.5"#, EventError::Extension("ratio".into()));
        check(r#","hundred":1E+2"#, EventError::Extension("hundred".into()));
        check(r#","list":[1]"#, EventError::Extension("list".into()));
        for (name, text) in [
            ("id", r#"{"specversion":"1.0","id":"","source":"s","type":"t"}"#),
            ("source", r#"{"specversion":"1.0","id":"1","source":"","type":"t"}"#),
            ("type", r#"{"specversion":"1.0","id":"1","source":"s","type":""}"#),
        ] {
            let error = CloudEvent::from_json_bytes(text.as_bytes()).unwrap_err();
            assert_eq!(error, EventError::Empty(name));
        }
        let fine =
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","n":-2147483648,"b":true}"#;
        assert!(CloudEvent::from_json_bytes(fine.as_bytes()).is_ok());
    }

    #[test]
    fn times_have_seven_fractional_digits() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_574_090_019, 458_925_400);
        assert_eq!(format_time(at), "2019-11-18T15:13:39.4589254Z");
    }

    #[test]
    fn ids_are_version_4_uuids() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(new_id(), id);
    }

    #[test]
    fn refuses_what_is_not_an_event() {
        let check = |text: &str, expected: EventError| {
            assert_eq!(CloudEvent::from_json_bytes(text.as_bytes()).unwrap_err(), expected);
        };
        check("[]", EventError::NotAnObject);
        check(r#"{"id":"1","source":"s","type":"t"}"#, EventError::Missing("specversion"));
        check(r#"{"specversion":"1.0","source":"s","type":"t"}"#, EventError::Missing("id"));
        check(
            r#"{"specversion":"1.0","id":"1","source":"s","type":"t","x":{}}"#,
            EventError::Extension("x".into()),
        );
    }
}
