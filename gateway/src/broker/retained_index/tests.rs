use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::mqtt::topic;

/// An index whose value for each topic is the topic itself, so reports can be cross-checked.
fn index_of(topics: &[&str]) -> RetainedIndex<String> {
    let mut index = RetainedIndex::new();
    for topic in topics {
        index.insert(topic, topic.to_string());
    }
    index
}

/// The topics `for_each_matching` reports for `filter`, sorted but not deduplicated.
fn matching(index: &RetainedIndex<String>, filter: &str) -> Vec<String> {
    let mut found = Vec::new();
    index.for_each_matching(filter, |topic, value| {
        assert_eq!(topic, value, "value reported with the wrong topic");
        found.push(topic.to_string());
    });
    found.sort();
    found
}

/// Checks the structural invariants: stored names equal their paths, only the root may be
/// empty, and `len` counts the values.
fn check_invariants<V>(index: &RetainedIndex<V>) {
    let mut count = 0;
    let mut stack = vec![(&index.root, String::new(), true)];
    while let Some((node, path, is_root)) = stack.pop() {
        if let Some((topic, _)) = &node.value {
            assert_eq!(&**topic, path.as_str());
            count += 1;
        }
        assert!(is_root || node.value.is_some() || !node.children.is_empty(), "empty at {path:?}");
        for (level, child) in &node.children {
            let path = if is_root { level.to_string() } else { format!("{path}/{level}") };
            stack.push((child, path, false));
        }
    }
    assert_eq!(count, index.len());
}

#[test]
fn matches_the_spec_examples() {
    let index = index_of(&[
        "sport",
        "sport/",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
        "sport/tennis/player2",
        "/finance",
        "finance",
        "$SYS",
        "$SYS/monitor/Clients",
        "a//b",
        "a/$b",
    ]);
    let all_public = [
        "/finance",
        "a/$b",
        "a//b",
        "finance",
        "sport",
        "sport/",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
        "sport/tennis/player2",
    ];
    let cases: &[(&str, &[&str])] = &[
        (
            "sport/tennis/player1/#",
            &[
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon",
            ],
        ),
        ("sport/tennis/+", &["sport/tennis/player1", "sport/tennis/player2"]),
        ("sport/+", &["sport/"]),
        ("+/+", &["/finance", "a/$b", "sport/"]),
        ("/+", &["/finance"]),
        ("+", &["finance", "sport"]),
        ("#", &all_public),
        ("$SYS/#", &["$SYS", "$SYS/monitor/Clients"]),
        ("+/monitor/Clients", &[]),
        ("$SYS/monitor/+", &["$SYS/monitor/Clients"]),
        ("a/+/b", &["a//b"]),
        ("a//b", &["a//b"]),
        ("a/#", &["a/$b", "a//b"]),
        ("nothing/#", &[]),
        ("sport/tennis/player1", &["sport/tennis/player1"]),
    ];
    for &(filter, want) in cases {
        assert_eq!(matching(&index, filter), want, "for_each_matching({filter:?})");
    }
}

#[test]
fn insert_replace_remove() {
    let mut index: RetainedIndex<u32> = RetainedIndex::new();
    assert!(index.is_empty());
    assert_eq!(index.insert("a/b", 1), None);
    assert_eq!(index.insert("a/b", 2), Some(1));
    assert_eq!(index.insert("a", 3), None);
    assert_eq!(index.len(), 2);
    assert_eq!(index.get("a/b"), Some(&2));
    assert_eq!(index.get("a/c"), None);
    assert_eq!(index.remove("a/c"), None);
    assert_eq!(index.remove("a"), Some(3));
    assert_eq!(index.remove("a"), None);
    check_invariants(&index);
    assert_eq!(index.remove("a/b"), Some(2));
    assert!(index.is_empty());
    assert!(index.root.children.is_empty(), "everything pruned");
}

