//! Custom delivery properties: headers added to every delivery, in Event Grid's shape
//! (`deliveryAttributeMappings`), flattened for TOML:
//!
//! ```toml
//! [[deliveryAttributeMappings]]
//! name = "x-api-key"
//! type = "Static"
//! value = "s3cret"
//! isSecret = true
//!
//! [[deliveryAttributeMappings]]
//! name = "x-vehicle"
//! type = "Dynamic"
//! sourceField = "data.vehicle.id"
//! ```
//!
//! A dynamic source field names an event attribute (`id`, `source`, `type`, `subject`, `time`,
//! `datacontenttype`, `dataschema`, `specversion`), an extension attribute, or a path into JSON
//! data (`data.vehicle.id`, `data.readings.0`); a leading `$.` is allowed. Only strings,
//! numbers and booleans become header values: when the field is absent or holds anything else
//! the header is left out of that delivery.

use serde::Deserialize;
use serde_json::Value;

use crate::config::ConfigProblem;
use crate::event::{CloudEvent, Data};

/// Event Grid's limit on delivery properties per subscription.
pub const MAX_DELIVERY_PROPERTIES: usize = 10;

/// Event Grid's limit on a header value, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;

/// Header names the sinks write themselves, which a property may not replace.
const RESERVED_NAMES: [&str; 7] = [
    "content-type",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "origin",
    "webhook-request-origin",
];

/// One custom header on deliveries.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", deny_unknown_fields, rename_all_fields = "camelCase")]
pub enum DeliveryProperty {
    /// A fixed value. A secret one is never logged nor written to dead-letter records.
    Static {
        name: String,
        value: String,
        #[serde(default)]
        is_secret: bool,
    },
    /// A value read from each event.
    Dynamic { name: String, source_field: String },
}

// === impl DeliveryProperty ===

impl DeliveryProperty {
    /// The header name.
    pub fn name(&self) -> &str {
        match self {
            DeliveryProperty::Static { name, .. } | DeliveryProperty::Dynamic { name, .. } => name,
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, DeliveryProperty::Static { is_secret: true, .. })
    }

    /// The header value for `event`; none when a dynamic field is absent or not a string,
    /// number or boolean.
    pub fn value_for(&self, event: &CloudEvent) -> Option<String> {
        match self {
            DeliveryProperty::Static { value, .. } => Some(value.clone()),
            DeliveryProperty::Dynamic { source_field, .. } => lookup(event, source_field),
        }
    }

    /// Checks one property; `field` names it in problems (`deliveryAttributeMappings[2]`).
    fn validate(&self, field: &str) -> Result<(), ConfigProblem> {
        let name = self.name();
        let problem =
            |what: &str, text: String| ConfigProblem::new(format!("{field}.{what}"), text);
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(problem("name", format!("{name:?} is not an HTTP header name")));
        }
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("aeg-") {
            return Err(problem("name", format!("{name:?}: the aeg- prefix is reserved")));
        }
        if lower.starts_with("ce-") {
            return Err(problem("name", format!("{name:?}: ce- headers carry event attributes")));
        }
        if RESERVED_NAMES.contains(&lower.as_str()) {
            return Err(problem("name", format!("{name:?} is set by the sink")));
        }
        match self {
            DeliveryProperty::Static { value, .. } => {
                if value.len() > MAX_VALUE_BYTES {
                    return Err(problem(
                        "value",
                        format!("must be at most {MAX_VALUE_BYTES} bytes, found {}", value.len()),
                    ));
                }
                if reqwest::header::HeaderValue::from_str(value).is_err() {
                    return Err(problem("value", "is not a valid HTTP header value".into()));
                }
            }
            DeliveryProperty::Dynamic { source_field, .. } => {
                if source_field.trim_start_matches("$.").is_empty() {
                    return Err(problem("sourceField", "must name an event field".into()));
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for DeliveryProperty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryProperty::Static { name, value, is_secret } => f
                .debug_struct("Static")
                .field("name", name)
                .field("value", if *is_secret { &"<secret>" } else { value })
                .field("is_secret", is_secret)
                .finish(),
            DeliveryProperty::Dynamic { name, source_field } => f
                .debug_struct("Dynamic")
                .field("name", name)
                .field("source_field", source_field)
                .finish(),
        }
    }
}

/// Checks a subscription's list of properties: at most ten, unique names, each valid.
pub(crate) fn validate_all(properties: &[DeliveryProperty]) -> Result<(), ConfigProblem> {
    const FIELD: &str = "deliveryAttributeMappings";
    if properties.len() > MAX_DELIVERY_PROPERTIES {
        return Err(ConfigProblem::new(
            FIELD,
            format!("at most {MAX_DELIVERY_PROPERTIES} properties, found {}", properties.len()),
        ));
    }
    for (index, property) in properties.iter().enumerate() {
        let field = format!("{FIELD}[{index}]");
        property.validate(&field)?;
        let name = property.name();
        if properties[..index].iter().any(|other| other.name().eq_ignore_ascii_case(name)) {
            return Err(ConfigProblem::new(
                format!("{field}.name"),
                format!("{name:?} is repeated"),
            ));
        }
    }
    Ok(())
}

/// The value of `path` in `event` as a header value.
fn lookup(event: &CloudEvent, path: &str) -> Option<String> {
    let path = path.strip_prefix("$.").unwrap_or(path);
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let attribute = |value: Option<&str>| match rest {
        None => value.map(str::to_owned),
        Some(_) => None,
    };
    match head {
        "specversion" => attribute(Some("1.0")),
        "id" => attribute(Some(&event.id)),
        "source" => attribute(Some(&event.source)),
        "type" => attribute(Some(&event.ty)),
        "subject" => attribute(event.subject.as_deref()),
        "time" => attribute(event.time.as_deref()),
        "datacontenttype" => attribute(event.datacontenttype.as_deref()),
        "dataschema" => attribute(event.dataschema.as_deref()),
        "data" => match &event.data {
            // A parsed copy, read for the header only; the event's data is sent as it came.
            Data::Json(json) => {
                let data = json.to_value();
                scalar(crate::json_path::lookup(
                    &data,
                    rest.into_iter().flat_map(|rest| rest.split('.')),
                )?)
            }
            Data::None | Data::Binary(_) => None,
        },
        extension => match rest {
            None => scalar(&event.extensions.get(extension)?.to_value()),
            Some(_) => None,
        },
    }
}

/// A string, number or boolean as header text.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::event::JsonText;

