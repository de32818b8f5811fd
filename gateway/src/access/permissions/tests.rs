use proptest::prelude::*;

use super::*;

fn set(templates: &[&str]) -> TemplateSet {
    let mut set = TemplateSet::default();
    for template in templates {
        set.insert(CompiledTemplate::from_filter(template).unwrap());
    }
    set
}

fn permissions() -> Permissions {
    Permissions::new(
        "car1".into(),
        vec!["$all".into(), "fleet".into()],
        set(&["vehicles/car1/#", "status/car1"]),
        set(&["vehicles/car1/#", "alerts/+/car1", "news"]),
    )
}

#[test]
fn decisions_and_reasons() {
    let p = permissions();
    type Check = fn(&Permissions, &str) -> Result<(), Denied>;
    let publish: Check = Permissions::may_publish;
    let subscribe: Check = Permissions::may_subscribe;
    let cases: &[(Check, &str, Option<&str>)] = &[
        (publish, "vehicles/car1/x", None),
        (publish, "vehicles/car1", None),
        (publish, "status/car1", None),
        (
            publish,
            "vehicles/car2/x",
            Some(
                r#"not authorized: publish to "vehicles/car2/x": no Publisher permission of client "car1" (groups: $all, fleet) has a topic template matching it"#,
            ),
        ),
        (
            publish,
            "status/car1/x",
            Some(
                r#"not authorized: publish to "status/car1/x": no Publisher permission of client "car1" (groups: $all, fleet) has a topic template matching it"#,
            ),
        ),
        (
            publish,
            "$SYS/x",
            Some(r#"not authorized: publish to "$SYS/x": topics starting with '$' are reserved"#),
        ),
        (subscribe, "vehicles/car1/#", None),
        (subscribe, "alerts/+/car1", None),
        (subscribe, "alerts/x/car1", None),
        (subscribe, "news", None),
        (subscribe, "$share/g/vehicles/car1/+", None),
        (
            subscribe,
            "vehicles/+/telemetry",
            Some(
                r#"not authorized: subscribe to "vehicles/+/telemetry": no Subscriber permission of client "car1" (groups: $all, fleet) has a topic template covering it"#,
            ),
        ),
        (
            subscribe,
            "news/#",
            Some(
                r#"not authorized: subscribe to "news/#": no Subscriber permission of client "car1" (groups: $all, fleet) has a topic template covering it"#,
            ),
        ),
        (
            subscribe,
            "$share/g/vehicles/+/telemetry",
            Some(
                r#"not authorized: subscribe to "$share/g/vehicles/+/telemetry": no Subscriber permission of client "car1" (groups: $all, fleet) has a topic template covering its inner filter "vehicles/+/telemetry""#,
            ),
        ),
        (
            subscribe,
            "$share/g/$SYS/#",
            Some(
                r#"not authorized: subscribe to "$share/g/$SYS/#": topics starting with '$' are reserved"#,
            ),
        ),
        (
            subscribe,
            "$SYS/#",
            Some(r#"not authorized: subscribe to "$SYS/#": topics starting with '$' are reserved"#),
        ),
        (
            subscribe,
            "$share/g",
            Some(r#"not authorized: subscribe to "$share/g": malformed shared subscription"#),
        ),
    ];
    for &(check, topic, want) in cases {
        let got = check(&p, topic);
        match want {
            None => assert_eq!(got, Ok(()), "{topic:?}"),
            Some(reason) => {
                let denied = got.expect_err(topic);
                assert_eq!(denied.code, ReasonCode::NotAuthorized, "{topic:?}");
                assert_eq!(denied.reason, reason, "{topic:?}");
            }
        }
    }
    assert!(p.still_allows("vehicles/car1/+"));
    assert!(!p.still_allows("vehicles/#"));
    assert_eq!(p.templates(Permission::Publisher).filters(), ["status/car1", "vehicles/car1/#"]);
}

#[test]
fn disabled_and_groupless_clients() {
    let disabled = Permissions::disabled("car3".into());
    assert!(disabled.is_disabled());
    assert_eq!(
        disabled.may_publish("vehicles/car3/x").unwrap_err().reason,
        r#"not authorized: publish to "vehicles/car3/x": client "car3" is disabled"#
    );
    assert!(!disabled.still_allows("vehicles/car3/#"));
    let nobody =
        Permissions::new("x".into(), vec![], TemplateSet::default(), TemplateSet::default());
    assert_eq!(
        nobody.may_subscribe("a").unwrap_err().reason,
        r#"not authorized: subscribe to "a": no Subscriber permission of client "x" (groups: none) has a topic template covering it"#
    );
}

#[test]
fn duplicates_are_kept_once() {
    let s = set(&["a/#", "a/#", "b", "b", "+/x", "+/x"]);
    assert_eq!(s.len(), 3);
    assert_eq!(s.filters(), ["+/x", "a/#", "b"]);
    assert!(TemplateSet::default().is_empty());
}

const LEVELS: &[&str] = &["a", "b", "", "+", "#"];

fn filter() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LEVELS), 1..=4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("valid", |f| crate::mqtt::topic::valid_topic_filter(f))
}

proptest! {
    /// The indexed set answers exactly as a linear scan over its templates would.
    #[test]
    fn index_agrees_with_linear_scan(templates in prop::collection::vec(filter(), 0..8),
            probe in filter()) {
        let compiled: Vec<_> =
            templates.iter().map(|t| CompiledTemplate::from_filter(t).unwrap()).collect();
        let mut indexed = TemplateSet::default();
        for template in &compiled {
            indexed.insert(template.clone());
        }
        prop_assert_eq!(indexed.covers(&probe), compiled.iter().any(|t| t.covers(&probe)));
        let name = probe.replace(['+', '#'], "a");
        prop_assert_eq!(indexed.matches_topic(&name), compiled.iter().any(|t| t.matches_topic(&name)));
    }
}
