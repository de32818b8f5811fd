//! Parked connections (ARCHITECTURE.md, "Parked connections"): an idle plain TCP connection
//! gives up its task and is watched by one shared loop. Nothing a client sees may change: a
//! parked subscriber gets its deliveries, a parked client's PINGREQ is answered, a parked
//! connection parks and wakes again and again, and shutdown still says goodbye to each one.
//! `mqtt.park_after_ms` is short here so that every connection parks between the steps.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use gateway::mqtt::{Packet, Protocol, QoS};
use gateway_tests::Gridmq;
use gateway_tests::clients::TIMEOUT;
use gateway_tests::clients::framed::Framed5;
use gateway_tests::packet_client::{PacketClient, connect_packet, publish};
use rumqttc::v5::mqttbytes::v5 as p5;

const CONFIG: &str = "[mqtt]\npark_after_ms = 20\n";
const CLIENTS: usize = 200;
/// Long enough for every connection to have parked (ten times `park_after_ms`).
const SETTLE: Duration = Duration::from_millis(200);
const WAIT: Duration = Duration::from_secs(10);

/// Waits for the next PUBLISH, acknowledges it, and returns its topic and payload.
async fn next_message(client: &mut PacketClient) -> Result<(String, String)> {
    loop {
        match client.recv(WAIT).await? {
            Some(Packet::Publish(p)) => {
                client.ack(&p).await?;
                return Ok((p.topic.clone(), String::from_utf8(p.payload.to_vec())?));
            }
            Some(_) => {}
            None => bail!("no PUBLISH within {WAIT:?}"),
        }
    }
}

/// Publishes `round`'s message to every subscriber's own topic, alternating QoS 0 and 1.
async fn publish_round(publisher: &mut PacketClient, round: u32) -> Result<()> {
    let packets: Vec<Packet> = (0..CLIENTS)
        .map(|i| {
            let (qos, id) = if i % 2 == 0 {
                (QoS::AtLeastOnce, u16::try_from(i + 1).ok())
            } else {
                (QoS::AtMostOnce, None)
            };
            Packet::Publish(publish(&format!("park/{i}"), qos, id, format!("{round}:{i}")))
        })
        .collect();
    publisher.send_all(&packets).await
}

#[tokio::test]
async fn parked_subscribers_get_their_deliveries_and_answers_round_after_round() -> Result<()> {
    let broker = Gridmq::start_with_config(CONFIG);
    let mut subscribers = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let connect = connect_packet(Protocol::V5, &format!("parked-{i}"), true, 0);
        let (mut client, _) = PacketClient::connect(broker.addr, connect).await?;
        let qos = if i % 2 == 0 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        client.subscribe(&format!("park/{i}"), qos).await?;
        subscribers.push(client);
    }
    let connect = connect_packet(Protocol::V5, "parked-publisher", true, 0);
    let (mut publisher, _) = PacketClient::connect(broker.addr, connect).await?;

    for round in 0..3u32 {
        // Everyone is parked: the deliveries are what wakes the subscribers.
        tokio::time::sleep(SETTLE).await;
        publish_round(&mut publisher, round).await?;
        for (i, subscriber) in subscribers.iter_mut().enumerate() {
            let (topic, payload) = next_message(subscriber).await?;
            ensure!(topic == format!("park/{i}"), "subscriber {i} got a message on {topic}");
            ensure!(payload == format!("{round}:{i}"), "subscriber {i} got {payload:?}");
        }
        // Parked again: now the client's own packet is what wakes its connection.
        tokio::time::sleep(SETTLE).await;
        for (i, subscriber) in subscribers.iter_mut().enumerate() {
            subscriber.send(&Packet::PingReq).await?;
            match subscriber.recv(WAIT).await? {
                Some(Packet::PingResp) => {}
                other => bail!("subscriber {i} in round {round}: expected PINGRESP, got {other:?}"),
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_parked_connection_is_closed_by_its_keep_alive_and_not_before() {
    let broker = Gridmq::start_with_config(CONFIG);
    let connect = Framed5::connect_packet("parked-silent", 1, true, None);
    let (mut conn, _) = Framed5::connect(broker.addr, connect, None).await;
    match conn.next(Duration::from_millis(1200)).await {
        gateway_tests::clients::framed::Next::Silent => {}
        other => panic!("broker acted before 1.5 x keep alive elapsed: {other:?}"),
    }
    let reason = conn.closed(TIMEOUT).await.expect("connection closed after keep alive");
    assert_eq!(reason, Some(p5::DisconnectReasonCode::KeepAliveTimeout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_goodbye_to_every_parked_connection() {
    let broker = Gridmq::start_with_config(CONFIG);
    let mut clients = Vec::new();
    for i in 0..50 {
        let connect = Framed5::connect_packet(&format!("parked-bye-{i}"), 60, true, None);
        clients.push(Framed5::connect(broker.addr, connect, None).await.0);
    }
    tokio::time::sleep(SETTLE).await;
    let status = tokio::task::spawn_blocking(move || {
        let mut broker = broker;
        broker.terminate(Duration::from_secs(8))
    })
    .await
    .expect("terminate task");
    for (i, client) in clients.iter_mut().enumerate() {
        let reason = client.closed(TIMEOUT).await.expect("closed");
        assert_eq!(reason, Some(p5::DisconnectReasonCode::ServerShuttingDown), "client {i}");
    }
    assert!(status.is_some_and(|s| s.success()), "gridmq exited 0 within the grace period");
}
