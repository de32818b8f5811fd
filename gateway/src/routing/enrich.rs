//! Routing enrichments: extension attributes that the namespace adds to every routed event.
//!
//! A static enrichment adds a fixed string. A dynamic enrichment's value is exactly one variable,
//! resolved per message:
//!
//! | Variable | Value added |
//! |---|---|
//! | `${client.authenticationName}` | the publisher's authentication name |
//! | `${client.attributes.x}`, `${client.attributes['x']}` | the publisher's attribute `x`: a string as is, an integer as a JSON number, a string array comma-joined |
//! | `${mqtt.message.topicName}` | the topic name |
//! | `${mqtt.message.userProperties.x}`, `${mqtt.message.userProperties['x y']}` | every user property named `x`, in order, comma-joined |
//! | `${mqtt.message.responseTopic}` | the response topic |
//! | `${mqtt.message.correlationData}` | the correlation data, standard base64 with padding |
//! | `${mqtt.message.pfi}` | the payload format indicator as a JSON number; `0` when absent (always for MQTT 3.1.1) |
//!
//! Anything missing (attribute, user property, response topic, correlation data) adds the key
//! with `""`, as Event Grid does, so a subscription filter can tell "absent" from "no
//! enrichment". Event Grid documents `mqttpfi` as a number; we give integer attributes the same
//! treatment, so that `NumberGreaterThan` filters work on them. String filters still see them
//! through their text.
//!
//! The short form `.x` takes names of ASCII letters, digits, `_` and `-`; any other name (with
//! dots, spaces, `}`) needs the quoted form, where `\'` stands for an apostrophe and `\\` for a
//! backslash.
//!
//! Keys are 1–20 lowercase ASCII letters or digits, unique across static and dynamic, never
//! starting with `azsp` and never a CloudEvents context attribute name; values are at most 128
//! characters; at most 20 enrichments in all (an older Event Grid page says 10; the portal and
//! the current limits say 20).
//!
//! Enrichments apply to every routed event, client CloudEvents included. An enrichment whose key
//! a client event already uses as an extension replaces the client's value: the namespace's
//! configuration is what subscribers filter on, and a client must not be able to spoof it.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;
use sinks::event::CONTEXT_ATTRIBUTES;
use sinks::{CloudEvent, JsonText};

use crate::hooks::{AttributeValue, RoutedMessage};

/// The most enrichments, static and dynamic together.
pub const MAX_ENRICHMENTS: usize = 20;
/// The longest key, in characters.
pub const MAX_KEY_CHARS: usize = 20;
/// The longest value, in characters.
pub const MAX_VALUE_CHARS: usize = 128;

/// The config path that error fields start with.
const FIELD: &str = "routing.enrichments";

/// Validated enrichments, ready to apply to each routed event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enrichments {
    /// In key order, statics first; keys are unique.
    entries: Vec<(String, Enrichment)>,
}

/// One enrichment's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrichment {
    Static(String),
    Dynamic(Variable),
}

/// A dynamic enrichment's variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    AuthenticationName,
    /// A client attribute, by name.
    Attribute(String),
    TopicName,
    /// Every user property with this name.
    UserProperty(String),
    ResponseTopic,
    CorrelationData,
    PayloadFormatIndicator,
}

/// An invalid enrichment, named by its config path, e.g.
/// `routing.enrichments.dynamic.clientname: unknown variable ${client.foo}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct EnrichmentError {
    pub field: String,
    pub problem: EnrichmentProblem,
}

/// What is wrong with the enrichments, or with one enrichment's key or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrichmentProblem {
    #[error("{0} enrichments; at most {MAX_ENRICHMENTS} are allowed")]
    TooMany(usize),
    #[error("the key must not be empty")]
    EmptyKey,
    #[error("keys may hold only lowercase letters a-z and digits 0-9")]
    KeyCharacters,
    #[error("the key has {0} characters; at most {MAX_KEY_CHARS}")]
    KeyTooLong(usize),
    #[error("keys must not start with `azsp`")]
    ReservedKey,
    #[error("`{0}` is a CloudEvents context attribute")]
    ContextAttribute(String),
    #[error("the value has {0} characters; at most {MAX_VALUE_CHARS}")]
    ValueTooLong(usize),
    #[error("key `{0}` is also a static enrichment")]
    AlsoStatic(String),
    #[error(
        "a dynamic value must be exactly one variable such as \
         ${{client.authenticationName}}, found `{0}`"
    )]
    NotOneVariable(String),
    #[error("unknown variable {0}")]
    UnknownVariable(String),
    /// The name in `client.attributes` or `mqtt.message.userProperties` of the variable.
    #[error("{variable}: {problem}")]
    Name { variable: String, problem: NameProblem },
}

