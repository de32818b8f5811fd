//! The per-category token bucket that keeps diagnostic events from flooding the log.
//!
//! A bucket holds at most `rate` tokens and gains `rate` a second; an event takes one or is
//! suppressed and counted. One bucket per category for the whole process (the log is one per
//! process too), behind a mutex held for a few arithmetic operations.

use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use tokio::time::Instant;

use super::Category;

/// Events a second (and burst) per category when `log.diagnostic_events_per_second` is not
/// set.
pub const DEFAULT_RATE: u32 = 100;

static RATE: AtomicU32 = AtomicU32::new(DEFAULT_RATE);

static BUCKETS: [Mutex<Bucket>; 6] = [
    parking_lot::const_mutex(Bucket::new()),
    parking_lot::const_mutex(Bucket::new()),
    parking_lot::const_mutex(Bucket::new()),
    parking_lot::const_mutex(Bucket::new()),
    parking_lot::const_mutex(Bucket::new()),
    parking_lot::const_mutex(Bucket::new()),
];

/// Sets the rate (and burst) of every category; 0 turns limiting off.
pub fn set_rate(per_second: u32) {
    RATE.store(per_second, Ordering::Relaxed);
}

/// Whether an event of `category` may be logged now; counts it as suppressed when not.
pub fn admit(category: Category) -> bool {
    let rate = RATE.load(Ordering::Relaxed);
    if rate == 0 {
        return true;
    }
    let admitted = BUCKETS[category.index()].lock().admit(rate, Instant::now());
    if !admitted {
        metrics::counter!("gridmq_diagnostic_events_suppressed_total", "category" => category.name())
            .increment(1);
    }
    admitted
}

/// Events of `category` suppressed since the last call.
pub fn take_suppressed(category: Category) -> u64 {
    std::mem::take(&mut BUCKETS[category.index()].lock().suppressed)
}

/// A token bucket and the count of what it refused.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    /// When tokens were last added; `None` before the first event (the bucket starts full).
    refilled: Option<Instant>,
    pub suppressed: u64,
}

impl Bucket {
    pub const fn new() -> Bucket {
        Bucket { tokens: 0.0, refilled: None, suppressed: 0 }
    }

    /// Takes a token at `now` from a bucket of `rate` tokens a second and as many at most.
    pub fn admit(&mut self, rate: u32, now: Instant) -> bool {
        let capacity = f64::from(rate);
        self.tokens = match self.refilled {
            None => capacity,
            Some(then) => {
                let elapsed = now.saturating_duration_since(then).as_secs_f64();
                (self.tokens + elapsed * capacity).min(capacity)
            }
        };
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

impl Default for Bucket {
    fn default() -> Bucket {
        Bucket::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // Tokio's paused clock (`start_paused`) needs tokio's `test-util` feature, which the
    // workspace does not build with; the bucket takes the time as an argument instead, so
    // the tests drive it with instants as exact as a paused clock's.

    #[test]
    fn a_burst_passes_up_to_the_rate_and_the_rest_is_counted() {
        let mut bucket = Bucket::new();
        let start = Instant::now();
        let admitted = (0..250).filter(|_| bucket.admit(100, start)).count();
        assert_eq!(admitted, 100);
        assert_eq!(bucket.suppressed, 150);
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_never_beyond_the_burst() {
        let mut bucket = Bucket::new();
        let start = Instant::now();
        assert_eq!((0..10).filter(|_| bucket.admit(10, start)).count(), 10);
        assert!(!bucket.admit(10, start));
        // 300 ms at 10 a second: 3 tokens.
        let later = start + Duration::from_millis(300);
        assert_eq!((0..10).filter(|_| bucket.admit(10, later)).count(), 3);
        // A long quiet spell refills to the burst, not beyond.
        let much_later = later + Duration::from_secs(60);
        assert_eq!((0..50).filter(|_| bucket.admit(10, much_later)).count(), 10);
        assert_eq!(bucket.suppressed, 1 + 7 + 40);
    }

    #[test]
    fn a_steady_flow_under_the_rate_is_never_suppressed() {
        let mut bucket = Bucket::new();
        let start = Instant::now();
        for i in 0..1_000u64 {
            assert!(bucket.admit(100, start + Duration::from_millis(i * 20)));
        }
        assert_eq!(bucket.suppressed, 0);
    }
}
