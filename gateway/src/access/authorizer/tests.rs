use std::collections::BTreeMap;

use super::*;
use crate::hooks::DisconnectReason;
use crate::mqtt::ReasonCode;

const RESOURCES: &str = r##"
[clients.car1]
attributes = { fleet = "cars", site = "berlin", floor = 3 }
[clients.car2]
attributes = { fleet = "cars", site = "paris" }
[clients.car3]
state = "Disabled"
attributes = { fleet = "cars", site = "berlin" }
[clients.loner]
[clients.boss]
attributes = { role = "admin", site = "paris", floor = 1 }
[clients.tall]
attributes = { site = "berlin", floor = 9 }
[clients.plussy]
attributes = { fleet = "cars", site = "+" }
[clients.hashy]
attributes = { fleet = "cars", site = "#" }
[clients.slashy]
attributes = { fleet = "cars", site = "berlin/#" }
[clients.arrays]
attributes = { site = ["berlin", "paris"] }
[clients.plus-name]
authenticationName = "+"
attributes = { fleet = "cars" }
[clients.hash-name]
authenticationName = "#"
attributes = { fleet = "cars" }
[clients.slash-name]
authenticationName = "car1/#"
attributes = { fleet = "cars" }

[clientGroups.cars]
query = "attributes.fleet = 'cars'"
[clientGroups.admins]
query = "attributes.role = 'admin' or attributes.site = 'berlin' and attributes.floor > 5"

[topicSpaces.vehicles]
topicTemplates = ["vehicles/${client.authenticationName}/#"]
[topicSpaces.sites]
topicTemplates = ["sites/${client.attributes.site}/#", "zones/z-${client.attributes.site}"]
[topicSpaces.announcements]
topicTemplates = ["announcements/#"]
[topicSpaces.admin]
topicTemplates = ["admin/#"]

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
[permissionBindings.sites-sub]
clientGroupName = "$all"
topicSpaceName = "sites"
permission = "Subscriber"
[permissionBindings.all-announce]
clientGroupName = "$all"
topicSpaceName = "announcements"
permission = "Subscriber"
[permissionBindings.admins-pub]
clientGroupName = "admins"
topicSpaceName = "admin"
permission = "Publisher"
"##;

fn resources() -> Resources {
    Resources::from_toml(RESOURCES).unwrap()
}

fn identity(client_id: &str, name: &str, attributes: &[(&str, AttributeValue)]) -> ClientIdentity {
    ClientIdentity {
        client_id: client_id.into(),
        authentication_name: name.into(),
        attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    }
}

fn registered(name: &str) -> ClientIdentity {
    identity(name, name, &[])
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::String(value.into())
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Pub,
    Sub,
}
use Action::{Pub, Sub};

