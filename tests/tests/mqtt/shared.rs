//! Shared subscriptions `$share/<group>/<filter>` for MQTT 5.0 and 3.1.1.

use std::collections::BTreeSet;

use gateway_tests::Gridmq;
use gateway_tests::clients::framed::Framed5;
use gateway_tests::clients::{QUIET, TIMEOUT, topic5, v4, v5};
use rumqttc::v5::mqttbytes::v5 as p5;

fn payloads(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("m{i}")).collect()
}

async fn drain5(client: &mut v5::Client) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(publish) = client.try_recv(QUIET).await {
        got.push(String::from_utf8_lossy(&publish.payload).into_owned());
    }
    got
}

async fn drain4(client: &mut v4::Client) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(publish) = client.try_recv(QUIET).await {
        got.push(String::from_utf8_lossy(&publish.payload).into_owned());
    }
    got
}

#[tokio::test]
async fn v5_shared_group_delivers_each_message_once_round_robin() {
    let broker = Gridmq::start();
    let mut a = v5::Client::connect(broker.addr, "a").await;
    let mut b = v5::Client::connect(broker.addr, "b").await;
    a.subscribe("$share/g/jobs/#", v5::QoS::AtLeastOnce).await;
    b.subscribe("$share/g/jobs/#", v5::QoS::AtLeastOnce).await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    for i in 0..10 {
        publisher.publish("jobs/x", v5::QoS::AtLeastOnce, false, format!("m{i}").as_bytes()).await;
        publisher.puback().await;
    }
    let got_a = drain5(&mut a).await;
    let got_b = drain5(&mut b).await;
    let all: BTreeSet<String> = got_a.iter().chain(&got_b).cloned().collect();
    assert_eq!(got_a.len() + got_b.len(), 10, "each message once: a={got_a:?} b={got_b:?}");
    assert_eq!(all, payloads(0..10));
    assert_eq!((got_a.len(), got_b.len()), (5, 5), "round robin: a={got_a:?} b={got_b:?}");
}

#[tokio::test]
async fn v5_shared_delivery_keeps_the_topic_name() {
    let broker = Gridmq::start();
    let mut a = v5::Client::connect(broker.addr, "a").await;
    a.subscribe("$share/g/jobs/+", v5::QoS::AtLeastOnce).await;
    let publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("jobs/7", v5::QoS::AtLeastOnce, false, b"x").await;
    assert_eq!(topic5(&a.recv().await), "jobs/7");
}

#[tokio::test]
async fn v4_shared_group_delivers_each_message_once_round_robin() {
    let broker = Gridmq::start();
    let mut a = v4::Client::connect(broker.addr, "a").await;
    let mut b = v4::Client::connect(broker.addr, "b").await;
    a.subscribe("$share/g/jobs", v4::QoS::AtLeastOnce).await;
    b.subscribe("$share/g/jobs", v4::QoS::AtLeastOnce).await;

    let mut publisher = v4::Client::connect(broker.addr, "pub").await;
    for i in 0..10 {
        publisher.publish("jobs", v4::QoS::AtLeastOnce, false, format!("m{i}").as_bytes()).await;
        publisher.puback().await;
    }
    let got_a = drain4(&mut a).await;
    let got_b = drain4(&mut b).await;
    let all: BTreeSet<String> = got_a.iter().chain(&got_b).cloned().collect();
    assert_eq!(got_a.len() + got_b.len(), 10, "each message once: a={got_a:?} b={got_b:?}");
    assert_eq!(all, payloads(0..10));
    assert_eq!((got_a.len(), got_b.len()), (5, 5), "round robin: a={got_a:?} b={got_b:?}");
}

#[tokio::test]
async fn mixed_version_members_share_one_group() {
    let broker = Gridmq::start();
    let mut a = v4::Client::connect(broker.addr, "a4").await;
    let mut b = v5::Client::connect(broker.addr, "b5").await;
    a.subscribe("$share/mix/t", v4::QoS::AtLeastOnce).await;
    b.subscribe("$share/mix/t", v5::QoS::AtLeastOnce).await;
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    for i in 0..6 {
        publisher.publish("t", v5::QoS::AtLeastOnce, false, format!("m{i}").as_bytes()).await;
        publisher.puback().await;
    }
    let got_a = drain4(&mut a).await;
    let got_b = drain5(&mut b).await;
    let all: BTreeSet<String> = got_a.iter().chain(&got_b).cloned().collect();
    assert_eq!(got_a.len() + got_b.len(), 6, "a={got_a:?} b={got_b:?}");
    assert_eq!(all, payloads(0..6));
    assert!(!got_a.is_empty() && !got_b.is_empty(), "both members served: a={got_a:?} b={got_b:?}");
}

#[tokio::test]
async fn each_group_and_each_plain_subscriber_gets_every_message() {
    let broker = Gridmq::start();
    let mut g1 = v5::Client::connect(broker.addr, "g1").await;
    let mut g2 = v5::Client::connect(broker.addr, "g2").await;
    let mut plain = v5::Client::connect(broker.addr, "plain").await;
    g1.subscribe("$share/one/t", v5::QoS::AtLeastOnce).await;
    g2.subscribe("$share/two/t", v5::QoS::AtLeastOnce).await;
    plain.subscribe("t", v5::QoS::AtLeastOnce).await;
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    for i in 0..4 {
        publisher.publish("t", v5::QoS::AtLeastOnce, false, format!("m{i}").as_bytes()).await;
        publisher.puback().await;
    }
    for client in [&mut g1, &mut g2, &mut plain] {
        let got: BTreeSet<String> = drain5(client).await.into_iter().collect();
        assert_eq!(got, payloads(0..4));
    }
}

