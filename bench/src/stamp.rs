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

/// A JSON payload (`--json`): `{"stamp":"<32 hex digits>","fill":"000…"}`, padded with zeros to
/// the payload size. Published with payload format indicator 1, so that gridmq routes it as
/// inline JSON `data` rather than `data_base64`.
pub const JSON_PREFIX: &[u8] = br#"{"stamp":""#;
const JSON_KEY: &[u8] = br#""stamp":""#;
/// Hex digits of the stamp in a JSON payload.
pub const JSON_STAMP_HEX: usize = 2 * STAMP_LEN;
/// What follows the stamp, before the fill.
const JSON_MIDDLE: &[u8] = br#"","fill":""#;
/// The smallest JSON payload: no fill.
pub const JSON_MIN_LEN: usize = JSON_PREFIX.len() + JSON_STAMP_HEX + JSON_MIDDLE.len() + 2;

const HEX: &[u8; 16] = b"0123456789abcdef";

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The JSON payload template of `len` bytes (at least [`JSON_MIN_LEN`]); the stamp goes at
/// `JSON_PREFIX.len()`.
pub fn json_template(len: usize) -> Vec<u8> {
    let mut out = JSON_PREFIX.to_vec();
    out.extend(std::iter::repeat_n(b'0', JSON_STAMP_HEX));
    out.extend_from_slice(JSON_MIDDLE);
    out.extend(std::iter::repeat_n(b'0', len.saturating_sub(JSON_MIN_LEN)));
    out.extend_from_slice(b"\"}");
    out
}

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

    /// Writes the stamp as 32 lowercase hex digits over the first `JSON_STAMP_HEX` bytes of
    /// `out` (JSON payloads, `--json`).
    pub fn write_hex(&self, out: &mut [u8]) {
        let mut raw = [0u8; STAMP_LEN];
        self.write(&mut raw);
        for (i, byte) in raw.iter().enumerate() {
            out[2 * i] = HEX[usize::from(byte >> 4)];
            out[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
    }

    /// Reads a stamp; `None` when the payload is too short to carry one (not ours). A JSON
    /// payload (`--json`) carries it as hex after `"stamp":"`, wherever a broker put that key.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        // A binary stamp starts with `{` once in 256 payloads: fall back to reading it raw.
        if payload.first() == Some(&b'{')
            && let Some(stamp) = Stamp::read_json(payload)
        {
            return Some(stamp);
        }
        Stamp::read_raw(payload)
    }

    fn read_json(payload: &[u8]) -> Option<Stamp> {
        let at = payload.windows(JSON_KEY.len()).position(|w| w == JSON_KEY)?;
        let hex = payload.get(at + JSON_KEY.len()..at + JSON_KEY.len() + JSON_STAMP_HEX)?;
        let mut raw = [0u8; STAMP_LEN];
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            raw[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Stamp::read_raw(&raw)
    }

    fn read_raw(payload: &[u8]) -> Option<Stamp> {
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
        // A binary stamp whose first byte happens to be `{` is still read raw.
        let curly = Stamp { sent_ns: 0x7b, publisher: 1, sequence: 2 };
        curly.write(&mut payload);
        assert_eq!(Stamp::read(&payload), Some(curly));
    }

    #[test]
    fn json_payloads_carry_the_stamp_as_hex() {
        let stamp = Stamp { sent_ns: 123_456_789_012, publisher: 7, sequence: 42 };
        let mut payload = json_template(64);
        assert_eq!(payload.len(), 64);
        stamp.write_hex(&mut payload[JSON_PREFIX.len()..]);
        let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(Stamp::read(&payload), Some(stamp));
        // Keys reordered by a broker that re-serializes: still found.
        assert_eq!(Stamp::read(&serde_json::to_vec(&value).unwrap()), Some(stamp));
    }
}
