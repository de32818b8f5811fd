//! Retained messages: set, replace, clear, retain flag on live delivery, retain handling 0/1/2,
//! retain as published, and message expiry of retained messages.

use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::{topic5, v4, v5};

async fn retain5(publisher: &mut v5::Client, topic: &str, payload: &[u8]) {
    publisher.publish(topic, v5::QoS::AtLeastOnce, true, payload).await;
    publisher.puback().await;
}

#[tokio::test]
async fn v5_new_subscriber_gets_retained_message_with_retain_flag() {
    let broker = Gridmq::start();
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    retain5(&mut publisher, "ret/a", b"kept").await;

    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("ret/a", v5::QoS::AtLeastOnce).await;
    let got = sub.recv().await;
    assert_eq!(&got.payload[..], b"kept");
    assert!(got.retain, "a retained message sent on subscribe has RETAIN = 1");
    assert_eq!(got.qos, v5::QoS::AtLeastOnce);
    sub.recv_none().await;
}

#[tokio::test]
async fn v4_new_subscriber_gets_retained_message_with_retain_flag() {
    let broker = Gridmq::start();
    let mut publisher = v4::Client::connect(broker.addr, "pub").await;
    publisher.publish("ret/a", v4::QoS::AtLeastOnce, true, b"kept").await;
    publisher.puback().await;

    let mut sub = v4::Client::connect(broker.addr, "sub").await;
    sub.subscribe("ret/a", v4::QoS::AtLeastOnce).await;
    let got = sub.recv().await;
    assert_eq!(&got.payload[..], b"kept");
    assert!(got.retain);
    sub.recv_none().await;
}

#[tokio::test]
async fn v5_retained_message_is_replaced_and_cleared() {
    let broker = Gridmq::start();
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    retain5(&mut publisher, "ret/b", b"first").await;
    retain5(&mut publisher, "ret/b", b"second").await;

    let mut sub = v5::Client::connect(broker.addr, "sub1").await;
    sub.subscribe("ret/b", v5::QoS::AtLeastOnce).await;
    assert_eq!(&sub.recv().await.payload[..], b"second");
    sub.recv_none().await;

    retain5(&mut publisher, "ret/b", b"").await;
    // Existing subscribers still see the empty message; new ones get nothing.
    assert_eq!(&sub.recv().await.payload[..], b"");
    let mut late = v5::Client::connect(broker.addr, "sub2").await;
    late.subscribe("ret/b", v5::QoS::AtLeastOnce).await;
    late.recv_none().await;
}

#[tokio::test]
async fn v4_retained_message_is_replaced_and_cleared() {
    let broker = Gridmq::start();
    let mut publisher = v4::Client::connect(broker.addr, "pub").await;
    for payload in [&b"first"[..], b"second"] {
        publisher.publish("ret/b", v4::QoS::AtLeastOnce, true, payload).await;
        publisher.puback().await;
    }
    let mut sub = v4::Client::connect(broker.addr, "sub1").await;
    sub.subscribe("ret/b", v4::QoS::AtLeastOnce).await;
    assert_eq!(&sub.recv().await.payload[..], b"second");

    publisher.publish("ret/b", v4::QoS::AtLeastOnce, true, b"").await;
    publisher.puback().await;
    let mut late = v4::Client::connect(broker.addr, "sub2").await;
    late.subscribe("ret/b", v4::QoS::AtLeastOnce).await;
    late.recv_none().await;
}

#[tokio::test]
async fn v5_live_delivery_clears_retain_flag() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("ret/live", v5::QoS::AtLeastOnce).await;
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    retain5(&mut publisher, "ret/live", b"now").await;
    let got = sub.recv().await;
    assert_eq!(&got.payload[..], b"now");
    assert!(!got.retain, "without retain-as-published, live delivery has RETAIN = 0");
}

#[tokio::test]
async fn v4_live_delivery_clears_retain_flag() {
    let broker = Gridmq::start();
    let mut sub = v4::Client::connect(broker.addr, "sub").await;
    sub.subscribe("ret/live", v4::QoS::AtLeastOnce).await;
    let publisher = v4::Client::connect(broker.addr, "pub").await;
    publisher.publish("ret/live", v4::QoS::AtLeastOnce, true, b"now").await;
    let got = sub.recv().await;
    assert!(!got.retain, "3.1.1: a message sent to an existing subscription has RETAIN = 0");
}

