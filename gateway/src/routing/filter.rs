//! Event subscription filters with Event Grid's shape and semantics: subject prefix and suffix,
//! included event types and advanced filters.
//!
//! Every condition must hold (AND); within one advanced filter, the values are alternatives (OR),
//! except for the `Not` operators, where none of them may match. String comparisons are
//! case-insensitive; `includedEventTypes` is an exact match; the subject filters are
//! case-insensitive unless `isSubjectCaseSensitive`.
//!
//! # Keys
//!
//! `data` (the whole data, e.g. a text payload routed as a JSON string), `data.a.b` (a path of
//! object members and array indexes, `data.readings.0.value`, read by [`sinks::json_path`] as
//! delivery properties read it; member names are case-sensitive and cannot contain `.`, as in
//! Event Grid), the
//! attributes `id`, `source`, `type`, `subject`, `time`, `datacontenttype`, `dataschema` and
//! `specversion`, or an extension attribute name such as an enrichment key. Attribute names and
//! the `data` prefix are case-insensitive (`Subject`, `Data.Temp`), as in Event Grid's examples.
//! `data` keys find nothing when the event's data is bytes (`data_base64`) or absent.
//!
//! The event holds `data` and extension values as the text that was published; a filter with
//! advanced conditions parses a copy of them once per evaluation (lazily: only when a condition
//! reads them). The copy is only read, never sent. Of duplicate object keys the last counts,
//! and JSON that `serde_json` cannot hold (a lone surrogate escape) reads as `null`.
//!
//! # Values
//!
//! | Operators | Takes | Key types compared |
//! |---|---|---|
//! | `NumberIn`, `NumberNotIn` | `values`: numbers | numbers |
//! | `NumberLessThan`, `…GreaterThan`, `…LessThanOrEquals`, `…GreaterThanOrEquals` | `value`: a number | numbers |
//! | `NumberInRange`, `NumberNotInRange` | `values`: `[low, high]` pairs, `low ≤ high`, inclusive | numbers |
//! | `BoolEquals` | `value`: a boolean | booleans |
//! | `StringContains`, `…BeginsWith`, `…EndsWith`, `StringIn` and their `Not` forms | `values`: strings of ≤ 512 characters | strings, and numbers and booleans by their JSON text |
//! | `IsNullOrUndefined`, `IsNotNull` | nothing | anything |
//!
//! The list operators also take a single `value` as a one-element list, since Event Grid's own
//! routing pages write `"value": "Contoso"` for `StringContains`. At most 25 advanced filters and
//! 25 values across all of them (Event Grid's limit is per subscription, not per filter). Numbers
//! compare as `f64`; Event Grid uses .NET `decimal`, so integers beyond 2^53 may compare equal
//! here where they would not there.
//!
//! # Missing keys, nulls, wrong types and arrays
//!
//! | Key's value | Result |
//! |---|---|
//! | missing or `null` | `IsNullOrUndefined` matches. `NumberNotIn`, `StringNotIn` match (Event Grid's documented rule) and so does `NumberNotInRange` (inferred: it is the same kind of "not in"). Every other operator, `StringNotContains`, `StringNotBeginsWith` and `StringNotEndsWith` included, does not match. |
//! | a scalar of a type the operator does not compare (e.g. a string for `NumberIn`), or an object | as if missing, except that `IsNotNull` matches |
//! | an array, with `enableAdvancedFilteringOnArrays` off | only `IsNotNull` matches |
//! | an array, with it on | elements the operator does not compare (objects, nested arrays, other types) are ignored; a positive operator matches when any element matches; a `Not` operator matches when no element matches, so also for an empty array |

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Number, Value};
use sinks::{CloudEvent, Data};

/// The most advanced filters per subscription.
pub const MAX_ADVANCED_FILTERS: usize = 25;
/// The most values across all advanced filters of a subscription.
pub const MAX_FILTER_VALUES: usize = 25;
/// The longest string value, in characters.
pub const MAX_STRING_CHARS: usize = 512;

/// A subscription's filters as configured (Event Grid's `filter` object).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct FiltersConfig {
    /// Only events whose subject (the MQTT topic) starts with this.
    pub subject_begins_with: Option<String>,
    /// Only events whose subject ends with this.
    pub subject_ends_with: Option<String>,
    /// Compare the subject filters case-sensitively.
    pub is_subject_case_sensitive: bool,
    /// Only events with one of these types; absent means every type.
    pub included_event_types: Option<Vec<String>>,
    /// Let advanced filters look into arrays; without it an array value never matches.
    pub enable_advanced_filtering_on_arrays: bool,
    /// Conditions on attributes and data, all of which must hold.
    pub advanced_filters: Vec<AdvancedFilter>,
}

