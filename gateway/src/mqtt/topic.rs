//! Topic names and topic filters: validation, shared-subscription parsing and matching
//! (MQTT 5.0 sections 4.7 and 4.8.2; MQTT 3.1.1 section 4.7 has the same rules).
//!
//! A topic is a sequence of levels separated by `/`. Levels may be empty: `/finance` has the two
//! levels `""` and `finance`, and `a//b` has three. A filter level that is exactly `+` matches any
//! one level, including an empty one; a last level that is exactly `#` matches any number of
//! levels, including none, so `sport/#` also matches `sport`. Matching is byte-wise and
//! case-sensitive.
//!
//! Invariants:
//! - A filter whose first level is a wildcard never matches a name starting with `$`, so `#`
//!   does not see `$SYS/...`; a filter that names `$SYS` literally does.
//! - `matches` takes plain filters. A shared filter (`$share/{group}/{filter}`) is split with
//!   `split_shared` first, because `$share/g/a` is also a legal topic *name* and must not be
//!   guessed at.
//! - Nothing here allocates: everything walks the input with `split('/')`.

/// The longest topic name or filter: MQTT strings carry a 16-bit length prefix.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// The prefix that marks a shared subscription's filter.
const SHARE_PREFIX: &str = "$share/";

/// A topic name a PUBLISH may carry: not empty, no `+` or `#`, no U+0000.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_LEN
        && !name.bytes().any(|b| matches!(b, b'+' | b'#' | b'\0'))
}

/// A topic filter a SUBSCRIBE may carry: not empty; `#` only as the whole last level; `+` only
/// as a whole level; no U+0000. `$share/...` filters are valid when `split_shared` accepts them.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.len() > MAX_TOPIC_LEN {
        return false;
    }
    match split_shared(filter) {
        Ok(Some(_)) => true,
        Ok(None) => valid_plain_filter(filter),
        Err(()) => false,
    }
}

/// Splits `$share/{group}/{filter}` into the group and the inner filter. `Ok(None)` for a filter
/// that is not shared; `Err(())` for a malformed shared filter (empty group, group holding `+`,
/// `#` or `/`..., missing or invalid inner filter).
#[allow(clippy::result_unit_err)]
pub fn split_shared(filter: &str) -> Result<Option<(&str, &str)>, ()> {
    let Some(shared) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    // The group runs up to the next `/`, which the spec requires: `$share/group` alone names no
    // filter to share.
    let (group, inner) = shared.split_once('/').ok_or(())?;
    let group_ok = !group.is_empty() && !group.bytes().any(|b| matches!(b, b'+' | b'#' | b'\0'));
    // The inner filter is checked as a plain filter: `$share/g/$share/h/x` shares the ordinary
    // filter `$share/h/x`, it does not nest.
    if group_ok && valid_plain_filter(inner) { Ok(Some((group, inner))) } else { Err(()) }
}

/// True when `filter` matches `name`. A filter starting with a wildcard does not match a topic
/// name starting with `$`.
///
/// Both are taken to be valid (see `valid_topic_filter`, `valid_topic_name`) and `filter` to be
/// plain; for an invalid filter the answer is unspecified but never a panic.
pub fn matches(filter: &str, name: &str) -> bool {
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    if name.starts_with('$') && matches!(filter.split('/').next(), Some("+" | "#")) {
        return false;
    }
    loop {
        match (filter_levels.next(), name_levels.next()) {
            // `#` takes whatever is left, and nothing at all is fine too (`a/#` matches `a`).
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A non-shared filter: every level is `+`, `#` (last only) or free of both, and no U+0000.
pub fn valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let ok = match level {
            "+" => true,
            "#" => levels.peek().is_none(),
            _ => !level.bytes().any(|b| matches!(b, b'+' | b'#' | b'\0')),
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
