//! Flow control between publishers and connected subscribers, over raw sockets so that the test
//! decides exactly when a subscriber reads.
//!
//! A slow subscriber slows its publishers (`mqtt.max_publisher_pause_ms`) instead of losing
//! messages, at every QoS; a subscriber that does not read at all is marked stalled after one
//! pause, so it cannot slow its publishers any further.

use std::time::Duration;

use bytes::Bytes;
use gateway_tests::Gridmq;
use gateway_tests::clients::TIMEOUT;
use gateway_tests::clients::framed::{Framed5, Next};
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::v5::mqttbytes::{QoS, v5::Packet};

/// Messages per run and their size: 12 MB in all, more than loopback socket buffers hold, so
/// a subscriber that reads slowly really does fall behind the publisher.
const MESSAGES: u32 = 3000;
const PAYLOAD: usize = 4096;

async fn subscriber(broker: &Gridmq, id: &str, filter: &str) -> Framed5 {
    let (mut client, _) =
        Framed5::connect(broker.addr, Framed5::connect_packet(id, 60, true, None), None).await;
    let mut subscribe =
        p5::Subscribe::new(p5::Filter::new(filter.to_string(), QoS::AtMostOnce), None);
    subscribe.pkid = 1;
    client.send(Packet::Subscribe(subscribe)).await;
    match client.next(TIMEOUT).await {
        Next::Packet(Packet::SubAck(_)) => client,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Publishes `MESSAGES` QoS 0 messages numbered from 0 on a task of its own; the task ends when
/// the last one has been written to the socket.
async fn flood(broker: &Gridmq, topic: &'static str) -> tokio::task::JoinHandle<Framed5> {
    let (mut publisher, _) =
        Framed5::connect(broker.addr, Framed5::connect_packet("flood", 60, true, None), None).await;
    tokio::spawn(async move {
        for seq in 0..MESSAGES {
            let mut payload = vec![0u8; PAYLOAD];
            payload[..4].copy_from_slice(&seq.to_be_bytes());
            let publish = p5::Publish::new(topic, QoS::AtMostOnce, Bytes::from(payload), None);
            publisher.send(Packet::Publish(publish)).await;
        }
        publisher
    })
}

/// Reads publishes until `MESSAGES` arrived or nothing came for `quiet`, sleeping `pause` after
/// every 100; returns the sequence numbers in arrival order.
async fn receive(client: &mut Framed5, pause: Duration, quiet: Duration) -> Vec<u32> {
    let mut seen = Vec::new();
    while seen.len() < MESSAGES as usize {
        match client.next(quiet).await {
            Next::Packet(Packet::Publish(publish)) => {
                let seq: [u8; 4] = publish.payload[..4].try_into().expect("sequence number");
                seen.push(u32::from_be_bytes(seq));
                if seen.len() % 100 == 0 {
                    tokio::time::sleep(pause).await;
                }
            }
            Next::Packet(_) => {}
            Next::Silent | Next::Closed => break,
        }
    }
    seen
}

#[tokio::test]
async fn slow_qos0_subscriber_gets_every_message_in_order() {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_queued_messages = 10\n");
    let mut slow = subscriber(&broker, "slow", "flow/slow").await;
    let publisher = flood(&broker, "flow/slow").await;

    let seen = receive(&mut slow, Duration::from_millis(20), Duration::from_secs(5)).await;
    publisher.await.expect("publisher task");
    let expected: Vec<u32> = (0..MESSAGES).collect();
    assert_eq!(seen.len(), expected.len(), "messages lost");
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn without_publisher_pauses_a_slow_qos0_subscriber_loses_messages() {
    // The control for the test above: the same load with pausing off overflows the queue.
    let broker =
        Gridmq::start_with_config("[mqtt]\nmax_queued_messages = 10\nmax_publisher_pause_ms = 0\n");
    let mut slow = subscriber(&broker, "slow", "flow/slow").await;
    let publisher = flood(&broker, "flow/slow").await;

    let seen = receive(&mut slow, Duration::from_millis(20), Duration::from_secs(2)).await;
    publisher.await.expect("publisher task");
    assert!(seen.len() < MESSAGES as usize, "expected losses, got all {} messages", seen.len());
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "what arrives stays in order");
}

#[tokio::test]
async fn a_subscriber_that_never_reads_holds_publishers_back_only_once() {
    // With a 2 s pause per message batch, a publisher that kept waiting for the stuck
    // subscriber would need minutes for this load; once that subscriber is marked stalled the
    // healthy one gets everything at full speed.
    let broker = Gridmq::start_with_config(
        "[mqtt]\nmax_queued_messages = 10\nmax_publisher_pause_ms = 2000\n",
    );
    let _stuck = subscriber(&broker, "stuck", "flow/both").await;
    let mut healthy = subscriber(&broker, "healthy", "flow/both").await;
    let publisher = flood(&broker, "flow/both").await;

    let seen = tokio::time::timeout(
        Duration::from_secs(30),
        receive(&mut healthy, Duration::ZERO, Duration::from_secs(10)),
    )
    .await
    .expect("the healthy subscriber was held back by the stuck one");
    publisher.await.expect("publisher task");
    let expected: Vec<u32> = (0..MESSAGES).collect();
    assert_eq!(seen, expected);
}

/// A subscriber whose in-flight window (100, `mqtt.max_inflight`) is full acknowledges all of it
/// in one write, followed by a PINGREQ. The broker reads the 100 PUBACKs together (it finishes
/// runs of them under one lock) and must free the whole window: the next 100 messages arrive
/// without any further acknowledgement, in order, and so does the PINGRESP.
#[tokio::test]
async fn a_run_of_pubacks_in_one_read_frees_the_whole_window() {
    let broker = Gridmq::start();
    let (mut sub, _) =
        Framed5::connect(broker.addr, Framed5::connect_packet("acks-sub", 60, true, None), None)
            .await;
    let mut subscribe =
        p5::Subscribe::new(p5::Filter::new("acks/t".to_string(), QoS::AtLeastOnce), None);
    subscribe.pkid = 1;
    sub.send(Packet::Subscribe(subscribe)).await;
    assert!(matches!(sub.next(TIMEOUT).await, Next::Packet(Packet::SubAck(_))));

    let (mut publisher, _) =
        Framed5::connect(broker.addr, Framed5::connect_packet("acks-pub", 60, true, None), None)
            .await;
    let mut publishes = Vec::new();
    for seq in 0..200u16 {
        let mut publish = p5::Publish::new(
            "acks/t",
            QoS::AtLeastOnce,
            Bytes::from(seq.to_be_bytes().to_vec()),
            None,
        );
        publish.pkid = seq + 1;
        publishes.push(Packet::Publish(publish));
    }
    publisher.send_all(publishes).await;

    let mut seen = Vec::new();
    let mut ids = Vec::new();
    while seen.len() < 100 {
        match sub.next(TIMEOUT).await {
            Next::Packet(Packet::Publish(publish)) => {
                seen.push(u16::from_be_bytes([publish.payload[0], publish.payload[1]]));
                ids.push(publish.pkid);
            }
            other => panic!("expected the first 100 messages, got {other:?}"),
        }
    }
    let mut acks: Vec<Packet> =
        ids.iter().map(|&pkid| Packet::PubAck(p5::PubAck::new(pkid, None))).collect();
    acks.push(Packet::PingReq(p5::PingReq));
    sub.send_all(acks).await;

    let mut pong = false;
    while seen.len() < 200 || !pong {
        match sub.next(TIMEOUT).await {
            Next::Packet(Packet::Publish(publish)) => {
                seen.push(u16::from_be_bytes([publish.payload[0], publish.payload[1]]));
            }
            Next::Packet(Packet::PingResp(_)) => pong = true,
            other => panic!(
                "expected 100 more messages and PINGRESP, got {other:?} after {}",
                seen.len()
            ),
        }
    }
    assert_eq!(seen, (0..200).collect::<Vec<u16>>());
}
