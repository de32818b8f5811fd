//! CONNECT / CONNACK, keep alive, session takeover and the inbound packet size limit.

use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::framed::{Framed4, Framed5, Next};
use gateway_tests::clients::{TIMEOUT, v4, v5};
use rumqttc::v5::mqttbytes::v5 as p5;

#[tokio::test]
async fn v5_connack_advertises_broker_capabilities() {
    let broker = Gridmq::start();
    let mut options = v5::options(broker.addr, "");
    options.set_keep_alive(Duration::from_secs(30));
    let client = v5::Client::connect_with(options).await.expect("anonymous connect accepted");

    assert_eq!(client.connack.code, v5::ConnectReturnCode::Success);
    assert!(!client.connack.session_present);
    let props = client.connack_properties();
    let assigned = props.assigned_client_identifier.clone().expect("assigned client identifier");
    assert!(!assigned.is_empty(), "assigned client identifier is not empty");
    assert_eq!(props.server_keep_alive, None, "keep alive 30 s is accepted as asked");
    assert_eq!(props.receive_max, Some(100));
    assert_eq!(props.max_qos, None, "QoS 2 is supported, so Maximum QoS is absent");
    assert_eq!(props.retain_available, Some(1));
    assert_eq!(props.max_packet_size, Some(1_048_576));
    assert_eq!(props.topic_alias_max, Some(10));
    assert_eq!(props.wildcard_subscription_available, Some(1));
    assert_eq!(props.subscription_identifiers_available, Some(1));
    assert_eq!(props.shared_subscription_available, Some(1));
}

#[tokio::test]
async fn v5_assigned_client_identifiers_are_unique() {
    let broker = Gridmq::start();
    let a = v5::Client::connect(broker.addr, "").await;
    let b = v5::Client::connect(broker.addr, "").await;
    let a = a.connack_properties().assigned_client_identifier.expect("assigned id a");
    let b = b.connack_properties().assigned_client_identifier.expect("assigned id b");
    assert_ne!(a, b);
}

#[tokio::test]
async fn v5_connack_reflects_configured_limits() {
    let broker = Gridmq::start_with_config(
        "[mqtt]\nreceive_maximum = 7\ntopic_alias_maximum = 3\nmax_packet_size = 4096\n",
    );
    let client = v5::Client::connect(broker.addr, "limits").await;
    let props = client.connack_properties();
    assert_eq!(props.receive_max, Some(7));
    assert_eq!(props.topic_alias_max, Some(3));
    assert_eq!(props.max_packet_size, Some(4096));
    assert_eq!(props.assigned_client_identifier, None, "the client chose its own id");
}

#[tokio::test]
async fn v5_server_keep_alive_caps_a_longer_request() {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_keep_alive = 20\n");
    let mut options = v5::options(broker.addr, "ka-long");
    options.set_keep_alive(Duration::from_secs(60));
    let client = v5::Client::connect_with(options).await.expect("connect");
    assert_eq!(client.connack_properties().server_keep_alive, Some(20));
}

#[tokio::test]
async fn v5_server_keep_alive_replaces_zero() {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_keep_alive = 20\n");
    let connect = Framed5::connect_packet("ka-zero", 0, true, None);
    let (_conn, connack) = Framed5::connect(broker.addr, connect, None).await;
    let props = connack.properties.expect("CONNACK properties");
    assert_eq!(props.server_keep_alive, Some(20));
}

#[tokio::test]
async fn v5_server_keep_alive_absent_when_request_is_within_limit() {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_keep_alive = 20\n");
    let mut options = v5::options(broker.addr, "ka-short");
    options.set_keep_alive(Duration::from_secs(10));
    let client = v5::Client::connect_with(options).await.expect("connect");
    assert_eq!(client.connack_properties().server_keep_alive, None);
}

#[tokio::test]
async fn v4_anonymous_connect_is_accepted() {
    let broker = Gridmq::start();
    let client = v4::Client::connect(broker.addr, "v4-client").await;
    assert_eq!(client.connack.code, rumqttc::ConnectReturnCode::Success);
    assert!(!client.connack.session_present);
}

#[tokio::test]
async fn v4_empty_client_id_with_clean_session_is_accepted() {
    let broker = Gridmq::start();
    let mut client = v4::Client::connect(broker.addr, "").await;
    assert_eq!(client.connack.code, rumqttc::ConnectReturnCode::Success);
    // The connection is usable.
    client.subscribe("empty/id", v4::QoS::AtLeastOnce).await;
    client.publish("empty/id", v4::QoS::AtLeastOnce, false, b"x").await;
    assert_eq!(&client.recv().await.payload[..], b"x");
}

#[tokio::test]
async fn v5_keep_alive_timeout_disconnects_with_0x8d() {
    let broker = Gridmq::start();
    let connect = Framed5::connect_packet("silent5", 1, true, None);
    let (mut conn, _) = Framed5::connect(broker.addr, connect, None).await;
    // Allowed: 1.5 x 1 s of silence. Not closed before 1.2 s.
    match conn.next(Duration::from_millis(1200)).await {
        Next::Silent => {}
        other => panic!("broker acted before 1.5 x keep alive elapsed: {other:?}"),
    }
    let reason = conn.closed(TIMEOUT).await.expect("connection closed after keep alive");
    assert_eq!(reason, Some(p5::DisconnectReasonCode::KeepAliveTimeout));
}

