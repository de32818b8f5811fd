//! MQTT topics and filters as NATS subjects: a pure, injective codec.
//!
//! A topic becomes `<prefix>.<space>.<root>.<levels…>`:
//! - `space` says what the subject carries: [`Space::Qos0`] (`m0`), [`Space::Qos12`] (`m1`) or
//!   [`Space::Retained`] (`r`).
//! - `root` is `s` when the first level starts with `$` and `n` otherwise, so the `*` or `>` that a
//!   leading `+` or `#` becomes never reaches `$SYS/…` (MQTT-4.7.2-1).
//! - Each MQTT level is one NATS token. Bytes NATS gives a meaning to or refuses in a token (`.`,
//!   `*`, `>`, whitespace, control characters, U+FFFD) and `%` itself become `%XX`, the uppercase
//!   hex of each UTF-8 byte; an empty level becomes a lone `%`. A plain topic is copied as it is.
//!
//! Invariants:
//! - `topic_subject` is injective and `subject_topic` is its exact inverse: a subject that
//!   `topic_subject` cannot have produced (lowercase hex, a needless escape, the wrong root) is
//!   refused rather than read as some other topic.
//! - The NATS subjects of `filter_subjects(filter)` match exactly the subjects of the topics that
//!   `mqtt::topic::matches(filter, topic)` accepts (proptested against the broker's matcher).
//! - Nothing here does I/O or keeps state.

use thiserror::Error;

/// The longest subject the cluster publishes or subscribes to. nats-server's `max_control_line`
/// bounds the whole `PUB`/`SUB` line; 2 KB leaves room in it for a reply subject and the length
/// fields, and is far beyond any topic a real deployment uses. The broker answers a topic that
/// maps to a longer subject with 0x90 on PUBLISH and 0x8F in a SUBACK.
pub const MAX_SUBJECT_LEN: usize = 2048;

/// What a subject carries; its token is the second part of every subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// QoS 0 messages, on core NATS only.
    Qos0,
    /// QoS 1 and 2 messages, captured by the message log stream.
    Qos12,
    /// Retained messages.
    Retained,
}

/// Why a topic, filter or subject has no counterpart.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubjectError {
    /// The subject would be longer than [`MAX_SUBJECT_LEN`].
    #[error("the subject would be {len} bytes long, over the limit of {MAX_SUBJECT_LEN}")]
    TooLong { len: usize },
    /// The prefix is not a literal NATS subject of plain tokens.
    #[error("subject prefix {0:?} is not a literal NATS subject of plain tokens")]
    InvalidPrefix(String),
    /// The filter is not a valid plain MQTT topic filter.
    #[error("topic filter {0:?} is not a valid plain MQTT filter")]
    InvalidFilter(String),
    /// The subject does not start with `<prefix>.`.
    #[error("subject {subject:?} is not under the prefix {prefix:?}")]
    ForeignSubject { prefix: String, subject: String },
    /// The subject is under the prefix but is not one `topic_subject` produces.
    #[error("subject {subject:?} is not a topic's subject: {reason}")]
    Malformed { subject: String, reason: &'static str },
}

impl Space {
    /// The subject token of this space.
    pub fn token(self) -> &'static str {
        match self {
            Space::Qos0 => "m0",
            Space::Qos12 => "m1",
            Space::Retained => "r",
        }
    }

    fn from_token(token: &str) -> Option<Space> {
        [Space::Qos0, Space::Qos12, Space::Retained].into_iter().find(|s| s.token() == token)
    }
}

/// The subject a message on `topic` is published to in `space`.
pub fn topic_subject(prefix: &str, space: Space, topic: &str) -> Result<String, SubjectError> {
    check_prefix(prefix)?;
    // Escaping only grows a level, so the unescaped length is a lower bound: a topic that is too
    // long is refused before anything is copied.
    let at_least = prefix.len() + space.token().len() + 4 + topic.len();
    if at_least > MAX_SUBJECT_LEN {
        return Err(SubjectError::TooLong { len: at_least });
    }
    let mut subject = head(prefix, space, root(topic), topic.len());
    for level in topic.split('/') {
        subject.push('.');
        push_level(&mut subject, level);
    }
    check_len(subject)
}

/// The space and topic of a subject that [`topic_subject`] produced under `prefix`.
pub fn subject_topic(prefix: &str, subject: &str) -> Result<(Space, String), SubjectError> {
    check_prefix(prefix)?;
    let foreign =
        || SubjectError::ForeignSubject { prefix: prefix.to_owned(), subject: subject.to_owned() };
    let malformed = |reason| SubjectError::Malformed { subject: subject.to_owned(), reason };
    let rest =
        subject.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('.')).ok_or_else(foreign)?;
    let mut tokens = rest.split('.');
    let space = tokens
        .next()
        .and_then(Space::from_token)
        .ok_or_else(|| malformed("no known space token after the prefix"))?;
    let root_token = tokens.next().ok_or_else(|| malformed("no root token"))?;
    let mut topic = String::with_capacity(rest.len());
    let mut levels = 0;
    for token in tokens {
        if levels > 0 {
            topic.push('/');
        }
        let level =
            unescape(token).ok_or_else(|| malformed("a level is not canonically escaped"))?;
        topic.push_str(&level);
        levels += 1;
    }
    if levels == 0 {
        return Err(malformed("no topic levels"));
    }
    if root_token != root(&topic) {
        return Err(malformed("the root token does not match the first level"));
    }
    Ok((space, topic))
}

