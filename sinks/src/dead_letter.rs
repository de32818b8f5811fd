//! Dead-letter records in Event Grid's shape (namespace subscriptions):
//!
//! ```json
//! {"event": {<the CloudEvent, data or data_base64>},
//!  "customDeliveryProperties": {<non-secret delivery headers>},
//!  "deadletterProperties": {"deadletterreason": "MaxDeliveryAttemptsExceeded",
//!    "deliveryattempts": 3, "deliveryresult": "Busy",
//!    "publishutc": "2019-11-18T15:13:39.4589254Z",
//!    "deliveryattemptutc": "2019-11-18T15:20:39.4589254Z"}}
//! ```
//!
//! Event Grid's documents spell the last key both `deadletterProperties` and
//! `deadLetterProperties`; we write the former and read both. One key is ours:
//! `deliverystatuscode`, the HTTP status of the last attempt when there was one.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event::{CloudEvent, EventError};

/// Why an event was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// The subscription's attempt count ran out.
    MaxDeliveryAttemptsExceeded,
    /// The event's time to live ran out (Event Grid's name for it).
    MaxRetryDurationExceeded,
    /// The destination answered with a failure retrying cannot fix (400, 401, 403, 413; and
    /// for webhooks 404 and 414).
    NonRetriable,
    /// A pull consumer rejected the event (queue subscriptions).
    Rejected,
}

/// One dead-lettered event with why and when.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRecord {
    pub event: CloudEvent,
    pub reason: DeadLetterReason,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's outcome name ([`crate::FailureKind::outcome_name`]), e.g. `Busy`;
    /// empty (and left out of the JSON) when no attempt was made.
    pub last_result: String,
    /// The last attempt's HTTP status, if it got one.
    pub last_status: Option<u16>,
    /// When the event was published, in Event Grid's time format ([`crate::event::format_time`]).
    pub published: String,
    /// When the last attempt was made, in the same format; empty (and left out of the JSON)
    /// when no attempt was made.
    pub last_attempt: String,
    /// The delivery properties that are not secret, as sent with the last attempt.
    pub custom_delivery_properties: BTreeMap<String, String>,
}

