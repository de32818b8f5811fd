use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::*;
use crate::mqtt::Properties;

fn message(expiry: Option<Duration>) -> Message {
    Message {
        topic: "a/b".into(),
        payload: Bytes::from_static(b"payload"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: Properties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        }
        .into_shared(),
        expires_at: expiry.map(|d| Instant::now() + d),
        publisher: 7,
        record: std::sync::OnceLock::new(),
    }
}

#[test]
fn message_round_trips() {
    let original = message(None);
    let decoded = decode_message(&encode_message(&original)).expect("decode");
    assert_eq!(decoded.topic, original.topic);
    assert_eq!(decoded.payload, original.payload);
    assert_eq!(decoded.qos, original.qos);
    assert!(decoded.retain);
    assert_eq!(decoded.properties, original.properties);
    assert_eq!(decoded.expires_at, None);
}

#[tokio::test]
async fn message_expiry_survives_as_wall_clock() {
    let decoded =
        decode_message(&encode_message(&message(Some(Duration::from_secs(60))))).expect("decode");
    let left = decoded.remaining_expiry(Instant::now()).expect("expiry kept");
    assert!((59..=60).contains(&left), "{left}");
}

#[test]
fn entry_round_trips_with_its_message() {
    let header = EntryRecord {
        stage: EntryStage::AwaitingPubRec,
        packet_id: 9,
        qos: 2,
        retain: false,
        subscription_ids: vec![1, 2],
        shared: Some(("g".into(), "a/+".into())),
    };
    let bytes = record::encode_with_message(&header, &encode_message(&message(None)));
    let (decoded, msg): (EntryRecord, Message) =
        decode_with_message("entries", &bytes).expect("decode");
    assert_eq!(decoded, header);
    assert_eq!(&*msg.topic, "a/b");
    assert!(decode_with_message::<EntryRecord>("entries", &bytes[..6]).is_err());
}
