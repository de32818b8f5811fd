//! Will messages: published on abnormal loss and on DISCONNECT 0x04, not on a normal
//! DISCONNECT; will delay interval; will retain; will properties.

use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::framed::Framed5;
use gateway_tests::clients::{TIMEOUT, topic5, v4, v5};
use rumqttc::v5::mqttbytes::v5 as p5;

fn will_options5(
    addr: std::net::SocketAddr,
    id: &str,
    will: v5::LastWill,
    expiry: Option<u32>,
) -> v5::MqttOptions {
    let mut options = v5::options(addr, id);
    options.set_last_will(will);
    if expiry.is_some() {
        options.set_session_expiry_interval(expiry);
    }
    options
}

fn will_props(delay: Option<u32>) -> v5::LastWillProperties {
    v5::LastWillProperties {
        delay_interval: delay,
        payload_format_indicator: Some(1),
        message_expiry_interval: None,
        content_type: Some("text/plain".into()),
        response_topic: Some("will/response".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"corr")),
        user_properties: vec![("origin".into(), "will".into())],
    }
}

async fn watcher5(addr: std::net::SocketAddr, filter: &str) -> v5::Client {
    let mut watcher = v5::Client::connect(addr, "watcher").await;
    watcher.subscribe(filter, v5::QoS::AtLeastOnce).await;
    watcher
}

#[tokio::test]
async fn v5_will_is_published_on_abnormal_loss_with_properties() {
    let broker = Gridmq::start();
    let mut watcher = watcher5(broker.addr, "will/#").await;
    let will =
        v5::LastWill::new("will/a", "gone", v5::QoS::AtLeastOnce, false, Some(will_props(None)));
    let client = v5::Client::connect_with(will_options5(broker.addr, "dies", will, None))
        .await
        .expect("connect");
    watcher.recv_none().await;
    drop(client);

    let got = watcher.recv().await;
    assert_eq!(topic5(&got), "will/a");
    assert_eq!(&got.payload[..], b"gone");
    assert_eq!(got.qos, v5::QoS::AtLeastOnce);
    assert!(!got.retain);
    let props = got.properties.expect("will properties forwarded");
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.response_topic.as_deref(), Some("will/response"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"corr"[..]));
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(props.user_properties, vec![("origin".to_string(), "will".to_string())]);
}

#[tokio::test]
async fn v4_will_is_published_on_abnormal_loss() {
    let broker = Gridmq::start();
    let mut watcher = v4::Client::connect(broker.addr, "watcher").await;
    watcher.subscribe("will/#", v4::QoS::AtLeastOnce).await;
    let mut options = v4::options(broker.addr, "dies4");
    options.set_last_will(v4::LastWill::new("will/b", "gone4", v4::QoS::AtLeastOnce, false));
    let client = v4::Client::connect_with(options).await.expect("connect");
    watcher.recv_none().await;
    drop(client);

    let got = watcher.recv().await;
    assert_eq!(got.topic, "will/b");
    assert_eq!(&got.payload[..], b"gone4");
    assert_eq!(got.qos, v4::QoS::AtLeastOnce);
}

#[tokio::test]
async fn v5_will_is_not_published_on_normal_disconnect() {
    let broker = Gridmq::start();
    let mut watcher = watcher5(broker.addr, "will/#").await;
    let will = v5::LastWill::new("will/c", "gone", v5::QoS::AtLeastOnce, false, None);
    let client = v5::Client::connect_with(will_options5(broker.addr, "polite", will, None))
        .await
        .expect("connect");
    client.disconnect().await;
    watcher.recv_none().await;
}

#[tokio::test]
async fn v4_will_is_not_published_on_normal_disconnect() {
    let broker = Gridmq::start();
    let mut watcher = v4::Client::connect(broker.addr, "watcher").await;
    watcher.subscribe("will/#", v4::QoS::AtLeastOnce).await;
    let mut options = v4::options(broker.addr, "polite4");
    options.set_last_will(v4::LastWill::new("will/d", "gone", v4::QoS::AtLeastOnce, false));
    let client = v4::Client::connect_with(options).await.expect("connect");
    client.disconnect().await;
    watcher.recv_none().await;
}

#[tokio::test]
async fn v5_disconnect_with_will_message_publishes_will() {
    let broker = Gridmq::start();
    let mut watcher = watcher5(broker.addr, "will/#").await;
    let will = p5::LastWill::new("will/e", "asked", v5::QoS::AtMostOnce, false, None);
    let connect = Framed5::connect_packet("asks", 30, true, None);
    let (mut conn, _) = Framed5::connect(broker.addr, connect, Some(will)).await;
    conn.disconnect(p5::DisconnectReasonCode::DisconnectWithWillMessage, None).await;
    let got = watcher.recv().await;
    assert_eq!(topic5(&got), "will/e");
    assert_eq!(&got.payload[..], b"asked");
}

