use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::mqtt::topic;

/// A tree whose value for each filter is the filter itself, so reports can be cross-checked.
fn tree_of(filters: &[&str]) -> TopicTree<String> {
    let mut tree = TopicTree::new();
    for filter in filters {
        *tree.entry(filter) = filter.to_string();
    }
    tree
}

/// The filters `for_each_match` reports for `topic`, sorted but not deduplicated.
fn matched(tree: &TopicTree<String>, topic: &str) -> Vec<String> {
    let mut found = Vec::new();
    tree.for_each_match(topic, |filter, value| {
        assert_eq!(filter, value, "value reported with the wrong filter");
        found.push(filter.to_string());
    });
    found.sort();
    found
}

/// Checks the structural invariants: stored strings equal their paths, only the root may be
/// empty, and `len` counts the values.
fn check_invariants<V>(tree: &TopicTree<V>) {
    let mut count = 0;
    let mut stack = vec![(&tree.root, String::new(), true)];
    while let Some((node, path, is_root)) = stack.pop() {
        if let Some((filter, _)) = &node.value {
            assert_eq!(&**filter, path.as_str());
            count += 1;
        }
        assert!(is_root || node.value.is_some() || node.edges() > 0, "empty node at {path:?}");
        let join =
            |level: &str| if is_root { level.to_string() } else { format!("{path}/{level}") };
        for (level, child) in &node.children {
            stack.push((child, join(level), false));
        }
        if let Some(plus) = node.plus.as_deref() {
            stack.push((plus, join("+"), false));
        }
        if let Some(hash) = node.hash.as_deref() {
            stack.push((hash, join("#"), false));
        }
    }
    assert_eq!(count, tree.len());
}

#[test]
fn matches_the_spec_examples() {
    let tree = tree_of(&[
        "sport/tennis/player1/#",
        "sport/tennis/+",
        "sport/#",
        "sport/+",
        "+/+",
        "/+",
        "+",
        "#",
        "$SYS/#",
        "$SYS/monitor/+",
        "+/monitor/Clients",
        "a//b",
        "a/+/b",
        "sport/tennis/player1",
    ]);
    let cases: &[(&str, &[&str])] = &[
        (
            "sport/tennis/player1",
            &["#", "sport/#", "sport/tennis/+", "sport/tennis/player1", "sport/tennis/player1/#"],
        ),
        ("sport/tennis/player1/ranking", &["#", "sport/#", "sport/tennis/player1/#"]),
        ("sport", &["#", "+", "sport/#"]),
        ("sport/", &["#", "+/+", "sport/#", "sport/+"]),
        ("/finance", &["#", "+/+", "/+"]),
        ("finance", &["#", "+"]),
        ("$SYS", &["$SYS/#"]),
        ("$SYS/monitor/Clients", &["$SYS/#", "$SYS/monitor/+"]),
        ("$SYS/monitor", &["$SYS/#"]),
        ("x/monitor/Clients", &["#", "+/monitor/Clients"]),
        ("a//b", &["#", "a/+/b", "a//b"]),
        ("a/x/b", &["#", "a/+/b"]),
        ("$other", &[]),
        ("/", &["#", "+/+", "/+"]),
    ];
    for &(name, want) in cases {
        assert_eq!(matched(&tree, name), want, "for_each_match({name:?})");
    }
}

#[test]
fn entry_get_and_remove() {
    let mut tree: TopicTree<u32> = TopicTree::new();
    assert!(tree.is_empty());
    *tree.entry("a/+/c") += 1;
    *tree.entry("a/+/c") += 1;
    *tree.entry("a/#") += 5;
    assert_eq!(tree.len(), 2);
    assert_eq!(tree.get("a/+/c"), Some(&2));
    assert_eq!(tree.get("a/+"), None);
    assert_eq!(tree.get("a/b/c"), None);
    if let Some(value) = tree.get_mut("a/#") {
        *value = 7;
    }
    assert_eq!(tree.get("a/#"), Some(&7));

    assert_eq!(tree.remove_if("a/+/c", |v| *v > 2), None, "pred said no");
    assert_eq!(tree.len(), 2);
    assert_eq!(tree.remove_if("a/+/x", |_| true), None, "absent");
    assert_eq!(tree.remove_if("a/+", |_| true), None, "inner node without a value");
    assert_eq!(tree.remove_if("a/+/c", |_| true), Some(2));
    check_invariants(&tree);
    assert_eq!(tree.remove_if("a/#", |_| true), Some(7));
    assert!(tree.is_empty());
    assert_eq!(tree.root.edges(), 0, "everything pruned");
}

