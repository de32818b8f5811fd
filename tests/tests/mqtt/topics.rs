//! Topic filters: `+`, `#`, `$` topics, unsubscribe and UNSUBACK reason codes.

use gateway_tests::Gridmq;
use gateway_tests::clients::{topic5, v4, v5};

/// Publishes each topic (QoS 1) and returns the topics the subscriber of `filter` received.
async fn matched5(filter: &str, topics: &[&str]) -> Vec<String> {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe(filter, v5::QoS::AtLeastOnce).await;
    let mut publisher = v5::Client::connect(broker.addr, "pub").await;
    for topic in topics {
        publisher.publish(topic, v5::QoS::AtLeastOnce, false, topic.as_bytes()).await;
        publisher.puback().await;
    }
    sub.subscribe("end", v5::QoS::AtLeastOnce).await;
    publisher.publish("end", v5::QoS::AtLeastOnce, false, b"").await;
    let mut got = Vec::new();
    loop {
        let publish = sub.recv().await;
        let topic = topic5(&publish);
        if topic == "end" {
            break;
        }
        got.push(topic);
    }
    got
}

async fn matched4(filter: &str, topics: &[&str]) -> Vec<String> {
    let broker = Gridmq::start();
    let mut sub = v4::Client::connect(broker.addr, "sub").await;
    sub.subscribe(filter, v4::QoS::AtLeastOnce).await;
    let mut publisher = v4::Client::connect(broker.addr, "pub").await;
    for topic in topics {
        publisher.publish(topic, v4::QoS::AtLeastOnce, false, topic.as_bytes()).await;
        publisher.puback().await;
    }
    sub.subscribe("end", v4::QoS::AtLeastOnce).await;
    publisher.publish("end", v4::QoS::AtLeastOnce, false, b"").await;
    let mut got = Vec::new();
    loop {
        let publish = sub.recv().await;
        if publish.topic == "end" {
            break;
        }
        got.push(publish.topic);
    }
    got
}

const PLUS_TOPICS: &[&str] = &["a/b/c", "a/x/c", "a//c", "a/b/d", "a/b/x/c", "a/c", "b/b/c"];
const PLUS_MATCHED: &[&str] = &["a/b/c", "a/x/c", "a//c"];
const HASH_TOPICS: &[&str] = &["a", "a/b", "a/b/c", "ab", "b/a", "/a"];
const HASH_MATCHED: &[&str] = &["a", "a/b", "a/b/c"];
const DOLLAR_TOPICS: &[&str] = &["$SYS/x", "$foo", "$foo/x", "x"];

#[tokio::test]
async fn v5_single_level_wildcard() {
    assert_eq!(matched5("a/+/c", PLUS_TOPICS).await, PLUS_MATCHED);
}

#[tokio::test]
async fn v4_single_level_wildcard() {
    assert_eq!(matched4("a/+/c", PLUS_TOPICS).await, PLUS_MATCHED);
}

#[tokio::test]
async fn v5_multi_level_wildcard_includes_parent() {
    assert_eq!(matched5("a/#", HASH_TOPICS).await, HASH_MATCHED);
}

#[tokio::test]
async fn v4_multi_level_wildcard_includes_parent() {
    assert_eq!(matched4("a/#", HASH_TOPICS).await, HASH_MATCHED);
}

#[tokio::test]
async fn v5_plus_matches_whole_levels_only() {
    assert_eq!(matched5("+", &["a", "a/b", "/", "b"]).await, vec!["a", "b"]);
}

#[tokio::test]
async fn v5_leading_wildcards_do_not_match_dollar_topics() {
    assert_eq!(matched5("#", DOLLAR_TOPICS).await, vec!["x"]);
    assert!(matched5("+/x", DOLLAR_TOPICS).await.is_empty());
}

#[tokio::test]
async fn v4_leading_wildcards_do_not_match_dollar_topics() {
    assert_eq!(matched4("#", DOLLAR_TOPICS).await, vec!["x"]);
    assert!(matched4("+/x", DOLLAR_TOPICS).await.is_empty());
}

#[tokio::test]
async fn v5_explicit_dollar_filter_matches_dollar_topics() {
    assert_eq!(matched5("$foo/#", DOLLAR_TOPICS).await, vec!["$foo", "$foo/x"]);
}

#[tokio::test]
async fn v5_topics_are_case_sensitive_and_exact() {
    assert_eq!(
        matched5("Room/1", &["room/1", "Room/1", "Room/1/", "Room/10"]).await,
        vec!["Room/1"]
    );
}

#[tokio::test]
async fn v5_unsubscribe_stops_delivery() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("unsub/+", v5::QoS::AtLeastOnce).await;
    let publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("unsub/a", v5::QoS::AtLeastOnce, false, b"before").await;
    assert_eq!(&sub.recv().await.payload[..], b"before");

    assert_eq!(sub.unsubscribe("unsub/+").await, v5::UnsubAckReason::Success);
    publisher.publish("unsub/a", v5::QoS::AtLeastOnce, false, b"after").await;
    sub.recv_none().await;
}

#[tokio::test]
async fn v4_unsubscribe_stops_delivery() {
    let broker = Gridmq::start();
    let mut sub = v4::Client::connect(broker.addr, "sub").await;
    sub.subscribe("unsub/+", v4::QoS::AtLeastOnce).await;
    let publisher = v4::Client::connect(broker.addr, "pub").await;
    publisher.publish("unsub/a", v4::QoS::AtLeastOnce, false, b"before").await;
    assert_eq!(&sub.recv().await.payload[..], b"before");

    sub.unsubscribe("unsub/+").await;
    publisher.publish("unsub/a", v4::QoS::AtLeastOnce, false, b"after").await;
    sub.recv_none().await;
}

#[tokio::test]
async fn v5_unsubscribe_unknown_filter_gets_0x11() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("known", v5::QoS::AtMostOnce).await;
    assert_eq!(sub.unsubscribe("unknown").await, v5::UnsubAckReason::NoSubscriptionExisted);
    assert_eq!(sub.unsubscribe("known").await, v5::UnsubAckReason::Success);
    assert_eq!(sub.unsubscribe("known").await, v5::UnsubAckReason::NoSubscriptionExisted);
}

#[tokio::test]
async fn v5_unsubscribe_matches_filter_text_not_topics() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("u/#", v5::QoS::AtMostOnce).await;
    // "u/x" is matched by "u/#" but is a different filter.
    assert_eq!(sub.unsubscribe("u/x").await, v5::UnsubAckReason::NoSubscriptionExisted);
    let publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("u/x", v5::QoS::AtMostOnce, false, b"still").await;
    assert_eq!(&sub.recv().await.payload[..], b"still");
}

#[tokio::test]
async fn v5_resubscribe_replaces_qos() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("re", v5::QoS::ExactlyOnce).await;
    sub.subscribe("re", v5::QoS::AtMostOnce).await;
    let publisher = v5::Client::connect(broker.addr, "pub").await;
    publisher.publish("re", v5::QoS::ExactlyOnce, false, b"x").await;
    let got = sub.recv().await;
    assert_eq!(got.qos, v5::QoS::AtMostOnce, "the second SUBSCRIBE replaced the first");
    sub.recv_none().await;
}
