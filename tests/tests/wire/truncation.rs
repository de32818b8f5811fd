//! Truncated packets, one packet type at a time, on 5.0 connections.
//!
//! For each type two tests:
//! - `*_truncated_then_eof`: the packet stops short of its remaining length and the client closes
//!   its write side. The broker must not act on the partial packet (no acknowledgement, no
//!   delivery), must close the connection (a DISCONNECT with an error reason code before the close
//!   is tolerated, nothing else), and must keep serving the bystander.
//! - `*_completed_in_pieces`: the same packet arrives across several writes (type byte, remaining
//!   length, most of the body, the last byte) with pauses; the broker stays silent until the last
//!   byte, then processes the packet normally.

use anyhow::{Context, Result, ensure};
use gateway_tests::Gridmq;
use gateway_tests::raw::{
    Ack, Healthy, PINGREQ, PINGRESP, RawClient, WAIT, ack, connack_reason, connect_v5,
    connect_v5_with_will, disconnect_reason, disconnect_v5, expect_disconnect, parse_ack_v5,
    parse_publish, publish_v3, publish_v5, subscribe_v5, unsubscribe_v5,
};

/// Split points for a packet of `len` bytes: after the type byte, after the remaining length
/// (one byte in all packets here), and before the last byte.
fn cuts(len: usize) -> Vec<usize> {
    let mut cuts = vec![1, 2, len - 1];
    cuts.dedup();
    cuts.retain(|&c| c > 0 && c < len);
    cuts
}

/// Sends `partial`, closes the write side, and checks the broker closes the connection having
/// sent nothing but (optionally) a DISCONNECT with an error reason code, or for a CONNECT, a
/// refusing CONNACK.
async fn truncated_then_eof(client: &mut RawClient, partial: &[u8]) -> Result<()> {
    client.send(partial).await?;
    client.shutdown_write().await?;
    let context =
        || format!("after sending the partial packet {partial:02X?} and closing the write side");
    while let Some(packet) = client.read_packet(WAIT).await.with_context(context)? {
        let refusal = match packet[0] {
            0xE0 => disconnect_reason(&packet)? >= 0x80,
            0x20 => connack_reason(&packet)? >= 0x80,
            _ => false,
        };
        ensure!(
            refusal,
            "the broker answered a partial packet with {packet:02X?} (sent {partial:02X?})"
        );
    }
    Ok(())
}

/// Connects a 5.0 client and checks CONNACK success.
async fn connected(broker: &Gridmq, id: &str) -> Result<RawClient> {
    Ok(RawClient::connect_v5(broker.addr, id).await?.0)
}

/// Checks the next packet is a PINGRESP to a PINGREQ sent now: the connection is healthy and
/// nothing else is queued for it.
async fn ping(client: &mut RawClient) -> Result<()> {
    client.send(&PINGREQ).await?;
    let pong = client.expect_packet(WAIT).await?;
    ensure!(pong == PINGRESP, "expected PINGRESP, got {pong:02X?}");
    Ok(())
}

/// Checks the next packet is the acknowledgement `first_byte` for `packet_id` with `reasons`.
async fn expect_ack(
    client: &mut RawClient,
    first_byte: u8,
    packet_id: u16,
    reasons: &[u8],
) -> Result<()> {
    let packet = client.expect_packet(WAIT).await?;
    let got = parse_ack_v5(&packet)?;
    let expected = Ack { first_byte, packet_id, reasons: reasons.to_vec() };
    ensure!(got == expected, "expected {expected:02X?}, got {packet:02X?}");
    Ok(())
}

