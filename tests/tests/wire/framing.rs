//! Framing: valid packets whose bytes arrive one at a time, several per write, or with packet
//! boundaries falling anywhere inside the writes. The broker must answer exactly as if each
//! packet had arrived in one piece.

use anyhow::{Context, Result, ensure};
use gateway_tests::Gridmq;
use gateway_tests::raw::{
    Ack, Healthy, PINGREQ, PINGRESP, RawClient, WAIT, ack, connack_reason, connect_v3, connect_v5,
    expect_disconnect, parse_ack_v5, parse_publish, publish_v3, publish_v5, subscribe_v3,
    subscribe_v5,
};
use std::time::Duration;

/// Pause between single-byte writes.
const BYTE_PAUSE: Duration = Duration::from_millis(2);

/// Checks a 5.0 CONNACK says success.
fn assert_connack_v5(packet: &[u8]) -> Result<()> {
    ensure!(connack_reason(packet)? == 0x00, "expected CONNACK success, got {packet:02X?}");
    Ok(())
}

/// Checks `packets` are, in any order, exactly the expected answers to a 5.0 session that
/// subscribed `topic` at QoS 1 (SUBACK id 1) and then published `payload` there at QoS 1 (id 2)
/// and at QoS 0, and pinged. Returns the packet id of the QoS 1 delivery.
fn check_v5_answers(packets: &[Vec<u8>], topic: &str, payload: &[u8]) -> Result<u16> {
    let (mut suback, mut puback, mut q1, mut q0, mut pong) = (0, 0, None, 0, 0);
    for packet in packets {
        match packet[0] {
            0x90 => {
                ensure!(
                    parse_ack_v5(packet)?
                        == Ack { first_byte: 0x90, packet_id: 1, reasons: vec![0x01] },
                    "expected SUBACK id 1 granting QoS 1, got {packet:02X?}"
                );
                suback += 1;
            }
            0x40 => {
                ensure!(
                    parse_ack_v5(packet)?
                        == Ack { first_byte: 0x40, packet_id: 2, reasons: vec![0x00] },
                    "expected PUBACK id 2 success, got {packet:02X?}"
                );
                puback += 1;
            }
            0x32 => {
                let publish = parse_publish(packet, true)?;
                ensure!(
                    publish.topic == topic.as_bytes()
                        && publish.payload == payload
                        && publish.properties.is_empty(),
                    "unexpected QoS 1 delivery {packet:02X?}"
                );
                ensure!(q1.is_none(), "QoS 1 message delivered twice: {packets:02X?}");
                q1 = publish.packet_id;
            }
            0x30 => {
                let expected = publish_v5(topic, 0, 0, &[], payload);
                ensure!(
                    *packet == expected,
                    "expected QoS 0 delivery {expected:02X?}, got {packet:02X?}"
                );
                q0 += 1;
            }
            _ => {
                ensure!(*packet == PINGRESP, "unexpected packet {packet:02X?}");
                pong += 1;
            }
        }
    }
    ensure!(
        (suback, puback, q0, pong) == (1, 1, 1, 1),
        "expected one each of SUBACK, PUBACK, QoS 0 delivery, PINGRESP: got {packets:02X?}"
    );
    q1.context("no QoS 1 delivery")
}

/// The 5.0 session of [`check_v5_answers`], as one byte string.
fn v5_session(client_id: &str, topic: &str, payload: &[u8]) -> Vec<u8> {
    [
        connect_v5(client_id),
        subscribe_v5(1, topic, 0x01),
        publish_v5(topic, 1, 2, &[], payload),
        publish_v5(topic, 0, 0, &[], payload),
        PINGREQ.to_vec(),
    ]
    .concat()
}

/// CONNECT + SUBSCRIBE + PUBLISH (QoS 1 and 0) + PINGREQ, one byte per write: everything answered.
#[tokio::test]
async fn v5_one_byte_at_a_time() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    client.send_bytewise(&v5_session("bytewise", "bw/t", b"hello"), BYTE_PAUSE).await?;
    assert_connack_v5(&client.expect_packet(WAIT).await?)?;
    let packets = client.expect_packets(5, WAIT).await?;
    let id = check_v5_answers(&packets, "bw/t", b"hello")?;
    client.send_bytewise(&ack(0x40, id), BYTE_PAUSE).await?;
    client.send_bytewise(&PINGREQ, BYTE_PAUSE).await?;
    let pong = client.expect_packet(WAIT).await?;
    ensure!(pong == PINGRESP, "expected PINGRESP, got {pong:02X?}");
    healthy.check().await
}

