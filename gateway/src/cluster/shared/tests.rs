use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use super::{EXPIRY, Shares};
use crate::broker::ShareSelector;

fn shares(node: &str, applied: u64) -> Shares {
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    Shares::new(node.into(), Arc::new(AtomicU64::new(applied)), gate)
}

/// Each node's view after it saw `members` announce (group `g`, filter `t/#`).
fn views(members: &[&str], nodes: &[&str]) -> Vec<Shares> {
    nodes
        .iter()
        .map(|node| {
            let shares = shares(node, 0);
            for member in members {
                shares.seen("g".into(), "t/#".into(), (*member).into(), Instant::now(), 0);
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
    views[0].seen("g".into(), "t/#".into(), "node-c".into(), Instant::now(), 0);
    views[0].forget("g", "t/#", "node-c");
    assert!((0..10).all(|key| views[0].serves("g", "t/#", key)));
}

#[tokio::test]
async fn an_expired_node_leaves_the_list_with_the_messages_it_did_not_deliver() {
    let shares = shares("node-a", 40);
    let Some(long_ago) = Instant::now().checked_sub(EXPIRY + Duration::from_secs(1)) else {
        return;
    };
    shares.seen("g".into(), "t/#".into(), "node-a".into(), Instant::now(), 40);
    shares.seen("g".into(), "t/#".into(), "node-b".into(), long_ago, 25);
    // Until the refresh takes it out, the list still holds node-b: every node judges alike.
    assert!(!shares.serves("g", "t/#", 1));
    shares.applied.store(70, std::sync::atomic::Ordering::SeqCst);
    let orphaned = shares.expire().await;
    assert_eq!(orphaned.len(), 1, "{orphaned:?}");
    let orphaned = &orphaned[0];
    assert_eq!(orphaned.node, "node-b");
    // node-b was first seen here at 40: what came before was not judged with it in the list.
    assert_eq!((orphaned.from, orphaned.until), (40, 70));
    assert_eq!(
        (orphaned.before.len(), orphaned.after.as_slice()),
        (2, &["node-a".to_string()][..])
    );
    assert!((0..10).all(|key| shares.serves("g", "t/#", key)));
    assert!(shares.expire().await.is_empty());
}
