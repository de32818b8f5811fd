//! Sessions: clean session / clean start, session expiry, the session present flag, messages
//! queued while offline, DUP redelivery of in-flight messages and the queue limits.

use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::framed::Framed5;
use gateway_tests::clients::{QUIET, TIMEOUT, v4, v5};
use rumqttc::v5::mqttbytes::v5 as p5;

fn persistent5(addr: std::net::SocketAddr, id: &str, expiry: u32) -> v5::MqttOptions {
    let mut options = v5::options(addr, id);
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(expiry));
    options
}

fn persistent4(addr: std::net::SocketAddr, id: &str) -> v4::MqttOptions {
    let mut options = v4::options(addr, id);
    options.set_clean_session(false);
    options
}

async fn payloads5(client: &mut v5::Client, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(client.recv().await.payload.to_vec());
    }
    out
}

#[tokio::test]
async fn v5_session_resumes_with_messages_queued_while_offline() {
    let broker = Gridmq::start();
    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "sess5", 60)).await.expect("connect");
    assert!(!sub.connack.session_present, "first connection has no session");
    sub.subscribe("sess/5", v5::QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = v5::Client::connect(broker.addr, "pub5").await;
    for payload in [b"m1", b"m2", b"m3"] {
        publisher.publish("sess/5", v5::QoS::AtLeastOnce, false, payload).await;
        publisher.puback().await;
    }

    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "sess5", 60)).await.expect("connect");
    assert!(sub.connack.session_present, "session survived the disconnect");
    assert_eq!(payloads5(&mut sub, 3).await, vec![b"m1".to_vec(), b"m2".to_vec(), b"m3".to_vec()]);
    // The subscription is still there for new messages.
    publisher.publish("sess/5", v5::QoS::AtLeastOnce, false, b"m4").await;
    assert_eq!(&sub.recv().await.payload[..], b"m4");
}

#[tokio::test]
async fn v5_session_expiry_zero_ends_session_at_disconnect() {
    let broker = Gridmq::start();
    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "exp0", 0)).await.expect("connect");
    sub.subscribe("exp0", v5::QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("exp0", v5::QoS::AtLeastOnce, false, b"lost").await;
    publisher.puback().await;

    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "exp0", 0)).await.expect("connect");
    assert!(!sub.connack.session_present);
    sub.recv_none().await;
}

#[tokio::test]
async fn v5_session_expires_after_interval() {
    let broker = Gridmq::start();
    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "exp1", 1)).await.expect("connect");
    sub.subscribe("exp1", v5::QoS::AtLeastOnce).await;
    sub.disconnect().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("exp1", v5::QoS::AtLeastOnce, false, b"late").await;
    publisher.puback().await;

    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "exp1", 1)).await.expect("connect");
    assert!(!sub.connack.session_present, "the session expired after 1 s");
    sub.recv_none().await;
}

#[tokio::test]
async fn v5_session_survives_within_its_expiry_after_abnormal_loss() {
    let broker = Gridmq::start();
    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "crash5", 30)).await.expect("connect");
    sub.subscribe("crash/5", v5::QoS::AtLeastOnce).await;
    drop(sub);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("crash/5", v5::QoS::AtLeastOnce, false, b"kept").await;
    publisher.puback().await;

    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "crash5", 30)).await.expect("connect");
    assert!(sub.connack.session_present);
    assert_eq!(&sub.recv().await.payload[..], b"kept");
}

#[tokio::test]
async fn v5_clean_start_discards_existing_session() {
    let broker = Gridmq::start();
    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "clean5", 60)).await.expect("connect");
    sub.subscribe("clean/5", v5::QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("clean/5", v5::QoS::AtLeastOnce, false, b"queued").await;
    publisher.puback().await;

    let mut options = v5::options(broker.addr, "clean5");
    options.set_session_expiry_interval(Some(60));
    let mut sub = v5::Client::connect_with(options).await.expect("connect");
    assert!(!sub.connack.session_present, "clean start discards the session");
    sub.recv_none().await;
    // The old subscription is gone too.
    publisher.publish("clean/5", v5::QoS::AtLeastOnce, false, b"after").await;
    publisher.puback().await;
    sub.recv_none().await;
}

