//! `$share` across nodes: members of one shared subscription on nodes A and C, messages
//! published on node B. Each message reaches exactly one member cluster-wide, and both members
//! get some; once the member on C has left, the one on A gets them all.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use gateway::mqtt::{Packet, Protocol, QoS, ReasonCode};
use gateway_tests::cluster::GridmqCluster;
use gateway_tests::packet_client::{PacketClient, connect_packet, publish};

const MESSAGES: u16 = 200;

/// How long the members' nodes may take to learn of each other's members.
const SETTLE: Duration = Duration::from_secs(1);

async fn member(addr: std::net::SocketAddr, id: &str) -> Result<PacketClient> {
    let (mut client, connack) =
        PacketClient::connect(addr, connect_packet(Protocol::V5, id, true, 0)).await?;
    ensure!(connack.code == ReasonCode::Success, "{id}: CONNACK {:?}", connack.code);
    let suback = client.subscribe("$share/g/t/#", QoS::AtLeastOnce).await?;
    ensure!(suback.reasons == [ReasonCode::GrantedQoS1], "{id}: SUBACK {:?}", suback.reasons);
    Ok(client)
}

/// Publishes `MESSAGES` messages `0`..`199` at `qos` on `t/<n % 4>` from a client of `addr`,
/// waiting for each acknowledgement at QoS 1.
async fn publish_all(addr: std::net::SocketAddr, qos: QoS) -> Result<()> {
    let (mut publisher, _) =
        PacketClient::connect(addr, connect_packet(Protocol::V5, "publisher", true, 0)).await?;
    for n in 0..MESSAGES {
        let id = (qos != QoS::AtMostOnce).then_some(n + 1);
        let topic = format!("t/{}", n % 4);
        publisher.send(&Packet::Publish(publish(&topic, qos, id, n.to_string()))).await?;
        if qos == QoS::AtLeastOnce {
            match publisher.recv(Duration::from_secs(5)).await? {
                Some(Packet::PubAck(ack)) if (ack.reason as u8) < 0x80 => {}
                other => bail!("message {n}: expected PUBACK, got {other:?}"),
            }
        }
    }
    Ok(())
}

/// Reads the members until `MESSAGES` arrived in all, or nothing came for two seconds;
/// returns how many times each payload arrived, and how many each member got.
async fn collect(members: &mut [PacketClient]) -> Result<(BTreeMap<u16, usize>, Vec<usize>)> {
    collect_within(members, Duration::from_secs(2)).await
}

/// [`collect`], waiting up to `quiet` for the next message.
async fn collect_within(
    members: &mut [PacketClient],
    quiet: Duration,
) -> Result<(BTreeMap<u16, usize>, Vec<usize>)> {
    let mut seen = BTreeMap::new();
    let mut per_member = vec![0; members.len()];
    let mut quiet_since = Instant::now();
    while per_member.iter().sum::<usize>() < usize::from(MESSAGES) && quiet_since.elapsed() < quiet
    {
        for (i, member) in members.iter_mut().enumerate() {
            while let Some(packet) = member.recv(Duration::from_millis(50)).await? {
                let Packet::Publish(message) = packet else { continue };
                member.ack(&message).await?;
                let n: u16 = String::from_utf8_lossy(&message.payload).parse()?;
                *seen.entry(n).or_insert(0) += 1;
                per_member[i] += 1;
                quiet_since = Instant::now();
            }
        }
    }
    // Anything more would be a duplicate: give it a moment to show.
    for (i, member) in members.iter_mut().enumerate() {
        while let Some(packet) = member.recv(Duration::from_millis(300)).await? {
            let Packet::Publish(message) = packet else { continue };
            member.ack(&message).await?;
            let n: u16 = String::from_utf8_lossy(&message.payload).parse()?;
            *seen.entry(n).or_insert(0) += 1;
            per_member[i] += 1;
        }
    }
    Ok((seen, per_member))
}

fn check(qos: QoS, seen: &BTreeMap<u16, usize>, per_member: &[usize]) -> Result<()> {
    let missing: Vec<u16> = (0..MESSAGES).filter(|n| !seen.contains_key(n)).collect();
    let twice: Vec<(&u16, &usize)> = seen.iter().filter(|(_, count)| **count > 1).collect();
    eprintln!("{qos:?}: the members got {per_member:?}");
    ensure!(missing.is_empty(), "{qos:?}: never delivered: {missing:?}");
    ensure!(twice.is_empty(), "{qos:?}: delivered more than once: {twice:?}");
    ensure!(per_member.iter().all(|&n| n > 0), "{qos:?}: a member got nothing: {per_member:?}");
    Ok(())
}

// Multi-threaded: the harness blocks while it starts processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_nodes_each_get_distinct_messages() -> Result<()> {
    let cluster = GridmqCluster::start(3);
    let (a, b, c) = (cluster.nodes[0].addr, cluster.nodes[1].addr, cluster.nodes[2].addr);
    let mut members = vec![member(a, "member-a").await?, member(c, "member-c").await?];
    tokio::time::sleep(SETTLE).await;

    publish_all(b, QoS::AtLeastOnce).await?;
    let (seen, per_member) = collect(&mut members).await?;
    check(QoS::AtLeastOnce, &seen, &per_member)?;

    // QoS 0 messages have no stream sequence; their origin's counter keys them the same way.
    publish_all(b, QoS::AtMostOnce).await?;
    let (seen, per_member) = collect(&mut members).await?;
    check(QoS::AtMostOnce, &seen, &per_member)?;

    // The member on C leaves: once A knows, A's member gets every message.
    let member_c = members.pop().expect("two members");
    drop(member_c);
    tokio::time::sleep(SETTLE).await;
    publish_all(b, QoS::AtLeastOnce).await?;
    let (seen, per_member) = collect(&mut members).await?;
    check(QoS::AtLeastOnce, &seen, &per_member)?;
    Ok(())
}

// A member's node dies (SIGKILL): its entry is not withdrawn, and ages out of the other nodes'
// lists within `EXPIRY` (4 s) and a refresh; from then on the member on A gets every message,
// and the QoS 1 messages keyed to the dead node before that are read again from the stream and
// reach the member on A too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_members_node_dies_the_other_members_get_everything() -> Result<()> {
    let mut cluster = GridmqCluster::start(3);
    let (a, b, c) = (cluster.nodes[0].addr, cluster.nodes[1].addr, cluster.nodes[2].addr);
    let mut members = vec![member(a, "member-a").await?];
    let _member_c = member(c, "member-c").await?;
    tokio::time::sleep(SETTLE).await;

    cluster.nodes[2].kill();
    let killed = Instant::now();
    publish_all(b, QoS::AtLeastOnce).await?;
    let (seen, per_member) = collect_within(&mut members, Duration::from_secs(8)).await?;
    eprintln!("published right after node C died: all there {:?} after the kill", killed.elapsed());
    check(QoS::AtLeastOnce, &seen, &per_member)?;

    publish_all(b, QoS::AtLeastOnce).await?;
    let (seen, per_member) = collect(&mut members).await?;
    check(QoS::AtLeastOnce, &seen, &per_member)?;
    Ok(())
}
