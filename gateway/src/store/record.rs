//! How durable records are laid out.
//!
//! The store deals in bytes: a delivery or a will is a header record followed by the bytes of
//! its message, which the broker encodes (`broker/persist.rs`: the message's MQTT 5 PUBLISH
//! encoding, preceded by its absolute expiry):
//!
//! ```text
//! message := expires_at_unix_ms: u64 LE (0 = never) | MQTT 5 PUBLISH packet
//! entry   := header_len: u32 LE | header (postcard EntryRecord) | message
//! will    := header_len: u32 LE | header (postcard WillRecord)  | message
//! session := postcard SessionRecord
//! ```
//!
//! Times on disk are wall-clock milliseconds since the Unix epoch, because monotonic instants
//! mean nothing after a restart.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::StoreError;

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Seconds the session outlives its connection (`u32::MAX`: never expires).
    pub expiry_interval: u32,
    /// When the client disconnected; `None` while connected. A session still connected when
    /// the broker stopped counts as disconnected at the restart.
    pub disconnected_at_ms: Option<u64>,
    /// (filter as subscribed, options byte as in SUBSCRIBE, subscription identifier); the byte
    /// is [`SubscriptionOptions::to_byte`](crate::mqtt::SubscriptionOptions::to_byte)'s.
    pub subscriptions: Vec<(String, u8, Option<u32>)>,
}

/// Where a stored delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryStage {
    Queued,
    AwaitingPubAck,
    AwaitingPubRec,
    AwaitingPubComp,
}

/// A queued or in-flight delivery as stored (the message follows it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryRecord {
    pub stage: EntryStage,
    pub packet_id: u16,
    pub qos: u8,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// (group, inner filter) for deliveries through a shared subscription.
    pub shared: Option<(String, String)>,
}

/// A will waiting for its delay (the message follows it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WillRecord {
    pub publish_at_ms: u64,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The wall-clock time `instant` corresponds to.
pub fn instant_to_ms(instant: Instant) -> u64 {
    let now = Instant::now();
    if instant >= now {
        now_ms() + (instant - now).as_millis() as u64
    } else {
        now_ms().saturating_sub((now - instant).as_millis() as u64)
    }
}

/// The monotonic instant a wall-clock time corresponds to (the past maps to now).
pub fn ms_to_instant(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(now_ms()))
}

/// Encodes a header record followed by a message record. One allocation, as this is made for
/// every persistent delivery: a header of up to `HEADER_ON_STACK` bytes (all but one with many
/// subscription identifiers) is encoded on the stack, and the record is built at its exact
/// size, so that the box takes the vector's buffer as it is.
pub fn encode_with_message<H: Serialize>(header: &H, message: &[u8]) -> Box<[u8]> {
    const HEADER_ON_STACK: usize = 128;
    let mut stack = [0u8; HEADER_ON_STACK];
    let heap;
    let head: &[u8] = match postcard::to_slice(header, &mut stack) {
        Ok(head) => head,
        Err(_) => {
            heap = postcard::to_allocvec(header).unwrap_or_default();
            &heap
        }
    };
    let mut out = Vec::with_capacity(4 + head.len() + message.len());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(message);
    out.into_boxed_slice()
}

/// Decodes a header record and returns it with the message record after it.
pub fn split_header<'a, H: Deserialize<'a>>(
    table: &'static str,
    bytes: &'a [u8],
) -> Result<(H, &'a [u8]), StoreError> {
    let corrupt = |problem: String| StoreError::Corrupt { table, problem };
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(|| corrupt("too short".into()))?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt("header overruns the record".into()));
    }
    let (head, message) = rest.split_at(len);
    let header = postcard::from_bytes(head).map_err(|e| corrupt(e.to_string()))?;
    Ok((header, message))
}

impl SessionRecord {
    pub fn encode(&self) -> Arc<[u8]> {
        postcard::to_allocvec(self).unwrap_or_default().into()
    }

    pub fn decode(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
        postcard::from_bytes(bytes)
            .map_err(|e| StoreError::Corrupt { table: "sessions", problem: e.to_string() })
    }
}

#[cfg(test)]
mod tests;
