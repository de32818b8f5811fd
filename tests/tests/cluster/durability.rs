//! Durability under NATS failures: QoS 1 publishers on all three nodes and subscribers on two
//! keep running while the nats-server leading the message stream is killed with SIGKILL and,
//! once it is back, another one is stopped with SIGTERM. Every acknowledged message must reach
//! every subscriber and no MQTT client may be dropped; duplicates and the longest PUBACK stall
//! are printed (`--nocapture`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use gateway::mqtt::{Protocol, QoS, SubscriptionOptions};
use gateway_tests::cluster::{GridmqCluster, NatsCluster};

use crate::traffic::{
    Delivery, audit, collect, connect, publish_windowed, sequence_of, subscriber,
};

/// The message stream of subject prefix `gm`.
const STREAM: &str = "GM_MSGS";
/// Above this, a PUBACK stall is not an election any more (the budget is ~5 s).
const STALL_LIMIT: Duration = Duration::from_secs(20);
/// How long a subscriber that still lacks acknowledged messages waits, after the publishers
/// are done, for anything more to arrive: a node whose stream reader was on a stopped server
/// reads again within a few seconds.
const CATCH_UP: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_killing_the_stream_leader_and_stopping_another_server()
-> Result<()> {
    let mut cluster = GridmqCluster::start(3);
    let addrs: Vec<_> = cluster.nodes.iter().map(|node| node.addr).collect();
    let names = ["a", "b", "c"];
    let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);

    let stop_subscribers = Arc::new(AtomicBool::new(false));
    // Each publisher's acknowledged count, once the publishers are done: a subscriber that has
    // them all stops then, one that lacks some waits up to `CATCH_UP` of silence.
    let expected: Expected = Arc::new(Mutex::new(None));
    let mut subscribers = Vec::new();
    for node in [0, 2] {
        let client = subscriber(
            addrs[node],
            &format!("dur-sub-{}", names[node]),
            Protocol::V5,
            &[("dur/#", options)],
        )
        .await?;
        subscribers.push((
            names[node],
            tokio::spawn(collect(
                client,
                has_all(expected.clone()),
                stop_subscribers.clone(),
                CATCH_UP,
                Duration::from_secs(180),
            )),
        ));
    }
    let stop_publishers = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for (node, name) in names.iter().enumerate() {
        let client = connect(addrs[node], &format!("dur-pub-{name}"), Protocol::V5).await?;
        let topic = format!("dur/{name}");
        let stop = stop_publishers.clone();
        publishers.push((
            topic.clone(),
            tokio::spawn(async move {
                publish_windowed(
                    client,
                    &topic,
                    QoS::AtLeastOnce,
                    10,
                    u64::MAX,
                    stop,
                    Duration::from_secs(60),
                )
                .await
            }),
        ));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = wait_for_leader(&cluster.nats, Duration::from_secs(5)).await?;
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| cluster.nats.kill(leader));
    eprintln!("killed nats-server n{leader}, the leader of {STREAM}, with SIGKILL");
    tokio::time::sleep(Duration::from_secs(8)).await;
    tokio::task::block_in_place(|| cluster.nats.restart(leader));
    eprintln!("n{leader} restarted and caught up {:?} after the kill", killed_at.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The server to stop cleanly: the leader now if it is not the one just restarted, else
    // the next one.
    let current = wait_for_leader(&cluster.nats, Duration::from_secs(5)).await?;
    let other = if current != leader { current } else { (leader + 1) % 3 };
    tokio::task::block_in_place(|| cluster.nats.terminate(other));
    eprintln!("stopped nats-server n{other} with SIGTERM (the leader of {STREAM} was n{current})");
    tokio::time::sleep(Duration::from_secs(4)).await;
    tokio::task::block_in_place(|| cluster.nats.restart(other));
    tokio::time::sleep(Duration::from_secs(2)).await;

    stop_publishers.store(true, Ordering::Relaxed);
    let mut published = Vec::new();
    for (topic, task) in publishers {
        published.push((topic, task.await?));
    }
    *expected.lock().expect("not poisoned") =
        Some(published.iter().map(|(topic, sent)| (topic.clone(), sent.acked.len())).collect());
    stop_subscribers.store(true, Ordering::Relaxed);
    let publishing_ended = Instant::now();
    let mut collected = Vec::new();
    for (name, task) in subscribers {
        collected.push((name, task.await?));
        eprintln!(
            "subscriber on node {name} done {:?} after the publishers",
            publishing_ended.elapsed()
        );
    }

    let mut longest = Duration::ZERO;
    for (topic, sent) in &published {
        eprintln!(
            "{topic}: {} sent, {} acknowledged, {} refused, longest PUBACK wait {:?}",
            sent.sent,
            sent.acked.len(),
            sent.refused,
            sent.longest_wait
        );
        longest = longest.max(sent.longest_wait);
    }
    let mut failures = Vec::new();
    for (name, got) in &collected {
        if let Some(ended) = &got.ended {
            failures.push(format!("subscriber on node {name} was disconnected: {ended}"));
        }
        for (topic, sent) in &published {
            let arrived = sequence_of(&got.deliveries, topic);
            let result = audit(&arrived, &sent.acked);
            let seen: std::collections::HashSet<u64> = arrived.iter().copied().collect();
            let first_missing = sent.acked.iter().find(|seq| !seen.contains(seq));
            eprintln!(
                "subscriber on node {name}, {topic}: {} acknowledged messages missing (the first: \
                 {first_missing:?}; last arrival {:?}), {} duplicates, {} out of order",
                result.missing,
                arrived.last(),
                result.duplicates,
                result.reordered
            );
            if result.missing > 0 {
                failures.push(format!(
                    "subscriber on node {name} lacks {} acknowledged messages of {topic}",
                    result.missing
                ));
            }
        }
    }
    for (topic, sent) in &published {
        if let Some(ended) = &sent.ended {
            failures.push(format!("publisher of {topic}: {ended}"));
        }
        if sent.acked.is_empty() {
            failures.push(format!("publisher of {topic} got no PUBACK at all"));
        }
    }
    eprintln!("longest PUBACK stall: {longest:?} (limit {STALL_LIMIT:?})");
    if longest > STALL_LIMIT {
        failures.push(format!("a PUBACK took {longest:?}, above {STALL_LIMIT:?}"));
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// Per publisher topic, how many distinct messages were acknowledged.
type Expected = Arc<Mutex<Option<Vec<(String, usize)>>>>;

/// A subscriber's `done`: true once it holds every acknowledged message of every publisher,
/// counted as they arrive (distinct sequence numbers per topic).
fn has_all(expected: Expected) -> impl FnMut(&[Delivery]) -> bool + Send {
    let mut seen: HashMap<String, HashSet<u64>> = HashMap::new();
    let mut counted = 0;
    move |deliveries: &[Delivery]| {
        for delivery in &deliveries[counted..] {
            if let Some(seq) = delivery.seq() {
                seen.entry(delivery.topic.clone()).or_default().insert(seq);
            }
        }
        counted = deliveries.len();
        let expected = expected.lock().expect("not poisoned");
        expected.as_ref().is_some_and(|expected| {
            expected.iter().all(|(topic, n)| seen.get(topic).map_or(0, HashSet::len) >= *n)
        })
    }
}

/// The server leading the message stream, waited for up to `budget`.
async fn wait_for_leader(nats: &NatsCluster, budget: Duration) -> Result<usize> {
    let started = Instant::now();
    loop {
        if let Some(leader) = tokio::task::block_in_place(|| nats.stream_leader(STREAM)) {
            return Ok(leader);
        }
        if started.elapsed() > budget {
            return None.context(format!("no leader of {STREAM} after {budget:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