/// Subscribes `client` to `topic` at `qos`, has a fresh 3.1.1 client publish `payload` there at
/// `qos` (completing its own handshake), and returns the packet id of the PUBLISH `client` gets.
async fn deliver(broker: &Gridmq, client: &mut RawClient, topic: &str, qos: u8) -> Result<u16> {
    client.send(&subscribe_v5(1, topic, qos)).await?;
    expect_ack(client, 0x90, 1, &[qos]).await.context("SUBACK")?;
    let mut publisher = RawClient::connect_v3(broker.addr, "publisher").await?;
    publisher.send(&publish_v3(topic, qos, 1, b"payload")).await?;
    if qos == 1 {
        let puback = publisher.expect_packet(WAIT).await?;
        ensure!(
            puback == [0x40, 0x02, 0x00, 0x01],
            "publisher: expected PUBACK, got {puback:02X?}"
        );
    } else {
        let pubrec = publisher.expect_packet(WAIT).await?;
        ensure!(
            pubrec == [0x50, 0x02, 0x00, 0x01],
            "publisher: expected PUBREC, got {pubrec:02X?}"
        );
        publisher.send(&ack(0x62, 1)).await?;
        let pubcomp = publisher.expect_packet(WAIT).await?;
        ensure!(
            pubcomp == [0x70, 0x02, 0x00, 0x01],
            "publisher: expected PUBCOMP, got {pubcomp:02X?}"
        );
    }
    let packet = client.expect_packet(WAIT).await.context("the delivered PUBLISH")?;
    let publish = parse_publish(&packet, true)?;
    ensure!(
        publish.first_byte == 0x30 | (qos << 1)
            && publish.topic == topic.as_bytes()
            && publish.payload == b"payload",
        "expected a QoS {qos} PUBLISH of 'payload' on {topic}, got {packet:02X?}"
    );
    publish.packet_id.context("delivered PUBLISH without packet id")
}

// === CONNECT ===

#[tokio::test]
async fn connect_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    let connect = connect_v5("truncated");
    truncated_then_eof(&mut client, &connect[..connect.len() - 1]).await?;
    healthy.check().await
}

#[tokio::test]
async fn connect_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    let connect = connect_v5("pieces");
    client.send_in_pieces(&connect, &cuts(connect.len())).await?;
    let connack = client.expect_packet(WAIT).await?;
    ensure!(connack_reason(&connack)? == 0x00, "expected CONNACK success, got {connack:02X?}");
    ping(&mut client).await?;
    healthy.check().await
}

// === PUBLISH ===

#[tokio::test]
async fn publish_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "truncated").await?;
    let publish = publish_v5("healthy/partial", 1, 3, &[], b"partial");
    truncated_then_eof(&mut client, &publish[..publish.len() - 1]).await?;
    healthy.expect_no_message().await.context("a partial PUBLISH was delivered")?;
    healthy.check().await
}

/// The remaining length itself is cut after a continuation byte.
#[tokio::test]
async fn publish_remaining_length_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "truncated").await?;
    truncated_then_eof(&mut client, &[0x32, 0x80]).await?;
    healthy.check().await
}

#[tokio::test]
async fn publish_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "pieces").await?;
    let publish = publish_v5("healthy/pieces", 1, 3, &[], b"whole");
    client.send_in_pieces(&publish, &cuts(publish.len())).await?;
    expect_ack(&mut client, 0x40, 3, &[0x00]).await?;
    healthy.expect_message("healthy/pieces", &[], b"whole").await?;
    healthy.check().await
}

// === PUBACK ===

#[tokio::test]
async fn puback_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "truncated").await?;
    let id = deliver(&broker, &mut client, "q/one", 1).await?;
    truncated_then_eof(&mut client, &ack(0x40, id)[..3]).await?;
    healthy.check().await
}

#[tokio::test]
async fn puback_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "pieces").await?;
    let id = deliver(&broker, &mut client, "q/one", 1).await?;
    client.send_in_pieces(&ack(0x40, id), &[1, 2, 3]).await?;
    ping(&mut client).await?;
    healthy.check().await
}

// === PUBREC (client as receiver of a QoS 2 message) ===

#[tokio::test]
async fn pubrec_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "truncated").await?;
    let id = deliver(&broker, &mut client, "q/two", 2).await?;
    truncated_then_eof(&mut client, &ack(0x50, id)[..3]).await?;
    healthy.check().await
}

#[tokio::test]
async fn pubrec_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "pieces").await?;
    let id = deliver(&broker, &mut client, "q/two", 2).await?;
    client.send_in_pieces(&ack(0x50, id), &[1, 2, 3]).await?;
    expect_ack(&mut client, 0x62, id, &[0x00]).await.context("PUBREL after the PUBREC")?;
    healthy.check().await
}