#[test]
fn removing_a_parent_keeps_its_children() {
    let mut tree = tree_of(&["a", "a/b/c", "a/b"]);
    assert_eq!(tree.remove_if("a/b", |_| true).as_deref(), Some("a/b"));
    assert_eq!(matched(&tree, "a/b/c"), ["a/b/c"]);
    assert_eq!(tree.remove_if("a/b/c", |_| true).as_deref(), Some("a/b/c"));
    check_invariants(&tree);
    assert_eq!(tree.root.children.get("a").map(Node::edges), Some(0), "a keeps its value only");
}

/// A walk with more than `INLINE_PENDING` `+` branches waiting spills to the heap and must
/// still report every match once.
#[test]
fn many_pending_plus_branches() {
    let depth = 2 * INLINE_PENDING;
    let literal = vec!["a"; depth];
    let mut filters = vec![literal.join("/"), vec!["+"; depth].join("/")];
    for i in 0..depth {
        let mut levels = literal.clone();
        levels[i] = "+";
        filters.push(levels.join("/"));
    }
    let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
    let tree = tree_of(&refs);
    let mut want = filters.clone();
    want.sort();
    assert_eq!(matched(&tree, &literal.join("/")), want);
}

/// The longest legal filters have tens of thousands of levels; nothing may recurse over them.
#[test]
fn deep_filters_do_not_overflow_the_stack() {
    let empty_levels = "/".repeat(topic::MAX_TOPIC_LEN);
    let plus_levels = format!("{}+", "+/".repeat(topic::MAX_TOPIC_LEN / 2));
    let mut tree = tree_of(&[&empty_levels, &plus_levels, "#"]);
    assert_eq!(matched(&tree, &empty_levels), ["#", empty_levels.as_str()]);
    let half = "/".repeat(topic::MAX_TOPIC_LEN / 2);
    assert_eq!(matched(&tree, &half), ["#", plus_levels.as_str()]);
    assert!(tree.remove_if(&empty_levels, |_| true).is_some());
    check_invariants(&tree);
    drop(tree);
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
        filters in prop::collection::vec(filter(), 0..24),
        names in prop::collection::vec(name(), 1..8),
    ) {
        let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
        let tree = tree_of(&refs);
        let distinct: BTreeSet<&str> = refs.iter().copied().collect();
        prop_assert_eq!(tree.len(), distinct.len());
        for name in &names {
            let want: Vec<String> = distinct
                .iter()
                .filter(|f| topic::matches(f, name))
                .map(|f| f.to_string())
                .collect();
            prop_assert_eq!(matched(&tree, name), want, "topic {:?}", name);
        }
    }

    #[test]
    fn removal_prunes_and_keeps_len(
        filters in prop::collection::vec(filter(), 0..24),
        keys in prop::collection::vec(any::<u64>(), 24),
        names in prop::collection::vec(name(), 1..4),
    ) {
        let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
        let mut tree = tree_of(&refs);
        let mut present: BTreeSet<&str> = refs.iter().copied().collect();
        // Remove in a random order, checking the tree after each removal.
        let mut pending: Vec<(u64, &str)> = keys.iter().copied().zip(present.iter().copied()).collect();
        pending.sort_unstable();
        for (_, filter) in pending {
            let removed = tree.remove_if(filter, |_| true);
            prop_assert_eq!(removed.as_deref(), Some(filter));
            prop_assert_eq!(tree.remove_if(filter, |_| true), None);
            present.remove(filter);
            prop_assert_eq!(tree.len(), present.len());
            check_invariants(&tree);
            for name in &names {
                let want: Vec<String> = present
                    .iter()
                    .filter(|f| topic::matches(f, name))
                    .map(|f| f.to_string())
                    .collect();
                prop_assert_eq!(matched(&tree, name), want);
            }
        }
        prop_assert!(tree.is_empty());
        prop_assert_eq!(tree.root.edges(), 0);
    }
}
