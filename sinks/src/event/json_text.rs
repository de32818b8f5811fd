//! JSON carried as the text that was published.
//!
//! Parsing JSON into `serde_json::Value` and writing it back changes it: serde_json's default
//! float parser is not correctly rounded (`47.782000000000004` comes back as `47.782`), integers
//! past `u64` become floats, `1E+2` becomes `100.0`, object keys are sorted and a duplicate key
//! is dropped. A gateway must not rewrite what it carries, so JSON payloads and JSON extension
//! values are held as their text, validated once without building a tree, and written back
//! byte for byte. Readers that need a value (filters on `data.*`, delivery properties) parse a
//! copy with [`JsonText::to_value`]; what they parse is never what is sent.
//!
//! The text may have whitespace before and after the value, as an MQTT payload often does (a
//! trailing newline). [`JsonText::published`] keeps it, for binary-mode bodies whose bytes must
//! be the payload's; [`JsonText::as_str`] is the value alone, for embedding as `data` in the
//! JSON event format. This is why the type holds bytes rather than a `RawValue`, which refuses
//! surrounding whitespace.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde_json::Value;

/// One JSON value as text: valid UTF-8 holding exactly one JSON value, with optional
/// whitespace around it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JsonText(Bytes);

/// Why bytes are not one JSON value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonTextError {
    #[error("not UTF-8")]
    Utf8,
    #[error("not JSON: {0}")]
    Json(String),
}

impl JsonText {
    /// Validates `bytes` as one JSON value without building a tree.
    pub fn parse(bytes: Bytes) -> Result<JsonText, JsonTextError> {
        let text = std::str::from_utf8(&bytes).map_err(|_| JsonTextError::Utf8)?;
        serde_json::from_str::<IgnoredAny>(text).map_err(|e| JsonTextError::Json(e.to_string()))?;
        Ok(JsonText(bytes))
    }

    /// `text` as a JSON string value (`hello` → `"hello"`).
    pub fn string(text: &str) -> JsonText {
        // Serializing a `str` cannot fail.
        JsonText(serde_json::to_vec(text).unwrap_or_default().into())
    }

    /// A value built in code (lifecycle event data, enrichments), serialized once.
    pub fn from_value(value: &Value) -> JsonText {
        // Serializing a `Value` cannot fail: its map keys are strings.
        JsonText(serde_json::to_vec(value).unwrap_or_default().into())
    }

    /// Text already known to be one JSON value, such as a `RawValue` slice of validated input.
    pub(crate) fn trusted(bytes: Bytes) -> JsonText {
        JsonText(bytes)
    }

    /// The value's text without the whitespace around it.
    pub fn as_str(&self) -> &str {
        // The bytes were checked to be UTF-8 on construction.
        std::str::from_utf8(&self.0).unwrap_or_default().trim_matches(is_json_whitespace)
    }

    /// The text exactly as published, whitespace around the value included.
    pub fn published(&self) -> &Bytes {
        &self.0
    }

    /// A parsed copy, for readers that look inside (filters, delivery properties). It is never
    /// written back. `Value::Null` for JSON that serde_json cannot hold (a lone surrogate
    /// escape, nesting past its depth limit).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.as_str()).unwrap_or(Value::Null)
    }

    /// The decoded text when the value is a JSON string.
    pub fn as_string(&self) -> Option<String> {
        let text = self.as_str();
        if !text.starts_with('"') {
            return None;
        }
        serde_json::from_str(text).ok()
    }

    /// Whether the value is a JSON string.
    pub fn is_string(&self) -> bool {
        self.as_str().starts_with('"')
    }
}

impl std::fmt::Debug for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonText({})", String::from_utf8_lossy(&self.0))
    }
}

/// JSON's insignificant whitespace (RFC 8259 section 2).
fn is_json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// JSON texts that a round trip through `serde_json::Value` would not give back as written
/// (rounded floats, big integers, exponents, negative zero, escapes, key order, duplicate keys,
/// whitespace). Every test ring checks that they are carried unchanged, from this one list.
pub const FIDELITY_CORPUS: [&str; 10] = [
    "47.782000000000004",
    "123456789012345678901234567890",
    "1E+2",
    "-0.0",
    r#""\u00e9""#,
    r#""\ud83d\ude00""#,
    r#"{"z":1,"a":2}"#,
    r#"{"a":1,"a":2}"#,
    r#"{ "k" : [1, 2 ,3] }"#,
    r#"[{"n":1.0e-7,"s":"tab\tquote\"slash\/"},null,true]"#,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_text_as_published() {
        for text in FIDELITY_CORPUS {
            let json = JsonText::parse(Bytes::from(text)).unwrap();
            assert_eq!(json.as_str(), text);
        }
        let padded = JsonText::parse(Bytes::from_static(b" [1]\n")).unwrap();
        assert_eq!(padded.as_str(), "[1]");
        assert_eq!(padded.published().as_ref(), b" [1]\n");
    }

    #[test]
    fn refuses_what_is_not_one_value() {
        for text in [&b"{"[..], b"1 2", b"", b"\"\xff\"", b"[1,]"] {
            assert!(JsonText::parse(Bytes::copy_from_slice(text)).is_err(), "{text:?}");
        }
    }

    #[test]
    fn strings_decode() {
        let json = JsonText::string("line\nbreak é");
        assert_eq!(json.as_str(), r#""line\nbreak é""#);
        assert_eq!(json.as_string().as_deref(), Some("line\nbreak é"));
        assert_eq!(JsonText::parse(Bytes::from_static(b"7")).unwrap().as_string(), None);
    }
}
