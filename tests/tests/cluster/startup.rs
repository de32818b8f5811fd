//! A node's start-up against NATS: a bounded wait for an unreachable cluster, and errors that
//! name the `[cluster]` field to fix.

use std::time::{Duration, Instant};

use gateway_tests::Gridmq;
use gateway_tests::cluster::NatsCluster;

#[test]
fn an_unreachable_nats_fails_the_start_after_the_bounded_wait_naming_the_field() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
         [cluster]\nnats_urls = [\"nats://127.0.0.1:{port}\"]\nnode_id = \"lonely\"\n\
         connect_timeout_secs = 2\n"
    );
    let started = Instant::now();
    let stderr = Gridmq::try_with_listeners(&config).err().expect("the start is refused");
    let waited = started.elapsed();
    assert!(stderr.contains("cluster.nats_urls"), "{stderr}");
    assert!(stderr.contains("within 2 s"), "{stderr}");
    assert!(stderr.contains("retrying"), "it says that it retries: {stderr}");
    assert!(waited >= Duration::from_secs(2), "gave up after {waited:?}");
    assert!(waited < Duration::from_secs(15), "waited {waited:?}");
}

#[test]
fn more_replicas_than_nats_servers_is_refused_naming_replicas() {
    let nats = NatsCluster::start(1);
    let config = format!(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
         [cluster]\nnats_urls = [\"{}\"]\nnode_id = \"a\"\nreplicas = 3\nconnect_timeout_secs = 2\n",
        nats.url(0)
    );
    let stderr = Gridmq::try_with_listeners(&config).err().expect("the start is refused");
    assert!(stderr.contains("cluster.replicas"), "{stderr}");
}
