//! MQTT 5.0 features: forwarded publish properties, payload format validation, message expiry,
//! inbound topic aliases, subscription identifiers, no local and the client's maximum packet size.

use std::time::Duration;

use bytes::Bytes;
use gateway_tests::Gridmq;
use gateway_tests::clients::framed::Framed5;
use gateway_tests::clients::{TIMEOUT, topic5, v5};
use rumqttc::v5::mqttbytes::v5 as p5;

#[tokio::test]
async fn publish_properties_are_forwarded() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("props", v5::QoS::AtLeastOnce).await;
    let publisher = v5::Client::connect(broker.addr, "pub").await;
    let mut props = v5::no_properties();
    props.user_properties =
        vec![("k1".into(), "v1".into()), ("k2".into(), "v2".into()), ("k1".into(), "again".into())];
    props.response_topic = Some("reply/here".into());
    props.correlation_data = Some(Bytes::from_static(&[0, 1, 2, 255]));
    props.content_type = Some("application/json".into());
    props.payload_format_indicator = Some(1);
    publisher.publish_with("props", v5::QoS::AtLeastOnce, false, b"{\"a\":1}", props).await;

    let got = sub.recv().await;
    let props = got.properties.expect("properties forwarded");
    assert_eq!(
        props.user_properties,
        vec![
            ("k1".to_string(), "v1".to_string()),
            ("k2".to_string(), "v2".to_string()),
            ("k1".to_string(), "again".to_string())
        ],
        "user properties keep their order and duplicates"
    );
    assert_eq!(props.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(props.correlation_data.as_deref(), Some(&[0u8, 1, 2, 255][..]));
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(props.topic_alias, None);
}

#[tokio::test]
async fn request_response_round_trip() {
    let broker = Gridmq::start();
    let mut responder = v5::Client::connect(broker.addr, "responder").await;
    responder.subscribe("svc/request", v5::QoS::AtLeastOnce).await;
    let mut requester = v5::Client::connect(broker.addr, "requester").await;
    requester.subscribe("svc/reply/requester", v5::QoS::AtLeastOnce).await;

    let mut props = v5::no_properties();
    props.response_topic = Some("svc/reply/requester".into());
    props.correlation_data = Some(Bytes::from_static(b"req-1"));
    requester.publish_with("svc/request", v5::QoS::AtLeastOnce, false, b"ping", props).await;

    let request = responder.recv().await;
    let request_props = request.properties.expect("request properties");
    let mut reply = v5::no_properties();
    reply.correlation_data = request_props.correlation_data.clone();
    let topic = request_props.response_topic.expect("response topic");
    responder.publish_with(&topic, v5::QoS::AtLeastOnce, false, b"pong", reply).await;

    let response = requester.recv().await;
    assert_eq!(&response.payload[..], b"pong");
    assert_eq!(
        response.properties.and_then(|p| p.correlation_data).as_deref(),
        Some(&b"req-1"[..])
    );
}

#[tokio::test]
async fn invalid_utf8_with_payload_format_indicator_gets_puback_0x99() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("pfi", v5::QoS::AtLeastOnce).await;
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    let mut props = v5::no_properties();
    props.payload_format_indicator = Some(1);
    publisher.publish_with("pfi", v5::QoS::AtLeastOnce, false, &[0xff, 0xfe, 0x80], props).await;
    assert_eq!(publisher.puback().await.reason, v5::PubAckReason::PayloadFormatInvalid);
    sub.recv_none().await;

    // Valid UTF-8 with the same indicator passes, and so do arbitrary bytes without it.
    let mut props = v5::no_properties();
    props.payload_format_indicator = Some(1);
    publisher.publish_with("pfi", v5::QoS::AtLeastOnce, false, "héllo".as_bytes(), props).await;
    assert_eq!(publisher.puback().await.reason, v5::PubAckReason::Success);
    assert_eq!(&sub.recv().await.payload[..], "héllo".as_bytes());
    publisher.publish("pfi", v5::QoS::AtLeastOnce, false, &[0xff, 0xfe]).await;
    assert_eq!(publisher.puback().await.reason, v5::PubAckReason::Success);
    assert_eq!(&sub.recv().await.payload[..], &[0xff, 0xfe]);
}

fn persistent(addr: std::net::SocketAddr, id: &str) -> v5::MqttOptions {
    let mut options = v5::options(addr, id);
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(60));
    options
}