#[tokio::test]
async fn v5_retain_as_published_keeps_retain_flag() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    let mut filter = v5::Filter::new("ret/rap", v5::QoS::AtLeastOnce);
    filter.preserve_retain = true;
    sub.subscribe_filters(vec![filter], None).await;
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    retain5(&mut publisher, "ret/rap", b"flagged").await;
    publisher.publish("ret/rap", v5::QoS::AtLeastOnce, false, b"plain").await;
    let first = sub.recv().await;
    let second = sub.recv().await;
    assert!(first.retain, "retain as published: RETAIN = 1 as published");
    assert!(!second.retain, "retain as published: RETAIN = 0 as published");
}

async fn retain_handling_case(rule: v5::RetainForwardRule) -> (usize, usize) {
    let broker = Gridmq::start();
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    retain5(&mut publisher, "ret/rh", b"r").await;
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    let mut filter = v5::Filter::new("ret/rh", v5::QoS::AtLeastOnce);
    filter.retain_forward_rule = rule;
    let mut counts = [0, 0];
    for count in &mut counts {
        sub.subscribe_filters(vec![filter.clone()], None).await;
        while sub.try_recv(gateway_tests::clients::QUIET).await.is_some() {
            *count += 1;
        }
    }
    (counts[0], counts[1])
}

#[tokio::test]
async fn v5_retain_handling_0_sends_on_every_subscribe() {
    assert_eq!(retain_handling_case(v5::RetainForwardRule::OnEverySubscribe).await, (1, 1));
}

#[tokio::test]
async fn v5_retain_handling_1_sends_only_for_new_subscription() {
    assert_eq!(retain_handling_case(v5::RetainForwardRule::OnNewSubscribe).await, (1, 0));
}

#[tokio::test]
async fn v5_retain_handling_2_never_sends() {
    assert_eq!(retain_handling_case(v5::RetainForwardRule::Never).await, (0, 0));
}

#[tokio::test]
async fn v5_wildcard_subscription_gets_all_matching_retained() {
    let broker = Gridmq::start();
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    for topic in ["house/kitchen", "house/hall", "house/hall/lamp", "garden"] {
        retain5(&mut publisher, topic, topic.as_bytes()).await;
    }
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("house/+", v5::QoS::AtLeastOnce).await;
    let mut topics = vec![topic5(&sub.recv().await), topic5(&sub.recv().await)];
    topics.sort();
    assert_eq!(topics, vec!["house/hall", "house/kitchen"]);
    sub.recv_none().await;
}

#[tokio::test]
async fn v5_retained_delivery_qos_is_min_of_stored_and_granted() {
    let broker = Gridmq::start();
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("ret/q2", v5::QoS::ExactlyOnce, true, b"q2").await;
    publisher.pubcomp().await;
    retain5(&mut publisher, "ret/q1", b"q1").await;

    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("ret/q2", v5::QoS::AtLeastOnce).await;
    assert_eq!(sub.recv().await.qos, v5::QoS::AtLeastOnce);
    sub.subscribe("ret/q1", v5::QoS::ExactlyOnce).await;
    assert_eq!(sub.recv().await.qos, v5::QoS::AtLeastOnce);
}

#[tokio::test]
async fn v5_expired_retained_message_is_not_sent() {
    let broker = Gridmq::start();
    let publisher = v5::Client::connect(broker.addr, "pub").await;
    let mut props = v5::no_properties();
    props.message_expiry_interval = Some(1);
    publisher.publish_with("ret/exp", v5::QoS::AtLeastOnce, true, b"short", props).await;
    let mut props = v5::no_properties();
    props.message_expiry_interval = Some(60);
    publisher.publish_with("ret/keep", v5::QoS::AtLeastOnce, true, b"long", props).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("ret/exp", v5::QoS::AtLeastOnce).await;
    sub.recv_none().await;
    sub.subscribe("ret/keep", v5::QoS::AtLeastOnce).await;
    let got = sub.recv().await;
    assert_eq!(&got.payload[..], b"long");
    let left = got.properties.and_then(|p| p.message_expiry_interval).expect("expiry forwarded");
    assert!((1..=58).contains(&left), "expiry decremented by the time retained: {left}");
}

#[tokio::test]
async fn v5_message_without_retain_flag_is_not_stored() {
    let broker = Gridmq::start();
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    retain5(&mut publisher, "ret/n", b"stored").await;
    publisher.publish("ret/n", v5::QoS::AtLeastOnce, false, b"not stored").await;
    publisher.puback().await;
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("ret/n", v5::QoS::AtLeastOnce).await;
    assert_eq!(&sub.recv().await.payload[..], b"stored", "a non-retained publish leaves it");
    sub.recv_none().await;
}