/// One advanced filter as configured.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdvancedFilter {
    pub operator_type: Operator,
    /// `data.<path>`, a context attribute or an extension attribute.
    pub key: String,
    /// The value of a single-value operator.
    #[serde(default)]
    pub value: Option<Value>,
    /// The values of a list operator.
    #[serde(default)]
    pub values: Option<Vec<Value>>,
}

/// Event Grid's advanced filter operators, named as in its API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Operator {
    NumberIn,
    NumberNotIn,
    NumberLessThan,
    NumberGreaterThan,
    NumberLessThanOrEquals,
    NumberGreaterThanOrEquals,
    NumberInRange,
    NumberNotInRange,
    BoolEquals,
    StringContains,
    StringNotContains,
    StringBeginsWith,
    StringNotBeginsWith,
    StringEndsWith,
    StringNotEndsWith,
    StringIn,
    StringNotIn,
    IsNullOrUndefined,
    IsNotNull,
}

/// An invalid filter, named by its config path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FilterError {
    pub field: String,
    pub problem: FilterProblem,
}

/// What is wrong with a filter field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterProblem {
    #[error("lists no event type; omit it to include every type")]
    NoEventType,
    #[error("an event type must not be empty")]
    EmptyEventType,
    #[error("{0} advanced filters; at most {MAX_ADVANCED_FILTERS} are allowed")]
    TooManyFilters(usize),
    #[error("{0} values across all advanced filters; at most {MAX_FILTER_VALUES} are allowed")]
    TooManyValues(usize),
    #[error("{0:?} takes no `value` or `values`")]
    TakesNoValue(Operator),
    #[error("{0:?} takes a single `value`, not `values`")]
    TakesOneValue(Operator),
    #[error("{0:?} needs a `value`")]
    NeedsValue(Operator),
    #[error("give `values` or `value`, not both")]
    ValueAndValues,
    #[error("{0:?} needs at least one of `values`")]
    NeedsValues(Operator),
    #[error("must be true or false")]
    NotABool,
    #[error("must be a number")]
    NotANumber,
    #[error("the low end is above the high end")]
    InvertedRange,
    #[error("a range must be two numbers, [low, high]")]
    NotARange,
    #[error("longer than {MAX_STRING_CHARS} characters")]
    TooLong,
    #[error("must be a string")]
    NotAString,
    #[error("`{0}` has an empty member name")]
    EmptyMember(String),
    #[error(
        "`{0}` is not a key: use `data`, `data.<path>`, a CloudEvents attribute or an \
         extension attribute name (letters and digits)"
    )]
    NotAKey(String),
}

/// Compiled filters, checked once per routed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Lowercased unless `case_sensitive`.
    subject_begins_with: Option<String>,
    subject_ends_with: Option<String>,
    case_sensitive: bool,
    included_event_types: Option<BTreeSet<String>>,
    arrays: bool,
    conditions: Vec<Condition>,
}

/// One compiled advanced filter.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    key: Key,
    check: Check,
    /// A `Not` operator: the check must fail for every compared value.
    negated: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Key {
    /// A path into JSON data; empty for the whole data.
    Data(Vec<String>),
    /// A context or extension attribute, lowercased.
    Attribute(String),
}

