//! Topic templates: the entries of a topic space, parsed once, substituted once per client,
//! then matched against topic names (publish) and checked for coverage of topic filters
//! (subscribe).
//!
//! # Syntax
//! A template is an MQTT topic filter whose levels may hold variables:
//! `${client.authenticationName}` and `${client.attributes.<key>}` (key `[A-Za-z0-9_]+`). A
//! variable fills a whole level or part of one, with literal text before or after it in the same
//! level (`machines/m-${client.authenticationName}.f1/temp`); several variables may share a
//! level. `${var|literal}` is Event Grid's spelling of `${var}literal`
//! (`machines/${client.authenticationName|.factory1}/temp`). `+` and `#` must be whole levels,
//! `#` only the last, and a template may not start with `$` (those topics are reserved).
//!
//! # Substitution
//! [`TopicTemplate::substitute`] gives the client's [`CompiledTemplate`], or `None` when the
//! template does not apply to the client: a referenced attribute is missing or is a string
//! array, or a value is empty or holds `/`, `+`, `#` or U+0000, or the result would start with
//! `$`. Integer attributes are written in decimal. Invariant: a value therefore always fills
//! exactly the level it was written in, as literal text, so no value can widen a template
//! (`+`, `#`), reach another level (`/`) or a reserved topic (`$`). The authentication name is
//! used byte for byte, case included.
//!
//! # Coverage (subscribe)
//! A filter is allowed when every topic name it can match is matched by the template
//! (filter ⊆ template). Both are sequences of levels, each a literal, `+`, or a trailing `#`,
//! so the set of names a filter matches is, for each length it allows, a product of per-level
//! sets: a literal is one string, `+` is every string, and a trailing `#` at index `i` allows
//! every length `>= i` (including `i` itself: `a/#` matches `a`). Every per-level set is
//! non-empty, so one product is inside another exactly when each factor is, and the check walks
//! both level by level, at index `i`:
//! - template `#`: covered. Every name of the filter has at least `i` levels (the filter has
//!   either ended here or goes on), and its first `i` levels were already shown to fit.
//! - filter `#` (template not `#`): not covered; the filter reaches names of any depth and the
//!   template does not. One exception: at index 0, filter `#` against template `+/#`. A name
//!   always has at least one level, so a leading `#` matches exactly what `+/#` matches (the
//!   brute-force test found this; at a deeper index `a/#` matches `a`, which `a/+/#` does not).
//! - one has ended and the other has not (the template's next level not `#`): not covered; the
//!   lengths differ.
//! - filter `+`: covered at this level only by template `+` (a literal is one string).
//! - filter literal: covered by template `+` or by the same literal.
//! - both end together: covered.
//!
//! One rule breaks the product picture: a name whose first level starts with `$` is not matched
//! by a first level `+` or `#` (MQTT 4.7.2). So a filter whose first level is a literal starting
//! with `$` is not covered by a template starting with a wildcard. (The authorizer denies
//! `$`-filters before asking, but the algorithm is exact without that help.) The proptests in
//! `tests.rs` check this against brute force over an enumerated universe of names.

use std::fmt;

use crate::access::ClientView;
use crate::hooks::AttributeValue;
use crate::mqtt::topic::split_shared;

/// A parsed topic template, still holding its variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    source: String,
    levels: Vec<TemplateLevel>,
}

/// A template's variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    /// `${client.authenticationName}`
    AuthenticationName,
    /// `${client.attributes.<key>}`
    Attribute(String),
}

/// A template substituted for one client: a plain MQTT topic filter, split into levels once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledTemplate {
    filter: Box<str>,
    levels: Box<[Level]>,
}

