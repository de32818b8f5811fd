//! MQTT 3.1.1 and 5.0 clients talking to each other through the broker.

use std::time::Duration;

use bytes::Bytes;
use gateway_tests::Gridmq;
use gateway_tests::clients::{topic5, v4, v5};

#[tokio::test]
async fn v4_publisher_to_v5_subscriber() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub5").await;
    sub.subscribe("x/+", v5::QoS::ExactlyOnce).await;
    let mut publisher = v4::Client::connect(broker.addr, "pub4").await;
    for qos in [v4::QoS::AtMostOnce, v4::QoS::AtLeastOnce, v4::QoS::ExactlyOnce] {
        publisher.publish("x/4", qos, false, format!("{qos:?}").as_bytes()).await;
        let got = sub.recv().await;
        assert_eq!(topic5(&got), "x/4");
        assert_eq!(&got.payload[..], format!("{qos:?}").as_bytes());
        assert_eq!(got.qos as u8, qos as u8);
        let props = got.properties.unwrap_or_else(v5::no_properties);
        assert!(props.user_properties.is_empty());
        assert_eq!(props.message_expiry_interval, None);
    }
    publisher.pubcomp().await;
}

#[tokio::test]
async fn v5_publisher_to_v4_subscriber() {
    let broker = Gridmq::start();
    let mut sub = v4::Client::connect(broker.addr, "sub4").await;
    sub.subscribe("x/#", v4::QoS::ExactlyOnce).await;
    let mut publisher = v5::Client::connect(broker.addr, "pub5").await;
    let mut props = v5::no_properties();
    props.user_properties = vec![("k".into(), "v".into())];
    props.content_type = Some("text/plain".into());
    props.correlation_data = Some(Bytes::from_static(b"c"));
    props.message_expiry_interval = Some(60);
    for qos in [v5::QoS::AtMostOnce, v5::QoS::AtLeastOnce, v5::QoS::ExactlyOnce] {
        publisher
            .publish_with("x/5", qos, false, format!("{qos:?}").as_bytes(), props.clone())
            .await;
        let got = sub.recv().await;
        assert_eq!(got.topic, "x/5");
        assert_eq!(&got.payload[..], format!("{qos:?}").as_bytes());
        assert_eq!(got.qos as u8, qos as u8);
    }
    publisher.pubcomp().await;
}

#[tokio::test]
async fn v5_retained_message_read_by_v4_and_back() {
    let broker = Gridmq::start();
    let mut p5 = v5::Client::connect(broker.addr, "p5").await;
    p5.publish("ret/5", v5::QoS::AtLeastOnce, true, b"from5").await;
    p5.puback().await;
    let mut p4 = v4::Client::connect(broker.addr, "p4").await;
    p4.publish("ret/4", v4::QoS::AtLeastOnce, true, b"from4").await;
    p4.puback().await;

    let mut s4 = v4::Client::connect(broker.addr, "s4").await;
    s4.subscribe("ret/5", v4::QoS::AtLeastOnce).await;
    let got = s4.recv().await;
    assert!(got.retain);
    assert_eq!(&got.payload[..], b"from5");

    let mut s5 = v5::Client::connect(broker.addr, "s5").await;
    s5.subscribe("ret/4", v5::QoS::AtLeastOnce).await;
    let got = s5.recv().await;
    assert!(got.retain);
    assert_eq!(&got.payload[..], b"from4");
}

#[tokio::test]
async fn v5_will_reaches_v4_subscriber_and_v4_will_reaches_v5() {
    let broker = Gridmq::start();
    let mut s4 = v4::Client::connect(broker.addr, "s4").await;
    s4.subscribe("will/5", v4::QoS::AtLeastOnce).await;
    let mut s5 = v5::Client::connect(broker.addr, "s5").await;
    s5.subscribe("will/4", v5::QoS::AtLeastOnce).await;

    let mut o5 = v5::options(broker.addr, "w5");
    o5.set_last_will(v5::LastWill::new("will/5", "bye5", v5::QoS::AtLeastOnce, false, None));
    let w5 = v5::Client::connect_with(o5).await.expect("connect");
    let mut o4 = v4::options(broker.addr, "w4");
    o4.set_last_will(v4::LastWill::new("will/4", "bye4", v4::QoS::AtLeastOnce, false));
    let w4 = v4::Client::connect_with(o4).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(w5);
    drop(w4);

    assert_eq!(&s4.recv().await.payload[..], b"bye5");
    assert_eq!(&s5.recv().await.payload[..], b"bye4");
}

#[tokio::test]
async fn v4_session_messages_queued_from_v5_publisher() {
    let broker = Gridmq::start();
    let mut options = v4::options(broker.addr, "s4");
    options.set_clean_session(false);
    let mut sub = v4::Client::connect_with(options.clone()).await.expect("connect");
    sub.subscribe("q", v4::QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = v5::Client::connect(broker.addr, "p5").await;
    publisher.publish("q", v5::QoS::AtLeastOnce, false, b"while away").await;
    publisher.puback().await;
    let mut sub = v4::Client::connect_with(options).await.expect("connect");
    assert!(sub.connack.session_present);
    assert_eq!(&sub.recv().await.payload[..], b"while away");
}

#[tokio::test]
async fn v4_publish_carries_v5_subscription_identifier() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub5").await;
    sub.subscribe_filters(vec![v5::Filter::new("sid/#", v5::QoS::AtLeastOnce)], Some(77)).await;
    let publisher = v4::Client::connect(broker.addr, "pub4").await;
    publisher.publish("sid/4", v4::QoS::AtLeastOnce, false, b"x").await;
    assert_eq!(v5::subscription_ids(&sub.recv().await), vec![77]);
}
