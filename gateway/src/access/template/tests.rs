use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::mqtt::topic::{matches, valid_topic_filter};

fn attributes() -> BTreeMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::String(v.into());
    BTreeMap::from([
        ("site".into(), s("berlin")),
        ("floor".into(), AttributeValue::Integer(-3)),
        ("tags".into(), AttributeValue::StringArray(vec!["a".into()])),
        ("slash".into(), s("a/b")),
        ("plus".into(), s("+")),
        ("hash".into(), s("#")),
        ("suffix_hash".into(), s("x/#")),
        ("nul".into(), s("a\0b")),
        ("empty".into(), s("")),
        ("dollar".into(), s("$SYS")),
    ])
}

fn substitute(template: &str, name: &str) -> Option<String> {
    let attributes = attributes();
    let client = ClientView { authentication_name: name, attributes: &attributes };
    let parsed = TopicTemplate::parse(template).unwrap_or_else(|e| panic!("{template:?}: {e}"));
    parsed.substitute(&client).map(|compiled| compiled.as_str().to_string())
}

#[test]
fn substitution() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("vehicles/${client.authenticationName}/#", "car1", Some("vehicles/car1/#")),
        ("vehicles/${client.authenticationName}/#", "Car1", Some("vehicles/Car1/#")),
        ("segment1/+/segment3/${client.authenticationName}", "c", Some("segment1/+/segment3/c")),
        ("sites/${client.attributes.site}/+", "c", Some("sites/berlin/+")),
        ("floors/${client.attributes.floor}", "c", Some("floors/-3")),
        ("${client.authenticationName}", "c", Some("c")),
        ("${client.authenticationName}/${client.attributes.site}", "c", Some("c/berlin")),
        // Part of a level, and the `|` form.
        (
            "machines/${client.authenticationName|.factory1}/temp",
            "machine1",
            Some("machines/machine1.factory1/temp"),
        ),
        ("machines/m-${client.authenticationName}.f1/temp", "x", Some("machines/m-x.f1/temp")),
        ("m/${client.authenticationName}-${client.attributes.site}", "x", Some("m/x-berlin")),
        ("m/pre${client.authenticationName|}", "x", Some("m/prex")),
        // Missing or array-valued attributes: the template does not apply.
        ("sites/${client.attributes.nope}/#", "c", None),
        ("sites/${client.attributes.Site}/#", "c", None),
        ("tags/${client.attributes.tags}", "c", None),
        // Values that would widen, escape a level, or reach a reserved topic.
        ("v/${client.attributes.slash}/x", "c", None),
        ("v/${client.attributes.plus}/x", "c", None),
        ("v/${client.attributes.hash}", "c", None),
        ("v/${client.attributes.suffix_hash}", "c", None),
        ("v/${client.attributes.nul}", "c", None),
        ("v/${client.attributes.empty}", "c", None),
        ("v/pre${client.attributes.empty}post", "c", None),
        ("${client.attributes.dollar}/#", "c", None),
        ("x/${client.attributes.dollar}/#", "c", Some("x/$SYS/#")),
        ("vehicles/${client.authenticationName}/#", "a/b", None),
        ("vehicles/${client.authenticationName}/#", "+", None),
        ("vehicles/${client.authenticationName}/#", "#", None),
        ("vehicles/${client.authenticationName}/#", "", None),
        ("${client.authenticationName}/#", "$share", None),
        // Plain templates come through unchanged.
        ("a//b/+/#", "c", Some("a//b/+/#")),
        ("/", "c", Some("/")),
    ];
    for &(template, name, want) in cases {
        assert_eq!(substitute(template, name).as_deref(), want, "{template:?} for {name:?}");
    }
}