/// Why a template did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct TemplateError {
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateLevel {
    Plus,
    Hash,
    /// Literal text and variables, concatenated. Empty for an empty level (`a//b`).
    Text(Vec<Piece>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Variable(Variable),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(Box<str>),
    Plus,
    Hash,
}

const VARIABLE_HELP: &str = "${client.authenticationName} or ${client.attributes.<key>}";

// === impl TopicTemplate ===

impl TopicTemplate {
    /// Parses a template.
    pub fn parse(text: &str) -> Result<TopicTemplate, TemplateError> {
        if text.is_empty() {
            return Err(problem("empty topic template"));
        }
        let mut levels = Vec::new();
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            let at = text.len() - rest.len();
            if let Some(after) = rest.strip_prefix("${") {
                let close = after.find('}').ok_or_else(|| {
                    problem(format!("unterminated variable at {at}: expected '}}'"))
                })?;
                let (variable, suffix) = parse_variable(&after[..close], at)?;
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Variable(variable));
                literal.push_str(suffix);
                rest = &after[close + 1..];
                continue;
            }
            if c == '/' {
                levels.push(finish_level(&mut pieces, &mut literal, levels.len())?);
            } else {
                literal.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
        levels.push(finish_level(&mut pieces, &mut literal, levels.len())?);
        if levels[..levels.len() - 1].contains(&TemplateLevel::Hash) {
            return Err(problem("'#' must be the last level"));
        }
        if let Some(TemplateLevel::Text(pieces)) = levels.first()
            && let Some(Piece::Literal(first)) = pieces.first()
            && first.starts_with('$')
        {
            return Err(problem("topics starting with '$' are reserved"));
        }
        Ok(TopicTemplate { source: text.to_string(), levels })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The variables the template uses, in order.
    pub fn variables(&self) -> impl Iterator<Item = &Variable> {
        self.levels
            .iter()
            .flat_map(|level| match level {
                TemplateLevel::Text(pieces) => pieces.as_slice(),
                _ => &[],
            })
            .filter_map(|piece| match piece {
                Piece::Variable(variable) => Some(variable),
                Piece::Literal(_) => None,
            })
    }

    /// The template with the client's values in place of its variables, or `None` when it does
    /// not apply to this client (see the module docs).
    pub fn substitute(&self, client: &ClientView<'_>) -> Option<CompiledTemplate> {
        let mut levels = Vec::with_capacity(self.levels.len());
        for level in &self.levels {
            levels.push(match level {
                TemplateLevel::Plus => Level::Plus,
                TemplateLevel::Hash => Level::Hash,
                TemplateLevel::Text(pieces) => {
                    let mut text = String::new();
                    for piece in pieces {
                        match piece {
                            Piece::Literal(literal) => text.push_str(literal),
                            Piece::Variable(variable) => push_value(&mut text, variable, client)?,
                        }
                    }
                    Level::Literal(text.into())
                }
            });
        }
        if matches!(levels.first(), Some(Level::Literal(first)) if first.starts_with('$')) {
            return None;
        }
        Some(CompiledTemplate::from_levels(levels))
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for TopicTemplate {
    type Err = TemplateError;

    fn from_str(text: &str) -> Result<TopicTemplate, TemplateError> {
        TopicTemplate::parse(text)
    }
}

// === impl CompiledTemplate ===

impl CompiledTemplate {
    /// A template from a plain, valid MQTT topic filter (no variables). `None` for an invalid or
    /// shared filter.
    pub fn from_filter(filter: &str) -> Option<CompiledTemplate> {
        if !crate::mqtt::topic::valid_topic_filter(filter) || split_shared(filter) != Ok(None) {
            return None;
        }
        let levels = filter
            .split('/')
            .map(|level| match level {
                "+" => Level::Plus,
                "#" => Level::Hash,
                literal => Level::Literal(literal.into()),
            })
            .collect();
        Some(CompiledTemplate::from_levels(levels))
    }

    /// The substituted template as a topic filter.
    pub fn as_str(&self) -> &str {
        &self.filter
    }

    /// True when the template has no `+` or `#`: it then matches exactly one topic name, itself,
    /// and covers exactly one filter, itself.
    pub fn is_literal(&self) -> bool {
        self.levels.iter().all(|level| matches!(level, Level::Literal(_)))
    }

    /// The first level when it is literal; `None` when it is `+` or `#`.
    pub fn literal_first_level(&self) -> Option<&str> {
        match self.levels.first() {
            Some(Level::Literal(first)) => Some(first),
            _ => None,
        }
    }

    /// True when the template matches the topic name, with MQTT's rules (a `$` name is not
    /// matched by a leading wildcard).
    pub fn matches_topic(&self, topic: &str) -> bool {
        let mut names = topic.split('/');
        for (index, level) in self.levels.iter().enumerate() {
            let name = names.next();
            let reserved = index == 0 && topic.starts_with('$');
            match (level, name) {
                (Level::Hash, _) => return !reserved,
                (_, None) => return false,
                (Level::Plus, Some(_)) if reserved => return false,
                (Level::Plus, Some(_)) => {}
                (Level::Literal(literal), Some(name)) if **literal == *name => {}
                (Level::Literal(_), Some(_)) => return false,
            }
        }
        names.next().is_none()
    }

    /// True when every topic name the (plain, valid) filter can match is matched by the
    /// template. The algorithm and its reasoning are in the module docs.
    pub fn covers(&self, filter: &str) -> bool {
        let mut filters = filter.split('/');
        for (index, level) in self.levels.iter().enumerate() {
            let part = filters.next();
            let reserved = index == 0 && filter.starts_with('$');
            match (level, part) {
                (Level::Hash, _) => return !reserved,
                // Every name has a first level, so a leading `#` is the same as `+/#`.
                (Level::Plus, Some("#")) if index == 0 => {
                    return matches!(self.levels.get(1), Some(Level::Hash));
                }
                (_, None | Some("#")) => return false,
                (Level::Plus, Some(_)) if reserved => return false,
                (Level::Plus, Some(_)) => {}
                (Level::Literal(literal), Some(part)) if **literal == *part => {}
                (Level::Literal(_), Some(_)) => return false,
            }
        }
        filters.next().is_none()
    }

    fn from_levels(levels: Vec<Level>) -> CompiledTemplate {
        let filter = levels
            .iter()
            .map(|level| match level {
                Level::Literal(literal) => literal,
                Level::Plus => "+",
                Level::Hash => "#",
            })
            .collect::<Vec<_>>()
            .join("/");
        CompiledTemplate { filter: filter.into(), levels: levels.into() }
    }
}

impl fmt::Display for CompiledTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.filter)
    }
}

// === helpers ===

fn problem(text: impl Into<String>) -> TemplateError {
    TemplateError { problem: text.into() }
}

/// Parses the body of `${...}` (without the braces) into the variable and the `|literal` suffix.
fn parse_variable(body: &str, at: usize) -> Result<(Variable, &str), TemplateError> {
    let (name, suffix) = body.split_once('|').unwrap_or((body, ""));
    if body.contains('/') {
        return Err(problem(format!("variable at {at} spans more than one level")));
    }
    let variable = if name == "client.authenticationName" {
        Variable::AuthenticationName
    } else if let Some(key) = name.strip_prefix("client.attributes.")
        && !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Variable::Attribute(key.to_string())
    } else {
        return Err(problem(format!(
            "unknown variable ${{{name}}} at {at}: expected {VARIABLE_HELP}"
        )));
    };
    Ok((variable, suffix))
}

