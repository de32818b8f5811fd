//! Crash tests: the broker is killed with SIGKILL under load and restarted on the same data
//! directory. What MQTT lets a broker promise must hold across the crash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use gateway::mqtt::{Ack, Disconnect, Packet, Protocol, QoS, ReasonCode};
use gateway_tests::Gridmq;
use gateway_tests::packet_client::{PacketClient, connect_packet, publish};

const CONFIG: &str = "[mqtt]\nmax_queued_messages = 100000\nmax_queued_bytes = 100000000\n";
const WAIT: Duration = Duration::from_secs(10);

/// Connects a persistent subscriber, subscribes, and leaves so that messages queue offline.
async fn park_subscriber(broker: &Gridmq, id: &str, filter: &str, qos: QoS) -> Result<()> {
    let (mut sub, _) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, id, true, 3600)).await?;
    sub.subscribe(filter, qos).await?;
    sub.send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success))).await?;
    Ok(())
}

/// One QoS 1 publisher: keeps `window` messages unacknowledged and records each PUBACKed
/// payload, until the broker goes away.
async fn qos1_publisher(
    broker: std::net::SocketAddr,
    name: String,
    acked: Arc<Mutex<BTreeSet<String>>>,
) {
    let Ok((mut client, _)) =
        PacketClient::connect(broker, connect_packet(Protocol::V5, &name, true, 0)).await
    else {
        return;
    };
    let window = 32u16;
    let mut next = 1u16;
    let mut outstanding = 0u16;
    loop {
        while outstanding < window && next < 60_000 {
            let payload = format!("{name}-{next}");
            let packet = Packet::Publish(publish("load/t", QoS::AtLeastOnce, Some(next), payload));
            if client.send(&packet).await.is_err() {
                return;
            }
            next += 1;
            outstanding += 1;
        }
        match client.recv(WAIT).await {
            Ok(Some(Packet::PubAck(ack))) => {
                outstanding -= 1;
                acked.lock().expect("lock").insert(format!("{name}-{}", ack.packet_id));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_acknowledged_messages_survive_kill_9() -> Result<()> {
    let mut broker = Gridmq::start_with_config(CONFIG);
    park_subscriber(&broker, "durable-sub", "load/#", QoS::AtLeastOnce).await?;

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let publishers: Vec<_> = (0..4)
        .map(|i| tokio::spawn(qos1_publisher(broker.addr, format!("pub{i}"), acked.clone())))
        .collect();
    while acked.lock().expect("lock").len() < 3000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    broker.kill();
    for publisher in publishers {
        let _ = publisher.await;
    }
    let acked = acked.lock().expect("lock").clone();

    let broker = Gridmq::start_in(broker.data_dir(), CONFIG);
    let (mut sub, connack) = PacketClient::connect(
        broker.addr,
        connect_packet(Protocol::V5, "durable-sub", false, 3600),
    )
    .await?;
    ensure!(connack.session_present, "the persistent session came back");
    let mut missing = acked.clone();
    while !missing.is_empty() {
        match sub.recv(WAIT).await? {
            Some(Packet::Publish(p)) => {
                missing.remove(std::str::from_utf8(&p.payload)?);
                sub.ack(&p).await?;
            }
            Some(_) => {}
            None => break,
        }
    }
    ensure!(
        missing.is_empty(),
        "{} of {} acknowledged messages lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    Ok(())
}

/// Where one QoS 2 message of the publisher stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qos2 {
    Sent,
    Received,
    Complete,
}

/// Drives a QoS 2 publisher as a real client does: PUBREL on PUBREC, done on PUBCOMP. After a
/// reconnect it re-sends unreceived messages with DUP and PUBREL for received ones.
async fn qos2_publisher(
    client: &mut PacketClient,
    state: &mut BTreeMap<u16, Qos2>,
    total: u16,
    stop_after_complete: Option<usize>,
) -> Result<()> {
    let mut resend = Vec::new();
    for (&id, stage) in state.iter() {
        match stage {
            Qos2::Sent => {
                let mut p = publish("exact/t", QoS::ExactlyOnce, Some(id), format!("m{id}"));
                p.dup = true;
                resend.push(Packet::Publish(p));
            }
            Qos2::Received => resend.push(Packet::PubRel(Ack::new(id))),
            Qos2::Complete => {}
        }
    }
    client.send_all(&resend).await?;
    let mut next = state.keys().next_back().map_or(1, |id| id + 1);
    loop {
        let complete = state.values().filter(|s| **s == Qos2::Complete).count();
        if stop_after_complete.is_some_and(|n| complete >= n) || complete == usize::from(total) {
            return Ok(());
        }
        let in_flight = state.values().filter(|s| **s != Qos2::Complete).count();
        if in_flight < 16 && next <= total {
            let p = publish("exact/t", QoS::ExactlyOnce, Some(next), format!("m{next}"));
            client.send(&Packet::Publish(p)).await?;
            state.insert(next, Qos2::Sent);
            next += 1;
            continue;
        }
        match client.recv(WAIT).await? {
            Some(Packet::PubRec(ack)) => {
                state.insert(ack.packet_id, Qos2::Received);
                client.send(&Packet::PubRel(Ack::new(ack.packet_id))).await?;
            }
            Some(Packet::PubComp(ack)) => {
                state.insert(ack.packet_id, Qos2::Complete);
            }
            Some(_) => {}
            None => bail!("publisher stalled: {state:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_is_exactly_once_across_kill_9() -> Result<()> {
    const TOTAL: u16 = 400;
    let mut broker = Gridmq::start_with_config(CONFIG);
    park_subscriber(&broker, "exact-sub", "exact/#", QoS::ExactlyOnce).await?;

    let mut state = BTreeMap::new();
    let (mut publisher, _) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "exact-pub", true, 3600))
            .await?;
    qos2_publisher(&mut publisher, &mut state, TOTAL, Some(150)).await?;
    broker.kill();
    drop(publisher);

    let broker = Gridmq::start_in(broker.data_dir(), CONFIG);
    let (mut publisher, connack) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "exact-pub", false, 3600))
            .await?;
    ensure!(connack.session_present, "the publisher's session came back");
    qos2_publisher(&mut publisher, &mut state, TOTAL, None).await?;

    // The subscriber is a correct QoS 2 receiver: a PUBLISH whose packet id awaits PUBREL is
    // a re-send, not a new message.
    let (mut sub, connack) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "exact-sub", false, 3600))
            .await?;
    ensure!(connack.session_present, "the subscriber's session came back");
    let mut awaiting_rel = BTreeSet::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    while counts.len() < usize::from(TOTAL) {
        match sub.recv(WAIT).await? {
            Some(Packet::Publish(p)) => {
                let id = p.packet_id.unwrap_or(0);
                if awaiting_rel.insert(id) {
                    *counts.entry(String::from_utf8(p.payload.to_vec())?).or_default() += 1;
                }
                sub.ack(&p).await?;
            }
            Some(Packet::PubRel(rel)) => {
                awaiting_rel.remove(&rel.packet_id);
                sub.send(&Packet::PubComp(Ack::new(rel.packet_id))).await?;
            }
            Some(_) => {}
            None => break,
        }
    }
    // Anything more that arrives would be a duplicate.
    while let Some(packet) = sub.recv(Duration::from_millis(500)).await? {
        if let Packet::Publish(p) = packet {
            if awaiting_rel.insert(p.packet_id.unwrap_or(0)) {
                *counts.entry(String::from_utf8(p.payload.to_vec())?).or_default() += 1;
            }
            sub.ack(&p).await?;
        } else if let Packet::PubRel(rel) = packet {
            awaiting_rel.remove(&rel.packet_id);
            sub.send(&Packet::PubComp(Ack::new(rel.packet_id))).await?;
        }
    }
    let missing: Vec<u16> =
        (1..=TOTAL).filter(|i| !counts.contains_key(&format!("m{i}"))).collect();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(missing.is_empty(), "lost: {missing:?}");
    ensure!(twice.is_empty(), "delivered more than once: {twice:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_and_subscriptions_survive_a_restart() -> Result<()> {
    let mut broker = Gridmq::start_with_config(CONFIG);
    let (mut client, _) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "retainer", true, 0))
            .await?;
    let mut retained = publish("status/door", QoS::AtLeastOnce, Some(1), "open");
    retained.retain = true;
    client.send(&Packet::Publish(retained)).await?;
    ensure!(matches!(client.recv(WAIT).await?, Some(Packet::PubAck(_))), "PUBACK");
    park_subscriber(&broker, "keeps-subs", "alerts/#", QoS::AtLeastOnce).await?;
    broker.kill();

    let broker = Gridmq::start_in(broker.data_dir(), CONFIG);
    let (mut sub, connack) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "keeps-subs", false, 3600))
            .await?;
    ensure!(connack.session_present, "session present after restart");
    let (mut publisher, _) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "alerter", true, 0))
            .await?;
    publisher
        .send(&Packet::Publish(publish("alerts/fire", QoS::AtLeastOnce, Some(1), "now")))
        .await?;
    match sub.recv(WAIT).await? {
        Some(Packet::Publish(p)) => ensure!(&p.payload[..] == b"now" && p.topic == "alerts/fire"),
        other => bail!("the recovered subscription did not deliver: {other:?}"),
    }

    let (mut reader, _) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "reader", true, 0)).await?;
    reader.subscribe("status/#", QoS::AtLeastOnce).await?;
    match reader.recv(WAIT).await? {
        Some(Packet::Publish(p)) => {
            ensure!(p.retain && &p.payload[..] == b"open", "retained message came back: {p:?}")
        }
        other => bail!("no retained message after restart: {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_expired_while_the_broker_was_down_is_gone() -> Result<()> {
    let mut broker = Gridmq::start_with_config(CONFIG);
    let (mut short, _) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "short-lived", true, 1))
            .await?;
    short.subscribe("x/#", QoS::AtLeastOnce).await?;
    short.send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success))).await?;
    park_subscriber(&broker, "long-lived", "x/#", QoS::AtLeastOnce).await?;
    // Let the disconnect reach the store before the crash.
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let broker = Gridmq::start_in(broker.data_dir(), CONFIG);
    let (_, connack) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "short-lived", false, 1))
            .await?;
    ensure!(!connack.session_present, "the expired session is gone");
    let (_, connack) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "long-lived", false, 3600))
            .await?;
    ensure!(connack.session_present, "the unexpired session is kept");
    Ok(())
}

