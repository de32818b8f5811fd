use std::collections::BTreeMap;

use super::*;
use crate::access::AccessControl;
use crate::access::model::Limits;
use crate::hooks::{AttributeValue, Authorizer};

const RESOURCES: &str = r##"
[clients.car1]
attributes = { fleet = "cars", site = "berlin" }
[clients.car2]
authenticationName = "Car-Two"
attributes = { fleet = "cars", site = "paris" }
[clients.parked]
state = "Disabled"
attributes = { fleet = "cars", site = "berlin" }
[clients.boss]
attributes = { role = "admin" }
[clients.nosite]
attributes = { fleet = "cars" }

[clientGroups.cars]
query = "attributes.fleet = 'cars'"
[clientGroups.admins]
query = "attributes.role = 'admin'"

[topicSpaces.vehicles]
topicTemplates = ["vehicles/${client.authenticationName}/#"]
[topicSpaces.sites]
topicTemplates = ["sites/${client.attributes.site}/+", "zones/z-${client.attributes.site}"]
[topicSpaces.announcements]
topicTemplates = ["announcements/#"]
[topicSpaces.admin]
topicTemplates = ["admin/#", "vehicles/#"]

[permissionBindings.cars-pub]
clientGroupName = "cars"
topicSpaceName = "vehicles"
permission = "Publisher"
[permissionBindings.cars-sub]
clientGroupName = "cars"
topicSpaceName = "vehicles"
permission = "Subscriber"
[permissionBindings.sites-pub]
clientGroupName = "$all"
topicSpaceName = "sites"
permission = "Publisher"
[permissionBindings.all-announce]
clientGroupName = "$all"
topicSpaceName = "announcements"
permission = "Subscriber"
[permissionBindings.admins-sub]
clientGroupName = "admins"
topicSpaceName = "admin"
permission = "Subscriber"
"##;

fn resources() -> Resources {
    Resources::from_toml(RESOURCES).expect("fixture")
}

fn identity(client_id: &str, authentication_name: &str) -> ClientIdentity {
    ClientIdentity {
        client_id: client_id.into(),
        authentication_name: authentication_name.into(),
        attributes: BTreeMap::new(),
    }
}

fn explained(who: &ClientIdentity, action: Action, topic: &str) -> Explanation {
    let resources = resources();
    let policy = AccessPolicy::new(&resources, &Limits::default()).expect("policy");
    explain(&policy, &resources, who, action, topic)
}

#[test]
fn the_explainer_agrees_with_the_authorizer() {
    let resources = resources();
    let authorizer = AccessControl::new(&resources, Limits::default()).expect("authorizer");
    let mut outsider = identity("o1", "outsider");
    outsider.attributes.insert("site".into(), AttributeValue::String("lyon".into()));
    let clients = [
        identity("c1", "car1"),
        identity("c1-other-case", "CAR1"),
        identity("c2", "car-two"),
        identity("p", "parked"),
        identity("b", "boss"),
        identity("n", "nosite"),
        identity("u", "unknown"),
        outsider,
    ];
    let topics = [
        "vehicles/car1/speed",
        "vehicles/Car-Two/speed",
        "vehicles/car1",
        "vehicles/car1/#",
        "vehicles/+/speed",
        "vehicles/#",
        "sites/berlin/door",
        "sites/berlin/door/left",
        "sites/paris/+",
        "sites/lyon/x",
        "zones/z-berlin",
        "zones/z-lyon",
        "announcements/today",
        "announcements/#",
        "admin/x",
        "$SYS/x",
        "$share/g/vehicles/car1/#",
        "$share/g/admin/#",
        "$share/g/$SYS/#",
        "elsewhere",
    ];
    let mut allowed = 0;
    let mut denied = 0;
    for client in &clients {
        for topic in topics {
            for action in [Action::Publish, Action::Subscribe] {
                let valid = match action {
                    Action::Publish => crate::mqtt::topic::valid_topic_name(topic),
                    Action::Subscribe => crate::mqtt::topic::valid_topic_filter(topic),
                };
                if !valid {
                    continue;
                }
                let real = match action {
                    Action::Publish => authorizer.authorize_publish(client, topic),
                    Action::Subscribe => authorizer.authorize_subscribe(client, topic),
                };
                let policy = authorizer.policy();
                let explanation = explain(&policy, &resources, client, action, topic);
                let case = format!("{client:?} {action:?} {topic}");
                assert_eq!(explanation.allowed, real.is_ok(), "{case}: {explanation:#?}");
                assert_eq!(
                    explanation.granted_by.is_empty(),
                    real.is_err(),
                    "{case}: the grants named must exist exactly when allowed: {explanation:#?}"
                );
                let granting =
                    explanation.bindings.iter().filter(|b| b.verdict == Verdict::Grants).count();
                assert_eq!(granting > 0, real.is_ok(), "{case}");
                match real {
                    Ok(()) => allowed += 1,
                    Err(refusal) => {
                        assert_eq!(explanation.reason, refusal.reason, "{case}");
                        denied += 1;
                    }
                }
            }
        }
    }
    // The cases exercise both answers, many times each.
    assert!(allowed >= 20 && denied >= 20, "allowed {allowed}, denied {denied}");
}

