//! QoS 0 publishes read together are fanned out as runs (one lock and one wake-up per
//! subscriber for a whole burst to one topic). What subscribers see must not change: every
//! message, once, in the order published, interleaved correctly with QoS 1 publishes and with
//! other topics, also through shared and overlapping subscriptions, which take the
//! message-by-message path.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use gateway::mqtt::{Packet, Protocol, QoS};
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

/// Where two lists of received messages first differ, and what each has there.
fn first_difference(
    got: &[Received],
    expected: &[Received],
) -> Option<(usize, Option<Received>, Option<Received>)> {
    (0..got.len().max(expected.len()))
        .find(|&i| got.get(i) != expected.get(i))
        .map(|i| (i, got.get(i).cloned(), expected.get(i).cloned()))
}