#[test]
fn parse_errors() {
    let cases: &[(&str, &str)] = &[
        ("", "empty topic template"),
        ("a/${client.authenticationName", "unterminated variable at 2: expected '}'"),
        (
            "a/${client.name}",
            "unknown variable ${client.name} at 2: expected ${client.authenticationName} or ${client.attributes.<key>}",
        ),
        (
            "a/${client.attributes.}",
            "unknown variable ${client.attributes.} at 2: expected ${client.authenticationName} or ${client.attributes.<key>}",
        ),
        (
            "a/${client.attributes.a-b}",
            "unknown variable ${client.attributes.a-b} at 2: expected ${client.authenticationName} or ${client.attributes.<key>}",
        ),
        (
            "a/${client.authenticationname}",
            "unknown variable ${client.authenticationname} at 2: expected ${client.authenticationName} or ${client.attributes.<key>}",
        ),
        (
            "a/${}",
            "unknown variable ${} at 2: expected ${client.authenticationName} or ${client.attributes.<key>}",
        ),
        ("a/${client.authenticationName|/x}", "variable at 2 spans more than one level"),
        (
            "a/${client.authenticationName|+}",
            "level 2: '+' and '#' must fill a whole level, without text or variables",
        ),
        ("a/#/b", "'#' must be the last level"),
        ("a/b#", "level 2: '+' and '#' must fill a whole level, without text or variables"),
        (
            "a/+${client.authenticationName}",
            "level 2: '+' and '#' must fill a whole level, without text or variables",
        ),
        ("a/x+", "level 2: '+' and '#' must fill a whole level, without text or variables"),
        ("a/\0", "level 2: U+0000 is not allowed"),
        ("$SYS/#", "topics starting with '$' are reserved"),
        ("$share/g/a", "topics starting with '$' are reserved"),
    ];
    for &(template, want) in cases {
        match TopicTemplate::parse(template) {
            Ok(parsed) => panic!("{template:?} parsed: {parsed:?}"),
            Err(error) => assert_eq!(error.to_string(), want, "{template:?}"),
        }
    }
}

#[test]
fn variables_are_listed() {
    let parsed =
        TopicTemplate::parse("a/${client.authenticationName}/${client.attributes.x|y}/#").unwrap();
    let variables: Vec<_> = parsed.variables().cloned().collect();
    assert_eq!(variables, [Variable::AuthenticationName, Variable::Attribute("x".into())]);
    assert_eq!(parsed.to_string(), "a/${client.authenticationName}/${client.attributes.x|y}/#");
}

#[test]
fn matching_topics() {
    let cases: &[(&str, &str, bool)] = &[
        ("vehicles/car1/#", "vehicles/car1", true),
        ("vehicles/car1/#", "vehicles/car1/telemetry", true),
        ("vehicles/car1/#", "vehicles/car1/a/b/c", true),
        ("vehicles/car1/#", "vehicles/car2/telemetry", false),
        ("vehicles/car1/#", "vehicles/Car1/telemetry", false),
        ("vehicles/car1/#", "vehicles", false),
        ("a/+/c", "a/b/c", true),
        ("a/+/c", "a//c", true),
        ("a/+/c", "a/b/c/d", false),
        ("a/+/c", "a/b", false),
        ("+/x", "$SYS/x", false),
        ("#", "$SYS/x", false),
        ("#", "anything/at/all", true),
        ("a", "a", true),
        ("a", "a/", false),
        ("a/", "a/", true),
    ];
    for &(template, topic, want) in cases {
        let compiled = CompiledTemplate::from_filter(template).unwrap();
        assert_eq!(compiled.matches_topic(topic), want, "{template:?} vs {topic:?}");
        assert_eq!(matches(template, topic), want, "topic::matches({template:?}, {topic:?})");
    }
}

#[test]
fn coverage() {
    let cases: &[(&str, &str, bool)] = &[
        // The examples.
        ("vehicles/car1/#", "vehicles/car1/#", true),
        ("vehicles/car1/#", "vehicles/car1/+/x", true),
        ("vehicles/car1/#", "vehicles/car1", true),
        ("vehicles/car1/#", "vehicles/car1/+", true),
        ("vehicles/car1/#", "vehicles/+/telemetry", false),
        ("vehicles/car1/#", "vehicles/#", false),
        ("vehicles/car1/#", "#", false),
        ("vehicles/car1/#", "+/car1/#", false),
        ("vehicles/car1/#", "vehicles/+", false),
        ("vehicles/car1/#", "vehicles", false),
        ("a/+/c", "a/+/c", true),
        ("a/+/c", "a/b/c", true),
        ("a/+/c", "a/#", false),
        ("a/+/c", "a/+/+", false),
        ("a/+/c", "a/+/c/#", false),
        ("a/+/c", "a/+", false),
        ("a/#", "a/#", true),
        ("a/#", "a", true),
        ("a/#", "a/+", true),
        ("a/#", "a/+/#", true),
        ("a/#", "#", false),
        ("a/#", "+/#", false),
        ("a/+", "a/#", false),
        ("a", "a/#", false),
        ("a", "a", true),
        ("a", "a/", false),
        ("#", "#", true),
        ("#", "+/#", true),
        ("#", "a/+/b", true),
        ("#", "$SYS/#", false),
        ("+/#", "#", true),
        ("+/#", "+", true),
        ("+/+/#", "#", false),
        ("a/+/#", "a/#", false),
        ("+", "#", false),
        ("+/#", "$SYS/x", false),
        ("+/#", "+/x", true),
        ("+", "+", true),
        ("+", "", true),
        ("+", "a/b", false),
    ];
    for &(template, filter, want) in cases {
        let compiled = CompiledTemplate::from_filter(template).unwrap();
        assert_eq!(compiled.covers(filter), want, "{template:?} covers {filter:?}");
    }
}