#[tokio::test]
async fn message_expiry_is_decremented_while_queued() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect_with(persistent(broker.addr, "sub")).await.expect("connect");
    sub.subscribe("exp", v5::QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    let mut props = v5::no_properties();
    props.message_expiry_interval = Some(10);
    publisher.publish_with("exp", v5::QoS::AtLeastOnce, false, b"ten", props).await;
    publisher.puback().await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let mut sub = v5::Client::connect_with(persistent(broker.addr, "sub")).await.expect("connect");
    let got = sub.recv().await;
    let left = got.properties.and_then(|p| p.message_expiry_interval).expect("expiry forwarded");
    assert!((1..=8).contains(&left), "10 s expiry after 2 s queued: {left}");
}

#[tokio::test]
async fn expired_message_is_never_delivered() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect_with(persistent(broker.addr, "sub")).await.expect("connect");
    sub.subscribe("exp", v5::QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    let mut props = v5::no_properties();
    props.message_expiry_interval = Some(1);
    publisher.publish_with("exp", v5::QoS::AtLeastOnce, false, b"short", props).await;
    publisher.puback().await;
    publisher.publish("exp", v5::QoS::AtLeastOnce, false, b"no expiry").await;
    publisher.puback().await;
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let mut sub = v5::Client::connect_with(persistent(broker.addr, "sub")).await.expect("connect");
    let got = sub.recv().await;
    assert_eq!(&got.payload[..], b"no expiry", "the expired message was dropped");
    sub.recv_none().await;
}

#[tokio::test]
async fn live_delivery_carries_message_expiry() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("exp", v5::QoS::AtLeastOnce).await;
    let publisher = v5::Client::connect(broker.addr, "pub").await;
    let mut props = v5::no_properties();
    props.message_expiry_interval = Some(30);
    publisher.publish_with("exp", v5::QoS::AtLeastOnce, false, b"x", props).await;
    let left = sub.recv().await.properties.and_then(|p| p.message_expiry_interval);
    assert!(matches!(left, Some(29..=30)), "expiry forwarded: {left:?}");
}

#[tokio::test]
async fn inbound_topic_alias_is_resolved() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("alias/#", v5::QoS::AtLeastOnce).await;
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    assert!(publisher.connack_properties().topic_alias_max.unwrap_or(0) >= 2);

    let with_alias = |alias| {
        let mut props = v5::no_properties();
        props.topic_alias = Some(alias);
        props
    };
    publisher.publish_with("alias/one", v5::QoS::AtLeastOnce, false, b"1", with_alias(1)).await;
    publisher.publish_with("", v5::QoS::AtLeastOnce, false, b"2", with_alias(1)).await;
    publisher.publish_with("alias/two", v5::QoS::AtLeastOnce, false, b"3", with_alias(2)).await;
    publisher.publish_with("alias/three", v5::QoS::AtLeastOnce, false, b"4", with_alias(1)).await;
    publisher.publish_with("", v5::QoS::AtLeastOnce, false, b"5", with_alias(1)).await;
    publisher.publish_with("", v5::QoS::AtLeastOnce, false, b"6", with_alias(2)).await;
    for _ in 0..6 {
        assert_eq!(publisher.puback().await.reason, v5::PubAckReason::Success);
    }

    let mut got = Vec::new();
    for _ in 0..6 {
        let publish = sub.recv().await;
        got.push((topic5(&publish), String::from_utf8_lossy(&publish.payload).into_owned()));
    }
    let expected = [
        ("alias/one", "1"),
        ("alias/one", "2"),
        ("alias/two", "3"),
        ("alias/three", "4"),
        ("alias/three", "5"),
        ("alias/two", "6"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(t, p)| (t.to_string(), p.to_string())).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn subscription_identifier_is_returned_with_matching_messages() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe_filters(vec![v5::Filter::new("sid/a", v5::QoS::AtLeastOnce)], Some(42)).await;
    sub.subscribe_filters(vec![v5::Filter::new("sid/b", v5::QoS::AtLeastOnce)], Some(268_435_455))
        .await;
    sub.subscribe("sid/c", v5::QoS::AtLeastOnce).await;
    let publisher = v5::Client::connect(broker.addr, "pub").await;
    for topic in ["sid/a", "sid/b", "sid/c"] {
        publisher.publish(topic, v5::QoS::AtLeastOnce, false, b"x").await;
    }
    assert_eq!(v5::subscription_ids(&sub.recv().await), vec![42]);
    assert_eq!(v5::subscription_ids(&sub.recv().await), vec![268_435_455]);
    assert_eq!(v5::subscription_ids(&sub.recv().await), Vec::<usize>::new());
}