    use super::*;

    fn event() -> CloudEvent {
        CloudEvent {
            id: "e1".into(),
            source: "ns".into(),
            ty: "MQTT.EventPublished".into(),
            subject: Some("vehicles/7/position".into()),
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: BTreeMap::from([("mqttqos".into(), JsonText::from_value(&Value::from(1)))]),
            data: Data::from_json_value(serde_json::json!({
                "vehicle": {"id": "v7", "moving": true, "speed": 12.5},
                "readings": [3, 4],
                "nested": {"a": 1}
            })),
        }
    }

    fn dynamic(source_field: &str) -> DeliveryProperty {
        DeliveryProperty::Dynamic { name: "x".into(), source_field: source_field.into() }
    }

    #[test]
    fn dynamic_values_come_from_attributes_extensions_and_data() {
        let event = event();
        let value = |field: &str| dynamic(field).value_for(&event);
        assert_eq!(value("subject").as_deref(), Some("vehicles/7/position"));
        assert_eq!(value("type").as_deref(), Some("MQTT.EventPublished"));
        assert_eq!(value("mqttqos").as_deref(), Some("1"));
        assert_eq!(value("data.vehicle.id").as_deref(), Some("v7"));
        assert_eq!(value("$.data.vehicle.moving").as_deref(), Some("true"));
        assert_eq!(value("data.vehicle.speed").as_deref(), Some("12.5"));
        assert_eq!(value("data.readings.1").as_deref(), Some("4"));
        // Absent fields, objects and attributes with a path give no header.
        assert_eq!(value("data.nested"), None);
        assert_eq!(value("data.vehicle.colour"), None);
        assert_eq!(value("time"), None);
        assert_eq!(value("subject.x"), None);
        assert_eq!(value("unknown"), None);
    }

    #[test]
    fn deserializes_event_grid_shape_and_refuses_unknown_fields() {
        #[derive(Deserialize)]
        struct List {
            p: Vec<DeliveryProperty>,
        }
        let list: List = toml::from_str(
            r#"
            [[p]]
            name = "x-key"
            type = "Static"
            value = "k"
            isSecret = true
            [[p]]
            name = "x-vehicle"
            type = "Dynamic"
            sourceField = "data.vehicle.id"
            "#,
        )
        .unwrap();
        assert_eq!(
            list.p,
            [
                DeliveryProperty::Static {
                    name: "x-key".into(),
                    value: "k".into(),
                    is_secret: true
                },
                DeliveryProperty::Dynamic {
                    name: "x-vehicle".into(),
                    source_field: "data.vehicle.id".into()
                },
            ]
        );
        let unknown = toml::from_str::<List>(
            "[[p]]\nname = \"x\"\ntype = \"Static\"\nvalue = \"v\"\nsecret = true\n",
        );
        assert!(unknown.is_err());
        assert!(format!("{:?}", list.p[0]).contains("<secret>"));
        assert!(!format!("{:?}", list.p[0]).contains("\"k\""));
    }

    #[test]
    fn validation_names_the_property() {
        let fixed = |name: &str, value: &str| DeliveryProperty::Static {
            name: name.into(),
            value: value.into(),
            is_secret: false,
        };
        assert_eq!(validate_all(&[fixed("x-a", "1"), dynamic("subject")]), Ok(()));
        let problem = validate_all(&[fixed("x-a", "1"), fixed("aeg-thing", "1")]).unwrap_err();
        assert_eq!(problem.field, "deliveryAttributeMappings[1].name");
        let problem = validate_all(&[fixed("x-a", &"v".repeat(4097))]).unwrap_err();
        assert_eq!(
            problem.to_string(),
            "deliveryAttributeMappings[0].value: must be at most 4096 bytes, found 4097"
        );
        let problem = validate_all(&[fixed("x-a", "1"), fixed("X-A", "2")]).unwrap_err();
        assert_eq!(problem.field, "deliveryAttributeMappings[1].name");
        assert!(validate_all(&[fixed("bad name", "1")]).is_err());
        assert!(validate_all(&[fixed("content-type", "1")]).is_err());
        assert!(validate_all(&[fixed("x-a", "line\nbreak")]).is_err());
        let eleven: Vec<DeliveryProperty> =
            (0..11).map(|i| fixed(&format!("x-{i}"), "v")).collect();
        assert_eq!(validate_all(&eleven).unwrap_err().field, "deliveryAttributeMappings");
    }
}