/// The adversarial table: each row a client, an action on a topic or filter, and whether it is
/// allowed. Every `false` row is a client trying to get where it does not belong.
#[test]
fn adversarial_table() {
    let jwt = identity("jwt-session", "jwt1", &[("fleet", s("cars")), ("site", s("oslo"))]);
    let jwt_hash = identity("jwt-hash", "jwt2", &[("site", s("#"))]);
    let jwt_dollar = identity("jwt-dollar", "$SYS", &[("fleet", s("cars"))]);
    let jwt_plus_site = identity("jwt-plus", "jwt3", &[("site", s("a+b"))]);
    let car1_upper = identity("car1-upper", "Car1", &[]);
    let car1 = registered("car1");
    let car2 = registered("car2");
    let car3 = registered("car3");
    let loner = registered("loner");
    let boss = registered("boss");
    let tall = registered("tall");
    let plussy = registered("plussy");
    let hashy = registered("hashy");
    let slashy = registered("slashy");
    let arrays = registered("arrays");
    let plus_name = identity("plus-name", "+", &[]);
    let hash_name = identity("hash-name", "#", &[]);
    let slash_name = identity("slash-name", "car1/#", &[]);

    let rows: &[(&ClientIdentity, Action, &str, bool)] = &[
        // The client's own subtree, as the template intends.
        (&car1, Pub, "vehicles/car1/telemetry", true),
        (&car1, Pub, "vehicles/car1", true),
        (&car1, Sub, "vehicles/car1/#", true),
        (&car1, Sub, "vehicles/car1", true),
        (&car1, Sub, "vehicles/car1/+/x", true),
        (&car1, Sub, "vehicles/car1/+", true),
        // Wildcard escapes from the per-client template.
        (&car1, Sub, "vehicles/+/telemetry", false),
        (&car1, Sub, "vehicles/#", false),
        (&car1, Sub, "vehicles/+", false),
        (&car1, Sub, "vehicles/+/#", false),
        (&car1, Sub, "#", false),
        (&car1, Sub, "+/#", false),
        (&car1, Sub, "+/car1/#", false),
        (&car1, Sub, "+/+/telemetry", false),
        (&car1, Pub, "vehicles/car2/telemetry", false),
        (&car1, Sub, "vehicles/car2/#", false),
        (&car1, Pub, "vehicles", false),
        (&car1, Pub, "vehicles/car1x/y", false),
        (&car1, Pub, "vehicles//car1", false),
        // Shared subscriptions are judged by their inner filter.
        (&car1, Sub, "$share/g/vehicles/car1/#", true),
        (&car1, Sub, "$share/g/vehicles/+/telemetry", false),
        (&car1, Sub, "$share/g/#", false),
        (&car1, Sub, "$share/g/vehicles/#", false),
        (&car1, Sub, "$share/g/$SYS/#", false),
        (&car1, Sub, "$share/car1/vehicles/car2/#", false),
        // `$`-topics are reserved.
        (&car1, Pub, "$SYS/broker/clients", false),
        (&car1, Pub, "$share/g/vehicles/car1/x", false),
        (&car1, Sub, "$SYS/#", false),
        (&jwt_dollar, Pub, "$SYS/x", false),
        (&jwt_dollar, Sub, "$SYS/#", false),
        (&jwt_dollar, Pub, "vehicles/$SYS/x", true),
        // Attribute values holding `/`, `+` or `#` never widen a template: it does not apply.
        (&car1, Pub, "sites/berlin/x", true),
        (&car1, Pub, "zones/z-berlin", true),
        (&car1, Sub, "sites/berlin/#", true),
        (&plussy, Sub, "sites/+/#", false),
        (&plussy, Sub, "sites/+", false),
        (&plussy, Pub, "sites/berlin/x", false),
        (&plussy, Pub, "zones/z-berlin", false),
        (&hashy, Sub, "sites/#", false),
        (&hashy, Pub, "sites/paris", false),
        (&hashy, Pub, "sites/paris/x", false),
        (&slashy, Sub, "sites/berlin/#", false),
        (&slashy, Pub, "sites/berlin/x", false),
        (&slashy, Sub, "zones/z-berlin/#", false),
        (&jwt_hash, Sub, "sites/#", false),
        (&jwt_hash, Pub, "sites/x", false),
        (&jwt_plus_site, Pub, "sites/a+b/x", false),
        (&jwt_plus_site, Sub, "sites/a+b/#", false),
        // Array-valued attributes do not substitute (they would be several values).
        (&arrays, Pub, "sites/berlin/x", false),
        (&arrays, Sub, "sites/+/#", false),
        // Authentication names holding wildcards or `/` do not substitute either.
        (&plus_name, Sub, "vehicles/+/#", false),
        (&plus_name, Pub, "vehicles/car1/x", false),
        (&hash_name, Sub, "vehicles/#", false),
        (&hash_name, Pub, "vehicles/car1/x", false),
        (&slash_name, Sub, "vehicles/car1/#", false),
        (&slash_name, Pub, "vehicles/car1/x", false),
        // Case: templates use the registered name byte for byte.
        (&car1, Pub, "vehicles/Car1/x", false),
        (&car1, Pub, "vehicles/CAR1/x", false),
        (&car1_upper, Pub, "vehicles/Car1/x", false),
        (&car1_upper, Sub, "vehicles/Car1/#", false),
        (&car1_upper, Pub, "vehicles/car1/x", true),
        (&car2, Pub, "vehicles/car1/x", false),
        // A disabled client gets nothing, even from `$all`.
        (&car3, Pub, "vehicles/car3/x", false),
        (&car3, Sub, "vehicles/car3/#", false),
        (&car3, Sub, "announcements/#", false),
        (&car3, Pub, "sites/berlin/x", false),
        // A client in no declared group gets only what `$all` has.
        (&loner, Pub, "vehicles/loner/x", false),
        (&loner, Sub, "vehicles/loner/#", false),
        (&loner, Sub, "announcements/#", true),
        (&loner, Sub, "announcements/+/x", true),
        (&loner, Pub, "announcements/x", false),
        (&loner, Sub, "sites/+/#", false),
        // `and` binds tighter than `or`: boss is an admin by role alone, tall by site and floor,
        // car1 is in berlin but too low.
        (&boss, Pub, "admin/x", true),
        (&tall, Pub, "admin/x", true),
        (&car1, Pub, "admin/x", false),
        (&car2, Pub, "admin/x", false),
        // Unregistered identities (token or webhook) are judged by their own attributes.
        (&jwt, Pub, "vehicles/jwt1/x", true),
        (&jwt, Sub, "sites/oslo/#", true),
        (&jwt, Sub, "vehicles/+/x", false),
        (&jwt, Pub, "vehicles/car1/x", false),
    ];

    let access = AccessControl::new(&resources(), Limits::default()).unwrap();
    // Twice: the first pass compiles, the second answers from the cache.
    for pass in 0..2 {
        for &(client, action, topic, allowed) in rows {
            let got = match action {
                Pub => access.authorize_publish(client, topic),
                Sub => access.authorize_subscribe(client, topic),
            };
            let name = &client.authentication_name;
            match got {
                Ok(()) => assert!(allowed, "pass {pass}: {name} {action:?} {topic:?} allowed"),
                Err(denied) => {
                    assert!(
                        !allowed,
                        "pass {pass}: {name} {action:?} {topic:?} denied: {}",
                        denied.reason
                    );
                    assert_eq!(denied.code, ReasonCode::NotAuthorized);
                    assert!(denied.reason.contains(&format!("{topic:?}")), "{}", denied.reason);
                }
            }
        }
    }
}

