use std::sync::Arc;

use super::*;
use crate::mqtt::Properties;

fn message(payload: &'static [u8]) -> Arc<Message> {
    Arc::new(Message {
        topic: "t".into(),
        payload: bytes::Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default().into_shared(),
        expires_at: None,
        publisher: 0,
        record: std::sync::OnceLock::new(),
    })
}

/// A run's byte total follows what joins and what is fanned out, and bounds what may join.
#[test]
fn a_run_keeps_its_messages_ids_and_bytes_in_step() {
    let config = MqttConfig { max_queued_bytes: 22, ..MqttConfig::default() };
    let mut run = Run::default();
    // The first message always fits, however large.
    assert!(run.fits(&message(b"0123456789abcdef01234"), &config));
    run.push(message(b"0123"), 7);
    run.push(message(b"01"), 0);
    assert_eq!(run.bytes, 8);
    // Half of the byte bound, 11: 8 + 3 fits, 8 + 4 does not.
    assert!(run.fits(&message(b"01"), &config));
    assert!(!run.fits(&message(b"012"), &config));
    assert_eq!(run.take_front(1).collect::<Vec<_>>(), [7]);
    assert_eq!((run.messages.len(), run.packet_ids.len(), run.bytes), (1, 1, 3));
    assert_eq!(run.take_front(1).collect::<Vec<_>>(), [0]);
    assert!(run.is_empty());
    assert_eq!(run.bytes, 0);
}

#[test]
fn only_plain_qos_0_and_1_publishes_and_pubacks_join_a_run() {
    assert!(joins_run(&[0x30]));
    assert!(joins_run(&[0x3A])); // QoS 1 with DUP
    assert!(joins_run(&[0x40, 0x02]));
    assert!(!joins_run(&[0x31])); // RETAIN
    assert!(!joins_run(&[0x34])); // QoS 2
    assert!(!joins_run(&[0x36])); // QoS 3, malformed
    assert!(!joins_run(&[0x50]));
    assert!(!joins_run(&[]));
}