/// Why JSON is not a dead-letter record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("missing or malformed `{0}`")]
    Field(&'static str),
    #[error("unknown dead-letter reason {0:?}")]
    Reason(String),
    #[error("event: {0}")]
    Event(#[from] EventError),
}

// === impl DeadLetterReason ===

impl DeadLetterReason {
    /// The `deadletterreason` string. The first two are Event Grid's; Event Grid documents no
    /// string for a failure that was not retried or a rejected event, so `NonRetriable` and
    /// `Rejected` are ours.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadLetterReason::MaxDeliveryAttemptsExceeded => "MaxDeliveryAttemptsExceeded",
            DeadLetterReason::MaxRetryDurationExceeded => "MaxRetryDurationExceeded",
            DeadLetterReason::NonRetriable => "NonRetriable",
            DeadLetterReason::Rejected => "Rejected",
        }
    }

    /// The reason a `deadletterreason` string names.
    pub fn parse(text: &str) -> Option<DeadLetterReason> {
        [
            DeadLetterReason::MaxDeliveryAttemptsExceeded,
            DeadLetterReason::MaxRetryDurationExceeded,
            DeadLetterReason::NonRetriable,
            DeadLetterReason::Rejected,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl DeadLetterRecord ===

impl DeadLetterRecord {
    /// The record serialized as JSON. The event is written as [`CloudEvent::write_json`]
    /// writes it, so its data is the text that was published.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut properties = Map::new();
        properties.insert("deadletterreason".into(), Value::from(self.reason.as_str()));
        properties.insert("deliveryattempts".into(), Value::from(self.attempts));
        // An event that expired before any attempt has no result nor attempt time.
        if !self.last_result.is_empty() {
            properties.insert("deliveryresult".into(), Value::from(self.last_result.as_str()));
        }
        if let Some(status) = self.last_status {
            properties.insert("deliverystatuscode".into(), Value::from(status));
        }
        properties.insert("publishutc".into(), Value::from(self.published.as_str()));
        if !self.last_attempt.is_empty() {
            properties.insert("deliveryattemptutc".into(), Value::from(self.last_attempt.as_str()));
        }
        let mut out = br#"{"event":"#.to_vec();
        self.event.write_json(&mut out);
        out.extend_from_slice(br#","customDeliveryProperties":"#);
        // Writing a map of strings, or a `Value`, into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut out, &self.custom_delivery_properties);
        out.extend_from_slice(br#","deadletterProperties":"#);
        let _ = serde_json::to_writer(&mut out, &properties);
        out.push(b'}');
        out
    }

    /// The record as JSON text that can be embedded in other documents unchanged.
    pub fn to_raw(&self) -> Box<RawValue> {
        let text = String::from_utf8(self.to_json_bytes()).unwrap_or_default();
        // What `to_json_bytes` writes is always one JSON object; `null` is never reached.
        RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned())
    }

    /// The record as a `serde_json` value, for tests and schema checks: parsing loses what
    /// `Value` cannot hold, so no delivery or storage path uses it.
    pub fn to_json(&self) -> Value {
        serde_json::from_slice(&self.to_json_bytes()).unwrap_or(Value::Null)
    }

    /// The event of a record, without reading the rest (re-driving needs only the event).
    pub fn event_of(bytes: &[u8]) -> Result<CloudEvent, DeadLetterError> {
        #[derive(serde::Deserialize)]
        struct Record<'a> {
            #[serde(borrow)]
            event: &'a RawValue,
        }
        let input = Bytes::copy_from_slice(bytes);
        let record: Record<'_> =
            serde_json::from_slice(&input).map_err(|e| DeadLetterError::Json(e.to_string()))?;
        Ok(CloudEvent::from_raw(&input, record.event)?)
    }

    /// Reads a record from JSON bytes (copied once).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<DeadLetterRecord, DeadLetterError> {
        DeadLetterRecord::from_json(&Bytes::copy_from_slice(bytes))
    }

    /// Reads a record, accepting either casing of `deadletterProperties` and a missing
    /// `customDeliveryProperties`. The event's data is kept as a slice of `input`.
    pub fn from_json(input: &Bytes) -> Result<DeadLetterRecord, DeadLetterError> {
        let mut record: BTreeMap<String, &RawValue> =
            serde_json::from_slice(input).map_err(|e| DeadLetterError::Json(e.to_string()))?;
        let event = record.remove("event").ok_or(DeadLetterError::Field("event"))?;
        let event = CloudEvent::from_raw(input, event)?;
        let mut member = |name: &str| -> Result<Option<Value>, DeadLetterError> {
            record
                .remove(name)
                .map(|raw| serde_json::from_str(raw.get()))
                .transpose()
                .map_err(|e| DeadLetterError::Json(e.to_string()))
        };
        let properties = member("deadletterProperties")?;
        let properties = match properties {
            Some(properties) => Some(properties),
            None => member("deadLetterProperties")?,
        };
        let custom = member("customDeliveryProperties")?;
        let properties = properties.ok_or(DeadLetterError::Field("deadletterProperties"))?;
        let text = |name: &'static str| {
            properties
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(DeadLetterError::Field(name))
        };
        let optional_text = |name: &'static str| match properties.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(_) => Err(DeadLetterError::Field(name)),
        };
        let reason_text = text("deadletterreason")?;
        let reason =
            DeadLetterReason::parse(&reason_text).ok_or(DeadLetterError::Reason(reason_text))?;
        let attempts = properties
            .get("deliveryattempts")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(DeadLetterError::Field("deliveryattempts"))?;
        let last_status = match properties.get("deliverystatuscode") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or(DeadLetterError::Field("deliverystatuscode"))?,
            ),
        };
        let mut custom_delivery_properties = BTreeMap::new();
        if let Some(Value::Object(custom)) = custom {
            for (name, value) in custom {
                let value = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                custom_delivery_properties.insert(name, value);
            }
        }
        Ok(DeadLetterRecord {
            event,
            reason,
            attempts,
            last_result: optional_text("deliveryresult")?,
            last_status,
            published: text("publishutc")?,
            last_attempt: optional_text("deliveryattemptutc")?,
            custom_delivery_properties,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Data;

    fn record() -> DeadLetterRecord {
        DeadLetterRecord {
            event: CloudEvent {
                id: "e1".into(),
                source: "ns".into(),
                ty: "MQTT.EventPublished".into(),
                subject: Some("vehicles/1".into()),
                time: None,
                datacontenttype: Some("application/json".into()),
                dataschema: None,
                extensions: BTreeMap::new(),
                data: Data::from_json_value(serde_json::json!({"speed": 3})),
            },
            reason: DeadLetterReason::MaxDeliveryAttemptsExceeded,
            attempts: 3,
            last_result: "Busy".into(),
            last_status: Some(503),
            published: "2019-11-18T15:13:39.4589254Z".into(),
            last_attempt: "2019-11-18T15:20:39.4589254Z".into(),
            custom_delivery_properties: BTreeMap::from([("x-site".into(), "plant-7".into())]),
        }
    }

    #[test]
    fn writes_event_grid_shape() {
        let json = record().to_json();
        assert_eq!(
            json,
            serde_json::json!({
                "event": {"specversion": "1.0", "id": "e1", "source": "ns",
                          "type": "MQTT.EventPublished", "subject": "vehicles/1",
                          "datacontenttype": "application/json", "data": {"speed": 3}},
                "customDeliveryProperties": {"x-site": "plant-7"},
                "deadletterProperties": {
                    "deadletterreason": "MaxDeliveryAttemptsExceeded",
                    "deliveryattempts": 3,
                    "deliveryresult": "Busy",
                    "deliverystatuscode": 503,
                    "publishutc": "2019-11-18T15:13:39.4589254Z",
                    "deliveryattemptutc": "2019-11-18T15:20:39.4589254Z"
                }
            })
        );
    }

    #[test]
    fn round_trips_and_reads_the_other_casing() {
        let original = record();
        assert_eq!(DeadLetterRecord::from_json_bytes(&original.to_json_bytes()).unwrap(), original);

        let mut json = original.to_json();
        let properties = json.as_object_mut().unwrap().remove("deadletterProperties").unwrap();
        json.as_object_mut().unwrap().insert("deadLetterProperties".into(), properties);
        json.as_object_mut().unwrap().remove("customDeliveryProperties");
        let back = DeadLetterRecord::from_json_bytes(json.to_string().as_bytes()).unwrap();
        assert_eq!(back.reason, DeadLetterReason::MaxDeliveryAttemptsExceeded);
        assert!(back.custom_delivery_properties.is_empty());
    }

    #[test]
    fn an_event_never_attempted_has_no_result() {
        let record = DeadLetterRecord {
            reason: DeadLetterReason::MaxRetryDurationExceeded,
            attempts: 0,
            last_result: String::new(),
            last_status: None,
            last_attempt: String::new(),
            ..record()
        };
        let json = record.to_json();
        let properties = json["deadletterProperties"].as_object().unwrap();
        let keys: Vec<&str> = properties.keys().map(String::as_str).collect();
        assert_eq!(keys, ["deadletterreason", "deliveryattempts", "publishutc"]);
        assert_eq!(DeadLetterRecord::from_json_bytes(json.to_string().as_bytes()).unwrap(), record);
    }

    #[test]
    fn refuses_unknown_reasons() {
        let mut json = record().to_json();
        json["deadletterProperties"]["deadletterreason"] = Value::from("Gremlins");
        assert_eq!(
            DeadLetterRecord::from_json_bytes(json.to_string().as_bytes()).unwrap_err(),
            DeadLetterError::Reason("Gremlins".into())
        );
    }
}
