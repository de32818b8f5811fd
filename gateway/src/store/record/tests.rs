use bytes::Bytes;

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
fn entry_round_trips_and_rejects_garbage() {
    let header = EntryRecord {
        stage: EntryStage::AwaitingPubRec,
        packet_id: 9,
        qos: 2,
        retain: false,
        subscription_ids: vec![1, 2],
        shared: Some(("g".into(), "a/+".into())),
    };
    let bytes = encode_with_message(&header, &encode_message(&message(None)));
    let (decoded, msg): (EntryRecord, Message) =
        decode_with_message("entries", &bytes).expect("decode");
    assert_eq!(decoded, header);
    assert_eq!(&*msg.topic, "a/b");
    assert!(decode_with_message::<EntryRecord>("entries", &bytes[..6]).is_err());
    assert!(decode_with_message::<EntryRecord>("entries", b"\xff\xff\xff\xff").is_err());
}

#[test]
fn options_byte_round_trips() {
    for byte in [0x00, 0x01, 0x02, 0x06, 0x0A, 0x11, 0x22, 0x2E] {
        assert_eq!(options_byte(&options_from_byte(byte)), byte, "{byte:#04x}");
    }
}
