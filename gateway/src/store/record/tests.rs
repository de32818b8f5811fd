use super::*;

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
    let bytes = encode_with_message(&header, b"message bytes");
    let (decoded, message): (EntryRecord, &[u8]) = split_header("entries", &bytes).expect("decode");
    assert_eq!(decoded, header);
    assert_eq!(message, b"message bytes");
    assert!(split_header::<EntryRecord>("entries", &bytes[..6]).is_err());
    assert!(split_header::<EntryRecord>("entries", b"\xff\xff\xff\xff").is_err());
}
