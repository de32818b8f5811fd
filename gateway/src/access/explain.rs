//! The authorization explainer: whether a client may publish to a topic or subscribe to a
//! filter, and why, in Event Grid's terms (the groups the client is in, the binding, the topic
//! space and the template that grants, or why each candidate binding does not).
//!
//! # One implementation
//! The verdict is the authorizer's own: [`explain`] compiles the client's [`Permissions`] with
//! [`AccessPolicy::compile`] and asks them, exactly as the broker does for a PUBLISH or a
//! SUBSCRIBE, and the denial reason is the one the client would get. The account of why walks
//! the resources with the same parts the policy is compiled from ([`AccessPolicy::subject`] for
//! who the client is judged as, [`Query::matches`], [`TopicTemplate::substitute`],
//! [`Permissions`]: crate::access::Permissions
//! [`CompiledTemplate::matches_topic`] and [`CompiledTemplate::covers`]), so it cannot tell
//! another story; the tests check that the granting templates it names exist exactly when the
//! authorizer allows.
//!
//! [`Permissions`]: crate::access::Permissions
//! [`CompiledTemplate::matches_topic`]: crate::access::template::CompiledTemplate::matches_topic
//! [`CompiledTemplate::covers`]: crate::access::template::CompiledTemplate::covers

use serde::{Deserialize, Serialize};

use crate::access::ClientView;
use crate::access::authorizer::{AccessPolicy, Subject};
use crate::access::model::{ALL_GROUP, Permission, Resources};
use crate::access::query::Query;
use crate::access::template::TopicTemplate;
use crate::hooks::ClientIdentity;
use crate::mqtt::topic::split_shared;

/// What the client wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// PUBLISH to a topic name.
    Publish,
    /// SUBSCRIBE to a topic filter (possibly `$share/{group}/{filter}`).
    Subscribe,
}

/// The explainer's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The authorizer's verdict.
    pub allowed: bool,
    pub action: Action,
    /// The topic or filter as asked.
    pub topic: String,
    /// The authentication name the client is judged by (its registered one when registered).
    pub authentication_name: String,
    /// Whether the client is registered in the namespace (its registered attributes apply).
    pub registered: bool,
    /// Whether the client is disabled (it may then do nothing).
    pub disabled: bool,
    /// One sentence: what grants, or the authorizer's denial reason.
    pub reason: String,
    /// Every declared client group and `$all`, with whether the client is in it.
    pub groups: Vec<GroupMatch>,
    /// Every permission binding, with its verdict for this request.
    pub bindings: Vec<BindingVerdict>,
    /// The bindings and templates that grant; empty exactly when not allowed.
    pub granted_by: Vec<Grant>,
}

/// Whether the client is in one group.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMatch {
    pub name: String,
    /// The group's query; `None` for `$all`, which every client is in.
    pub query: Option<String>,
    pub matched: bool,
}

/// What one permission binding does for this request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingVerdict {
    pub binding: String,
    pub client_group: String,
    pub topic_space: String,
    pub permission: Permission,
    pub verdict: Verdict,
    /// Why, in one sentence.
    pub why: String,
    /// The topic space's templates as they apply to this client.
    pub templates: Vec<TemplateMatch>,
}

/// A binding's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// The binding grants the request.
    Grants,
    /// It grants the other permission (Subscriber for a publish, or the reverse).
    OtherPermission,
    /// The client is not in the binding's group.
    GroupNotMatched,
    /// No template of the topic space matches the topic (or covers the filter).
    NoTemplateMatches,
    /// The request can be granted by nothing: the client is disabled, or the topic is
    /// reserved (`$...`) or a malformed shared filter.
    NotGrantable,
}

/// One topic template, substituted for the client.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMatch {
    pub template: String,
    /// The template with the client's values in place; `None` when it does not apply to the
    /// client (a variable it names has no usable value for it).
    pub substituted: Option<String>,
    /// Whether it matches the topic (publish) or covers the filter (subscribe).
    pub matches: bool,
}

/// A binding and template that grant the request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub binding: String,
    pub client_group: String,
    pub topic_space: String,
    pub template: String,
    pub substituted: String,
}