#[test]
fn compiled_permissions() {
    let policy = AccessPolicy::new(&resources(), &Limits::default()).unwrap();
    let car1 = policy.compile(&registered("car1"));
    let groups: Vec<&str> = car1.groups().iter().map(|g| &**g).collect();
    assert_eq!(groups, ["$all", "cars"]);
    assert_eq!(
        car1.templates(Permission::Publisher).filters(),
        ["sites/berlin/#", "vehicles/car1/#", "zones/z-berlin"]
    );
    assert_eq!(
        car1.templates(Permission::Subscriber).filters(),
        ["announcements/#", "sites/berlin/#", "vehicles/car1/#", "zones/z-berlin"]
    );
    // The registered name's case, whatever case the client connected with.
    assert_eq!(policy.compile(&identity("x", "CAR1", &[])).client(), "car1");
    assert!(policy.compile(&registered("car3")).is_disabled());
    let denied = policy.compile(&registered("car1")).may_publish("vehicles/car2/x").unwrap_err();
    assert_eq!(
        denied.reason,
        r#"not authorized: publish to "vehicles/car2/x": no Publisher permission of client "car1" (groups: $all, cars) has a topic template matching it"#
    );
}

#[test]
fn cache_is_per_identity_and_generation() {
    let access = AccessControl::new(&resources(), Limits::default()).unwrap();
    let car1 = registered("car1");
    let first = access.permissions(&car1);
    assert!(Arc::ptr_eq(&first, &access.permissions(&car1)), "second lookup compiled again");

    // Another identity presenting the same client id does not inherit car1's permissions.
    let intruder = identity("car1", "loner", &[]);
    assert!(access.authorize_publish(&intruder, "vehicles/car1/x").is_err());
    assert!(access.authorize_publish(&car1, "vehicles/car1/x").is_ok());
    // Nor does the same name with attributes that differ.
    let claimed = identity("jwt", "jwt9", &[("fleet", s("cars"))]);
    assert!(access.authorize_publish(&claimed, "vehicles/jwt9/x").is_ok());
    let stripped = identity("jwt", "jwt9", &[]);
    assert!(access.authorize_publish(&stripped, "vehicles/jwt9/x").is_err());

    // Connect and disconnect events drop the entry.
    let before = access.permissions(&car1);
    access.on_event(&LifecycleEvent::Disconnected {
        connection: 1,
        identity: car1.clone(),
        reason: DisconnectReason::ConnectionLost,
    });
    assert!(!Arc::ptr_eq(&before, &access.permissions(&car1)));
    let before = access.permissions(&car1);
    access.on_event(&LifecycleEvent::Connected {
        identity: car1.clone(),
        connection: 2,
        session_present: false,
        sequence: None,
    });
    assert!(!Arc::ptr_eq(&before, &access.permissions(&car1)));
}

