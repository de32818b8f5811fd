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
    session.lock().attached = Some(Attachment { kicked: None, window: 100 });
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

/// A stand-in for a parked connection that counts how often it was resumed.
struct Counted(Arc<std::sync::atomic::AtomicUsize>);

impl Parked for Counted {
    fn resume(self: Box<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + std::time::Duration::from_secs(60)
    }
}

fn attached() -> Session {
    let session = Session::new("parked".into(), 1, Protocol::V5);
    session.lock().attached = Some(Attachment { kicked: None, window: 100 });
    session
}

/// Whatever would wake a connection resumes it when it is parked, exactly once; and a
/// connection with something already waiting for it is not parked at all, so no wake-up
/// falls between its last look and its parking.
#[test]
fn a_parked_connection_is_resumed_by_a_delivery_or_a_kick_and_never_parks_over_work() {
    let config = MqttConfig::default();
    let resumed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let parked = || Box::new(Counted(resumed.clone()));

    let session = attached();
    assert!(session.park(parked(), || true).is_ok());
    assert!(session.parked_deadline().is_some());
    session.enqueue(delivery(), &config, None, || 0);
    session.enqueue(delivery(), &config, None, || 0);
    assert_eq!(
        resumed.load(Ordering::SeqCst),
        1,
        "one delivery resumes it, the next finds it running"
    );
    assert!(session.parked_deadline().is_none());

    assert!(session.park(parked(), || true).is_err(), "deliveries wait: it must not park");

    let session = attached();
    assert!(session.park(parked(), || true).is_ok());
    assert!(session.kick(ReasonCode::SessionTakenOver));
    assert_eq!(resumed.load(Ordering::SeqCst), 2, "a kick resumes it");
    assert!(session.park(parked(), || true).is_err(), "kicked: it must not park");

    let session = attached();
    assert!(session.park(parked(), || false).is_err(), "its socket could not be watched");
    assert!(session.parked_deadline().is_none());
    session.unpark_if_due(tokio::time::Instant::now());
    assert!(session.park(parked(), || true).is_ok());
    session.unpark_if_due(tokio::time::Instant::now());
    assert_eq!(resumed.load(Ordering::SeqCst), 2, "not due for a minute");
    session.unpark();
    assert_eq!(resumed.load(Ordering::SeqCst), 3, "its socket woke it");
}

/// The queue's byte total follows every way in and out, so the bounds and the soft limit
/// never see a stale size.
#[test]
fn the_queue_keeps_its_byte_total_in_step() {
    let mut queue = Queue::default();
    let mut shared = delivery();
    let key = crate::broker::message::SharedKey { group: "g".into(), filter: "t".into() };
    shared.shared = Some(Arc::new(key));
    for delivery in [delivery(), shared, delivery()] {
        queue.push_back(delivery);
    }
    // Each test delivery counts its one-byte topic and one-byte payload.
    assert_eq!((queue.len(), queue.bytes()), (3, 6));
    let mut taken = Vec::new();
    queue.take_where(|delivery| delivery.shared.is_some(), &mut taken);
    assert_eq!((taken.len(), queue.len(), queue.bytes()), (1, 2, 4));
    assert!(queue.pop_front().is_some());
    assert_eq!(queue.bytes(), 2);
    queue.clear();
    assert_eq!((queue.len(), queue.bytes()), (0, 0));
}

/// Packet ids go out in order, wrap from 65535 to 1, and skip every id still in flight,
/// recovered ones (out of order) included, while ids acknowledged in between come free again.
#[test]
fn packet_ids_skip_those_in_flight_and_wrap() {
    let mut state = Session::new("c".into(), 1, Protocol::V5).state.into_inner();
    for packet_id in [3, 5] {
        state.reserve_packet_id(packet_id);
        state.inflight.push_back(Inflight {
            packet_id,
            stage: Stage::AwaitingPubAck,
            delivery: delivery(),
        });
    }
    state.reserve_packet_id(1);
    let ids: Vec<u16> = (0..3).map(|_| state.start_inflight(delivery())).collect();
    assert_eq!(ids, [2, 4, 6]);
    assert!(state.finish_inflight(2, Stage::AwaitingPubAck).is_some());
    state.reserve_packet_id(65_533);
    let ids: Vec<u16> = (0..5).map(|_| state.start_inflight(delivery())).collect();
    assert_eq!(ids, [65_534, 65_535, 1, 2, 7]);
}
