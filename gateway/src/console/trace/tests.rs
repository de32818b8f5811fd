use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;

use super::*;
use crate::hooks::ClientIdentity;
use crate::mqtt::QoS;

fn message(topic: &str) -> RoutedMessage {
    RoutedMessage {
        publisher: ClientIdentity {
            client_id: "c1".into(),
            authentication_name: "car1".into(),
            attributes: BTreeMap::new(),
        },
        protocol: crate::mqtt::Protocol::V5,
        topic: topic.into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        payload: Bytes::from_static(b"{\"speed\":3}"),
        properties: Default::default(),
    }
}

/// A tap that counts what it is given, standing in for the router.
#[derive(Default)]
struct Counting {
    accepted: AtomicUsize,
    active: AtomicBool,
}

impl RoutingTap for Counting {
    fn accept(&self, _: &RoutedMessage) -> Result<Option<Ticket>, TapRefused> {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }
    fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }
}

#[tokio::test]
async fn with_no_viewer_the_tap_is_the_inner_one() {
    let trace = Arc::new(Trace::new(None));
    let inner = Arc::new(Counting::default());
    let tap = trace.tap(Some(inner.clone()));
    assert!(!tap.active(), "inactive like the router without routes");
    inner.active.store(true, Ordering::Relaxed);
    assert!(tap.active());
    tap.accept(&message("a/b")).expect("accepted");
    assert_eq!(inner.accepted.load(Ordering::Relaxed), 1);
    assert!(!trace.watching());
}

#[tokio::test]
async fn a_viewer_sees_matching_messages_only_and_detaches_on_drop() {
    let trace = Arc::new(Trace::new(None));
    let tap = trace.tap(None);
    assert!(!tap.active());
    let (watch, mut samples) = trace.attach("vehicles/+/speed".into()).expect("attach");
    assert!(tap.active(), "a viewer makes the tap look at publishes");
    tap.accept(&message("vehicles/car1/speed")).expect("accepted");
    tap.accept(&message("other/topic")).expect("accepted");
    let sample = samples.try_recv().expect("the matching message");
    assert_eq!(&*sample.message.topic, "vehicles/car1/speed");
    assert!(samples.try_recv().is_err(), "the other topic is not traced");
    let rendered: serde_json::Value = serde_json::from_str(&render(&trace, &sample)).expect("json");
    assert_eq!(rendered["kind"], "message");
    assert_eq!(rendered["payloadPreview"], "{\"speed\":3}");
    assert_eq!(rendered["clientId"], "c1");
    drop(watch);
    assert!(!trace.watching());
    assert_eq!(trace.viewers(), 0);
}

#[tokio::test]
async fn a_viewer_that_falls_behind_loses_samples_and_publishers_never_wait() {
    let trace = Arc::new(Trace::new(None));
    let tap = trace.tap(None);
    let (watch, mut samples) = trace.attach_bounded("#".into(), 10).expect("attach");
    let started = Instant::now();
    for _ in 0..10_000 {
        tap.accept(&message("t")).expect("never refused");
    }
    assert!(started.elapsed() < Duration::from_secs(2), "offering never waits");
    let mut received = 0;
    while samples.try_recv().is_ok() {
        received += 1;
    }
    let dropped = watch.viewer.dropped.load(Ordering::Relaxed);
    let sampled_out = watch.viewer.sampled_out.load(Ordering::Relaxed);
    assert_eq!(received, 10, "the viewer's queue is full");
    assert!(dropped >= SAMPLES_PER_SECOND - 10, "sampled but not taken: {dropped}");
    assert_eq!(dropped + sampled_out + received, 10_000, "every message is accounted for");
}

#[tokio::test]
async fn at_most_max_viewers_watch() {
    let trace = Arc::new(Trace::new(None));
    let watches: Vec<_> =
        (0..MAX_VIEWERS).map(|_| trace.attach("#".into()).expect("room")).collect();
    assert!(trace.attach("#".into()).is_none());
    drop(watches);
    assert!(trace.attach("#".into()).is_some());
}
