//! What one client may do, compiled: the client's substituted topic templates, split into
//! publish and subscribe sets and indexed for per-message checks.
//!
//! # Compiled form
//! A [`TemplateSet`] keeps templates without wildcards in a hash set (a literal template matches
//! one topic and covers one filter: itself), templates whose first level is literal in a map
//! keyed by that level, and templates starting with `+` or `#` in a short list. A check hashes
//! the topic (or filter) once, hashes its first level once, and walks only the templates that
//! can apply. Nothing is parsed or substituted here.
//!
//! # Decisions
//! - Topics starting with `$` are reserved: publishing to one is denied, and so is subscribing
//!   to a filter starting with `$`, except `$share/{group}/{filter}`, which is judged by its
//!   inner filter (so a shared subscription can reach no more than a plain one).
//! - A disabled client may do nothing.
//! - Denials carry reason code 0x87 and a reason string naming the operation, the topic or
//!   filter, the client, its groups and the permission it lacks.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::access::model::Permission;
use crate::access::template::CompiledTemplate;
use crate::hooks::Denied;
use crate::mqtt::ReasonCode;
use crate::mqtt::topic::split_shared;

/// One client's compiled permissions.
#[derive(Debug, Clone, Default)]
pub struct Permissions {
    /// The authentication name the templates were substituted with.
    client: Arc<str>,
    /// The groups the client belongs to, `$all` first.
    groups: Vec<Arc<str>>,
    disabled: bool,
    publish: TemplateSet,
    subscribe: TemplateSet,
}

/// A set of compiled templates indexed for matching (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct TemplateSet {
    literal: HashSet<Box<str>>,
    by_first_level: HashMap<Box<str>, Vec<CompiledTemplate>>,
    wildcard_first: Vec<CompiledTemplate>,
}

// === impl Permissions ===

impl Permissions {
    /// Permissions of an enabled client in `groups` holding these templates.
    pub fn new(
        client: Arc<str>,
        groups: Vec<Arc<str>>,
        publish: TemplateSet,
        subscribe: TemplateSet,
    ) -> Permissions {
        Permissions { client, groups, disabled: false, publish, subscribe }
    }

    /// The permissions of a disabled client: nothing.
    pub fn disabled(client: Arc<str>) -> Permissions {
        Permissions { client, disabled: true, ..Permissions::default() }
    }

    /// The authentication name these permissions were compiled for.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// The groups the client belongs to, `$all` first.
    pub fn groups(&self) -> &[Arc<str>] {
        &self.groups
    }

    /// True for a disabled client, which the broker disconnects.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// The templates granted under `permission`.
    pub fn templates(&self, permission: Permission) -> &TemplateSet {
        match permission {
            Permission::Publisher => &self.publish,
            Permission::Subscriber => &self.subscribe,
        }
    }

    /// Whether the client may PUBLISH to `topic` (a valid topic name).
    pub fn may_publish(&self, topic: &str) -> Result<(), Denied> {
        let deny = |why: fmt::Arguments<'_>| denied(format_args!("publish to {topic:?}: {why}"));
        if self.disabled {
            return Err(deny(format_args!("client {:?} is disabled", self.client)));
        }
        if topic.starts_with('$') {
            return Err(deny(format_args!("topics starting with '$' are reserved")));
        }
        if self.publish.matches_topic(topic) {
            return Ok(());
        }
        Err(deny(format_args!(
            "no Publisher permission of client {:?} (groups: {}) has a topic template matching it",
            self.client,
            GroupList(&self.groups),
        )))
    }

    /// Whether the client may SUBSCRIBE to `filter` (a valid filter, possibly shared).
    pub fn may_subscribe(&self, filter: &str) -> Result<(), Denied> {
        let deny = |why: fmt::Arguments<'_>| denied(format_args!("subscribe to {filter:?}: {why}"));
        if self.disabled {
            return Err(deny(format_args!("client {:?} is disabled", self.client)));
        }
        let (inner, shared) = match split_shared(filter) {
            Ok(Some((_, inner))) => (inner, true),
            Ok(None) => (filter, false),
            Err(()) => return Err(deny(format_args!("malformed shared subscription"))),
        };
        if inner.starts_with('$') {
            return Err(deny(format_args!("topics starting with '$' are reserved")));
        }
        if self.subscribe.covers(inner) {
            return Ok(());
        }
        let what = if shared { format!("its inner filter {inner:?}") } else { "it".into() };
        Err(deny(format_args!(
            "no Subscriber permission of client {:?} (groups: {}) has a topic template covering \
             {what}",
            self.client,
            GroupList(&self.groups),
        )))
    }

    /// Whether a live subscription to `filter` is still allowed, for re-checking subscriptions
    /// after resources change.
    pub fn still_allows(&self, filter: &str) -> bool {
        self.may_subscribe(filter).is_ok()
    }
}

fn denied(what: fmt::Arguments<'_>) -> Denied {
    Denied { code: ReasonCode::NotAuthorized, reason: format!("not authorized: {what}") }
}

/// Formats group names as `$all, fleet`, or `none`.
struct GroupList<'a>(&'a [Arc<str>]);

impl fmt::Display for GroupList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (index, group) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            f.write_str(group)?;
        }
        Ok(())
    }
}

// === impl TemplateSet ===

impl TemplateSet {
    /// Adds a template; adding one already present changes nothing.
    pub fn insert(&mut self, template: CompiledTemplate) {
        if template.is_literal() {
            self.literal.insert(template.as_str().into());
            return;
        }
        let list = match template.literal_first_level() {
            Some(first) => self.by_first_level.entry(first.into()).or_default(),
            None => &mut self.wildcard_first,
        };
        if !list.contains(&template) {
            list.push(template);
        }
    }

    /// The number of templates.
    pub fn len(&self) -> usize {
        self.literal.len()
            + self.by_first_level.values().map(Vec::len).sum::<usize>()
            + self.wildcard_first.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The templates as topic filters, sorted.
    pub fn filters(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.literal.iter().map(|t| &**t).collect();
        all.extend(self.by_first_level.values().flatten().map(CompiledTemplate::as_str));
        all.extend(self.wildcard_first.iter().map(CompiledTemplate::as_str));
        all.sort_unstable();
        all
    }

    /// True when some template matches the topic name.
    pub fn matches_topic(&self, topic: &str) -> bool {
        self.literal.contains(topic)
            || self.candidates(topic).any(|template| template.matches_topic(topic))
    }

    /// True when some template covers the (plain) filter.
    pub fn covers(&self, filter: &str) -> bool {
        self.literal.contains(filter)
            || self.candidates(filter).any(|template| template.covers(filter))
    }

    /// The wildcard templates that can apply to a topic or filter: those whose literal first
    /// level equals its first level, and those starting with a wildcard.
    fn candidates<'a>(&'a self, topic: &str) -> impl Iterator<Item = &'a CompiledTemplate> {
        let first = topic.split('/').next().unwrap_or_default();
        let same_first = self.by_first_level.get(first).map(Vec::as_slice).unwrap_or_default();
        same_first.iter().chain(&self.wildcard_first)
    }
}

#[cfg(test)]
mod tests;