/// The positive form of an operator.
#[derive(Debug, Clone, PartialEq)]
enum Check {
    NumberIn(Vec<f64>),
    Compare(Comparison, f64),
    InRange(Vec<(f64, f64)>),
    BoolEquals(bool),
    /// Lowercased values.
    Text(TextOp, Vec<String>),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Comparison {
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TextOp {
    Contains,
    BeginsWith,
    EndsWith,
    In,
}

/// What an operator's `value`/`values` must hold.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Numbers,
    Number,
    Ranges,
    Bool,
    Strings,
    Nothing,
}

/// A key's value in an event.
#[derive(Debug, Clone, Copy)]
enum Found<'a> {
    Missing,
    Text(&'a str),
    Json(&'a Value),
}

impl FiltersConfig {
    /// Validates the filters; errors name fields under `field_prefix` (e.g.
    /// `routes.telemetry.filter`), in the config's camelCase.
    pub fn compile(&self, field_prefix: &str) -> Result<Filter, FilterError> {
        let field = |rest: &str| match field_prefix {
            "" => rest.to_owned(),
            prefix => format!("{prefix}.{rest}"),
        };
        let fail = |rest: &str, problem: FilterProblem| FilterError { field: field(rest), problem };
        let included_event_types = match &self.included_event_types {
            None => None,
            Some(types) if types.is_empty() => {
                return Err(fail("includedEventTypes", FilterProblem::NoEventType));
            }
            Some(types) => {
                if let Some(i) = types.iter().position(String::is_empty) {
                    let problem = FilterProblem::EmptyEventType;
                    return Err(fail(&format!("includedEventTypes[{i}]"), problem));
                }
                Some(types.iter().cloned().collect())
            }
        };
        if self.advanced_filters.len() > MAX_ADVANCED_FILTERS {
            let problem = FilterProblem::TooManyFilters(self.advanced_filters.len());
            return Err(fail("advancedFilters", problem));
        }
        let mut conditions = Vec::with_capacity(self.advanced_filters.len());
        let mut value_count = 0;
        for (i, filter) in self.advanced_filters.iter().enumerate() {
            let (condition, count) = filter
                .compile()
                .map_err(|(rest, problem)| fail(&format!("advancedFilters[{i}]{rest}"), problem))?;
            value_count += count;
            conditions.push(condition);
        }
        if value_count > MAX_FILTER_VALUES {
            return Err(fail("advancedFilters", FilterProblem::TooManyValues(value_count)));
        }
        let case = |s: &Option<String>| {
            let s = s.as_deref().filter(|s| !s.is_empty())?;
            Some(if self.is_subject_case_sensitive { s.to_owned() } else { s.to_lowercase() })
        };
        Ok(Filter {
            subject_begins_with: case(&self.subject_begins_with),
            subject_ends_with: case(&self.subject_ends_with),
            case_sensitive: self.is_subject_case_sensitive,
            included_event_types,
            arrays: self.enable_advanced_filtering_on_arrays,
            conditions,
        })
    }
}

impl Filter {
    /// Whether `event` passes every filter.
    pub fn matches(&self, event: &CloudEvent) -> bool {
        if let Some(types) = &self.included_event_types
            && !types.contains(&event.ty)
        {
            return false;
        }
        if self.subject_begins_with.is_some() || self.subject_ends_with.is_some() {
            let Some(subject) = &event.subject else { return false };
            let subject =
                if self.case_sensitive { subject.clone() } else { subject.to_lowercase() };
            let begins =
                self.subject_begins_with.as_ref().is_none_or(|p| subject.starts_with(p.as_str()));
            let ends =
                self.subject_ends_with.as_ref().is_none_or(|s| subject.ends_with(s.as_str()));
            if !(begins && ends) {
                return false;
            }
        }
        if self.conditions.is_empty() {
            return true;
        }
        let view = Parsed::new(event);
        self.conditions.iter().all(|condition| condition.matches(&view, self.arrays))
    }
}

/// An event with its JSON data and extension values parsed on first use, once per filter
/// evaluation. The parsed copies are only read; the event keeps and sends its text.
struct Parsed<'e> {
    event: &'e CloudEvent,
    data: OnceCell<Option<Value>>,
    extensions: OnceCell<BTreeMap<&'e str, Value>>,
}

impl<'e> Parsed<'e> {
    fn new(event: &'e CloudEvent) -> Parsed<'e> {
        Parsed { event, data: OnceCell::new(), extensions: OnceCell::new() }
    }

    fn data(&self) -> Option<&Value> {
        let data = self.data.get_or_init(|| match &self.event.data {
            Data::Json(json) => Some(json.to_value()),
            Data::None | Data::Binary(_) => None,
        });
        data.as_ref()
    }

    fn extension(&self, name: &str) -> Option<&Value> {
        let extensions = self.extensions.get_or_init(|| {
            self.event
                .extensions
                .iter()
                .map(|(name, json)| (name.as_str(), json.to_value()))
                .collect()
        });
        extensions.get(name)
    }
}

// === impl AdvancedFilter ===

impl AdvancedFilter {
    /// The compiled condition and how many values it counts towards the limit; an error names
    /// the field below the filter (`.key`, `.values[2]`).
    fn compile(&self) -> Result<(Condition, usize), (String, FilterProblem)> {
        let key = parse_key(&self.key).map_err(|problem| (".key".to_owned(), problem))?;
        let operator = self.operator_type;
        let values: Vec<&Value> = match (operator.shape(), &self.value, &self.values) {
            (Shape::Nothing, None, None) => Vec::new(),
            (Shape::Nothing, _, _) => {
                return Err((String::new(), FilterProblem::TakesNoValue(operator)));
            }
            (Shape::Number | Shape::Bool, Some(value), None) => vec![value],
            (Shape::Number | Shape::Bool, _, Some(_)) => {
                return Err((String::new(), FilterProblem::TakesOneValue(operator)));
            }
            (Shape::Number | Shape::Bool, None, None) => {
                return Err((String::new(), FilterProblem::NeedsValue(operator)));
            }
            (_, Some(_), Some(_)) => {
                return Err((String::new(), FilterProblem::ValueAndValues));
            }
            (_, Some(value), None) => vec![value],
            (_, None, Some(values)) if !values.is_empty() => values.iter().collect(),
            (_, None, _) => {
                return Err((String::new(), FilterProblem::NeedsValues(operator)));
            }
        };
        let field = |j: usize| match self.value {
            Some(_) => ".value".to_owned(),
            None => format!(".values[{j}]"),
        };
        let check = match operator.shape() {
            Shape::Nothing => Check::Null,
            Shape::Bool => match values.first() {
                Some(Value::Bool(b)) => Check::BoolEquals(*b),
                _ => return Err((field(0), FilterProblem::NotABool)),
            },
            Shape::Number => {
                let number = values.first().and_then(|v| v.as_f64());
                let number = number.ok_or_else(|| (field(0), FilterProblem::NotANumber))?;
                Check::Compare(operator.comparison(), number)
            }
            Shape::Numbers => {
                let numbers = values
                    .iter()
                    .enumerate()
                    .map(|(j, v)| v.as_f64().ok_or_else(|| (field(j), FilterProblem::NotANumber)));
                Check::NumberIn(numbers.collect::<Result<_, _>>()?)
            }
            Shape::Ranges => {
                let ranges =
                    values.iter().enumerate().map(|(j, v)| match v.as_array().map(Vec::as_slice) {
                        Some([low, high]) => match (low.as_f64(), high.as_f64()) {
                            (Some(low), Some(high)) if low <= high => Ok((low, high)),
                            (Some(_), Some(_)) => Err((field(j), FilterProblem::InvertedRange)),
                            _ => Err((field(j), FilterProblem::NotARange)),
                        },
                        _ => Err((field(j), FilterProblem::NotARange)),
                    });
                Check::InRange(ranges.collect::<Result<_, _>>()?)
            }
            Shape::Strings => {
                let strings = values.iter().enumerate().map(|(j, v)| match v {
                    Value::String(s) if s.chars().count() > MAX_STRING_CHARS => {
                        Err((field(j), FilterProblem::TooLong))
                    }
                    Value::String(s) => Ok(s.to_lowercase()),
                    _ => Err((field(j), FilterProblem::NotAString)),
                });
                Check::Text(operator.text_op(), strings.collect::<Result<_, _>>()?)
            }
        };
        let negated = operator.negated();
        Ok((Condition { key, check, negated }, values.len()))
    }
}

// === impl Operator ===

impl Operator {
    fn shape(self) -> Shape {
        use Operator::*;
        match self {
            NumberIn | NumberNotIn => Shape::Numbers,
            NumberLessThan
            | NumberGreaterThan
            | NumberLessThanOrEquals
            | NumberGreaterThanOrEquals => Shape::Number,
            NumberInRange | NumberNotInRange => Shape::Ranges,
            BoolEquals => Shape::Bool,
            StringContains | StringNotContains | StringBeginsWith | StringNotBeginsWith
            | StringEndsWith | StringNotEndsWith | StringIn | StringNotIn => Shape::Strings,
            IsNullOrUndefined | IsNotNull => Shape::Nothing,
        }
    }

