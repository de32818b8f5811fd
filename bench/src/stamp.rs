//! The 16 bytes at the front of every benchmark payload, and the clock they are read against.
//!
//! Layout (little endian): send time in nanoseconds since the process-wide origin (u64),
//! publisher id (u32), sequence number (u32). The rest of the payload is zero filler. Sender and
//! receiver live in one process, so one `Instant` origin is a shared epoch without any clock
//! synchronisation.

use std::sync::OnceLock;
use std::time::Instant;

/// Bytes taken by the stamp; `--payload` may not be smaller.
pub const STAMP_LEN: usize = 16;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process-wide origin (fixed at the first call).
pub fn now_ns() -> u64 {
    let origin = *ORIGIN.get_or_init(Instant::now);
    // u64 nanoseconds last 584 years; saturate rather than wrap.
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What a subscriber learns from one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sent_ns: u64,
    pub publisher: u32,
    pub sequence: u32,
}

impl Stamp {
    /// Writes the stamp over the first `STAMP_LEN` bytes of `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.sent_ns.to_le_bytes());
        out[8..12].copy_from_slice(&self.publisher.to_le_bytes());
        out[12..16].copy_from_slice(&self.sequence.to_le_bytes());
    }

    /// Reads a stamp; `None` when the payload is too short to carry one (not ours).
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let sent_ns = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
        let publisher = u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?);
        let sequence = u32::from_le_bytes(payload.get(12..16)?.try_into().ok()?);
        Some(Stamp { sent_ns, publisher, sequence })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_short_payloads() {
        let stamp = Stamp { sent_ns: 123_456_789_012, publisher: 7, sequence: 42 };
        let mut payload = [0u8; 64];
        stamp.write(&mut payload);
        assert_eq!(Stamp::read(&payload), Some(stamp));
        assert_eq!(Stamp::read(&payload[..15]), None);
    }
}