#[tokio::test]
async fn no_local_suppresses_own_messages_only() {
    let broker = Gridmq::start();
    let mut client = v5::Client::connect(broker.addr, "self").await;
    let mut filter = v5::Filter::new("chat", v5::QoS::AtLeastOnce);
    filter.nolocal = true;
    client.subscribe_filters(vec![filter], None).await;
    client.publish("chat", v5::QoS::AtLeastOnce, false, b"mine").await;
    client.recv_none().await;

    let other = v5::Client::connect(broker.addr, "other").await;
    other.publish("chat", v5::QoS::AtLeastOnce, false, b"theirs").await;
    assert_eq!(&client.recv().await.payload[..], b"theirs");
}

#[tokio::test]
async fn without_no_local_own_messages_are_delivered() {
    let broker = Gridmq::start();
    let mut client = v5::Client::connect(broker.addr, "self").await;
    client.subscribe("echo", v5::QoS::AtLeastOnce).await;
    client.publish("echo", v5::QoS::AtLeastOnce, false, b"mine").await;
    assert_eq!(&client.recv().await.payload[..], b"mine");
}

#[tokio::test]
async fn message_larger_than_client_maximum_is_dropped_for_that_client_only() {
    let broker = Gridmq::start();
    let mut options = v5::options(broker.addr, "small");
    options.set_max_packet_size(Some(256));
    let mut small = v5::Client::connect_with(options).await.expect("connect");
    let mut large = v5::Client::connect(broker.addr, "large").await;
    small.subscribe("size", v5::QoS::AtLeastOnce).await;
    large.subscribe("size", v5::QoS::AtLeastOnce).await;

    let publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("size", v5::QoS::AtLeastOnce, false, &[b'x'; 1000]).await;
    publisher.publish("size", v5::QoS::AtLeastOnce, false, b"small").await;

    assert_eq!(large.recv().await.payload.len(), 1000);
    assert_eq!(&large.recv().await.payload[..], b"small");
    let got = small.recv().await;
    assert_eq!(&got.payload[..], b"small", "the oversized message was skipped, not sent");
    assert!(small.inbox.ended(Duration::from_millis(300)).await.is_none(), "still connected");
}

#[tokio::test]
async fn topic_alias_above_maximum_gets_disconnect_0x94() {
    let broker = Gridmq::start_with_config("[mqtt]\ntopic_alias_maximum = 2\n");
    let connect = Framed5::connect_packet("aliaser", 30, true, None);
    let (mut conn, connack) = Framed5::connect(broker.addr, connect, None).await;
    assert_eq!(connack.properties.and_then(|p| p.topic_alias_max), Some(2));
    let mut props = v5::no_properties();
    props.topic_alias = Some(3);
    let publish = p5::Publish::new("alias/x", v5::QoS::AtMostOnce, "x", Some(props));
    conn.send(p5::Packet::Publish(publish)).await;
    let reason = conn.closed(TIMEOUT).await.expect("connection closed");
    assert_eq!(reason, Some(p5::DisconnectReasonCode::TopicAliasInvalid));
}

#[tokio::test]
async fn unknown_topic_alias_is_a_protocol_error() {
    let broker = Gridmq::start();
    let connect = Framed5::connect_packet("aliaser", 30, true, None);
    let (mut conn, _) = Framed5::connect(broker.addr, connect, None).await;
    let mut props = v5::no_properties();
    props.topic_alias = Some(1);
    let publish = p5::Publish::new("", v5::QoS::AtMostOnce, "x", Some(props));
    conn.send(p5::Packet::Publish(publish)).await;
    let reason = conn.closed(TIMEOUT).await.expect("connection closed");
    assert_eq!(reason, Some(p5::DisconnectReasonCode::ProtocolError));
}

#[tokio::test]
async fn subscription_identifier_comes_with_retained_messages() {
    let broker = Gridmq::start();
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("sid/ret", v5::QoS::AtLeastOnce, true, b"r").await;
    publisher.puback().await;
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe_filters(vec![v5::Filter::new("sid/+", v5::QoS::AtLeastOnce)], Some(9)).await;
    let got = sub.recv().await;
    assert!(got.retain);
    assert_eq!(v5::subscription_ids(&got), vec![9]);
}
