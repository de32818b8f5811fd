use std::sync::Arc;

use serde_json::value::RawValue;

use super::{DeadLetterError, DeadLetters, MAX_DEAD_LETTERS};
use crate::routing::shared::SharedError;

fn record(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_string()).expect("JSON")
}

fn texts(rows: &[(u64, Box<RawValue>)]) -> Vec<(u64, &str)> {
    rows.iter().map(|(id, record)| (*id, record.get())).collect()
}

#[test]
fn records_are_listed_per_subscription_with_their_text_unchanged() {
    let letters = DeadLetters::new(None);
    let (hook, other): (Arc<str>, Arc<str>) = ("orders/hook".into(), "orders/other".into());
    // Number forms and spacing a `Value` would rewrite.
    letters.add(&hook, record(r#"{"event": {"data": 1.50e0}}"#));
    letters.add(&other, record(r#"{"event": 2}"#));
    letters.add(&hook, record(r#"{"event":3}"#));
    assert_eq!(
        texts(&letters.list("orders/hook")),
        [(1, r#"{"event": {"data": 1.50e0}}"#), (3, r#"{"event":3}"#)]
    );
    assert_eq!(texts(&letters.list("orders/other")), [(2, r#"{"event": 2}"#)]);
    assert!(letters.list("orders/none").is_empty());
}

#[test]
fn take_removes_the_ids_asked_for_skipping_unknown_and_other_subscriptions_ids() {
    let letters = DeadLetters::new(None);
    let (hook, other): (Arc<str>, Arc<str>) = ("t/hook".into(), "t/other".into());
    for n in 0..3 {
        letters.add(&hook, record(&n.to_string()));
    }
    letters.add(&other, record("9"));
    assert_eq!(texts(&letters.take("t/hook", Some(&[2, 4, 77]))), [(2, "1")]);
    assert_eq!(texts(&letters.list("t/hook")), [(1, "0"), (3, "2")]);
    assert_eq!(texts(&letters.list("t/other")), [(4, "9")], "another subscription's id");
    assert_eq!(letters.take("t/hook", None).len(), 2);
    assert!(letters.list("t/hook").is_empty());
    assert!(letters.take("t/none", None).is_empty());
}

#[test]
fn restored_records_keep_their_ids_and_new_ones_follow() {
    let letters = DeadLetters::new(None);
    let key: Arc<str> = "t/s".into();
    letters.restore(key.clone(), 41, record("1"));
    letters.add(&key, record("2"));
    assert_eq!(texts(&letters.list("t/s")), [(41, "1"), (42, "2")]);
}

#[test]
fn a_full_store_drops_the_subscriptions_oldest_record() {
    let letters = DeadLetters::new(None);
    let key: Arc<str> = "t/s".into();
    for _ in 0..MAX_DEAD_LETTERS {
        assert!(!letters.add(&key, record("0")));
    }
    assert!(letters.add(&key, record("1")), "the store was full");
    let rows = letters.list("t/s");
    assert_eq!(rows.len(), MAX_DEAD_LETTERS);
    assert_eq!(rows.first().map(|(id, _)| *id), Some(2), "the oldest, 1, went");
    assert_eq!(rows.last().map(|(id, r)| (*id, r.get())), Some((MAX_DEAD_LETTERS as u64 + 1, "1")));
}

#[test]
fn errors_say_what_failed() {
    let unknown =
        DeadLetterError::NoSuchSubscription { topic: "orders".into(), subscription: "hook".into() };
    assert_eq!(unknown.to_string(), r#"no event subscription "hook" on topic "orders""#);
    let down = DeadLetterError::from(SharedError::Unavailable("timed out".into()));
    assert_eq!(down.to_string(), "cluster routing log unavailable: timed out");
}
