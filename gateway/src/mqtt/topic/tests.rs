use proptest::prelude::*;

use super::*;

#[test]
fn topic_names() {
    let long = "a".repeat(MAX_TOPIC_LEN);
    let too_long = "a".repeat(MAX_TOPIC_LEN + 1);
    let cases: &[(&str, bool)] = &[
        ("sport/tennis/player1", true),
        ("sport", true),
        ("/", true),
        ("/finance", true),
        ("a//b", true),
        ("$SYS/monitor/Clients", true),
        ("$share/g/a", true),
        ("Accounts payable", true),
        ("ünïcödé/ツ", true),
        ("", false),
        ("sport/+", false),
        ("sport/#", false),
        ("+", false),
        ("#", false),
        ("sport+", false),
        ("a\0b", false),
        (&long, true),
        (&too_long, false),
    ];
    for &(name, want) in cases {
        assert_eq!(valid_topic_name(name), want, "valid_topic_name({name:?})");
    }
}

#[test]
fn topic_filters() {
    let long = "a".repeat(MAX_TOPIC_LEN);
    let too_long = "a".repeat(MAX_TOPIC_LEN + 1);
    let long_shared = format!("$share/g/{}", "a".repeat(MAX_TOPIC_LEN - 9));
    let too_long_shared = format!("$share/g/{}", "a".repeat(MAX_TOPIC_LEN - 8));
    let cases: &[(&str, bool)] = &[
        // Section 4.7.1.2 and 4.7.1.3.
        ("sport/tennis/player1/#", true),
        ("sport/#", true),
        ("#", true),
        ("sport/tennis#", false),
        ("sport/tennis/#/ranking", false),
        ("+", true),
        ("+/tennis/#", true),
        ("sport+", false),
        ("sport/+/player1", true),
        ("+/+", true),
        ("/+", true),
        ("$SYS/#", true),
        ("+/monitor/Clients", true),
        // Empty levels are levels.
        ("/", true),
        ("//", true),
        ("a//b", true),
        ("a/+/", true),
        ("a/#/", false),
        ("", false),
        // Wildcards must be whole levels.
        ("##", false),
        ("++", false),
        ("a/b+", false),
        ("a/+b/c", false),
        ("#/a", false),
        ("a\0", false),
        (&long, true),
        (&too_long, false),
        // Shared subscriptions (section 4.8.2).
        ("$share/g/a/b", true),
        ("$share/g/#", true),
        ("$share/g/+", true),
        ("$share/g//", true),
        ("$share/g/$share/h/x", true),
        ("$share/g", false),
        ("$share/", false),
        ("$share//a", false),
        ("$share/g/", false),
        ("$share/g+/a", false),
        ("$share/g#/a", false),
        ("$share/+/a", false),
        ("$share/g/a#", false),
        ("$share/g/#/a", false),
        (&long_shared, true),
        (&too_long_shared, false),
        // Only the exact `$share/` prefix makes a filter shared.
        ("$share", true),
        ("$shared/g", true),
        ("$SHARE/g", true),
    ];
    for &(filter, want) in cases {
        assert_eq!(valid_topic_filter(filter), want, "valid_topic_filter({filter:?})");
    }
}

#[test]
fn shared_filters() {
    type Split = Result<Option<(&'static str, &'static str)>, ()>;
    let cases: &[(&str, Split)] = &[
        ("a/b", Ok(None)),
        ("#", Ok(None)),
        ("$share", Ok(None)),
        ("$SHARE/g/a", Ok(None)),
        ("$shared/g/a", Ok(None)),
        ("$share/g/a/b", Ok(Some(("g", "a/b")))),
        ("$share/consumers/sport/#", Ok(Some(("consumers", "sport/#")))),
        ("$share/g/+", Ok(Some(("g", "+")))),
        ("$share/g//", Ok(Some(("g", "/")))),
        ("$share/g/$share/h/x", Ok(Some(("g", "$share/h/x")))),
        ("$share/$g/a", Ok(Some(("$g", "a")))),
        ("$share/g", Err(())),
        ("$share/", Err(())),
        ("$share//a", Err(())),
        ("$share/g/", Err(())),
        ("$share/g+/a", Err(())),
        ("$share/#/a", Err(())),
        ("$share/g/a+", Err(())),
        ("$share/g/#/a", Err(())),
        ("$share/g\0/a", Err(())),
    ];
    for &(filter, want) in cases {
        assert_eq!(split_shared(filter), want, "split_shared({filter:?})");
    }
}

