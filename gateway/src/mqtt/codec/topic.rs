//! The topic name and topic filter rules the decoder enforces (section 4.7 of both
//! specifications, and 4.8.2 of MQTT 5 for shared subscriptions).
//!
//! These checks are deliberately local to the codec: the broker's topic module owns matching,
//! while the codec only needs a yes or no to reject a packet before it reaches the broker.

use crate::mqtt::DecodeError;

/// The prefix that marks a shared subscription's filter.
const SHARE_PREFIX: &str = "$share/";

/// A topic name in PUBLISH or a will: no wildcard characters. Emptiness is checked by the
/// caller, because MQTT 5 allows an empty name when a topic alias stands in for it.
pub(super) fn check_name(name: &str) -> Result<(), DecodeError> {
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(DecodeError::InvalidTopicName(name.to_owned()));
    }
    Ok(())
}

/// A topic filter in SUBSCRIBE or UNSUBSCRIBE.
pub(super) fn check_filter(filter: &str) -> Result<(), DecodeError> {
    if valid_filter(filter) {
        Ok(())
    } else {
        Err(DecodeError::InvalidTopicFilter(filter.to_owned()))
    }
}

/// True for `$share/{group}/{filter}`, whose group must not be empty or hold wildcards, and
/// whose inner filter must itself be valid.
pub(super) fn is_shared(filter: &str) -> bool {
    filter.starts_with(SHARE_PREFIX)
}

fn valid_filter(filter: &str) -> bool {
    let Some(shared) = filter.strip_prefix(SHARE_PREFIX) else {
        return valid_plain_filter(filter);
    };
    let Some((group, inner)) = shared.split_once('/') else {
        return false;
    };
    !group.is_empty() && !group.contains(['+', '#']) && valid_plain_filter(inner)
}

/// Not empty; `#` only as the whole last level; `+` only as a whole level.
fn valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}
