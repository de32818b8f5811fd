//! Cross-node publish/subscribe on 3 nats-server (JetStream R3) and 3 gridmq nodes: what a
//! subscriber on one node sees of what is published on another, at every QoS, for topics the
//! subject mapping must escape, for retained messages and for No Local.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use gateway::mqtt::{Packet, Protocol, QoS, SubscriptionOptions};
use gateway_tests::cluster::GridmqCluster;
use gateway_tests::packet_client::{PacketClient, publish};

use crate::traffic::{
    Delivery, audit, collect, connect, publish_windowed, sequence_of, subscriber,
};

const MESSAGES: u64 = 1_000;
const WINDOW: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_at_each_qos_reach_a_subscriber_on_another_node_in_order() -> Result<()>
{
    let cluster = GridmqCluster::start(3);
    let (a, b) = (cluster.nodes[0].addr, cluster.nodes[1].addr);
    let options = SubscriptionOptions::with_qos(QoS::ExactlyOnce);
    let sub = subscriber(a, "load-sub", Protocol::V311, &[("load/#", options)]).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let topics = ["load/q0", "load/q1", "load/q2"];
    let all_in = move |deliveries: &[Delivery]| {
        topics
            .iter()
            .all(|t| deliveries.iter().filter(|d| d.topic == *t).count() as u64 >= MESSAGES)
    };
    let collecting = tokio::spawn(collect(
        sub,
        all_in,
        stop.clone(),
        Duration::from_secs(2),
        Duration::from_secs(60),
    ));

    let started = Instant::now();
    let mut publishers = Vec::new();
    for (qos, topic) in
        [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().zip(topics)
    {
        let client = connect(b, &format!("load-pub-{}", qos as u8), Protocol::V311).await?;
        let never = Arc::new(AtomicBool::new(false));
        publishers.push(tokio::spawn(async move {
            publish_windowed(client, topic, qos, WINDOW, MESSAGES, never, Duration::from_secs(30))
                .await
        }));
    }
    let mut published = Vec::new();
    for publisher in publishers {
        published.push(publisher.await?);
    }
    stop.store(true, Ordering::Relaxed);
    let collected = collecting.await?;
    let took = started.elapsed();
    ensure!(collected.ended.is_none(), "the subscriber's connection ended: {:?}", collected.ended);

    for ((qos, topic), sent) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .zip(topics)
        .zip(&published)
    {
        ensure!(sent.ended.is_none(), "{topic} publisher: {:?}", sent.ended);
        ensure!(sent.refused == 0, "{topic}: {} publishes refused", sent.refused);
        ensure!(
            sent.acked.len() as u64 == MESSAGES,
            "{topic}: {} of {MESSAGES} acknowledged",
            sent.acked.len()
        );
        let arrived = sequence_of(&collected.deliveries, topic);
        let result = audit(&arrived, &sent.acked);
        eprintln!(
            "QoS {}: {} of {MESSAGES} arrived on node a from node b ({} duplicates, {} out of order), \
             longest acknowledgement wait {:?}",
            qos as u8,
            arrived.len() as u64 - result.duplicates,
            result.duplicates,
            result.reordered,
            sent.longest_wait,
        );
        ensure!(result.reordered == 0, "{topic}: {} arrivals out of order", result.reordered);
        let wrong_qos = collected.deliveries.iter().filter(|d| d.topic == topic && d.qos != qos);
        ensure!(wrong_qos.count() == 0, "{topic}: deliveries at another QoS than {qos:?}");
        match qos {
            // Loss is QoS 0's right, but on loopback with a subscriber that keeps up there
            // should be none: it is printed above, and at least the stream must be there.
            QoS::AtMostOnce => ensure!(!arrived.is_empty(), "{topic}: nothing arrived"),
            QoS::AtLeastOnce => ensure!(result.missing == 0, "{topic}: {} lost", result.missing),
            QoS::ExactlyOnce => ensure!(
                result.missing == 0 && result.duplicates == 0,
                "{topic}: {result:?}, exactly once means neither loss nor duplicates"
            ),
        }
    }
    eprintln!("3 x {MESSAGES} messages across nodes in {took:?}");
    Ok(())
}

/// Topics a naive topic-to-subject mapping would merge, split, or turn into wildcards.
const EDGE_TOPICS: &[&str] = &[
    "a.b",
    "a/b",
    "a*",
    "a>",
    "*",
    ">",
    "%",
    "%2E",
    "with space",
    "a//b",
    "/a",
    "a/",
    "/",
    "a/x",
    "/x",
    "$SYS/x",
    "$data/x",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_case_topics_arrive_on_another_node_exactly_as_sent() -> Result<()> {
    let cluster = GridmqCluster::start(3);
    let (a, b) = (cluster.nodes[0].addr, cluster.nodes[1].addr);
    let qos1 = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    let exact_filters: Vec<(&str, SubscriptionOptions)> =
        EDGE_TOPICS.iter().map(|t| (*t, qos1)).collect();
    let subscribers = [
        ("hash", vec![("#", qos1)]),
        ("plus-x", vec![("+/x", qos1)]),
        ("sys", vec![("$SYS/#", qos1)]),
        ("exact", exact_filters),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let mut collecting = Vec::new();
    for (name, filters) in &subscribers {
        let client = subscriber(a, &format!("edge-{name}"), Protocol::V5, filters).await?;
        collecting.push(tokio::spawn(collect(
            client,
            |_: &[Delivery]| false,
            stop.clone(),
            Duration::from_secs(1),
            Duration::from_secs(20),
        )));
    }

    let mut publisher = connect(b, "edge-pub", Protocol::V5).await?;
    for (i, topic) in EDGE_TOPICS.iter().enumerate() {
        let id = u16::try_from(i + 1)?;
        publish_acked(&mut publisher, topic, id, topic.as_bytes()).await?;
    }
    stop.store(true, Ordering::Relaxed);

    let not_dollar: Vec<&str> =
        EDGE_TOPICS.iter().copied().filter(|t| !t.starts_with('$')).collect();
    let expected: [Vec<&str>; 4] =
        [not_dollar, vec!["a/x", "/x"], vec!["$SYS/x"], EDGE_TOPICS.to_vec()];
    for ((name, _), (task, want)) in subscribers.iter().zip(collecting.into_iter().zip(expected)) {
        let collected = task.await?;
        ensure!(collected.ended.is_none(), "{name}: connection ended: {:?}", collected.ended);
        for delivery in &collected.deliveries {
            ensure!(
                delivery.payload.as_ref() == delivery.topic.as_bytes(),
                "{name}: topic {:?} arrived with the payload of {:?}",
                delivery.topic,
                String::from_utf8_lossy(&delivery.payload)
            );
        }
        let mut got: Vec<&str> = collected.deliveries.iter().map(|d| d.topic.as_str()).collect();
        got.sort_unstable();
        let mut want = want;
        want.sort_unstable();
        ensure!(got == want, "subscriber {name} on node a got {got:?}, expected {want:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_set_on_one_node_is_read_on_another_and_cleared_on_a_third() -> Result<()>
{
    let cluster = GridmqCluster::start(3);
    let (a, b, c) = (cluster.nodes[0].addr, cluster.nodes[1].addr, cluster.nodes[2].addr);
    let topic = "retained/cross";

    let mut setter = connect(a, "ret-setter", Protocol::V5).await?;
    let mut set = publish(topic, QoS::AtLeastOnce, Some(1), "kept");
    set.retain = true;
    send_acked(&mut setter, set).await?;

    // The retained bucket is watched by every node: a new subscriber on C sees the message
    // as soon as C's watch has it. A bounded wait, printed.
    let started = Instant::now();
    let mut reader = 0;
    let seen = loop {
        reader += 1;
        let got =
            first_delivery(c, &format!("ret-reader-{reader}"), topic, Duration::from_millis(500))
                .await?;
        if let Some(delivery) = got {
            break delivery;
        }
        if started.elapsed() > Duration::from_secs(5) {
            bail!("no new subscriber on node c got the retained message within 5 s");
        }
    };
    eprintln!("retained message set on node a was read on node c after {:?}", started.elapsed());
    ensure!(seen.retain, "delivered without the retain flag: {seen:?}");
    ensure!(seen.payload.as_ref() == b"kept", "retained payload {:?}", seen.payload);

    let mut clearer = connect(b, "ret-clearer", Protocol::V5).await?;
    let mut clear = publish(topic, QoS::AtLeastOnce, Some(1), "");
    clear.retain = true;
    send_acked(&mut clearer, clear).await?;

    let started = Instant::now();
    loop {
        reader += 1;
        let got =
            first_delivery(c, &format!("ret-reader-{reader}"), topic, Duration::from_millis(500))
                .await?;
        if got.is_none() {
            break;
        }
        if started.elapsed() > Duration::from_secs(5) {
            bail!(
                "new subscribers on node c still get the retained message 5 s after it was cleared on node b"
            );
        }
    }
    eprintln!(
        "retained message cleared on node b was gone on node c after {:?}",
        started.elapsed()
    );
    // And it stays gone: a last subscriber waits longer.
    let late = first_delivery(c, "ret-reader-last", topic, Duration::from_secs(1)).await?;
    ensure!(late.is_none(), "a cleared retained message came back: {late:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_keeps_a_publishers_own_message_from_it_on_every_node() -> Result<()> {
    let cluster = GridmqCluster::start(3);
    let (a, b) = (cluster.nodes[0].addr, cluster.nodes[1].addr);
    let topic = "nolocal/t";
    let mut no_local = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    no_local.no_local = true;
    let plain = SubscriptionOptions::with_qos(QoS::AtLeastOnce);

    let mut own = subscriber(a, "nl-own", Protocol::V5, &[(topic, no_local)]).await?;
    let mut same_node = subscriber(a, "nl-same-node", Protocol::V5, &[(topic, plain)]).await?;
    let mut other_node = subscriber(b, "nl-other-node", Protocol::V5, &[(topic, plain)]).await?;

    send_acked(&mut own, publish(topic, QoS::AtLeastOnce, Some(1), "from-own")).await?;
    for (name, client) in [("same node", &mut same_node), ("other node", &mut other_node)] {
        let got = next_publish(client, Duration::from_secs(5)).await?;
        let got = got.with_context(|| format!("the subscriber on the {name} got nothing"))?;
        ensure!(got.payload.as_ref() == b"from-own", "{name} got {got:?}");
        ack(client, &got).await?;
    }
    // The publisher's own subscription works (it gets another client's message) but not its
    // own message, which would come first: the stream keeps one order.
    let mut other = connect(b, "nl-other-publisher", Protocol::V5).await?;
    send_acked(&mut other, publish(topic, QoS::AtLeastOnce, Some(1), "from-other")).await?;
    let got = next_publish(&mut own, Duration::from_secs(5)).await?;
    let got =
        got.context("the No Local subscriber got nothing, not even another client's message")?;
    ensure!(
        got.payload.as_ref() == b"from-other",
        "the No Local subscriber got {:?} first",
        String::from_utf8_lossy(&got.payload)
    );
    Ok(())
}

/// Publishes QoS 1 `payload` to `topic` and waits for a successful PUBACK.
async fn publish_acked(
    client: &mut PacketClient,
    topic: &str,
    id: u16,
    payload: &[u8],
) -> Result<()> {
    let packet = publish(topic, QoS::AtLeastOnce, Some(id), bytes::Bytes::copy_from_slice(payload));
    send_acked(client, packet).await
}

/// Sends a QoS 1 PUBLISH and waits for its successful PUBACK (other packets are skipped).
async fn send_acked(client: &mut PacketClient, packet: gateway::mqtt::Publish) -> Result<()> {
    let id = packet.packet_id.context("a QoS 1 publish has a packet id")?;
    let topic = packet.topic.clone();
    client.send(&Packet::Publish(packet)).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match client.recv(Duration::from_millis(100)).await? {
            Some(Packet::PubAck(ack)) if ack.packet_id == id => {
                ensure!(!ack.reason.is_error(), "publish to {topic:?} refused: {:?}", ack.reason);
                return Ok(());
            }
            Some(Packet::Publish(other)) => client.ack(&other).await?,
            _ => {}
        }
    }
    bail!("no PUBACK for {topic:?} within 10 s")
}

/// The next PUBLISH within `within`, unacknowledged.
async fn next_publish(
    client: &mut PacketClient,
    within: Duration,
) -> Result<Option<gateway::mqtt::Publish>> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(Packet::Publish(publish)) = client.recv(Duration::from_millis(100)).await? {
            return Ok(Some(publish));
        }
    }
    Ok(None)
}

async fn ack(client: &mut PacketClient, publish: &gateway::mqtt::Publish) -> Result<()> {
    client.ack(publish).await
}

/// What a new subscriber `client_id` to `filter` on `addr` gets within `within`: the
/// retained message, if there is one.
async fn first_delivery(
    addr: std::net::SocketAddr,
    client_id: &str,
    filter: &str,
    within: Duration,
) -> Result<Option<gateway::mqtt::Publish>> {
    let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    let mut client = subscriber(addr, client_id, Protocol::V5, &[(filter, options)]).await?;
    let got = next_publish(&mut client, within).await?;
    if let Some(publish) = &got {
        client.ack(publish).await?;
    }
    Ok(got)
}