#[tokio::test]
async fn v5_disconnect_can_shorten_session_expiry_to_zero() {
    let broker = Gridmq::start();
    let connect = Framed5::connect_packet("shorten", 30, false, Some(60));
    let (mut conn, connack) = Framed5::connect(broker.addr, connect, None).await;
    assert!(!connack.session_present);
    let subscribe = p5::Subscribe::new(p5::Filter::new("shorten", v5::QoS::AtLeastOnce), None);
    conn.send(p5::Packet::Subscribe(p5::Subscribe { pkid: 1, ..subscribe })).await;
    match conn.next(TIMEOUT).await {
        gateway_tests::clients::framed::Next::Packet(p5::Packet::SubAck(_)) => {}
        other => panic!("expected SUBACK, got {other:?}"),
    }
    conn.disconnect(p5::DisconnectReasonCode::NormalDisconnection, Some(0)).await;
    conn.closed(TIMEOUT).await.expect("closed after DISCONNECT");

    let sub =
        v5::Client::connect_with(persistent5(broker.addr, "shorten", 60)).await.expect("connect");
    assert!(!sub.connack.session_present, "DISCONNECT set the session expiry to 0");
}

#[tokio::test]
async fn v5_disconnect_can_lengthen_session_expiry() {
    let broker = Gridmq::start();
    let connect = Framed5::connect_packet("lengthen", 30, false, Some(1));
    let (mut conn, _) = Framed5::connect(broker.addr, connect, None).await;
    conn.disconnect(p5::DisconnectReasonCode::NormalDisconnection, Some(60)).await;
    conn.closed(TIMEOUT).await.expect("closed after DISCONNECT");
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let sub =
        v5::Client::connect_with(persistent5(broker.addr, "lengthen", 60)).await.expect("connect");
    assert!(sub.connack.session_present, "DISCONNECT extended the expiry from 1 s to 60 s");
}

#[tokio::test]
async fn v5_session_expiry_is_capped_by_max_session_expiry() {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_session_expiry = 100\n");
    let client =
        v5::Client::connect_with(persistent5(broker.addr, "cap", 1000)).await.expect("connect");
    assert_eq!(client.connack_properties().session_expiry_interval, Some(100));

    let client =
        v5::Client::connect_with(persistent5(broker.addr, "nocap", 50)).await.expect("connect");
    let granted = client.connack_properties().session_expiry_interval.unwrap_or(50);
    assert_eq!(granted, 50, "a request within the cap is granted as asked");
}

