//! QoS 0 and QoS 1 publishes read together are fanned out as runs (one lock and one wake-up
//! per subscriber for a whole burst to one topic). What clients see must not change: every
//! message, once, in the order published, interleaved correctly with other QoS levels and
//! with other topics, also through shared and overlapping subscriptions, which take the
//! message-by-message path; and a PUBACK for each QoS 1 publish, in the order the publishes
//! were sent, with the reason code its own fan-out earned.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use gateway::mqtt::{Packet, Protocol, QoS, ReasonCode};
use gateway_tests::Gridmq;
use gateway_tests::packet_client::{PacketClient, connect_packet, publish};

const WAIT: Duration = Duration::from_secs(10);

/// A received message: its payload and QoS.
type Received = (String, QoS);

/// Receives `count` PUBLISH packets, acknowledging QoS 1 ones; returns (payload, QoS) pairs.
async fn receive(client: &mut PacketClient, count: usize) -> Result<Vec<Received>> {
    let mut got = Vec::new();
    while got.len() < count {
        match client.recv(WAIT).await? {
            Some(Packet::Publish(p)) => {
                got.push((String::from_utf8(p.payload.to_vec())?, p.qos));
                client.ack(&p).await?;
            }
            Some(_) => {}
            None => bail!("{} of {count} messages arrived", got.len()),
        }
    }
    Ok(got)
}