#[test]
fn updates_take_effect_at_once() {
    let access = AccessControl::new(&resources(), Limits::default()).unwrap();
    let car1 = registered("car1");
    assert_eq!(access.generation(), 0);
    assert!(access.authorize_subscribe(&car1, "vehicles/car1/#").is_ok());
    let live = access.permissions(&car1);

    // Losing the binding: the cached permissions are replaced, and the broker can see which
    // live subscriptions to drop.
    let mut changed = resources();
    changed.permission_bindings.remove("cars-sub");
    assert_eq!(access.update(&changed), Ok(1));
    assert!(live.still_allows("vehicles/car1/#"), "old permissions are a snapshot");
    let now = access.permissions(&car1);
    assert!(!now.still_allows("vehicles/car1/#"));
    assert!(now.still_allows("announcements/#"));
    assert!(access.authorize_subscribe(&car1, "vehicles/car1/#").is_err());

    // Attribute changes move the client between groups.
    changed.clients.get_mut("car1").unwrap().attributes.remove("fleet");
    access.update(&changed).unwrap();
    assert!(access.authorize_publish(&car1, "vehicles/car1/x").is_err());

    // Disabling.
    changed.clients.get_mut("car2").unwrap().state = ClientState::Disabled;
    access.update(&changed).unwrap();
    assert!(access.permissions(&registered("car2")).is_disabled());

    // Invalid resources change nothing.
    let mut invalid = changed.clone();
    invalid.client_groups.get_mut("cars").unwrap().query = "attributes.fleet = ".into();
    let error = access.update(&invalid).unwrap_err();
    assert_eq!(
        error.to_string(),
        "clientGroups[cars].query: unexpected end of query at 19, expected a string or integer literal"
    );
    assert_eq!(access.generation(), 3);
    assert!(access.authorize_subscribe(&car1, "announcements/#").is_ok());
}

#[test]
fn limits_apply() {
    let limits = Limits { topic_spaces: 2, ..Limits::default() };
    let error = AccessControl::new(&resources(), limits).unwrap_err();
    assert_eq!(error.to_string(), "topicSpaces: 4 declared, at most 2 allowed");
    let empty = AccessControl::new(&Resources::default(), Limits::default()).unwrap();
    let anyone = identity("c", "c", &BTreeMap::new().into_iter().collect::<Vec<_>>());
    assert!(empty.authorize_publish(&anyone, "a").is_err());
    assert!(empty.authorize_subscribe(&anyone, "a").is_err());
}