// === PUBREL (client as sender of a QoS 2 message) ===

/// Publishes QoS 2 id 9 on a topic nobody subscribes to and checks PUBREC.
async fn qos2_published(client: &mut RawClient) -> Result<()> {
    client.send(&publish_v5("q/nobody", 2, 9, &[], b"x")).await?;
    let packet = client.expect_packet(WAIT).await?;
    let got = parse_ack_v5(&packet)?;
    ensure!(
        got.first_byte == 0x50 && got.packet_id == 9 && matches!(got.reasons[..], [0x00] | [0x10]),
        "expected PUBREC id 9 success (0x00 or 0x10), got {packet:02X?}"
    );
    Ok(())
}

#[tokio::test]
async fn pubrel_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "truncated").await?;
    qos2_published(&mut client).await?;
    truncated_then_eof(&mut client, &ack(0x62, 9)[..3]).await?;
    healthy.check().await
}

#[tokio::test]
async fn pubrel_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "pieces").await?;
    qos2_published(&mut client).await?;
    client.send_in_pieces(&ack(0x62, 9), &[1, 2, 3]).await?;
    expect_ack(&mut client, 0x70, 9, &[0x00]).await.context("PUBCOMP after the PUBREL")?;
    healthy.check().await
}

// === PUBCOMP ===

/// Delivers a QoS 2 message to `client` and completes PUBREC → PUBREL; returns the packet id.
async fn awaiting_pubcomp(broker: &Gridmq, client: &mut RawClient) -> Result<u16> {
    let id = deliver(broker, client, "q/two", 2).await?;
    client.send(&ack(0x50, id)).await?;
    expect_ack(client, 0x62, id, &[0x00]).await.context("PUBREL")?;
    Ok(id)
}

#[tokio::test]
async fn pubcomp_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "truncated").await?;
    let id = awaiting_pubcomp(&broker, &mut client).await?;
    truncated_then_eof(&mut client, &ack(0x70, id)[..3]).await?;
    healthy.check().await
}

#[tokio::test]
async fn pubcomp_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "pieces").await?;
    let id = awaiting_pubcomp(&broker, &mut client).await?;
    client.send_in_pieces(&ack(0x70, id), &[1, 2, 3]).await?;
    ping(&mut client).await?;
    healthy.check().await
}

// === SUBSCRIBE ===

#[tokio::test]
async fn subscribe_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "truncated").await?;
    let subscribe = subscribe_v5(4, "t/sub", 0x00);
    truncated_then_eof(&mut client, &subscribe[..subscribe.len() - 1]).await?;
    healthy.check().await
}

#[tokio::test]
async fn subscribe_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "pieces").await?;
    let subscribe = subscribe_v5(4, "t/sub", 0x00);
    client.send_in_pieces(&subscribe, &cuts(subscribe.len())).await?;
    expect_ack(&mut client, 0x90, 4, &[0x00]).await?;
    client.send(&publish_v5("t/sub", 0, 0, &[], b"hi")).await?;
    let got = client.expect_packet(WAIT).await?;
    let expected = publish_v5("t/sub", 0, 0, &[], b"hi");
    ensure!(
        got == expected,
        "expected the message on the new subscription {expected:02X?}, got {got:02X?}"
    );
    healthy.check().await
}

// === UNSUBSCRIBE ===

/// Subscribes `client` to `t/unsub` (id 1) and checks SUBACK.
async fn subscribed(client: &mut RawClient) -> Result<()> {
    client.send(&subscribe_v5(1, "t/unsub", 0x00)).await?;
    expect_ack(client, 0x90, 1, &[0x00]).await
}

#[tokio::test]
async fn unsubscribe_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "truncated").await?;
    subscribed(&mut client).await?;
    let unsubscribe = unsubscribe_v5(5, "t/unsub");
    truncated_then_eof(&mut client, &unsubscribe[..unsubscribe.len() - 1]).await?;
    healthy.check().await
}