/// A malformed name in a variable (`${client.attributes['...']}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    #[error("the name is missing")]
    Missing,
    /// Holds the name as it would be quoted.
    #[error(
        "a name with characters other than letters, digits, '_' and '-' must be quoted, as in \
         ['{0}']"
    )]
    MustBeQuoted(String),
    #[error("only \\' and \\\\ may follow a backslash")]
    BadEscape,
    #[error("an apostrophe in a quoted name must be escaped as \\'")]
    BareApostrophe,
}

impl Enrichments {
    /// Validates the configured static and dynamic enrichments (key → value).
    pub fn parse(
        static_: &BTreeMap<String, String>,
        dynamic: &BTreeMap<String, String>,
    ) -> Result<Enrichments, EnrichmentError> {
        let count = static_.len() + dynamic.len();
        if count > MAX_ENRICHMENTS {
            return Err(error(FIELD.to_owned(), EnrichmentProblem::TooMany(count)));
        }
        let mut entries = Vec::with_capacity(count);
        for (key, value) in static_ {
            let field = format!("{FIELD}.static.{key}");
            check_key(key).and_then(|()| check_value(value)).map_err(|p| error(field, p))?;
            entries.push((key.clone(), Enrichment::Static(value.clone())));
        }
        for (key, value) in dynamic {
            let field = format!("{FIELD}.dynamic.{key}");
            check_key(key)
                .and_then(|()| check_value(value))
                .map_err(|p| error(field.clone(), p))?;
            if static_.contains_key(key) {
                return Err(error(field, EnrichmentProblem::AlsoStatic(key.clone())));
            }
            let variable = Variable::parse(value).map_err(|p| error(field, p))?;
            entries.push((key.clone(), Enrichment::Dynamic(variable)));
        }
        Ok(Enrichments { entries })
    }

    /// True when there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The enrichments in the order they are applied.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Enrichment)> {
        self.entries.iter().map(|(key, value)| (key.as_str(), value))
    }

    /// Adds the enrichments for `message` to `event` as extension attributes, replacing any
    /// extension of the same name.
    pub fn apply(&self, message: &RoutedMessage, event: &mut CloudEvent) {
        for (key, enrichment) in &self.entries {
            let value = match enrichment {
                Enrichment::Static(value) => JsonText::string(value),
                Enrichment::Dynamic(variable) => extension_value(&variable.resolve(message)),
            };
            event.extensions.insert(key.clone(), value);
        }
    }
}

// === impl Variable ===

impl Variable {
    /// Parses a dynamic enrichment value: exactly one `${...}` variable, nothing around it.
    pub fn parse(value: &str) -> Result<Variable, EnrichmentProblem> {
        let Some(inner) = value.strip_prefix("${").and_then(|rest| rest.strip_suffix('}')) else {
            return Err(EnrichmentProblem::NotOneVariable(value.to_owned()));
        };
        let unknown = || EnrichmentProblem::UnknownVariable(value.to_owned());
        let variable = match inner {
            "client.authenticationName" => Variable::AuthenticationName,
            "mqtt.message.topicName" => Variable::TopicName,
            "mqtt.message.responseTopic" => Variable::ResponseTopic,
            "mqtt.message.correlationData" => Variable::CorrelationData,
            "mqtt.message.pfi" => Variable::PayloadFormatIndicator,
            _ => {
                if let Some(name) = inner.strip_prefix("client.attributes") {
                    Variable::Attribute(name_of(name, value).ok_or_else(unknown)??)
                } else if let Some(name) = inner.strip_prefix("mqtt.message.userProperties") {
                    Variable::UserProperty(name_of(name, value).ok_or_else(unknown)??)
                } else {
                    return Err(unknown());
                }
            }
        };
        Ok(variable)
    }

