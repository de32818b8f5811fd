use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::error::FailureKind;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn socket_error() -> DeliveryError {
    DeliveryError::new(FailureKind::SocketError, "refused")
}

fn policy(schedule: Schedule, max_attempts: u32, ttl_secs: u64) -> RetryPolicy {
    RetryPolicy {
        schedule,
        max_attempts,
        time_to_live: Duration::from_secs(ttl_secs),
        delays: None,
    }
}

fn delays(policy: &RetryPolicy, error: &DeliveryError, count: u32) -> Vec<u64> {
    (1..=count).map(|attempts| policy.delay_after(attempts, error).as_secs()).collect()
}

#[test]
fn namespace_table() {
    let policy = policy(Schedule::Namespace, 100, 7 * 86_400);
    assert_eq!(delays(&policy, &socket_error(), 8), [0, 10, 30, 60, 300, 300, 300, 300]);
}

#[test]
fn custom_topic_table() {
    let policy = policy(Schedule::CustomTopic, 100, 7 * 86_400);
    assert_eq!(
        delays(&policy, &socket_error(), 12),
        [10, 30, 60, 300, 600, 1800, 3600, 10_800, 21_600, 43_200, 43_200, 43_200]
    );
}

#[test]
fn status_floors_raise_short_delays() {
    let policy = policy(Schedule::Namespace, 100, 7 * 86_400);
    let busy = DeliveryError::from_status(503, "");
    assert_eq!(delays(&policy, &busy, 5), [30, 30, 30, 60, 300]);
    let timeout = DeliveryError::from_status(408, "");
    assert_eq!(delays(&policy, &timeout, 6), [120, 120, 120, 120, 300, 300]);
    let server = DeliveryError::from_status(500, "");
    assert_eq!(delays(&policy, &server, 3), [10, 10, 30]);
}

#[test]
fn retry_at_is_now_plus_the_delay() {
    let policy = policy(Schedule::CustomTopic, 30, 86_400);
    let verdict = policy.after_failure(3, at(0), at(100), &socket_error());
    assert_eq!(verdict, Verdict::RetryAt(at(160)));
}

#[test]
fn max_attempts_dead_letters() {
    let policy = policy(Schedule::Namespace, 3, 86_400);
    assert!(matches!(policy.after_failure(2, at(0), at(0), &socket_error()), Verdict::RetryAt(_)));
    assert_eq!(
        policy.after_failure(3, at(0), at(0), &socket_error()),
        Verdict::DeadLetter(DeadLetterReason::MaxDeliveryAttemptsExceeded)
    );
}

/// Event Grid's own example: a time to live of 20 minutes and 10 attempts dead-letters at
/// attempt 8, at t = 20 min.
#[test]
fn time_to_live_dead_letters_before_a_late_attempt() {
    let policy = policy(Schedule::Namespace, 10, 20 * 60);
    let published = at(0);
    let mut now = published;
    let mut attempts = 1;
    loop {
        match policy.after_failure(attempts, published, now, &socket_error()) {
            Verdict::RetryAt(next) => {
                now = next;
                attempts += 1;
            }
            Verdict::DeadLetter(reason) => {
                assert_eq!(reason, DeadLetterReason::MaxRetryDurationExceeded);
                break;
            }
        }
    }
    assert_eq!(attempts, 8);
    assert_eq!(now, at(1000));
}

#[test]
fn non_retriable_statuses_dead_letter_at_once() {
    let webhooks = policy(Schedule::Namespace, 10, 86_400);
    let topics = policy(Schedule::CustomTopic, 30, 86_400);
    for status in [400, 401, 403, 404, 413, 414] {
        assert_eq!(
            webhooks.after_failure(1, at(0), at(0), &DeliveryError::from_status(status, "")),
            Verdict::DeadLetter(DeadLetterReason::NonRetriable),
            "{status}"
        );
    }
    for status in [400, 401, 403, 413] {
        assert_eq!(
            topics.after_failure(1, at(0), at(0), &DeliveryError::from_status(status, "")),
            Verdict::DeadLetter(DeadLetterReason::NonRetriable),
            "{status}"
        );
    }
    for status in [404, 414] {
        let error = DeliveryError::from_status(status, "");
        assert!(matches!(topics.after_failure(1, at(0), at(0), &error), Verdict::RetryAt(_)));
    }
}

#[test]
fn expiry() {
    let policy = policy(Schedule::Namespace, 10, 60);
    assert!(!policy.expired(at(0), at(60)));
    assert!(policy.expired(at(0), at(61)));
}

#[test]
fn override_replaces_the_table_and_the_floors() {
    let policy = RetryPolicy::for_schedule(Schedule::Namespace)
        .with_schedule_override(vec![Duration::from_millis(100), Duration::from_millis(250)]);
    let busy = DeliveryError::from_status(503, "");
    let millis: Vec<u128> =
        (1..=4).map(|attempts| policy.delay_after(attempts, &busy).as_millis()).collect();
    assert_eq!(millis, [100, 250, 250, 250]);
    let now = at(5);
    assert_eq!(
        policy.after_failure(1, at(0), now, &busy),
        Verdict::RetryAt(now + Duration::from_millis(100))
    );
    // The override changes timing only: what is not retriable still is not.
    assert_eq!(
        policy.after_failure(1, at(0), now, &DeliveryError::from_status(400, "")),
        Verdict::DeadLetter(DeadLetterReason::NonRetriable)
    );
}

#[test]
fn defaults_per_schedule() {
    let namespace = RetryPolicy::for_schedule(Schedule::Namespace);
    assert_eq!((namespace.max_attempts, namespace.time_to_live.as_secs()), (10, 86_400));
    let topic = RetryPolicy::for_schedule(Schedule::CustomTopic);
    assert_eq!((topic.max_attempts, topic.time_to_live.as_secs()), (30, 86_400));
}

#[test]
fn subscription_defaults_follow_the_topics_retention() {
    let week = Duration::from_secs(7 * 86_400);
    let hour = Duration::from_secs(3_600);
    let namespace = RetryPolicy::for_subscription(Schedule::Namespace, week);
    assert_eq!((namespace.max_attempts, namespace.time_to_live), (10, week));
    let topic = RetryPolicy::for_subscription(Schedule::CustomTopic, week);
    assert_eq!((topic.max_attempts, topic.time_to_live.as_secs()), (30, 86_400));
    let short = RetryPolicy::for_subscription(Schedule::CustomTopic, hour);
    assert_eq!(short.time_to_live, hour);
    assert_eq!(
        (Schedule::Namespace.max_attempts(), Schedule::CustomTopic.max_attempts()),
        (10, 30)
    );
}
