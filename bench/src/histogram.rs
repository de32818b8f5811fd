//! A fixed-bucket latency histogram in the manner of HdrHistogram: log-linear buckets with 64
//! sub-buckets per power of two, so any recorded value is reported within 1/64 (1.6 %) of its
//! true value, in about 30 KiB whatever the range.
//!
//! Each subscriber task records into its own histogram without locks; they are merged once at
//! the end of a run.

/// Values below this are exact (one bucket per nanosecond).
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above `LINEAR`.
const SUB: u64 = 64;
/// Enough buckets for every u64.
const BUCKETS: usize = (LINEAR + (63 - 6) * SUB) as usize;

/// Counts of nanosecond values.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.total
    }

    /// The exact largest value recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.0..=1.0): the upper edge of the bucket holding it, capped
    /// at the true maximum, so a percentile is never understated. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        // The rank of the value at q, counting from 1; casting a non-negative float is exact
        // enough here (ranks are far below 2^53).
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_edge(i).min(self.max);
            }
        }
        self.max
    }
}

fn index(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exponent = u64::from(63 - value.leading_zeros()); // >= 7
    let shift = exponent - 6;
    let top = value >> shift; // 64..=127
    (LINEAR + (exponent - 7) * SUB + (top - SUB)) as usize
}

fn upper_edge(index: usize) -> u64 {
    let index = index as u64;
    if index < LINEAR {
        return index;
    }
    let exponent = (index - LINEAR) / SUB + 7;
    let top = (index - LINEAR) % SUB + SUB;
    let shift = exponent - 6;
    // The last bucket's edge is 2^64 - 1; u128 keeps that shift from overflowing.
    let edge = (u128::from(top + 1) << shift) - 1;
    u64::try_from(edge).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_within_the_stated_error() {
        for value in [0, 1, 127, 128, 129, 1000, 65_535, 1 << 40, u64::MAX] {
            let i = index(value);
            assert!(i < BUCKETS);
            let edge = upper_edge(i);
            assert!(edge >= value, "{value} -> {edge}");
            assert!(edge - value <= value / 64 + 1, "{value} -> {edge}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut h = Histogram::default();
        for v in 1..=10_000 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5);
        assert!((5_000_000..=5_080_000).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((9_900_000..=10_000_000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 10_000_000);
        assert_eq!(h.max(), 10_000_000);
        let mut other = Histogram::default();
        other.record(20_000_000);
        h.merge(&other);
        assert_eq!(h.len(), 10_001);
        assert_eq!(h.max(), 20_000_000);
    }
}