#[test]
fn an_allowed_publish_names_the_group_binding_space_and_template() {
    let explanation = explained(&identity("c1", "car1"), Action::Publish, "vehicles/car1/speed");
    assert!(explanation.allowed, "{explanation:#?}");
    assert!(explanation.registered);
    let grant = &explanation.granted_by[0];
    assert_eq!(grant.binding, "cars-pub");
    assert_eq!(grant.client_group, "cars");
    assert_eq!(grant.topic_space, "vehicles");
    assert_eq!(grant.template, "vehicles/${client.authenticationName}/#");
    assert_eq!(grant.substituted, "vehicles/car1/#");
    assert_eq!(
        explanation.reason,
        "allowed by binding \"cars-pub\": client group \"cars\", topic space \"vehicles\", \
         template \"vehicles/${client.authenticationName}/#\""
    );
    let groups: Vec<(&str, bool)> =
        explanation.groups.iter().map(|g| (g.name.as_str(), g.matched)).collect();
    assert_eq!(groups, [("$all", true), ("admins", false), ("cars", true)]);
}

#[test]
fn a_denied_publish_says_why_each_candidate_does_not_grant() {
    let explanation = explained(&identity("c1", "car1"), Action::Publish, "vehicles/car2/speed");
    assert!(!explanation.allowed);
    assert!(explanation.granted_by.is_empty());
    assert!(explanation.reason.starts_with("not authorized: publish to \"vehicles/car2/speed\""));
    let verdict = |name: &str| {
        let binding = explanation.bindings.iter().find(|b| b.binding == name).expect(name);
        (binding.verdict, binding.why.clone())
    };
    assert_eq!(
        verdict("cars-pub"),
        (
            Verdict::NoTemplateMatches,
            "no template of topic space \"vehicles\" matches \"vehicles/car2/speed\"".into()
        )
    );
    assert_eq!(verdict("cars-sub").0, Verdict::OtherPermission);
    assert_eq!(verdict("admins-sub").0, Verdict::OtherPermission);
    assert_eq!(verdict("sites-pub").0, Verdict::NoTemplateMatches);
    let sites = explanation.bindings.iter().find(|b| b.binding == "sites-pub").expect("sites");
    let substituted: Vec<Option<&str>> =
        sites.templates.iter().map(|t| t.substituted.as_deref()).collect();
    assert_eq!(substituted, [Some("sites/berlin/+"), Some("zones/z-berlin")]);
}

#[test]
fn a_group_the_client_is_not_in_is_named() {
    let explanation = explained(&identity("b", "boss"), Action::Subscribe, "vehicles/car1/#");
    assert!(explanation.allowed, "admins may subscribe to vehicles/#");
    let explanation = explained(&identity("c1", "car1"), Action::Subscribe, "admin/#");
    assert!(!explanation.allowed);
    let admins = explanation.bindings.iter().find(|b| b.binding == "admins-sub").expect("admins");
    assert_eq!(admins.verdict, Verdict::GroupNotMatched);
    assert_eq!(admins.why, "the client is not in client group \"admins\"");
}

#[test]
fn a_template_that_does_not_apply_to_the_client_is_shown_unsubstituted() {
    let explanation = explained(&identity("n", "nosite"), Action::Publish, "zones/z-");
    assert!(!explanation.allowed);
    let sites = explanation.bindings.iter().find(|b| b.binding == "sites-pub").expect("sites");
    assert!(sites.templates.iter().all(|t| t.substituted.is_none()), "{sites:#?}");
}

#[test]
fn registered_clients_are_judged_by_their_registered_name() {
    let explanation = explained(&identity("x", "car-two"), Action::Publish, "vehicles/Car-Two/a");
    assert!(explanation.allowed, "{explanation:#?}");
    assert_eq!(explanation.authentication_name, "Car-Two");
    let explanation = explained(&identity("x", "car-two"), Action::Publish, "vehicles/car-two/a");
    assert!(!explanation.allowed, "templates compare the name byte for byte");
}

#[test]
fn a_disabled_client_may_do_nothing_and_is_in_no_group() {
    let explanation = explained(&identity("p", "parked"), Action::Publish, "vehicles/parked/a");
    assert!(!explanation.allowed);
    assert!(explanation.disabled);
    assert!(explanation.groups.iter().all(|g| !g.matched));
    assert!(explanation.bindings.iter().all(|b| b.verdict == Verdict::NotGrantable));
    assert_eq!(
        explanation.reason,
        "not authorized: publish to \"vehicles/parked/a\": client \"parked\" is disabled"
    );
}

#[test]
fn reserved_topics_and_shared_filters() {
    let car1 = identity("c1", "car1");
    let explanation = explained(&car1, Action::Subscribe, "$share/g/vehicles/car1/#");
    assert!(explanation.allowed, "judged by its inner filter");
    assert_eq!(explanation.granted_by[0].binding, "cars-sub");
    let explanation = explained(&car1, Action::Subscribe, "$share/g/$SYS/#");
    assert!(!explanation.allowed);
    assert!(explanation.bindings.iter().all(|b| b.verdict == Verdict::NotGrantable));
    assert!(explanation.bindings[0].why.contains("reserved"), "{:?}", explanation.bindings[0]);
}