#[tokio::test]
async fn v4_persistent_session_resumes_with_queued_messages() {
    let broker = Gridmq::start();
    let mut sub =
        v4::Client::connect_with(persistent4(broker.addr, "sess4")).await.expect("connect");
    assert!(!sub.connack.session_present);
    sub.subscribe("sess/4", v4::QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = v4::Client::connect(broker.addr, "pub4").await;
    for payload in [b"a1", b"a2"] {
        publisher.publish("sess/4", v4::QoS::AtLeastOnce, false, payload).await;
        publisher.puback().await;
    }

    let mut sub =
        v4::Client::connect_with(persistent4(broker.addr, "sess4")).await.expect("connect");
    assert!(sub.connack.session_present);
    assert_eq!(&sub.recv().await.payload[..], b"a1");
    assert_eq!(&sub.recv().await.payload[..], b"a2");
}

#[tokio::test]
async fn v4_clean_session_discards_persistent_session() {
    let broker = Gridmq::start();
    let mut sub =
        v4::Client::connect_with(persistent4(broker.addr, "clean4")).await.expect("connect");
    sub.subscribe("clean/4", v4::QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = v4::Client::connect(broker.addr, "pub4").await;
    publisher.publish("clean/4", v4::QoS::AtLeastOnce, false, b"queued").await;
    publisher.puback().await;

    let mut sub = v4::Client::connect(broker.addr, "clean4").await;
    assert!(!sub.connack.session_present);
    sub.recv_none().await;
    drop(sub);

    // A clean session also leaves nothing behind when it ends.
    let sub = v4::Client::connect_with(persistent4(broker.addr, "clean4")).await.expect("connect");
    assert!(!sub.connack.session_present);
}

#[tokio::test]
async fn v5_unacknowledged_message_is_redelivered_with_dup() {
    let broker = Gridmq::start();
    let mut options = persistent5(broker.addr, "dup5", 60);
    options.set_manual_acks(true);
    let mut sub = v5::Client::connect_with(options.clone()).await.expect("connect");
    sub.subscribe("dup/5", v5::QoS::AtLeastOnce).await;

    let publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("dup/5", v5::QoS::AtLeastOnce, false, b"unacked").await;
    let first = sub.recv().await;
    assert!(!first.dup, "first delivery has DUP = 0");
    drop(sub); // lose the connection without acknowledging
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut sub = v5::Client::connect_with(options).await.expect("connect");
    assert!(sub.connack.session_present);
    let again = sub.recv().await;
    assert_eq!(&again.payload[..], b"unacked");
    assert_eq!(again.qos, v5::QoS::AtLeastOnce);
    assert!(again.dup, "redelivery of an in-flight PUBLISH has DUP = 1");
    assert_eq!(again.pkid, first.pkid, "redelivery keeps the packet identifier");
    sub.client.ack(&again).await.expect("ack");
    sub.recv_none().await;
}

#[tokio::test]
async fn v4_unacknowledged_message_is_redelivered_with_dup() {
    let broker = Gridmq::start();
    let mut options = persistent4(broker.addr, "dup4");
    options.set_manual_acks(true);
    let mut sub = v4::Client::connect_with(options.clone()).await.expect("connect");
    sub.subscribe("dup/4", v4::QoS::AtLeastOnce).await;

    let publisher = v4::Client::connect(broker.addr, "pub").await;
    publisher.publish("dup/4", v4::QoS::AtLeastOnce, false, b"unacked").await;
    let first = sub.recv().await;
    assert!(!first.dup);
    drop(sub);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut sub = v4::Client::connect_with(options).await.expect("connect");
    assert!(sub.connack.session_present);
    let again = sub.recv().await;
    assert_eq!(&again.payload[..], b"unacked");
    assert!(again.dup, "redelivery of an in-flight PUBLISH has DUP = 1");
    assert_eq!(again.pkid, first.pkid);
}

#[tokio::test]
async fn v5_unreleased_qos2_message_is_redelivered_once() {
    let broker = Gridmq::start();
    let mut options = persistent5(broker.addr, "dup2", 60);
    options.set_manual_acks(true);
    let mut sub = v5::Client::connect_with(options.clone()).await.expect("connect");
    sub.subscribe("dup/2", v5::QoS::ExactlyOnce).await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("dup/2", v5::QoS::ExactlyOnce, false, b"once").await;
    publisher.pubcomp().await;
    let first = sub.recv().await;
    assert_eq!(first.qos, v5::QoS::ExactlyOnce);
    drop(sub); // no PUBREC sent
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut options = options;
    options.set_manual_acks(false);
    let mut sub = v5::Client::connect_with(options).await.expect("connect");
    let again = sub.recv().await;
    assert_eq!(&again.payload[..], b"once");
    assert!(again.dup);
    sub.recv_none().await;
}

#[tokio::test]
async fn queue_limit_drops_oldest_messages() {
    let broker = Gridmq::start_with_config(
        "[mqtt]\nmax_queued_messages = 3\nqueue_full = \"drop-oldest\"\n",
    );
    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "q", 60)).await.expect("connect");
    sub.subscribe("q", v5::QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    for i in 1..=5 {
        publisher.publish("q", v5::QoS::AtLeastOnce, false, format!("m{i}").as_bytes()).await;
        publisher.puback().await;
    }

    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "q", 60)).await.expect("connect");
    assert!(sub.connack.session_present);
    let got = payloads5(&mut sub, 3).await;
    assert_eq!(got, vec![b"m3".to_vec(), b"m4".to_vec(), b"m5".to_vec()]);
    sub.recv_none().await;
}