#[test]
fn retain_drops_and_prunes() {
    let mut index = index_of(&["a", "a/b", "a/b/c", "a/x", "b", "$SYS/x"]);
    index.retain(|topic, _| topic == "a/x" || topic == "b");
    check_invariants(&index);
    assert_eq!(matching(&index, "#"), ["a/x", "b"]);
    assert_eq!(index.get("$SYS/x"), None);
    index.retain(|_, _| false);
    assert!(index.is_empty());
    assert!(index.root.children.is_empty());
}

/// The longest legal names have tens of thousands of levels; nothing may recurse over them.
#[test]
fn deep_topics_do_not_overflow_the_stack() {
    let deep = "/".repeat(topic::MAX_TOPIC_LEN);
    let deep_a = format!("{}a", "a/".repeat(topic::MAX_TOPIC_LEN / 2));
    let mut index = index_of(&[&deep, &deep_a]);
    assert_eq!(matching(&index, "#"), [deep.as_str(), deep_a.as_str()]);
    assert_eq!(matching(&index, &deep_a), [deep_a.as_str()]);
    assert_eq!(matching(&index, &deep_a.replace('a', "+")), [deep_a.as_str()]);
    index.retain(|topic, _| topic != deep);
    check_invariants(&index);
    assert_eq!(index.remove(&deep_a).as_deref(), Some(deep_a.as_str()));
    assert!(index.root.children.is_empty());
    index.insert(&deep, String::new());
    drop(index);
}

fn level() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["a", "b", "$x", ""][..])
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("empty name", |name| !name.is_empty())
}

fn filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![4 => level(), 1 => Just("+")];
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
    fn agrees_with_topic_matches(
        names in prop::collection::vec(name(), 0..24),
        filters in prop::collection::vec(filter(), 1..8),
    ) {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let index = index_of(&refs);
        let distinct: BTreeSet<&str> = refs.iter().copied().collect();
        prop_assert_eq!(index.len(), distinct.len());
        for filter in &filters {
            let want: Vec<String> = distinct
                .iter()
                .filter(|n| topic::matches(filter, n))
                .map(|n| n.to_string())
                .collect();
            prop_assert_eq!(matching(&index, filter), want, "filter {:?}", filter);
        }
    }

    #[test]
    fn remove_and_retain_prune_and_keep_len(
        names in prop::collection::vec(name(), 0..24),
        keys in prop::collection::vec(any::<u64>(), 24),
        filters in prop::collection::vec(filter(), 1..4),
    ) {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut index = index_of(&refs);
        let mut present: BTreeSet<&str> = refs.iter().copied().collect();
        // Drop a random half with `retain`, then remove the rest one by one in a random order.
        let mut keyed: Vec<(u64, &str)> = keys.iter().copied().zip(present.iter().copied()).collect();
        let dropped: BTreeSet<&str> = keyed.iter().filter(|(k, _)| k % 2 == 0).map(|&(_, n)| n).collect();
        index.retain(|topic, value| {
            assert_eq!(topic, value);
            !dropped.contains(topic)
        });
        present.retain(|n| !dropped.contains(n));
        keyed.retain(|(_, n)| present.contains(n));
        keyed.sort_unstable();
        prop_assert_eq!(index.len(), present.len());
        check_invariants(&index);
        for (_, name) in keyed {
            for filter in &filters {
                let want: Vec<String> = present
                    .iter()
                    .filter(|n| topic::matches(filter, n))
                    .map(|n| n.to_string())
                    .collect();
                prop_assert_eq!(matching(&index, filter), want);
            }
            let removed = index.remove(name);
            prop_assert_eq!(removed.as_deref(), Some(name));
            prop_assert_eq!(index.remove(name), None);
            present.remove(name);
            prop_assert_eq!(index.len(), present.len());
            check_invariants(&index);
        }
        prop_assert!(index.is_empty());
        prop_assert!(index.root.children.is_empty());
    }
}
