//! The CloudEvent as gridmq routes it: required attributes, the optional ones Event Grid uses,
//! extension attributes, and data that is either JSON or bytes.
//!
//! We keep our own small type instead of `cloudevents-sdk`'s `Event`: that type holds `time` as a
//! chrono `DateTime` and `source` as a parsed URL, so a client's own attribute strings would be
//! rewritten on the way through (Event Grid forwards them verbatim, and writes its own times with
//! seven fractional digits), and it brings chrono and url into the tree for nothing else.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value};

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
    /// Extension attributes: strings, integers or booleans.
    pub extensions: BTreeMap<String, Value>,
    pub data: Data,
}

/// The event's payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    None,
    /// JSON, written inline as `data`.
    Json(Value),
    /// Bytes, written as `data_base64` in JSON formats.
    Binary(Bytes),
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
    #[error("specversion must be \"1.0\", found {0}")]
    SpecVersion(String),
    #[error("data_base64 is not valid base64")]
    Base64,
    #[error("both data and data_base64 are present")]
    BothData,
    #[error("extension attribute `{0}` must be a string, number or boolean")]
    Extension(String),
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

impl CloudEvent {
    /// The event in the JSON event format (structured mode), as a JSON object.
    pub fn to_json(&self) -> Value {
        use base64::Engine as _;
        let mut map = Map::new();
        map.insert("specversion".into(), Value::from("1.0"));
        map.insert("id".into(), Value::from(self.id.as_str()));
        map.insert("source".into(), Value::from(self.source.as_str()));
        map.insert("type".into(), Value::from(self.ty.as_str()));
        let optional = [
            ("subject", &self.subject),
            ("time", &self.time),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                map.insert(name.into(), Value::from(value.as_str()));
            }
        }
        for (name, value) in &self.extensions {
            map.insert(name.clone(), value.clone());
        }
        match &self.data {
            Data::None => {}
            Data::Json(value) => {
                map.insert("data".into(), value.clone());
            }
            Data::Binary(bytes) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                map.insert("data_base64".into(), Value::from(encoded));
            }
        }
        Value::Object(map)
    }

    /// The event serialized in the JSON event format.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serializing a `Value` cannot fail: its map keys are strings.
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }

    /// Reads an event in the JSON event format.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<CloudEvent, EventError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| EventError::Json(e.to_string()))?;
        CloudEvent::from_json(value)
    }

    /// Reads an event from a JSON object in the JSON event format.
    pub fn from_json(value: Value) -> Result<CloudEvent, EventError> {
        use base64::Engine as _;
        let Value::Object(mut map) = value else { return Err(EventError::NotAnObject) };
        match map.remove("specversion") {
            Some(Value::String(v)) if v == "1.0" => {}
            Some(other) => return Err(EventError::SpecVersion(other.to_string())),
            None => return Err(EventError::Missing("specversion")),
        }
        let mut required = |name: &'static str| match map.remove(name) {
            Some(Value::String(v)) => Ok(v),
            Some(_) => Err(EventError::NotAString(name.into())),
            None => Err(EventError::Missing(name)),
        };
        let id = required("id")?;
        let source = required("source")?;
        let ty = required("type")?;
        let mut optional = |name: &str| match map.remove(name) {
            Some(Value::String(v)) => Ok(Some(v)),
            Some(Value::Null) | None => Ok(None),
            Some(_) => Err(EventError::NotAString(name.into())),
        };
        let subject = optional("subject")?;
        let time = optional("time")?;
        let datacontenttype = optional("datacontenttype")?;
        let dataschema = optional("dataschema")?;
        let data = match (map.remove("data"), map.remove("data_base64")) {
            (Some(_), Some(_)) => return Err(EventError::BothData),
            (Some(value), None) => Data::Json(value),
            (None, Some(Value::String(encoded))) => Data::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map_err(|_| EventError::Base64)?
                    .into(),
            ),
            (None, Some(_)) => return Err(EventError::NotAString("data_base64".into())),
            (None, None) => Data::None,
        };
        let mut extensions = BTreeMap::new();
        for (name, value) in map {
            match value {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                    extensions.insert(name, value);
                }
                _ => return Err(EventError::Extension(name)),
            }
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

/// A new unique event id: a random (version 4) UUID in its usual text form.
pub fn new_id() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    // The system random source does not fail on Linux once the process runs; fall back to the
    // clock so an id is still unique enough rather than panicking.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
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
        extensions.insert("site".to_string(), Value::from("plant-7"));
        extensions.insert("mqttpfi".to_string(), Value::from(0));
        for data in [
            Data::None,
            Data::Json(serde_json::json!({"speed": 3})),
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