/// Explains whether `identity` may do `action` on `topic` under `policy`, which must be
/// compiled from `resources` (the same snapshot).
pub fn explain(
    policy: &AccessPolicy,
    resources: &Resources,
    identity: &ClientIdentity,
    action: Action,
    topic: &str,
) -> Explanation {
    let permissions = policy.compile(identity);
    let verdict = match action {
        Action::Publish => permissions.may_publish(topic),
        Action::Subscribe => permissions.may_subscribe(topic),
    };
    let subject = policy.subject(identity);
    let (authentication_name, registered, view) = match subject {
        Subject::Disabled { client } => (client.to_string(), true, None),
        Subject::Enabled { client, registered, view } => {
            (client.to_string(), registered, Some(view))
        }
    };
    let groups = group_matches(resources, view.as_ref());
    // What the templates are matched against, or why nothing can grant.
    let target = match (view.is_some(), action) {
        (false, _) => Err(format!("client {authentication_name:?} is disabled")),
        (true, Action::Publish) => reserved(topic).map(|()| topic),
        (true, Action::Subscribe) => match split_shared(topic) {
            Ok(Some((_, inner))) => reserved(inner).map(|()| inner),
            Ok(None) => reserved(topic).map(|()| topic),
            Err(()) => Err("the shared subscription filter is malformed".to_string()),
        },
    };
    let wanted = match action {
        Action::Publish => Permission::Publisher,
        Action::Subscribe => Permission::Subscriber,
    };
    let mut bindings = Vec::new();
    let mut granted_by = Vec::new();
    for (name, binding) in &resources.permission_bindings {
        let group = &binding.client_group_name;
        let in_group = groups.iter().any(|g| g.matched && g.name == *group);
        let templates: Vec<TemplateMatch> = resources
            .topic_spaces
            .get(&binding.topic_space_name)
            .map(|space| space.topic_templates.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|text| template_match(text, view.as_ref(), target.as_deref().ok(), action))
            .collect();
        let matching: Vec<&TemplateMatch> = templates.iter().filter(|t| t.matches).collect();
        let space = &binding.topic_space_name;
        let (verdict, why) = if let Err(why) = &target {
            (Verdict::NotGrantable, why.clone())
        } else if binding.permission != wanted {
            let why = format!("grants {:?}, not {wanted:?}", binding.permission);
            (Verdict::OtherPermission, why)
        } else if !in_group {
            let why = format!("the client is not in client group {group:?}");
            (Verdict::GroupNotMatched, why)
        } else if matching.is_empty() {
            let verb = if action == Action::Publish { "matches" } else { "covers" };
            let why = format!("no template of topic space {space:?} {verb} {topic:?}");
            (Verdict::NoTemplateMatches, why)
        } else {
            for template in &matching {
                granted_by.push(Grant {
                    binding: name.clone(),
                    client_group: group.clone(),
                    topic_space: space.clone(),
                    template: template.template.clone(),
                    substituted: template.substituted.clone().unwrap_or_default(),
                });
            }
            let why = format!(
                "client group {group:?} holds {wanted:?} on topic space {space:?}, whose \
                 template {:?} {} {topic:?}",
                matching[0].template,
                if action == Action::Publish { "matches" } else { "covers" },
            );
            (Verdict::Grants, why)
        };
        bindings.push(BindingVerdict {
            binding: name.clone(),
            client_group: group.clone(),
            topic_space: space.clone(),
            permission: binding.permission,
            verdict,
            why,
            templates,
        });
    }
    let reason = match &verdict {
        Ok(()) => granted_by
            .first()
            .map(|g| {
                format!(
                    "allowed by binding {:?}: client group {:?}, topic space {:?}, template {:?}",
                    g.binding, g.client_group, g.topic_space, g.template
                )
            })
            .unwrap_or_else(|| "allowed".into()),
        Err(denied) => denied.reason.clone(),
    };
    Explanation {
        allowed: verdict.is_ok(),
        action,
        topic: topic.to_string(),
        authentication_name,
        registered,
        disabled: permissions.is_disabled(),
        reason,
        groups,
        bindings,
        granted_by,
    }
}

/// `$all` and every declared group, with whether the client (judged as `view`) is in it; a
/// disabled client (`None`) is in none.
fn group_matches(resources: &Resources, view: Option<&ClientView<'_>>) -> Vec<GroupMatch> {
    let mut groups =
        vec![GroupMatch { name: ALL_GROUP.to_string(), query: None, matched: view.is_some() }];
    for (name, group) in &resources.client_groups {
        // The resources are validated, so the query parses; one that did not would match no one.
        let matched = view
            .is_some_and(|view| Query::parse(&group.query).is_ok_and(|query| query.matches(view)));
        groups.push(GroupMatch { name: name.clone(), query: Some(group.query.clone()), matched });
    }
    groups
}

/// One template substituted for the client and matched against `target`, when there is one.
fn template_match(
    text: &str,
    view: Option<&ClientView<'_>>,
    target: Option<&str>,
    action: Action,
) -> TemplateMatch {
    let compiled = view.and_then(|view| {
        TopicTemplate::parse(text).ok().and_then(|template| template.substitute(view))
    });
    let matches = match (&compiled, target) {
        (Some(compiled), Some(target)) => match action {
            Action::Publish => compiled.matches_topic(target),
            Action::Subscribe => compiled.covers(target),
        },
        _ => false,
    };
    TemplateMatch {
        template: text.to_string(),
        substituted: compiled.map(|c| c.as_str().to_string()),
        matches,
    }
}

/// `Err` with the reason for a topic or filter no template can grant (see
/// [`crate::access::Permissions::may_publish`]).
fn reserved(topic: &str) -> Result<(), String> {
    match topic.starts_with('$') {
        true => Err("topics starting with '$' are reserved".into()),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests;
