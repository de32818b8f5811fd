//! The cluster harness itself: three real nats-server processes form a JetStream cluster, an R3
//! stream survives losing its leader (kill -9, then SIGTERM of the next one), and the servers
//! come back on their ports and stores. The publish stalls are printed (`--nocapture`): the
//! design's budget is 15 s for a kill -9 and 1 s for a SIGTERM.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use async_nats::jetstream::{self, stream};
use gateway_tests::cluster::{NatsCluster, cluster_config};

const STREAM: &str = "HARNESS";

// Multi-threaded: the harness blocks while it waits for servers, and the NATS client's
// connection task must keep running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_keeps_taking_publishes_when_its_leader_dies() -> Result<()> {
    let started = Instant::now();
    let mut nats = NatsCluster::start(3);
    let ready = started.elapsed();
    let client = async_nats::connect(nats.client_urls()).await?;
    let mut js = jetstream::new(client);
    // One attempt may not wait for a whole Raft election: the loop below retries instead.
    js.set_timeout(Duration::from_secs(1));
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["harness.>".into()],
        num_replicas: 3,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    for n in 0..10 {
        js.publish("harness.before", format!("{n}").into()).await?.await?;
    }

    let leader = wait_for_leader(&nats, Duration::from_secs(5)).await?;
    nats.kill(leader);
    let killed = publish_until_acked(&js, "harness.after-kill", Duration::from_secs(15)).await?;
    let successor = wait_for_leader(&nats, Duration::from_secs(5)).await?;
    ensure!(successor != leader, "server n{leader} was killed but still leads");
    // The killed server comes back on its ports and store and catches up: 10 + 1 messages.
    nats.restart(leader);
    let held = wait_for_messages(&nats, leader, 11, Duration::from_secs(5)).await;
    ensure!(held == Some(11), "n{leader} restarted with {held:?} messages in {STREAM}, not 11");

    // With all three up again, a clean stop of the leader (whichever it is now) hands over at
    // once.
    let next = wait_for_leader(&nats, Duration::from_secs(5)).await?;
    nats.terminate(next);
    let terminated = publish_until_acked(&js, "harness.after-term", Duration::from_secs(5)).await?;
    nats.restart(next);
    let held = wait_for_messages(&nats, next, 12, Duration::from_secs(5)).await;
    ensure!(held == Some(12), "n{next} restarted with {held:?} messages in {STREAM}, not 12");
    eprintln!(
        "nats cluster of 3 ready in {ready:?}; publish stall after kill -9 of stream leader \
         n{leader}: {killed:?}; after SIGTERM of the leader then, n{next}: {terminated:?}"
    );
    ensure!(terminated < Duration::from_secs(2), "SIGTERM of a leader stalled {terminated:?}");
    Ok(())
}

#[test]
fn a_node_config_names_every_nats_server() {
    let nats = NatsCluster::start(1);
    let config = cluster_config(&nats, "node-a", "[log]\nformat = \"json\"\n");
    let table: toml::Table = config.parse().expect("the config is TOML");
    let cluster = &table["cluster"];
    assert_eq!(cluster["nats_urls"].as_array().unwrap().len(), 1);
    assert_eq!(cluster["nats_urls"][0].as_str().unwrap(), nats.url(0));
    assert_eq!(cluster["node_id"].as_str(), Some("node-a"));
    assert_eq!(cluster["subject_prefix"].as_str(), Some("gm"));
    assert_eq!(cluster["replicas"].as_integer(), Some(3));
    assert_eq!(table["server"]["listeners"][0]["address"].as_str(), Some("127.0.0.1:0"));
    assert!(table.contains_key("log"));
}

/// Publishes one message again and again until JetStream acknowledges it; the time that took.
async fn publish_until_acked(
    js: &jetstream::Context,
    subject: &'static str,
    budget: Duration,
) -> Result<Duration> {
    let started = Instant::now();
    let mut last_error = String::new();
    while started.elapsed() < budget {
        match js.publish(subject, "x".into()).await {
            Ok(ack) => match ack.await {
                Ok(_) => return Ok(started.elapsed()),
                Err(error) => last_error = error.to_string(),
            },
            Err(error) => last_error = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("no publish to {subject} acknowledged in {budget:?}; last error: {last_error}")
}

async fn wait_for_leader(nats: &NatsCluster, budget: Duration) -> Result<usize> {
    let started = Instant::now();
    loop {
        if let Some(leader) = nats.stream_leader(STREAM) {
            return Ok(leader);
        }
        if started.elapsed() > budget {
            return None.context(format!("no leader of {STREAM} after {budget:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_messages(
    nats: &NatsCluster,
    server: usize,
    want: u64,
    budget: Duration,
) -> Option<u64> {
    let started = Instant::now();
    loop {
        let held = nats.stream_messages(server, STREAM);
        if held == Some(want) || started.elapsed() > budget {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