#[tokio::test]
async fn v5_will_on_keep_alive_timeout() {
    let broker = Gridmq::start();
    let mut watcher = watcher5(broker.addr, "will/#").await;
    let will = p5::LastWill::new("will/f", "silent", v5::QoS::AtLeastOnce, false, None);
    let connect = Framed5::connect_packet("silent", 1, true, None);
    let (_conn, _) = Framed5::connect(broker.addr, connect, Some(will)).await;
    let got = watcher.recv().await;
    assert_eq!(&got.payload[..], b"silent");
}

#[tokio::test]
async fn v5_will_delay_defers_the_will() {
    let broker = Gridmq::start();
    let mut watcher = watcher5(broker.addr, "will/#").await;
    let will =
        v5::LastWill::new("will/g", "late", v5::QoS::AtLeastOnce, false, Some(will_props(Some(2))));
    let client = v5::Client::connect_with(will_options5(broker.addr, "delayed", will, Some(30)))
        .await
        .expect("connect");
    drop(client);
    assert!(
        watcher.try_recv(Duration::from_millis(1000)).await.is_none(),
        "the will waits for its 2 s delay"
    );
    let got = watcher.try_recv(TIMEOUT).await.expect("will published after its delay");
    assert_eq!(&got.payload[..], b"late");
}

#[tokio::test]
async fn v5_reconnect_within_will_delay_cancels_the_will() {
    let broker = Gridmq::start();
    let mut watcher = watcher5(broker.addr, "will/#").await;
    let will = v5::LastWill::new(
        "will/h",
        "never",
        v5::QoS::AtLeastOnce,
        false,
        Some(will_props(Some(2))),
    );
    let options = will_options5(broker.addr, "back", will, Some(30));
    let client = v5::Client::connect_with(options.clone()).await.expect("connect");
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut options = options;
    options.set_clean_start(false);
    let _back = v5::Client::connect_with(options).await.expect("connect");
    assert!(
        watcher.try_recv(Duration::from_millis(3000)).await.is_none(),
        "reconnecting before the delay elapsed cancels the will"
    );
}

#[tokio::test]
async fn v5_will_is_sent_when_session_ends_before_will_delay() {
    let broker = Gridmq::start();
    let mut watcher = watcher5(broker.addr, "will/#").await;
    let will = v5::LastWill::new(
        "will/i",
        "session over",
        v5::QoS::AtLeastOnce,
        false,
        Some(will_props(Some(60))),
    );
    let client = v5::Client::connect_with(will_options5(broker.addr, "short", will, Some(1)))
        .await
        .expect("connect");
    drop(client);
    let got = watcher.try_recv(TIMEOUT).await.expect("will published when the 1 s session ended");
    assert_eq!(&got.payload[..], b"session over");
}

#[tokio::test]
async fn v5_will_retain_stores_the_will() {
    let broker = Gridmq::start();
    let will = v5::LastWill::new("will/j", "retained", v5::QoS::AtLeastOnce, true, None);
    let client = v5::Client::connect_with(will_options5(broker.addr, "ret", will, None))
        .await
        .expect("connect");
    drop(client);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut late = v5::Client::connect(broker.addr, "late").await;
    late.subscribe("will/j", v5::QoS::AtLeastOnce).await;
    let got = late.recv().await;
    assert_eq!(&got.payload[..], b"retained");
    assert!(got.retain);
}

#[tokio::test]
async fn v4_will_retain_stores_the_will() {
    let broker = Gridmq::start();
    let mut options = v4::options(broker.addr, "ret4");
    options.set_last_will(v4::LastWill::new("will/k", "retained4", v4::QoS::AtLeastOnce, true));
    let client = v4::Client::connect_with(options).await.expect("connect");
    drop(client);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut late = v4::Client::connect(broker.addr, "late").await;
    late.subscribe("will/k", v4::QoS::AtLeastOnce).await;
    let got = late.recv().await;
    assert_eq!(&got.payload[..], b"retained4");
    assert!(got.retain);
}

#[tokio::test]
async fn v5_session_takeover_publishes_will_of_old_connection() {
    let broker = Gridmq::start();
    let mut watcher = watcher5(broker.addr, "will/#").await;
    let will = v5::LastWill::new("will/l", "taken", v5::QoS::AtLeastOnce, false, None);
    let _old = v5::Client::connect_with(will_options5(broker.addr, "twin", will, None))
        .await
        .expect("connect");
    let _new = v5::Client::connect(broker.addr, "twin").await;
    let got = watcher.recv().await;
    assert_eq!(&got.payload[..], b"taken");
}
