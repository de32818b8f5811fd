use std::time::{Duration, Instant};

use super::{EXPIRY, Shares};
use crate::broker::ShareSelector;

/// Three nodes' views after each saw `members` announce (group `g`, filter `t/#`).
fn views(members: &[&str], nodes: &[&str]) -> Vec<Shares> {
    nodes
        .iter()
        .map(|node| {
            let shares = Shares::new((*node).into());
            for member in members {
                shares.seen("g".into(), "t/#".into(), (*member).into(), Instant::now());
            }
            shares
        })
        .collect()
}

#[test]
fn exactly_one_member_node_serves_each_key_and_each_serves_its_share() {
    let views = views(&["node-c", "node-a"], &["node-a", "node-c"]);
    let mut served = [0; 2];
    for key in 0..100 {
        let serving: Vec<usize> = (0..2).filter(|&i| views[i].serves("g", "t/#", key)).collect();
        assert_eq!(serving.len(), 1, "key {key}: {serving:?}");
        served[serving[0]] += 1;
    }
    assert_eq!(served, [50, 50]);
    // Another group, or the same group on another filter, is nobody's yet: served locally.
    assert!(views[0].serves("h", "t/#", 1) && views[0].serves("g", "u/#", 1));
}

#[test]
fn a_node_not_announced_yet_serves_nothing_and_a_withdrawn_one_stops_counting() {
    let views = views(&["node-a"], &["node-a", "node-c"]);
    assert!((0..10).all(|key| views[0].serves("g", "t/#", key)));
    assert!((0..10).all(|key| !views[1].serves("g", "t/#", key)), "node-c is not in the list");
    views[0].seen("g".into(), "t/#".into(), "node-c".into(), Instant::now());
    views[0].forget("g", "t/#", "node-c");
    assert!((0..10).all(|key| views[0].serves("g", "t/#", key)));
}

#[test]
fn an_entry_not_refreshed_within_the_expiry_stops_counting() {
    let shares = Shares::new("node-a".into());
    let Some(long_ago) = Instant::now().checked_sub(EXPIRY + Duration::from_secs(1)) else {
        return;
    };
    shares.seen("g".into(), "t/#".into(), "node-a".into(), Instant::now());
    shares.seen("g".into(), "t/#".into(), "node-b".into(), long_ago);
    assert!((0..10).all(|key| shares.serves("g", "t/#", key)), "node-b expired");
    shares.prune();
    assert_eq!(shares.view.read()["g"]["t/#"].len(), 1);
}