#[tokio::test]
async fn v4_keep_alive_timeout_closes_the_socket() {
    let broker = Gridmq::start();
    let (mut conn, _) = Framed4::connect(broker.addr, "silent4", 1, true).await;
    match conn.next(Duration::from_millis(1200)).await {
        Next::Silent => {}
        other => panic!("broker acted before 1.5 x keep alive elapsed: {other:?}"),
    }
    match conn.next(TIMEOUT).await {
        Next::Closed => {}
        other => panic!("expected the socket to close, got {other:?}"),
    }
}

#[tokio::test]
async fn v5_pinging_client_stays_connected() {
    let broker = Gridmq::start();
    let connect = Framed5::connect_packet("pinger5", 1, true, None);
    let (mut conn, _) = Framed5::connect(broker.addr, connect, None).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        conn.send(p5::Packet::PingReq(p5::PingReq)).await;
        match conn.next(TIMEOUT).await {
            Next::Packet(p5::Packet::PingResp(_)) => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn v4_pinging_client_stays_connected() {
    let broker = Gridmq::start();
    let mut options = v4::options(broker.addr, "pinger4");
    options.set_keep_alive(Duration::from_secs(1));
    let mut client = v4::Client::connect_with(options).await.expect("connect");
    assert!(
        client.inbox.ended(Duration::from_secs(3)).await.is_none(),
        "rumqttc pings every second; the broker must keep the connection"
    );
    client.subscribe("still/here", v4::QoS::AtMostOnce).await;
}

#[tokio::test]
async fn v5_session_takeover_disconnects_old_connection_with_0x8e() {
    let broker = Gridmq::start();
    let connect = Framed5::connect_packet("same-id", 30, true, None);
    let (mut old, _) = Framed5::connect(broker.addr, connect, None).await;
    let mut new = v5::Client::connect(broker.addr, "same-id").await;
    let reason = old.closed(TIMEOUT).await.expect("old connection closed");
    assert_eq!(reason, Some(p5::DisconnectReasonCode::SessionTakenOver));
    // The new connection works.
    new.subscribe("takeover", v5::QoS::AtLeastOnce).await;
    new.publish("takeover", v5::QoS::AtLeastOnce, false, b"mine").await;
    assert_eq!(&new.recv().await.payload[..], b"mine");
}

#[tokio::test]
async fn v4_session_takeover_closes_old_connection() {
    let broker = Gridmq::start();
    let mut old = v4::Client::connect(broker.addr, "same-id-4").await;
    let mut new = v4::Client::connect(broker.addr, "same-id-4").await;
    assert!(old.inbox.ended(TIMEOUT).await.is_some(), "old connection closed");
    new.subscribe("takeover4", v4::QoS::AtLeastOnce).await;
    new.publish("takeover4", v4::QoS::AtLeastOnce, false, b"mine").await;
    assert_eq!(&new.recv().await.payload[..], b"mine");
}

#[tokio::test]
async fn v5_oversized_packet_gets_disconnect_0x95() {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_packet_size = 1024\n");
    let connect = Framed5::connect_packet("big5", 30, true, None);
    let (mut conn, connack) = Framed5::connect(broker.addr, connect, None).await;
    assert_eq!(connack.properties.and_then(|p| p.max_packet_size), Some(1024));
    let publish = p5::Publish::new("big", v5::QoS::AtMostOnce, vec![b'x'; 2000], None);
    conn.send(p5::Packet::Publish(publish)).await;
    let reason = conn.closed(TIMEOUT).await.expect("connection closed");
    assert_eq!(reason, Some(p5::DisconnectReasonCode::PacketTooLarge));
}

#[tokio::test]
async fn v5_packet_within_limit_is_delivered() {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_packet_size = 1024\n");
    let mut client = v5::Client::connect(broker.addr, "fits").await;
    client.subscribe("fits", v5::QoS::AtLeastOnce).await;
    client.publish("fits", v5::QoS::AtLeastOnce, false, &[b'y'; 900]).await;
    assert_eq!(client.recv().await.payload.len(), 900);
}

#[tokio::test]
async fn v4_oversized_packet_closes_the_connection() {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_packet_size = 1024\n");
    let (mut conn, _) = Framed4::connect(broker.addr, "big4", 30, true).await;
    let publish = rumqttc::Publish::new("big", rumqttc::QoS::AtMostOnce, vec![b'x'; 2000]);
    conn.send(rumqttc::Packet::Publish(publish)).await;
    match conn.next(TIMEOUT).await {
        Next::Closed => {}
        other => panic!("expected the socket to close, got {other:?}"),
    }
}

#[tokio::test]
async fn v5_server_keep_alive_is_the_one_enforced() {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_keep_alive = 1\n");
    let connect = Framed5::connect_packet("capped", 60, true, None);
    let (mut conn, connack) = Framed5::connect(broker.addr, connect, None).await;
    assert_eq!(connack.properties.and_then(|p| p.server_keep_alive), Some(1));
    let reason = conn.closed(TIMEOUT).await.expect("closed after 1.5 x the server keep alive");
    assert_eq!(reason, Some(p5::DisconnectReasonCode::KeepAliveTimeout));
}
