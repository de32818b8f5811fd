//! What follows from a malformed or partial packet besides the DISCONNECT: the will is published
//! (the connection ended on a protocol error, §3.1.2.5), input after the client's DISCONNECT is
//! ignored (§3.14.4), and a partial packet does not count as traffic for keep alive (§3.1.2.10:
//! the server must receive a Control Packet within 1.5 × Keep Alive).

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use gateway_tests::Gridmq;
use gateway_tests::raw::{
    Healthy, RawClient, WAIT, binary, connack_reason, connect, connect_v5_with_will,
    disconnect_reason, disconnect_v3, disconnect_v5, expect_disconnect, publish_v3, publish_v5,
    utf8,
};

/// A malformed packet on a 5.0 connection with a will: DISCONNECT 0x81, and the will is published.
#[tokio::test]
async fn malformed_packet_publishes_will_v5() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    client.send(&connect_v5_with_will("willing", "healthy/will", b"gone")).await?;
    let connack = client.expect_packet(WAIT).await?;
    ensure!(connack_reason(&connack)? == 0x00, "expected CONNACK success, got {connack:02X?}");
    client.send(&[0x60, 0x02, 0x00, 0x01]).await?;
    expect_disconnect(&mut client, &[0x81]).await?;
    healthy
        .expect_message("healthy/will", &[], b"gone")
        .await
        .context("the will after a protocol error")?;
    healthy.check().await
}

/// The same on 3.1.1 (3.1.1 §3.1.2.5: the server closed the connection because of a protocol
/// error): a bare close, and the will is published.
#[tokio::test]
async fn malformed_packet_publishes_will_v3() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    let payload = [utf8("willing"), utf8("healthy/will"), binary(b"gone")].concat();
    client.send(&connect(4, 0x02 | 0x04, 60, None, &payload)).await?;
    let connack = client.expect_packet(WAIT).await?;
    ensure!(
        connack == [0x20, 0x02, 0x00, 0x00],
        "expected CONNACK 20 02 00 00, got {connack:02X?}"
    );
    client.send(&[0x60, 0x02, 0x00, 0x01]).await?;
    client.expect_closed(WAIT).await?;
    healthy
        .expect_message("healthy/will", &[], b"gone")
        .await
        .context("the will after a protocol error")?;
    healthy.check().await
}

/// A PUBLISH written after the client's own DISCONNECT, in the same write, is not processed.
#[tokio::test]
async fn input_after_disconnect_is_ignored_v5() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "leaving").await?;
    let input = [disconnect_v5(0x00), publish_v5("healthy/after", 0, 0, &[], b"late")].concat();
    client.send(&input).await?;
    client.expect_closed(WAIT).await?;
    healthy.expect_no_message().await.context("a PUBLISH after DISCONNECT was delivered")?;
    healthy.check().await
}

/// The same on 3.1.1.
#[tokio::test]
async fn input_after_disconnect_is_ignored_v3() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect_v3(broker.addr, "leaving").await?;
    let input = [disconnect_v3(), publish_v3("healthy/after", 0, 0, b"late")].concat();
    client.send(&input).await?;
    client.expect_closed(WAIT).await?;
    healthy.expect_no_message().await.context("a PUBLISH after DISCONNECT was delivered")?;
    healthy.check().await
}

/// Keep Alive 1 s, then half a PUBLISH and silence: a partial packet is not a Control Packet, so
/// the broker ends the connection (DISCONNECT 0x8D Keep Alive timeout) after 1.5 s; the
/// bound here is generous (4 s).
#[tokio::test]
async fn partial_packet_then_keep_alive_expires() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    client.send(&connect(5, 0x02, 1, Some(&[]), &utf8("sleepy"))).await?;
    let connack = client.expect_packet(WAIT).await?;
    ensure!(connack_reason(&connack)? == 0x00, "expected CONNACK success, got {connack:02X?}");
    let publish = publish_v5("healthy/sleepy", 0, 0, &[], b"never finished");
    client.send(&publish[..6]).await?;
    let packet = client
        .expect_packet(Duration::from_secs(4))
        .await
        .context("keep alive 1 s with a partial packet pending")?;
    let reason = disconnect_reason(&packet)?;
    ensure!(reason == 0x8D, "expected DISCONNECT 0x8D (keep alive timeout), got {packet:02X?}");
    client.expect_closed(WAIT).await?;
    healthy.expect_no_message().await?;
    healthy.check().await
}

/// Keep Alive 1 s, then a PUBLISH trickled one byte every 250 ms (the whole packet takes about
/// 7 s): bytes of an unfinished packet are not Control Packets, so the trickle must not
/// keep the connection alive; the broker sends DISCONNECT 0x8D before the packet completes.
#[tokio::test]
async fn trickled_packet_does_not_extend_keep_alive() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    client.send(&connect(5, 0x02, 1, Some(&[]), &utf8("trickle"))).await?;
    let connack = client.expect_packet(WAIT).await?;
    ensure!(connack_reason(&connack)? == 0x00, "expected CONNACK success, got {connack:02X?}");
    let publish = publish_v5("healthy/trickle", 0, 0, &[], &[b't'; 12]);
    for (sent, byte) in publish.iter().enumerate() {
        // A write can fail once the broker has closed; the read below says why.
        let _ = client.send(std::slice::from_ref(byte)).await;
        match client.read_packet(Duration::from_millis(250)).await {
            Ok(Some(packet)) => {
                let reason = disconnect_reason(&packet)?;
                ensure!(reason == 0x8D, "expected DISCONNECT 0x8D, got {packet:02X?}");
                client.expect_closed(WAIT).await?;
                healthy.expect_no_message().await?;
                return healthy.check().await;
            }
            Ok(None) => bail!("closed without DISCONNECT 0x8D after {} bytes", sent + 1),
            Err(_) => {} // Still open, nothing sent: trickle on.
        }
    }
    bail!(
        "the broker kept the connection open through {} trickled bytes ({} ms apart) with keep \
         alive 1 s; it must send DISCONNECT 0x8D 1.5 s after the last complete packet",
        publish.len(),
        250
    )
}