    fn negated(self) -> bool {
        use Operator::*;
        matches!(
            self,
            NumberNotIn
                | NumberNotInRange
                | StringNotContains
                | StringNotBeginsWith
                | StringNotEndsWith
                | StringNotIn
                | IsNotNull
        )
    }

    fn comparison(self) -> Comparison {
        match self {
            Operator::NumberLessThan => Comparison::Less,
            Operator::NumberGreaterThan => Comparison::Greater,
            Operator::NumberLessThanOrEquals => Comparison::LessOrEqual,
            _ => Comparison::GreaterOrEqual,
        }
    }

    fn text_op(self) -> TextOp {
        use Operator::*;
        match self {
            StringContains | StringNotContains => TextOp::Contains,
            StringBeginsWith | StringNotBeginsWith => TextOp::BeginsWith,
            StringEndsWith | StringNotEndsWith => TextOp::EndsWith,
            _ => TextOp::In,
        }
    }
}

// === impl Condition ===

impl Condition {
    fn matches(&self, event: &Parsed<'_>, arrays: bool) -> bool {
        let found = self.key.find(event);
        let missing = matches!(found, Found::Missing | Found::Json(Value::Null));
        if self.check == Check::Null {
            return missing != self.negated;
        }
        if missing {
            return self.when_missing();
        }
        let results: Vec<bool> = match found {
            Found::Json(Value::Array(items)) if arrays => {
                items.iter().filter_map(|item| self.check.test(Found::Json(item))).collect()
            }
            Found::Json(Value::Array(_)) => return false,
            scalar => match self.check.test(scalar) {
                Some(result) => vec![result],
                None => return self.when_missing(),
            },
        };
        results.contains(&true) != self.negated
    }