#[tokio::test]
async fn unsubscribe_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "pieces").await?;
    subscribed(&mut client).await?;
    let unsubscribe = unsubscribe_v5(5, "t/unsub");
    client.send_in_pieces(&unsubscribe, &cuts(unsubscribe.len())).await?;
    expect_ack(&mut client, 0xB0, 5, &[0x00]).await?;
    // Unsubscribed: its own message does not come back, only the PINGRESP.
    client.send(&publish_v5("t/unsub", 0, 0, &[], b"hi")).await?;
    ping(&mut client).await?;
    healthy.check().await
}

// === PINGREQ ===

#[tokio::test]
async fn pingreq_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "truncated").await?;
    truncated_then_eof(&mut client, &PINGREQ[..1]).await?;
    healthy.check().await
}

#[tokio::test]
async fn pingreq_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "pieces").await?;
    client.send_in_pieces(&PINGREQ, &[1]).await?;
    let pong = client.expect_packet(WAIT).await?;
    ensure!(pong == PINGRESP, "expected PINGRESP, got {pong:02X?}");
    healthy.check().await
}

// === DISCONNECT ===

/// A truncated DISCONNECT is not a DISCONNECT: the connection is lost, so the will
/// (on `healthy/will`) is published (§3.1.2.5).
#[tokio::test]
async fn disconnect_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    client.send(&connect_v5_with_will("truncated", "healthy/will", b"gone")).await?;
    let connack = client.expect_packet(WAIT).await?;
    ensure!(connack_reason(&connack)? == 0x00, "expected CONNACK success, got {connack:02X?}");
    truncated_then_eof(&mut client, &disconnect_v5(0x00)[..3]).await?;
    healthy
        .expect_message("healthy/will", &[], b"gone")
        .await
        .context("the will after a partial DISCONNECT")?;
    healthy.check().await
}

/// A DISCONNECT (0x00) split across writes: the connection stays open until the last byte, then
/// the broker closes without a word and without publishing the will (§3.14.4).
#[tokio::test]
async fn disconnect_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    client.send(&connect_v5_with_will("pieces", "healthy/will", b"gone")).await?;
    let connack = client.expect_packet(WAIT).await?;
    ensure!(connack_reason(&connack)? == 0x00, "expected CONNACK success, got {connack:02X?}");
    client.send_in_pieces(&disconnect_v5(0x00), &[1, 2, 3]).await?;
    client.expect_closed(WAIT).await?;
    healthy
        .expect_no_message()
        .await
        .context("the will was published after a normal DISCONNECT")?;
    healthy.check().await
}

// === AUTH ===

#[tokio::test]
async fn auth_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "truncated").await?;
    truncated_then_eof(&mut client, &[0xF0, 0x02, 0x18]).await?;
    healthy.check().await
}

/// A complete AUTH (Continue authentication) on a connection that negotiated no authentication
/// method is a Protocol Error (§4.12): the broker waits for the whole packet, then DISCONNECT 0x82.
#[tokio::test]
async fn auth_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = connected(&broker, "pieces").await?;
    client.send_in_pieces(&[0xF0, 0x02, 0x18, 0x00], &[1, 2, 3]).await?;
    expect_disconnect(&mut client, &[0x82]).await?;
    healthy.check().await
}

// === 3.1.1: the same for PUBLISH, where the broker has no DISCONNECT to send ===

#[tokio::test]
async fn v3_publish_truncated_then_eof() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect_v3(broker.addr, "truncated").await?;
    let publish = publish_v3("healthy/partial", 1, 3, b"partial");
    client.send(&publish[..publish.len() - 1]).await?;
    client.shutdown_write().await?;
    client.expect_closed(WAIT).await.context("3.1.1: a partial PUBLISH then EOF")?;
    healthy.expect_no_message().await.context("a partial PUBLISH was delivered")?;
    healthy.check().await
}

#[tokio::test]
async fn v3_publish_completed_in_pieces() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect_v3(broker.addr, "pieces").await?;
    let publish = publish_v3("healthy/pieces", 1, 3, b"whole");
    client.send_in_pieces(&publish, &cuts(publish.len())).await?;
    let puback = client.expect_packet(WAIT).await?;
    ensure!(puback == [0x40, 0x02, 0x00, 0x03], "expected PUBACK 40 02 00 03, got {puback:02X?}");
    healthy.expect_message("healthy/pieces", &[], b"whole").await?;
    healthy.check().await
}