/// Closes the level being built, checking where `+`, `#` and U+0000 appear.
fn finish_level(
    pieces: &mut Vec<Piece>,
    literal: &mut String,
    index: usize,
) -> Result<TemplateLevel, TemplateError> {
    if !literal.is_empty() {
        pieces.push(Piece::Literal(std::mem::take(literal)));
    }
    let pieces = std::mem::take(pieces);
    let level = index + 1;
    match pieces.as_slice() {
        [Piece::Literal(text)] if text == "+" => return Ok(TemplateLevel::Plus),
        [Piece::Literal(text)] if text == "#" => return Ok(TemplateLevel::Hash),
        _ => {}
    }
    for piece in &pieces {
        if let Piece::Literal(text) = piece {
            if text.contains(['+', '#']) {
                return Err(problem(format!(
                    "level {level}: '+' and '#' must fill a whole level, without text or variables"
                )));
            }
            if text.contains('\0') {
                return Err(problem(format!("level {level}: U+0000 is not allowed")));
            }
        }
    }
    Ok(TemplateLevel::Text(pieces))
}

/// Appends the client's value of `variable`, or gives `None` when the template cannot apply.
fn push_value(text: &mut String, variable: &Variable, client: &ClientView<'_>) -> Option<()> {
    let start = text.len();
    match variable {
        Variable::AuthenticationName => text.push_str(client.authentication_name),
        Variable::Attribute(key) => match client.attributes.get(key)? {
            AttributeValue::String(value) => text.push_str(value),
            AttributeValue::Integer(value) => text.push_str(&value.to_string()),
            AttributeValue::StringArray(_) => return None,
        },
    }
    let value = &text[start..];
    let safe = !value.is_empty() && !value.contains(['/', '+', '#', '\0']);
    safe.then_some(())
}

#[cfg(test)]
mod tests;