#[tokio::test]
async fn v5_unacked_messages_of_a_leaving_member_go_to_another_member() {
    let broker = Gridmq::start();
    let mut options = v5::options(broker.addr, "leaver");
    options.set_manual_acks(true);
    let mut leaver = v5::Client::connect_with(options).await.expect("connect");
    let mut stayer = v5::Client::connect(broker.addr, "stayer").await;
    leaver.subscribe("$share/g/work", v5::QoS::AtLeastOnce).await;
    stayer.subscribe("$share/g/work", v5::QoS::AtLeastOnce).await;

    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    for i in 0..4 {
        publisher.publish("work", v5::QoS::AtLeastOnce, false, format!("m{i}").as_bytes()).await;
        publisher.puback().await;
    }
    let held = drain5(&mut leaver).await;
    assert!(!held.is_empty(), "round robin gave the leaver some messages");
    drop(leaver); // leaves without acknowledging; its session ends (expiry 0)

    let mut got: Vec<String> = drain5(&mut stayer).await;
    let extra = drain5(&mut stayer).await;
    got.extend(extra);
    let got: BTreeSet<String> = got.into_iter().collect();
    assert_eq!(got, payloads(0..4), "the stayer ends up with every message (held: {held:?})");
}

#[tokio::test]
async fn v5_shared_subscription_gets_no_retained_messages() {
    // MQTT 5.0 section 3.3.1.3: retained messages are sent "when a new Non-shared Subscription
    // is made".
    let broker = Gridmq::start();
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("kept", v5::QoS::AtLeastOnce, true, b"r").await;
    publisher.puback().await;
    let mut member = v5::Client::connect(broker.addr, "m").await;
    member.subscribe("$share/g/kept", v5::QoS::AtLeastOnce).await;
    member.recv_none().await;
}

#[tokio::test]
async fn v5_unsubscribed_member_leaves_the_group() {
    let broker = Gridmq::start();
    let mut a = v5::Client::connect(broker.addr, "a").await;
    let mut b = v5::Client::connect(broker.addr, "b").await;
    a.subscribe("$share/g/t", v5::QoS::AtLeastOnce).await;
    b.subscribe("$share/g/t", v5::QoS::AtLeastOnce).await;
    assert_eq!(a.unsubscribe("$share/g/t").await, v5::UnsubAckReason::Success);
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    for i in 0..4 {
        publisher.publish("t", v5::QoS::AtLeastOnce, false, format!("m{i}").as_bytes()).await;
        publisher.puback().await;
    }
    assert!(drain5(&mut a).await.is_empty());
    let got: BTreeSet<String> = drain5(&mut b).await.into_iter().collect();
    assert_eq!(got, payloads(0..4));
}

#[tokio::test]
async fn v4_unacked_messages_of_a_leaving_member_go_to_another_member() {
    let broker = Gridmq::start();
    let mut options = v4::options(broker.addr, "leaver");
    options.set_manual_acks(true);
    let mut leaver = v4::Client::connect_with(options).await.expect("connect");
    let mut stayer = v4::Client::connect(broker.addr, "stayer").await;
    leaver.subscribe("$share/g/work", v4::QoS::AtLeastOnce).await;
    stayer.subscribe("$share/g/work", v4::QoS::AtLeastOnce).await;

    let mut publisher = v4::Client::connect(broker.addr, "pub").await;
    for i in 0..4 {
        publisher.publish("work", v4::QoS::AtLeastOnce, false, format!("m{i}").as_bytes()).await;
        publisher.puback().await;
    }
    let held = drain4(&mut leaver).await;
    assert!(!held.is_empty(), "round robin gave the leaver some messages");
    drop(leaver); // clean session: leaves without acknowledging, and the session ends

    let mut got = drain4(&mut stayer).await;
    got.extend(drain4(&mut stayer).await);
    let got: BTreeSet<String> = got.into_iter().collect();
    assert_eq!(got, payloads(0..4), "the stayer ends up with every message (held: {held:?})");
}

#[tokio::test]
async fn v5_no_local_on_a_shared_subscription_is_a_protocol_error() {
    // MQTT 5.0 [MQTT-3.8.3-4]: No Local = 1 on a Shared Subscription is a Protocol Error.
    let broker = Gridmq::start();
    let connect = Framed5::connect_packet("nolocal", 30, true, None);
    let (mut conn, _) = Framed5::connect(broker.addr, connect, None).await;
    let mut filter = p5::Filter::new("$share/g/t", v5::QoS::AtLeastOnce);
    filter.nolocal = true;
    let subscribe = p5::Subscribe { pkid: 1, ..p5::Subscribe::new(filter, None) };
    conn.send(p5::Packet::Subscribe(subscribe)).await;
    let reason = conn.closed(TIMEOUT).await.expect("connection closed");
    assert_eq!(reason, Some(p5::DisconnectReasonCode::ProtocolError));
}