    /// The variable's value for `message`.
    pub fn resolve(&self, message: &RoutedMessage) -> Value {
        let properties = &message.properties;
        match self {
            Variable::AuthenticationName => Value::from(&*message.publisher.authentication_name),
            Variable::Attribute(name) => match message.publisher.attributes.get(name) {
                Some(AttributeValue::String(value)) => Value::from(value.as_str()),
                Some(AttributeValue::Integer(value)) => Value::from(*value),
                Some(AttributeValue::StringArray(values)) => Value::from(values.join(",")),
                None => Value::from(""),
            },
            Variable::TopicName => Value::from(&*message.topic),
            Variable::UserProperty(name) => {
                let values: Vec<&str> = properties
                    .user_properties
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
                    .collect();
                Value::from(values.join(","))
            }
            Variable::ResponseTopic => {
                Value::from(properties.response_topic.as_deref().unwrap_or_default())
            }
            Variable::CorrelationData => Value::from(
                properties
                    .correlation_data
                    .as_ref()
                    .map(|data| base64::engine::general_purpose::STANDARD.encode(data))
                    .unwrap_or_default(),
            ),
            Variable::PayloadFormatIndicator => {
                Value::from(properties.payload_format_indicator.unwrap_or(0))
            }
        }
    }
}

/// A resolved value as an extension attribute value. A client attribute integer outside the
/// CloudEvents Integer range (32-bit signed) would make the SDKs refuse the whole event, so it
/// is written as its decimal string instead.
fn extension_value(value: &Value) -> JsonText {
    match value {
        Value::Number(n) if n.as_i64().and_then(|n| i32::try_from(n).ok()).is_none() => {
            JsonText::string(&n.to_string())
        }
        other => JsonText::from_value(other),
    }
}

/// The name after `client.attributes` or `mqtt.message.userProperties`: `None` when `rest` is
/// neither `.name` nor `['name']`, an error when the name is malformed.
fn name_of(rest: &str, value: &str) -> Option<Result<String, EnrichmentProblem>> {
    let named = |problem| EnrichmentProblem::Name { variable: value.to_owned(), problem };
    if let Some(name) = rest.strip_prefix('.') {
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.is_empty() {
            return Some(Err(named(NameProblem::Missing)));
        }
        if !name.chars().all(plain) {
            return Some(Err(named(NameProblem::MustBeQuoted(escape(name)))));
        }
        return Some(Ok(name.to_owned()));
    }
    let quoted = rest.strip_prefix("['")?.strip_suffix("']")?;
    Some(unescape(quoted).map_err(named))
}

/// A quoted name's text: `\'` is an apostrophe and `\\` a backslash; nothing else is escaped.
fn unescape(quoted: &str) -> Result<String, NameProblem> {
    let mut name = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\'' | '\\')) => name.push(escaped),
                _ => return Err(NameProblem::BadEscape),
            },
            '\'' => return Err(NameProblem::BareApostrophe),
            c => name.push(c),
        }
    }
    if name.is_empty() {
        return Err(NameProblem::Missing);
    }
    Ok(name)
}

/// The quoted form of a name, for error messages.
fn escape(name: &str) -> String {
    name.replace('\\', "\\\\").replace('\'', "\\'")
}

fn check_key(key: &str) -> Result<(), EnrichmentProblem> {
    if key.is_empty() {
        return Err(EnrichmentProblem::EmptyKey);
    }
    if !key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(EnrichmentProblem::KeyCharacters);
    }
    if key.len() > MAX_KEY_CHARS {
        return Err(EnrichmentProblem::KeyTooLong(key.len()));
    }
    if key.starts_with("azsp") {
        return Err(EnrichmentProblem::ReservedKey);
    }
    if CONTEXT_ATTRIBUTES.contains(&key) {
        return Err(EnrichmentProblem::ContextAttribute(key.to_owned()));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), EnrichmentProblem> {
    let chars = value.chars().count();
    if chars > MAX_VALUE_CHARS {
        return Err(EnrichmentProblem::ValueTooLong(chars));
    }
    Ok(())
}

fn error(field: String, problem: EnrichmentProblem) -> EnrichmentError {
    EnrichmentError { field, problem }
}

#[cfg(test)]
mod tests;
