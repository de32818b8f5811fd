//! Serde for client attributes (`#[serde(with = "attributes")]`): a map whose values are a
//! string, an integer or an array of strings, as in Event Grid's JSON and in TOML. Anything
//! else (floats, booleans, mixed arrays, objects) is refused with a message that says so.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};

use crate::hooks::AttributeValue;

pub(super) fn serialize<S: Serializer>(
    map: &BTreeMap<String, AttributeValue>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut out = serializer.serialize_map(Some(map.len()))?;
    for (key, value) in map {
        match value {
            AttributeValue::String(s) => out.serialize_entry(key, s)?,
            AttributeValue::Integer(i) => out.serialize_entry(key, i)?,
            AttributeValue::StringArray(items) => out.serialize_entry(key, items)?,
        }
    }
    out.end()
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, AttributeValue>, D::Error> {
    deserializer.deserialize_map(MapVisitor)
}

/// The bytes an attribute value counts for the 4 KB limit: a string's UTF-8 length, an
/// integer's decimal digits, an array's strings together.
pub(super) fn size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::String(s) => s.len(),
        AttributeValue::Integer(i) => i.to_string().len(),
        AttributeValue::StringArray(items) => items.iter().map(String::len).sum(),
    }
}

struct MapVisitor;

impl<'de> Visitor<'de> for MapVisitor {
    type Value = BTreeMap<String, AttributeValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of attributes")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = BTreeMap::new();
        while let Some(key) = access.next_key::<String>()? {
            let Value(value) = access.next_value()?;
            if map.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!("attribute {key:?} given twice")));
            }
        }
        Ok(map)
    }
}

struct Value(AttributeValue);

impl<'de> de::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an integer or an array of strings")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value(AttributeValue::String(s.to_string())))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value(AttributeValue::Integer(i)))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        i64::try_from(u)
            .map(|i| Value(AttributeValue::Integer(i)))
            .map_err(|_| E::custom(format!("integer {u} is out of range")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            items.push(item);
        }
        Ok(Value(AttributeValue::StringArray(items)))
    }
}
