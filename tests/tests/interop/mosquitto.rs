//! Interoperability with the mosquitto command-line clients (`mosquitto_pub`, `mosquitto_sub`).

use gateway_tests::Gridmq;
use gateway_tests::clients::mosquitto::{self, Sub};
use gateway_tests::clients::{TIMEOUT, topic5, v4, v5};

#[tokio::test]
async fn mosquitto_pub_v5_with_user_property_to_rumqttc_v5() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("mosq/in", v5::QoS::AtLeastOnce).await;
    mosquitto::publish(
        broker.addr,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "mosq/in",
            "-m",
            "hello",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
        ],
    )
    .await;
    let got = sub.recv().await;
    assert_eq!(topic5(&got), "mosq/in");
    assert_eq!(&got.payload[..], b"hello");
    assert_eq!(got.qos, v5::QoS::AtLeastOnce);
    assert_eq!(v5::user_property(&got, "k"), Some("v"));
}

#[tokio::test]
async fn mosquitto_pub_v311_qos2_to_rumqttc_v4() {
    let broker = Gridmq::start();
    let mut sub = v4::Client::connect(broker.addr, "sub").await;
    sub.subscribe("mosq/in4", v4::QoS::ExactlyOnce).await;
    mosquitto::publish(broker.addr, &["-V", "mqttv311", "-q", "2", "-t", "mosq/in4", "-m", "q2"])
        .await;
    let got = sub.recv().await;
    assert_eq!(&got.payload[..], b"q2");
    assert_eq!(got.qos, v4::QoS::ExactlyOnce);
}

#[tokio::test]
async fn rumqttc_to_mosquitto_sub_v5() {
    let broker = Gridmq::start();
    let mut sub = Sub::start(broker.addr, &["-V", "mqttv5", "-q", "1", "-t", "mosq/out/#"]).await;
    let publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("mosq/out/a", v5::QoS::AtLeastOnce, false, b"to-mosquitto").await;
    assert_eq!(
        sub.message(TIMEOUT).await,
        Some(("mosq/out/a".to_string(), "to-mosquitto".to_string()))
    );
}

#[tokio::test]
async fn rumqttc_to_mosquitto_sub_v311() {
    let broker = Gridmq::start();
    let mut sub = Sub::start(broker.addr, &["-V", "mqttv311", "-q", "2", "-t", "mosq/+/b"]).await;
    let publisher = v4::Client::connect(broker.addr, "pub").await;
    publisher.publish("mosq/x/b", v4::QoS::ExactlyOnce, false, b"q2-out").await;
    assert_eq!(sub.message(TIMEOUT).await, Some(("mosq/x/b".to_string(), "q2-out".to_string())));
}

#[tokio::test]
async fn mosquitto_retained_round_trip() {
    let broker = Gridmq::start();
    mosquitto::publish(
        broker.addr,
        &["-V", "mqttv5", "-r", "-q", "1", "-t", "mosq/ret", "-m", "kept"],
    )
    .await;
    for version in ["mqttv5", "mqttv311"] {
        let mut sub = Sub::start(
            broker.addr,
            &["-V", version, "-t", "mosq/ret", "-C", "1", "--retained-only"],
        )
        .await;
        assert_eq!(sub.message(TIMEOUT).await, Some(("mosq/ret".to_string(), "kept".to_string())));
        assert_eq!(sub.exit_code(TIMEOUT).await, Some(0), "{version}: exits after one message");
    }
}

#[tokio::test]
async fn mosquitto_sub_shared_subscription_v311() {
    let broker = Gridmq::start();
    let args = ["-V", "mqttv311", "-q", "1", "-t", "$share/workers/mosq/jobs"];
    let mut a = Sub::start(broker.addr, &args).await;
    let mut b = Sub::start(broker.addr, &args).await;
    for i in 0..4 {
        mosquitto::publish(
            broker.addr,
            &["-V", "mqttv311", "-q", "1", "-t", "mosq/jobs", "-m", &format!("j{i}")],
        )
        .await;
    }
    let mut got = Vec::new();
    for sub in [&mut a, &mut b] {
        while let Some((_, payload)) = sub.message(gateway_tests::clients::QUIET).await {
            got.push(payload);
        }
    }
    got.sort();
    assert_eq!(got, vec!["j0", "j1", "j2", "j3"], "each job delivered once across the group");
}

#[tokio::test]
async fn mosquitto_will_on_abnormal_loss() {
    let broker = Gridmq::start();
    let mut watcher = v5::Client::connect(broker.addr, "watcher").await;
    watcher.subscribe("mosq/will", v5::QoS::AtLeastOnce).await;
    let sub = Sub::start(
        broker.addr,
        &[
            "-V",
            "mqttv5",
            "-t",
            "ignored",
            "--will-topic",
            "mosq/will",
            "--will-payload",
            "mosq-gone",
        ],
    )
    .await;
    drop(sub); // kill_on_drop: the process dies without DISCONNECT
    assert_eq!(&watcher.recv().await.payload[..], b"mosq-gone");
}