// === brute force oracle ===

/// Level strings for filters and templates. `c` is left out so names can use it as "any other
/// string"; `$a` exercises the reserved-first-level rule.
const FILTER_LEVELS: &[&str] = &["a", "b", "", "$a", "+", "#"];
/// Level strings for names: every filter literal plus one that no filter names.
const NAME_LEVELS: &[&str] = &["a", "b", "", "$a", "c"];

/// Every string made of 1..=max_len levels drawn from `alphabet`.
fn enumerate(alphabet: &[&str], max_len: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut frontier = vec![String::new()];
    for len in 1..=max_len {
        let mut next = Vec::new();
        for prefix in &frontier {
            for level in alphabet {
                let s = if len == 1 { level.to_string() } else { format!("{prefix}/{level}") };
                next.push(s);
            }
        }
        all.extend(next.iter().cloned());
        frontier = next;
    }
    all
}

/// For each filter, the set of enumerated names it matches, as a bitset.
fn match_sets(filters: &[String], names: &[String]) -> Vec<Vec<u64>> {
    filters
        .iter()
        .map(|filter| {
            let mut bits = vec![0u64; names.len().div_ceil(64)];
            for (i, name) in names.iter().enumerate() {
                if matches(filter, name) {
                    bits[i / 64] |= 1 << (i % 64);
                }
            }
            bits
        })
        .collect()
}

fn subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

/// Exhaustive: every pair of filters of up to three levels, against every name of up to four
/// levels (one more than the longest filter, so `#` and length differences show). In this
/// universe `covers` must equal brute-force subset in both directions: `c` stands for every
/// string no filter names, and a name longer than four levels behaves like its four-level
/// prefix for filters this short.
#[test]
fn coverage_equals_brute_force_exhaustively() {
    let filters: Vec<String> =
        enumerate(FILTER_LEVELS, 3).into_iter().filter(|f| valid_topic_filter(f)).collect();
    let names = enumerate(NAME_LEVELS, 4);
    let sets = match_sets(&filters, &names);
    let mut checked = 0;
    for (t, template) in filters.iter().enumerate() {
        let compiled = CompiledTemplate::from_filter(template).unwrap();
        for (f, filter) in filters.iter().enumerate() {
            let want = subset(&sets[f], &sets[t]);
            assert_eq!(compiled.covers(filter), want, "template {template:?} filter {filter:?}");
            checked += 1;
        }
    }
    assert!(checked > 10_000, "only {checked} pairs");
}

/// Every name of up to five levels: one more than the longest generated filter.
static NAMES: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| enumerate(NAME_LEVELS, 5));

fn filter_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FILTER_LEVELS), 1..=4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("valid filter", |f| valid_topic_filter(f))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Four-level filters, against names of up to five levels: covered implies every matched
    /// name is matched by the template, and not covered implies a witness name exists.
    #[test]
    fn coverage_is_sound_and_complete(template in filter_strategy(), filter in filter_strategy()) {
        let compiled = CompiledTemplate::from_filter(&template).unwrap();
        let witness = NAMES.iter().find(|n| matches(&filter, n) && !matches(&template, n));
        prop_assert_eq!(compiled.covers(&filter), witness.is_none(),
            "template {:?} filter {:?} witness {:?}", template, filter, witness);
    }

    /// The compiled matcher agrees with the broker's `topic::matches`.
    #[test]
    fn matching_agrees_with_topic_matches(template in filter_strategy(),
            levels in prop::collection::vec(prop::sample::select(NAME_LEVELS), 1..=6)) {
        let name = levels.join("/");
        let compiled = CompiledTemplate::from_filter(&template).unwrap();
        prop_assert_eq!(compiled.matches_topic(&name), matches(&template, &name));
    }

    /// Whatever the attribute value, a substituted template only ever matches names that the
    /// template with that level pinned to one literal matches: values never widen.
    #[test]
    fn values_never_widen(value in "[a-c/+#$\u{0}]{0,4}") {
        let attributes = BTreeMap::from([("x".to_string(), AttributeValue::String(value.clone()))]);
        let client = ClientView { authentication_name: "n", attributes: &attributes };
        let template = TopicTemplate::parse("t/${client.attributes.x}/end").unwrap();
        match template.substitute(&client) {
            None => prop_assert!(value.is_empty() || value.contains(['/', '+', '#', '\0'])),
            Some(compiled) => {
                prop_assert!(compiled.is_literal());
                prop_assert_eq!(compiled.as_str(), format!("t/{value}/end"));
            }
        }
    }
}