#[tokio::test]
async fn queue_limit_end_session_discards_the_session() {
    let broker = Gridmq::start_with_config(
        "[mqtt]\nmax_queued_messages = 3\nqueue_full = \"end-session\"\n",
    );
    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "q", 60)).await.expect("connect");
    sub.subscribe("q", v5::QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    for i in 1..=5 {
        publisher.publish("q", v5::QoS::AtLeastOnce, false, format!("m{i}").as_bytes()).await;
        publisher.puback().await;
    }

    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "q", 60)).await.expect("connect");
    assert!(!sub.connack.session_present, "the overflowing session was discarded");
    sub.recv_none().await;
}

#[tokio::test]
async fn queue_limit_by_bytes_drops_oldest_messages() {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_queued_bytes = 2500\n");
    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "qb", 60)).await.expect("connect");
    sub.subscribe("qb", v5::QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    for i in 0..5u8 {
        publisher.publish("qb", v5::QoS::AtLeastOnce, false, &[b'0' + i; 1000]).await;
        publisher.puback().await;
    }

    let mut sub =
        v5::Client::connect_with(persistent5(broker.addr, "qb", 60)).await.expect("connect");
    let mut got = Vec::new();
    while let Some(publish) = sub.try_recv(QUIET).await {
        got.push(publish.payload[0]);
    }
    assert!(!got.is_empty() && got.len() < 5, "some but not all 1000-byte messages fit: {got:?}");
    assert_eq!(got.last(), Some(&b'4'), "the newest message is kept");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "kept messages stay in order: {got:?}");
}

#[tokio::test]
async fn queue_limit_applies_beyond_the_in_flight_window() {
    // Without publisher pauses the queue bound applies at once (drop-oldest).
    let broker =
        Gridmq::start_with_config("[mqtt]\nmax_queued_messages = 3\nmax_publisher_pause_ms = 0\n");
    let mut options = v5::options(broker.addr, "window");
    options.set_receive_maximum(Some(1));
    options.set_manual_acks(true);
    let mut sub = v5::Client::connect_with(options).await.expect("connect");
    sub.subscribe("w", v5::QoS::AtLeastOnce).await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    for i in 1..=6 {
        publisher.publish("w", v5::QoS::AtLeastOnce, false, format!("m{i}").as_bytes()).await;
        publisher.puback().await;
    }
    let mut got = Vec::new();
    while let Some(publish) = sub.try_recv(QUIET).await {
        got.push(String::from_utf8_lossy(&publish.payload).into_owned());
        sub.client.ack(&publish).await.expect("ack");
    }
    // m1 was in flight; of m2..m6 only the newest three fit in the queue.
    assert_eq!(got, vec!["m1", "m4", "m5", "m6"]);
}

#[tokio::test]
async fn v5_takeover_with_clean_start_false_keeps_the_session() {
    let broker = Gridmq::start();
    let mut first =
        v5::Client::connect_with(persistent5(broker.addr, "twin5", 60)).await.expect("connect");
    first.subscribe("twin/5", v5::QoS::AtLeastOnce).await;
    let mut second =
        v5::Client::connect_with(persistent5(broker.addr, "twin5", 60)).await.expect("connect");
    assert!(second.connack.session_present, "the taken-over session is resumed");
    assert!(first.inbox.ended(TIMEOUT).await.is_some(), "the first connection was closed");
    let publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("twin/5", v5::QoS::AtLeastOnce, false, b"to the twin").await;
    assert_eq!(&second.recv().await.payload[..], b"to the twin");
}

#[tokio::test]
async fn v4_takeover_with_clean_session_false_keeps_the_session() {
    let broker = Gridmq::start();
    let mut first =
        v4::Client::connect_with(persistent4(broker.addr, "twin4")).await.expect("connect");
    first.subscribe("twin/4", v4::QoS::AtLeastOnce).await;
    let mut second =
        v4::Client::connect_with(persistent4(broker.addr, "twin4")).await.expect("connect");
    assert!(second.connack.session_present);
    assert!(first.inbox.ended(TIMEOUT).await.is_some(), "the first connection was closed");
    let publisher = v4::Client::connect(broker.addr, "pub").await;
    publisher.publish("twin/4", v4::QoS::AtLeastOnce, false, b"to the twin").await;
    assert_eq!(&second.recv().await.payload[..], b"to the twin");
}
