//! Topic names and topic filters: validation, shared-subscription parsing and matching.
//!
//! (Placeholder signatures; the implementation lands with the topic work.)

/// A topic name a PUBLISH may carry: not empty, no `+` or `#`, no U+0000.
pub fn valid_topic_name(name: &str) -> bool {
    let _ = name;
    unimplemented!("topic")
}

/// A topic filter a SUBSCRIBE may carry: not empty; `#` only as the whole last level; `+` only
/// as a whole level; no U+0000. `$share/...` filters are valid when `split_shared` accepts them.
pub fn valid_topic_filter(filter: &str) -> bool {
    let _ = filter;
    unimplemented!("topic")
}

/// Splits `$share/{group}/{filter}` into the group and the inner filter. `Ok(None)` for a filter
/// that is not shared; `Err(())` for a malformed shared filter (empty group, group holding `+`,
/// `#` or `/`..., missing or invalid inner filter).
#[allow(clippy::result_unit_err)]
pub fn split_shared(filter: &str) -> Result<Option<(&str, &str)>, ()> {
    let _ = filter;
    unimplemented!("topic")
}

/// True when `filter` matches `name`. A filter starting with a wildcard does not match a topic
/// name starting with `$`.
pub fn matches(filter: &str, name: &str) -> bool {
    let _ = (filter, name);
    unimplemented!("topic")
}