#[test]
fn matching() {
    let cases: &[(&str, &str, bool)] = &[
        // Section 4.7.1.2: the multi-level wildcard.
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true),
        ("sport/tennis/player1/#", "sport/tennis/player2", false),
        ("sport/tennis/player1/#", "sport/tennis", false),
        ("sport/#", "sport", true),
        ("sport/#", "sport/", true),
        ("sport/#", "sports", false),
        ("#", "sport/tennis", true),
        ("#", "/", true),
        // Section 4.7.1.3: the single-level wildcard.
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+", "finance", true),
        ("+/tennis/#", "sport/tennis", true),
        ("+/tennis/#", "sport/tennis/player1", true),
        ("sport/+/player1", "sport/tennis/player1", true),
        ("sport/+/player1", "sport//player1", true),
        ("+/#", "/", true),
        // Section 4.7.2: topics beginning with `$`.
        ("#", "$SYS", false),
        ("#", "$SYS/monitor/Clients", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("+", "$", false),
        ("+/#", "$SYS", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("a/+", "a/$b", true),
        ("a/#", "a/$b/c", true),
        // Empty levels and exact comparison.
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
        ("a/+/b", "a//b", true),
        ("a/b", "a/b/", false),
        ("a/b/", "a/b", false),
        ("/", "/", true),
        ("ACCOUNTS", "Accounts", false),
        ("Accounts payable", "Accounts payable", true),
        ("sport/tennis", "sport/tennis", true),
        ("sport/tennis", "sport/tennisX", false),
        // Plain matching: a shared filter is not split here.
        ("$share/g/a", "a", false),
        ("$share/g/a", "$share/g/a", true),
    ];
    for &(filter, name, want) in cases {
        assert_eq!(matches(filter, name), want, "matches({filter:?}, {name:?})");
    }
}

/// Levels over a small alphabet so that random names and filters collide often.
fn name_level() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["a", "b", "$x", ""][..])
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(name_level(), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("empty name", |name| !name.is_empty())
}

fn filter() -> impl Strategy<Value = String> {
    let level = prop::sample::select(&["a", "b", "$x", "", "+"][..]);
    (prop::collection::vec(level, 0..5), any::<bool>()).prop_filter_map(
        "empty filter",
        |(mut levels, hash)| {
            if hash {
                levels.push("#");
            }
            Some(levels.join("/")).filter(|filter| !filter.is_empty())
        },
    )
}

proptest! {
    #[test]
    fn generated_names_and_filters_are_valid(name in name(), filter in filter()) {
        prop_assert!(valid_topic_name(&name));
        prop_assert!(valid_topic_filter(&filter));
        let shared = format!("$share/g/{filter}");
        prop_assert_eq!(split_shared(&shared), Ok(Some(("g", filter.as_str()))));
    }

    #[test]
    fn a_name_matches_itself_as_a_filter(name in name()) {
        prop_assert!(matches(&name, &name));
    }

    #[test]
    fn hash_matches_every_name_not_starting_with_dollar(name in name()) {
        prop_assert_eq!(matches("#", &name), !name.starts_with('$'));
    }

    #[test]
    fn replacing_a_level_by_plus_keeps_a_match(name in name(), at in any::<prop::sample::Index>()) {
        let mut levels: Vec<&str> = name.split('/').collect();
        let i = at.index(levels.len());
        levels[i] = "+";
        let filter = levels.join("/");
        prop_assert_eq!(matches(&filter, &name), i > 0 || !name.starts_with('$'));
    }
}