/// The subjects whose union matches exactly the topics `filter` matches in `space`.
///
/// `filter` is a plain filter: a `$share/{group}/` prefix is the caller's to strip. A `#` that is
/// the whole filter gives one subject; `x/#` gives two, `x` and `x.>`, because NATS's `>` needs at
/// least one token and MQTT's `#` also matches the parent level.
pub fn filter_subjects(
    prefix: &str,
    space: Space,
    filter: &str,
) -> Result<Vec<String>, SubjectError> {
    check_prefix(prefix)?;
    if !crate::mqtt::topic::valid_plain_filter(filter) {
        return Err(SubjectError::InvalidFilter(filter.to_owned()));
    }
    let (base, multi) = match filter.strip_suffix("#") {
        Some("") => (None, true),
        Some(base) => (Some(base.strip_suffix('/').unwrap_or(base)), true),
        None => (Some(filter), false),
    };
    // A filter starting with a wildcard stays under `n`: it must not match `$` topics.
    let mut subject = head(prefix, space, root(filter), filter.len());
    let Some(base) = base else {
        subject.push_str(".>");
        return Ok(vec![check_len(subject)?]);
    };
    for level in base.split('/') {
        subject.push('.');
        if level == "+" {
            subject.push('*');
        } else {
            push_level(&mut subject, level);
        }
    }
    if multi {
        let all = format!("{subject}.>");
        Ok(vec![check_len(subject)?, check_len(all)?])
    } else {
        Ok(vec![check_len(subject)?])
    }
}

/// `<prefix>.<space>.<root>`, with room for `more` bytes of levels.
fn head(prefix: &str, space: Space, root: &str, more: usize) -> String {
    let mut subject = String::with_capacity(prefix.len() + 8 + more);
    subject.push_str(prefix);
    subject.push('.');
    subject.push_str(space.token());
    subject.push('.');
    subject.push_str(root);
    subject
}

/// `s` for a topic or filter whose first level starts with `$`, else `n`.
fn root(topic: &str) -> &'static str {
    if topic.starts_with('$') { "s" } else { "n" }
}

fn check_len(subject: String) -> Result<String, SubjectError> {
    if subject.len() > MAX_SUBJECT_LEN {
        Err(SubjectError::TooLong { len: subject.len() })
    } else {
        Ok(subject)
    }
}

/// A prefix is one or more dot-separated tokens of printable ASCII, none of them a wildcard and
/// none holding `%` (which would make the prefix look like an escaped level).
fn check_prefix(prefix: &str) -> Result<(), SubjectError> {
    let token_ok = |token: &str| {
        !token.is_empty()
            && token != "*"
            && token != ">"
            && token.bytes().all(|b| b.is_ascii_graphic() && b != b'%')
    };
    if prefix.split('.').all(token_ok) {
        Ok(())
    } else {
        Err(SubjectError::InvalidPrefix(prefix.to_owned()))
    }
}

/// Whether `c` must be escaped in a token: NATS splits on `.`, reads `*` and `>` as wildcards,
/// refuses whitespace, NUL and U+FFFD (its marker for invalid UTF-8); `%` is the escape itself;
/// other control characters and Unicode whitespace are escaped so that a subject is always
/// printable on one line.
fn needs_escape(c: char) -> bool {
    matches!(c, '%' | '.' | '*' | '>' | '\u{FFFD}') || c.is_whitespace() || c.is_control()
}

/// Appends `level` as one token.
fn push_level(subject: &mut String, level: &str) {
    if level.is_empty() {
        subject.push('%');
        return;
    }
    if !level.chars().any(needs_escape) {
        subject.push_str(level);
        return;
    }
    let mut utf8 = [0u8; 4];
    for c in level.chars() {
        if needs_escape(c) {
            for byte in c.encode_utf8(&mut utf8).bytes() {
                subject.push('%');
                subject.push(HEX[usize::from(byte >> 4)]);
                subject.push(HEX[usize::from(byte & 0xF)]);
            }
        } else {
            subject.push(c);
        }
    }
}

const HEX: [char; 16] =
    ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'C', 'D', 'E', 'F'];

/// The level a token encodes, or `None` when `push_level` would not have written `token`.
fn unescape(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    if token.is_empty() {
        return None;
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_digit(*bytes.get(i + 1)?)?;
            let lo = hex_digit(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let level = String::from_utf8(out).ok()?;
    // Only the canonical spelling is accepted, which keeps the codec a bijection onto its image.
    let mut again = String::with_capacity(token.len());
    push_level(&mut again, &level);
    (again == token).then_some(level)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