/// The same 3.1.1 session one byte per write, with exact 3.1.1 answers.
#[tokio::test]
async fn v3_one_byte_at_a_time() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    let session = [
        connect_v3("bytewise"),
        subscribe_v3(1, "bw/t", 1),
        publish_v3("bw/t", 1, 2, b"hello"),
        PINGREQ.to_vec(),
    ]
    .concat();
    client.send_bytewise(&session, BYTE_PAUSE).await?;
    let connack = client.expect_packet(WAIT).await?;
    ensure!(
        connack == [0x20, 0x02, 0x00, 0x00],
        "expected CONNACK 20 02 00 00, got {connack:02X?}"
    );
    let suback = client.expect_packet(WAIT).await?;
    ensure!(
        suback == [0x90, 0x03, 0x00, 0x01, 0x01],
        "expected SUBACK 90 03 00 01 01, got {suback:02X?}"
    );
    let mut rest = client.expect_packets(3, WAIT).await?;
    rest.sort();
    let delivery = parse_publish(&rest[0], false)?;
    ensure!(
        rest[0][0] == 0x32 && delivery.topic == b"bw/t" && delivery.payload == b"hello",
        "expected a QoS 1 delivery of 'hello' on bw/t, got {:02X?}",
        rest[0]
    );
    ensure!(
        rest[1] == [0x40, 0x02, 0x00, 0x02],
        "expected PUBACK 40 02 00 02, got {:02X?}",
        rest[1]
    );
    ensure!(rest[2] == PINGRESP, "expected PINGRESP, got {:02X?}", rest[2]);
    healthy.check().await
}

/// CONNECT + SUBSCRIBE + PUBLISH ×2 + PINGREQ in a single write.
#[tokio::test]
async fn v5_several_packets_in_one_write() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    client.send(&v5_session("batch", "batch/t", b"hello")).await?;
    assert_connack_v5(&client.expect_packet(WAIT).await?)?;
    let packets = client.expect_packets(5, WAIT).await?;
    check_v5_answers(&packets, "batch/t", b"hello")?;
    healthy.check().await
}

/// Twenty QoS 1 PUBLISHes and a PINGREQ in a single write after CONNECT: twenty PUBACKs in order
/// (§4.6), the messages delivered in order, and the PINGRESP.
#[tokio::test]
async fn v5_many_publishes_in_one_write() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "burst").await?;
    let mut batch = Vec::new();
    for id in 1..=20u16 {
        batch.extend(publish_v5("healthy/burst", 1, id, &[], format!("m{id}").as_bytes()));
    }
    batch.extend(PINGREQ);
    client.send(&batch).await?;
    for id in 1..=20u16 {
        let packet = client.expect_packet(WAIT).await?;
        let got = parse_ack_v5(&packet)?;
        ensure!(
            got == Ack { first_byte: 0x40, packet_id: id, reasons: vec![0x00] },
            "expected PUBACK id {id} success, got {packet:02X?}"
        );
    }
    let pong = client.expect_packet(WAIT).await?;
    ensure!(pong == PINGRESP, "expected PINGRESP, got {pong:02X?}");
    for id in 1..=20u16 {
        healthy.expect_message("healthy/burst", &[], format!("m{id}").as_bytes()).await?;
    }
    healthy.check().await
}

/// A 5.0 session cut into 7-byte writes, so packet boundaries fall inside writes.
#[tokio::test]
async fn v5_boundaries_inside_writes() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    let session = v5_session("straddle", "straddle/t", b"hello");
    for chunk in session.chunks(7) {
        client.send(chunk).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_connack_v5(&client.expect_packet(WAIT).await?)?;
    let packets = client.expect_packets(5, WAIT).await?;
    check_v5_answers(&packets, "straddle/t", b"hello")?;
    healthy.check().await
}

/// A valid PUBLISH followed, in the same write, by a malformed one (PUBREL flags): the first is
/// processed (PUBACK, delivered), then DISCONNECT 0x81.
#[tokio::test]
async fn valid_then_malformed_in_one_write() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "mixed").await?;
    let batch =
        [publish_v5("healthy/mixed", 1, 1, &[], b"first"), vec![0x60, 0x02, 0x00, 0x01]].concat();
    client.send(&batch).await?;
    let packet = client.expect_packet(WAIT).await?;
    ensure!(
        parse_ack_v5(&packet)? == Ack { first_byte: 0x40, packet_id: 1, reasons: vec![0x00] },
        "expected PUBACK id 1 success, got {packet:02X?}"
    );
    expect_disconnect(&mut client, &[0x81]).await?;
    healthy.expect_message("healthy/mixed", &[], b"first").await?;
    healthy.check().await
}

/// The smallest pipelining case: CONNECT and PINGREQ in one write, nothing sent after. The broker
/// must answer both without waiting for more input.
#[tokio::test]
async fn v5_connect_and_pingreq_in_one_write() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    client.send(&[connect_v5("pipelined"), PINGREQ.to_vec()].concat()).await?;
    assert_connack_v5(&client.expect_packet(WAIT).await?)?;
    let pong =
        client.expect_packet(WAIT).await.context("PINGRESP to the PINGREQ sent with CONNECT")?;
    ensure!(pong == PINGRESP, "expected PINGRESP, got {pong:02X?}");
    healthy.check().await
}

/// The same for 3.1.1.
#[tokio::test]
async fn v3_connect_and_pingreq_in_one_write() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    client.send(&[connect_v3("pipelined"), PINGREQ.to_vec()].concat()).await?;
    let connack = client.expect_packet(WAIT).await?;
    ensure!(
        connack == [0x20, 0x02, 0x00, 0x00],
        "expected CONNACK 20 02 00 00, got {connack:02X?}"
    );
    let pong =
        client.expect_packet(WAIT).await.context("PINGRESP to the PINGREQ sent with CONNECT")?;
    ensure!(pong == PINGRESP, "expected PINGRESP, got {pong:02X?}");
    healthy.check().await
}
