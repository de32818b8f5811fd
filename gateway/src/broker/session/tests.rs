use std::sync::Arc;

use super::*;
use crate::broker::message::Message;
use crate::mqtt::Properties;

fn delivery() -> Delivery {
    let message = Arc::new(Message {
        topic: "t".into(),
        payload: bytes::Bytes::from_static(b"x"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default().into_shared(),
        expires_at: None,
        publisher: 0,
        record: std::sync::OnceLock::new(),
    });
    Delivery {
        message,
        qos: QoS::AtMostOnce,
        retain: false,
        subscription_ids: Box::new([]),
        shared: None,
        seq: 0,
        elidable: None,
    }
}

/// Publishers pause at the soft limit and are woken only at half of it: the flag that a
/// publisher paused is raised by the publish that congested the session and stays up until
/// the queue is down to the low-water mark.
#[test]
fn publishers_pause_at_the_soft_limit_and_resume_at_half_of_it() {
    let config = MqttConfig { publisher_pause_queue: 8, ..MqttConfig::default() };
    let session = Session::new("sub".into(), 1, Protocol::V5);
    session.lock().attached = Some(Attachment { connection_id: 1, kicked: None, window: 100 });
    for _ in 0..7 {
        assert!(!session.enqueue(delivery(), &config, None, || 0).congested);
    }
    assert!(!session.lock().publishers_waiting);
    assert!(session.enqueue(delivery(), &config, None, || 0).congested);
    let mut state = session.lock();
    assert!(state.publishers_waiting);
    while state.queue.len() > 5 {
        state.next_delivery();
    }
    assert!(!state.over_soft_limit(&config), "under the soft limit at 5 of 8");
    assert!(!state.under_low_water(&config), "but not yet at its low-water mark");
    state.next_delivery();
    assert!(state.under_low_water(&config), "4 of 8 is the low-water mark");
}