/// Queued deliveries are written in runs (one row per subscriber per commit), and a PUBACK
/// marks its delivery done inside its run. A subscriber that acknowledges every other message
/// leaves runs half done: after a restart exactly the unacknowledged half comes back, re-sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partly_acknowledged_queues_come_back_without_the_acknowledged_messages() -> Result<()> {
    // Half stay unacknowledged, fewer than the in-flight window (100), so all are sent.
    const MESSAGES: u16 = 150;
    let mut broker = Gridmq::start_with_config(CONFIG);
    let (mut sub, _) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "half-acker", true, 3600))
            .await?;
    sub.subscribe("half/#", QoS::AtLeastOnce).await?;

    let (mut publisher, _) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "half-pub", true, 0))
            .await?;
    let packets: Vec<Packet> = (1..=MESSAGES)
        .map(|i| Packet::Publish(publish("half/t", QoS::AtLeastOnce, Some(i), format!("m{i}"))))
        .collect();
    publisher.send_all(&packets).await?;

    let mut unacked = BTreeSet::new();
    let mut received = 0;
    while received < MESSAGES {
        match sub.recv(WAIT).await? {
            Some(Packet::Publish(p)) => {
                received += 1;
                let payload = std::str::from_utf8(&p.payload)?.to_string();
                let number: u16 = payload.trim_start_matches('m').parse()?;
                if number.is_multiple_of(2) {
                    sub.ack(&p).await?;
                } else {
                    unacked.insert(payload);
                }
            }
            Some(_) => {}
            None => bail!("the subscriber was disconnected after {received} messages"),
        }
    }
    sub.send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success))).await?;
    // A clean stop commits what is pending, the acknowledgements included.
    tokio::time::sleep(Duration::from_millis(200)).await;
    ensure!(broker.terminate(WAIT).is_some(), "the broker stops on SIGTERM");

    let broker = Gridmq::start_in(broker.data_dir(), CONFIG);
    let (mut sub, connack) =
        PacketClient::connect(broker.addr, connect_packet(Protocol::V5, "half-acker", false, 3600))
            .await?;
    ensure!(connack.session_present, "the persistent session came back");
    let mut again = BTreeSet::new();
    while let Some(packet) = sub.recv(Duration::from_secs(2)).await? {
        if let Packet::Publish(p) = packet {
            again.insert(std::str::from_utf8(&p.payload)?.to_string());
            sub.ack(&p).await?;
        }
    }
    ensure!(
        again == unacked,
        "after the restart: {} re-sent, {} expected; acknowledged ones back: {:?}; missing: {:?}",
        again.len(),
        unacked.len(),
        again.difference(&unacked).take(5).collect::<Vec<_>>(),
        unacked.difference(&again).take(5).collect::<Vec<_>>()
    );
    Ok(())
}