    /// Event Grid's rule for a missing key: only the "not in" operators match.
    fn when_missing(&self) -> bool {
        self.negated
            && matches!(
                self.check,
                Check::NumberIn(_) | Check::InRange(_) | Check::Text(TextOp::In, _)
            )
    }
}

impl Key {
    fn find<'a>(&self, parsed: &'a Parsed<'_>) -> Found<'a> {
        let event = parsed.event;
        match self {
            Key::Data(path) => {
                let Some(data) = parsed.data() else { return Found::Missing };
                let value = sinks::json_path::lookup(data, path.iter().map(String::as_str));
                value.map_or(Found::Missing, Found::Json)
            }
            Key::Attribute(name) => {
                let text = match name.as_str() {
                    "specversion" => Some("1.0"),
                    "id" => Some(event.id.as_str()),
                    "source" => Some(event.source.as_str()),
                    "type" => Some(event.ty.as_str()),
                    "subject" => event.subject.as_deref(),
                    "time" => event.time.as_deref(),
                    "datacontenttype" => event.datacontenttype.as_deref(),
                    "dataschema" => event.dataschema.as_deref(),
                    extension => {
                        return parsed.extension(extension).map_or(Found::Missing, Found::Json);
                    }
                };
                text.map_or(Found::Missing, Found::Text)
            }
        }
    }
}

impl Check {
    /// The positive check on one value; `None` when the check does not compare values of its
    /// type.
    fn test(&self, found: Found<'_>) -> Option<bool> {
        let number = || match found {
            Found::Json(Value::Number(n)) => n.as_f64(),
            _ => None,
        };
        match self {
            Check::NumberIn(values) => number().map(|x| values.contains(&x)),
            Check::Compare(comparison, value) => number().map(|x| match comparison {
                Comparison::Less => x < *value,
                Comparison::Greater => x > *value,
                Comparison::LessOrEqual => x <= *value,
                Comparison::GreaterOrEqual => x >= *value,
            }),
            Check::InRange(ranges) => {
                number().map(|x| ranges.iter().any(|(low, high)| *low <= x && x <= *high))
            }
            Check::BoolEquals(value) => match found {
                Found::Json(Value::Bool(b)) => Some(b == value),
                _ => None,
            },
            Check::Text(op, values) => {
                let text = match found {
                    Found::Text(s) => s.to_lowercase(),
                    Found::Json(Value::String(s)) => s.to_lowercase(),
                    Found::Json(Value::Number(n)) => number_text(n),
                    Found::Json(Value::Bool(b)) => b.to_string(),
                    _ => return None,
                };
                Some(values.iter().any(|v| match op {
                    TextOp::Contains => text.contains(v.as_str()),
                    TextOp::BeginsWith => text.starts_with(v.as_str()),
                    TextOp::EndsWith => text.ends_with(v.as_str()),
                    TextOp::In => text == *v,
                }))
            }
            Check::Null => None,
        }
    }
}

/// A number as string operators see it: its JSON text, lowercased (`1e+21`).
fn number_text(number: &Number) -> String {
    number.to_string().to_lowercase()
}

/// Parses an advanced filter key (see the module documentation).
fn parse_key(key: &str) -> Result<Key, FilterProblem> {
    let data_prefix = key.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data."));
    if key.eq_ignore_ascii_case("data") {
        return Ok(Key::Data(Vec::new()));
    }
    if data_prefix {
        let path = key.get(5..).unwrap_or_default().split('.');
        let path: Vec<String> = path.map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(FilterProblem::EmptyMember(key.to_owned()));
        }
        return Ok(Key::Data(path));
    }
    let name = key.to_ascii_lowercase();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(FilterProblem::NotAKey(key.to_owned()));
    }
    Ok(Key::Attribute(name))
}

#[cfg(test)]
mod tests;