#[tokio::test]
async fn a_burst_of_qos0_publishes_arrives_whole_and_in_order() -> Result<()> {
    let broker = Gridmq::start();
    let connect = |id: &str| connect_packet(Protocol::V5, id, true, 0);
    // Plain: one filter matches `run/...`, the run path.
    let (mut plain, _) = PacketClient::connect(broker.addr, connect("plain")).await?;
    plain.subscribe("run/#", QoS::AtLeastOnce).await?;
    // Overlapping filters on `mixed/...`: the message-by-message path, one copy each.
    let (mut overlapping, _) = PacketClient::connect(broker.addr, connect("overlapping")).await?;
    overlapping.subscribe("mixed/#", QoS::AtMostOnce).await?;
    overlapping.subscribe("mixed/+", QoS::AtLeastOnce).await?;
    // A shared subscription's only member: the message-by-message path too.
    let (mut member, _) = PacketClient::connect(broker.addr, connect("member")).await?;
    member.subscribe("$share/g/mixed/a", QoS::AtLeastOnce).await?;

    // Runs of QoS 0 broken by a QoS 1 publish and by topic changes, in one write, so that the
    // broker reads them together.
    let mut packets = Vec::new();
    let mut sent = Vec::new();
    for i in 0..300u16 {
        let (topic, qos, id) = match i {
            100 => ("run/x", QoS::AtLeastOnce, Some(1)),
            0..150 => ("run/x", QoS::AtMostOnce, None),
            150..190 => ("run/y", QoS::AtMostOnce, None),
            200 => ("mixed/a", QoS::AtLeastOnce, Some(2)),
            _ => ("mixed/a", QoS::AtMostOnce, None),
        };
        let payload = format!("{topic}:{i}");
        packets.push(Packet::Publish(publish(topic, qos, id, payload.clone())));
        sent.push((payload, qos));
    }
    let (mut publisher, _) = PacketClient::connect(broker.addr, connect("publisher")).await?;
    publisher.send_all(&packets).await?;

    let on = |prefix: &str| -> Vec<Received> {
        sent.iter().filter(|(p, _)| p.starts_with(prefix)).cloned().collect()
    };
    let expected = on("run/");
    let got = receive(&mut plain, expected.len()).await?;
    ensure!(got == expected, "plain subscriber: {:?}", first_difference(&got, &expected));
    let expected = on("mixed/");
    let got = receive(&mut overlapping, expected.len()).await?;
    ensure!(got == expected, "overlapping subscriber: {:?}", first_difference(&got, &expected));
    let got = receive(&mut member, expected.len()).await?;
    ensure!(got == expected, "shared member: {:?}", first_difference(&got, &expected));
    for client in [&mut plain, &mut overlapping, &mut member] {
        if let Some(Packet::Publish(p)) = client.recv(Duration::from_millis(300)).await? {
            bail!("a message came twice: {:?}", p.payload);
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_burst_of_qos1_publishes_is_acknowledged_in_order_once_fanned_out() -> Result<()> {
    let broker = Gridmq::start();
    let connect = |id: &str| connect_packet(Protocol::V5, id, true, 0);
    let (mut at_least_once, _) = PacketClient::connect(broker.addr, connect("q1")).await?;
    at_least_once.subscribe("acked/#", QoS::AtLeastOnce).await?;
    // A QoS 0 subscription takes the same runs downgraded.
    let (mut at_most_once, _) = PacketClient::connect(broker.addr, connect("q0")).await?;
    at_most_once.subscribe("acked/#", QoS::AtMostOnce).await?;

    // QoS 1 runs broken by QoS 0 publishes, by a retained QoS 1 publish (never part of a run)
    // and by a topic nobody subscribed to (whose PUBACKs say 0x10), all in one write.
    let mut packets = Vec::new();
    let mut sent = Vec::new();
    let mut acks = Vec::new();
    for i in 1..=300u16 {
        let (topic, qos, retain) = match i {
            40 | 41 => ("acked/x", QoS::AtMostOnce, false),
            120 => ("acked/x", QoS::AtLeastOnce, true),
            200..230 => ("nobody/here", QoS::AtLeastOnce, false),
            250..260 => ("acked/y", QoS::AtLeastOnce, false),
            _ => ("acked/x", QoS::AtLeastOnce, false),
        };
        let payload = format!("{topic}:{i}");
        let id = (qos == QoS::AtLeastOnce).then_some(i);
        let mut packet = publish(topic, qos, id, payload.clone());
        packet.retain = retain;
        packets.push(Packet::Publish(packet));
        if let Some(id) = id {
            let matched = topic.starts_with("acked/");
            acks.push((
                id,
                if matched { ReasonCode::Success } else { ReasonCode::NoMatchingSubscribers },
            ));
        }
        if topic.starts_with("acked/") {
            sent.push((payload, qos));
        }
    }
    let (mut publisher, _) = PacketClient::connect(broker.addr, connect("publisher")).await?;
    publisher.send_all(&packets).await?;

    let mut got_acks = Vec::new();
    while got_acks.len() < acks.len() {
        match publisher.recv(WAIT).await? {
            Some(Packet::PubAck(ack)) => got_acks.push((ack.packet_id, ack.reason)),
            Some(other) => bail!("the publisher got {other:?}"),
            None => bail!("{} of {} PUBACKs arrived", got_acks.len(), acks.len()),
        }
    }
    ensure!(
        got_acks == acks,
        "PUBACKs out of order or wrong: {:?}",
        first_difference(&got_acks, &acks)
    );

    let got = receive(&mut at_least_once, sent.len()).await?;
    ensure!(got == sent, "QoS 1 subscriber: {:?}", first_difference(&got, &sent));
    let downgraded: Vec<Received> =
        sent.iter().map(|(p, _)| (p.clone(), QoS::AtMostOnce)).collect();
    let got = receive(&mut at_most_once, downgraded.len()).await?;
    ensure!(got == downgraded, "QoS 0 subscriber: {:?}", first_difference(&got, &downgraded));
    for client in [&mut at_least_once, &mut at_most_once] {
        if let Some(Packet::Publish(p)) = client.recv(Duration::from_millis(300)).await? {
            bail!("a message came twice: {:?}", p.payload);
        }
    }
    Ok(())
}

/// Where two lists (of messages, of acknowledgements) first differ, and what each has there.
fn first_difference<T: Clone + PartialEq>(
    got: &[T],
    expected: &[T],
) -> Option<(usize, Option<T>, Option<T>)> {
    (0..got.len().max(expected.len()))
        .find(|&i| got.get(i) != expected.get(i))
        .map(|i| (i, got.get(i).cloned(), expected.get(i).cloned()))
}
