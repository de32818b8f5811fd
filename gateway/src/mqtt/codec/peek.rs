//! What the first bytes of a packet say before it is whole: enough for a connection to
//! decide whether the next packet may wait, and how to answer a CONNECT that will not decode.

use super::decode::{CONNECT, PUBACK, PUBLISH};
use crate::mqtt::QoS;

/// The packet at the front of a buffer, as its first byte describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// A PUBLISH with its QoS bits (`None` for the invalid value 3) and RETAIN flag.
    Publish {
        qos: Option<QoS>,
        retain: bool,
    },
    PubAck,
    /// Any other packet type, reserved ones included.
    Other,
}

/// The head of the packet at the front of `buf`; `None` when `buf` is empty. Inlined: a
/// connection asks for every packet that follows a publish in the same read.
#[inline]
pub(super) fn head(buf: &[u8]) -> Option<Head> {
    let &first = buf.first()?;
    Some(match first >> 4 {
        PUBLISH => Head::Publish { qos: QoS::from_u8((first >> 1) & 0x03), retain: first & 1 != 0 },
        PUBACK => Head::PubAck,
        _ => Head::Other,
    })
}

/// The protocol level byte of a CONNECT at the front of `buf`, when it is there to read.
pub(super) fn connect_level(buf: &[u8]) -> Option<u8> {
    if buf.first()? >> 4 != CONNECT {
        return None;
    }
    let mut rest = &buf[1..];
    for _ in 0..4 {
        let (&byte, after) = rest.split_first()?;
        rest = after;
        if byte & 0x80 == 0 {
            break;
        }
    }
    // Protocol name "MQTT": two length bytes and four characters, then the level.
    rest.get(6).copied()
}
