//! Fencing: a node cut off from every NATS server stops serving its clients within
//! `fence_after_ms`, and acknowledges nothing it could not store meanwhile. When NATS comes
//! back, the node serves again.
//!
//! One standalone nats-server (replicas 1): with a three-server cluster, bringing all three
//! back means restarting them together, before any has a quorum; one server shows the same
//! thing from the node's side, which is what is tested here.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use gateway::mqtt::{Packet, Protocol, QoS, ReasonCode, SubscriptionOptions};
use gateway_tests::Gridmq;
use gateway_tests::cluster::NatsCluster;
use gateway_tests::packet_client::{PacketClient, publish};

use crate::traffic::{connect, subscriber};

const FENCE_AFTER: Duration = Duration::from_millis(1_000);
/// What the node may take beyond `fence_after_ms`: noticing the lost connection, and a loaded
/// test machine.
const SLACK: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_nats_disconnects_its_clients_and_acknowledges_nothing() -> Result<()> {
    let mut nats = NatsCluster::start(1);
    let config = format!(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
         [cluster]\nnats_urls = [\"{}\"]\nnode_id = \"fenced\"\nreplicas = 1\n\
         fence_after_ms = {}\nrelease_timeout_ms = 2000\n",
        nats.url(0),
        FENCE_AFTER.as_millis()
    );
    let node = Gridmq::start_with_config(&config);

    let mut client = connect(node.addr, "fence-publisher", Protocol::V5).await?;
    // The path works while NATS is there: a PUBACK, so that its absence later means something.
    client.send(&Packet::Publish(publish("fence/before", QoS::AtLeastOnce, Some(1), "x"))).await?;
    let first = wait_for(&mut client, Duration::from_secs(10)).await;
    ensure!(
        matches!(&first, Ok(Some(Packet::PubAck(ack))) if !ack.reason.is_error()),
        "no PUBACK while NATS runs: {first:?}"
    );

    tokio::task::block_in_place(|| nats.kill(0));
    let cut = Instant::now();
    client.send(&Packet::Publish(publish("fence/during", QoS::AtLeastOnce, Some(2), "y"))).await?;
    let ended = loop {
        match wait_for(&mut client, FENCE_AFTER + SLACK + Duration::from_secs(5)).await {
            Ok(Some(Packet::PubAck(ack))) if !ack.reason.is_error() => {
                bail!(
                    "a publish made while NATS was down was acknowledged ({:?} after the cut)",
                    cut.elapsed()
                )
            }
            Ok(Some(Packet::PubAck(ack))) => {
                eprintln!("the publish made while NATS was down was refused: {:?}", ack.reason);
            }
            Ok(Some(Packet::Disconnect(disconnect))) => {
                break format!("DISCONNECT {:?}", disconnect.reason);
            }
            Ok(Some(_)) => {}
            Err(why) => break format!("connection closed ({why})"),
            Ok(None) => {
                bail!("the client was still connected {:?} after NATS went down", cut.elapsed())
            }
        }
    };
    let took = cut.elapsed();
    eprintln!("{ended} {took:?} after the NATS server was killed (fence_after_ms {FENCE_AFTER:?})");
    ensure!(
        ended == format!("DISCONNECT {:?}", ReasonCode::ServerBusy),
        "ended with {ended}, not DISCONNECT Server busy (0x89)"
    );
    ensure!(took <= FENCE_AFTER + SLACK, "fenced after {took:?}, above {:?}", FENCE_AFTER + SLACK);

    // NATS back: the node serves again, QoS 1 end to end.
    tokio::task::block_in_place(|| nats.restart(0));
    let back = Instant::now();
    let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    loop {
        let attempt = async {
            let mut sub =
                subscriber(node.addr, "fence-after-sub", Protocol::V5, &[("fence/after", options)])
                    .await?;
            let mut publisher = connect(node.addr, "fence-after-publisher", Protocol::V5).await?;
            publisher
                .send(&Packet::Publish(publish("fence/after", QoS::AtLeastOnce, Some(1), "z")))
                .await?;
            match wait_for(&mut publisher, Duration::from_secs(5)).await {
                Ok(Some(Packet::PubAck(ack))) if !ack.reason.is_error() => {}
                other => bail!("publish after NATS came back: {other:?}"),
            }
            match wait_for(&mut sub, Duration::from_secs(5)).await {
                Ok(Some(Packet::Publish(p))) if p.payload.as_ref() == b"z" => Ok(()),
                other => bail!("delivery after NATS came back: {other:?}"),
            }
        };
        match attempt.await {
            Ok(()) => break,
            Err(error) if back.elapsed() > Duration::from_secs(30) => {
                bail!("the node does not serve QoS 1 30 s after NATS came back: {error:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    eprintln!("the node served QoS 1 again {:?} after NATS came back", back.elapsed());
    Ok(())
}

/// The next packet other than PINGRESP within `within` (`None`: nothing came), or how the
/// connection ended.
async fn wait_for(client: &mut PacketClient, within: Duration) -> Result<Option<Packet>, String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match client.recv(Duration::from_millis(100)).await {
            Ok(Some(Packet::PingResp)) | Ok(None) => {}
            Ok(Some(packet)) => return Ok(Some(packet)),
            Err(error) => return Err(format!("{error:#}")),
        }
    }
    Ok(None)
}
