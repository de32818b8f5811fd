//! The retry policy: after a failed attempt, when to try again or why to give up.
//!
//! This is a pure function of the attempt count, the event's publish time, the clock and the
//! failure. The gateway keeps the durable state (attempts made, next attempt time) with each
//! event, so a retry hours away survives a restart; nothing here sleeps or keeps state.
//!
//! Event Grid's schedules (no jitter: the gateway spreads retries by their due times):
//!
//! - [`Schedule::Namespace`] (push from namespace topics, our webhooks): the delay before
//!   attempt n+1 after n failures is 0 s, 10 s, 30 s, 1 min, 5 min, then every 5 min.
//! - [`Schedule::CustomTopic`] (Event Grid basic): 10 s, 30 s, 1 min, 5 min, 10 min, 30 min,
//!   1 h, 3 h, 6 h, then every 12 h.
//!
//! The wait is the larger of the schedule's delay and the failure's floor
//! ([`DeliveryError::min_delay`]: 408 two minutes, 503 thirty seconds, other statuses ten).

use std::time::{Duration, SystemTime};

use crate::dead_letter::DeadLetterReason;
use crate::error::DeliveryError;

/// Which of Event Grid's retry rules apply to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// Namespace topic push delivery: webhooks.
    Namespace,
    /// Event Grid basic custom topics.
    CustomTopic,
}

/// When to give up on an event, and how long to wait between attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub schedule: Schedule,
    /// Attempts in all, the first included (Event Grid's max delivery count).
    pub max_attempts: u32,
    /// How long after publishing an event may still be attempted.
    pub time_to_live: Duration,
    /// A testing knob: when set, these delays replace the schedule's table (the last one
    /// repeats) and the failures' floors no longer apply, so end-to-end tests need not wait
    /// ten seconds a retry. The gateway exposes it as `retryDelaysSeconds`.
    pub delays: Option<Vec<Duration>>,
}

/// What to do with an event after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Attempt again at (not before) this time.
    RetryAt(SystemTime),
    /// Give up.
    DeadLetter(DeadLetterReason),
}

const NAMESPACE_DELAYS: [u64; 5] = [0, 10, 30, 60, 300];
const CUSTOM_TOPIC_DELAYS: [u64; 10] = [10, 30, 60, 300, 600, 1800, 3600, 10_800, 21_600, 43_200];

// === impl Schedule ===

impl Schedule {
    /// The delay before attempt `attempts + 1` after `attempts` (1-based) failures; the last
    /// entry of the table repeats.
    pub fn delay(&self, attempts: u32) -> Duration {
        let table: &[u64] = match self {
            Schedule::Namespace => &NAMESPACE_DELAYS,
            Schedule::CustomTopic => &CUSTOM_TOPIC_DELAYS,
        };
        Duration::from_secs(pick(table, attempts).copied().unwrap_or_default())
    }

    /// The most attempts Event Grid allows a subscription (the bound of its
    /// `maxDeliveryCount`), which is also the default: 10 from namespace topics, 30 for custom
    /// topics.
    pub fn max_attempts(self) -> u32 {
        match self {
            Schedule::Namespace => 10,
            Schedule::CustomTopic => 30,
        }
    }
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// Event Grid's defaults for `schedule`: a namespace subscription makes 10 attempts within
    /// one day (the default topic retention); a custom topic subscription makes 30 attempts
    /// within 1,440 minutes.
    pub fn for_schedule(schedule: Schedule) -> RetryPolicy {
        let time_to_live = match schedule {
            Schedule::Namespace => Duration::from_secs(24 * 3600),
            Schedule::CustomTopic => Duration::from_secs(1440 * 60),
        };
        RetryPolicy { schedule, max_attempts: schedule.max_attempts(), time_to_live, delays: None }
    }

    /// Event Grid's defaults for a subscription of a topic that keeps events for `retention`:
    /// a namespace subscription's events may wait as long as the topic keeps them, a custom
    /// topic's at most 1,440 minutes.
    pub fn for_subscription(schedule: Schedule, retention: Duration) -> RetryPolicy {
        let mut policy = RetryPolicy::for_schedule(schedule);
        policy.time_to_live = match schedule {
            Schedule::Namespace => retention,
            Schedule::CustomTopic => retention.min(policy.time_to_live),
        };
        policy
    }

    /// This policy with `delays` in place of the schedule's table and without the failures'
    /// floors (see [`RetryPolicy::delays`]).
    pub fn with_schedule_override(mut self, delays: Vec<Duration>) -> RetryPolicy {
        self.delays = Some(delays);
        self
    }

    /// How long to wait after attempt `attempts` (1-based) failed with `error`.
    pub fn delay_after(&self, attempts: u32, error: &DeliveryError) -> Duration {
        match &self.delays {
            Some(delays) => pick(delays, attempts).copied().unwrap_or_default(),
            None => self.schedule.delay(attempts).max(error.min_delay()),
        }
    }

    /// After attempt number `attempts` (1-based) failed with `error` at `now` for an event
    /// first published at `published`.
    ///
    /// A failure that cannot be fixed by retrying dead-letters at once (even on the last
    /// attempt, because it is the better explanation); then the attempt count; then a next
    /// attempt that would fall after the time to live dead-letters now rather than waiting
    /// for nothing.
    pub fn after_failure(
        &self,
        attempts: u32,
        published: SystemTime,
        now: SystemTime,
        error: &DeliveryError,
    ) -> Verdict {
        if !error.is_retriable(self.schedule) {
            return Verdict::DeadLetter(DeadLetterReason::NonRetriable);
        }
        if attempts >= self.max_attempts {
            return Verdict::DeadLetter(DeadLetterReason::MaxDeliveryAttemptsExceeded);
        }
        let next = now.checked_add(self.delay_after(attempts, error)).unwrap_or(now);
        if self.deadline(published).is_some_and(|deadline| next > deadline) {
            return Verdict::DeadLetter(DeadLetterReason::MaxRetryDurationExceeded);
        }
        Verdict::RetryAt(next)
    }

    /// Whether an event that has waited past its time to live must be dead-lettered without
    /// an attempt.
    pub fn expired(&self, published: SystemTime, now: SystemTime) -> bool {
        self.deadline(published).is_some_and(|deadline| now > deadline)
    }

    /// The last moment an attempt may start; none when the time to live is too long to count.
    fn deadline(&self, published: SystemTime) -> Option<SystemTime> {
        published.checked_add(self.time_to_live)
    }
}

/// The entry for `attempts` (1-based) failures, the last one repeating.
fn pick<T>(table: &[T], attempts: u32) -> Option<&T> {
    let index = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    table.get(index).or_else(|| table.last())
}

#[cfg(test)]
mod tests;
