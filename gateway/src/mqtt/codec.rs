//! The codec: bytes in, packets out, and packets in, bytes out. Pure: no I/O, no broker state.
//!
//! Decoding is strict: every rule of MQTT 3.1.1 and 5.0 that can be checked on one packet in
//! isolation is checked here, and each violation is a typed `DecodeError` that maps onto the
//! reason code the specification prescribes. Rules that need connection state (a second
//! CONNECT, topic alias ranges, receive maximum) are left to the broker.
//!
//! Layout: `decode` (fixed header, then one file per packet family under `decode/`), `encode`,
//! `peek` (what a packet's first bytes say before it is whole), `properties` (both directions,
//! plus the table of which packet may carry which property), `read` and `write` (MQTT's
//! primitive types) and `topic` (topic name and filter rules).
//!
//! Invariants:
//! - `decode` consumes bytes only when it returns a packet or an error found in a whole packet;
//!   `Ok(None)` never consumes. After an error the connection must be closed, so what is left in
//!   the buffer no longer matters.
//! - Payloads, passwords, correlation and authentication data are slices of the input buffer.
//! - `encode(Packet::Publish)` and `encode_publish` share one writer, so they give equal bytes,
//!   and `publish_len` shares its length arithmetic with that writer.

mod decode;
mod encode;
mod peek;
mod properties;
mod read;
mod topic;
mod write;

#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};

pub use self::peek::Head;
use super::{DecodeError, Packet, Properties, Protocol, QoS};

/// Decoder and encoder settings for one connection.
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    /// Largest packet accepted, fixed header included; larger ones are `PacketTooLarge`.
    pub max_packet_size: usize,
}

/// An outbound PUBLISH described by reference: the message fields are shared by every
/// subscriber, and only the per-delivery fields (packet id, flags, alias, subscription
/// identifiers, remaining expiry) differ. The override fields replace the matching entries of
/// `properties` when encoding.
#[derive(Debug, Clone, Copy)]
pub struct OutboundPublish<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Written as given; empty when `topic_alias` names a topic the client already knows.
    pub topic: &'a str,
    pub packet_id: Option<u16>,
    pub properties: &'a Properties,
    pub payload: &'a Bytes,
    pub topic_alias: Option<u16>,
    pub subscription_identifiers: &'a [u32],
    pub message_expiry_interval: Option<u32>,
}

impl Codec {
    /// A codec that accepts packets up to `max_packet_size` bytes.
    pub fn new(max_packet_size: usize) -> Codec {
        Codec { max_packet_size }
    }

    /// Decodes one packet from the front of `buf` and removes its bytes. `Ok(None)` means `buf`
    /// does not yet hold a whole packet (nothing is consumed). `protocol` is `None` until
    /// CONNECT has been decoded, and then only CONNECT is accepted.
    pub fn decode(
        &self,
        buf: &mut BytesMut,
        protocol: Option<Protocol>,
    ) -> Result<Option<Packet>, DecodeError> {
        decode::packet(buf, protocol, self.max_packet_size)
    }

    /// What the first byte of the packet at the front of `buf` says, whole or not; `None` when
    /// `buf` is empty. Nothing is checked: `decode` reports what is wrong with the packet.
    #[inline]
    pub fn head(buf: &[u8]) -> Option<Head> {
        peek::head(buf)
    }

    /// The protocol level a CONNECT at the front of `buf` announces, when that many bytes
    /// have arrived; read before decoding, since a failed decode may consume them.
    pub fn connect_level(buf: &[u8]) -> Option<u8> {
        peek::connect_level(buf)
    }

    /// Appends the encoding of `packet` for `protocol` to `buf`.
    ///
    /// The encoder trusts its input: it writes the properties that are set, and strings longer
    /// than 65,535 bytes are cut to that length. AUTH does not exist in 3.1.1, so encoding it for
    /// 3.1.1 writes nothing.
    pub fn encode(packet: &Packet, protocol: Protocol, buf: &mut BytesMut) {
        encode::packet(packet, protocol, buf);
    }

    /// Appends an outbound PUBLISH to `buf`.
    pub fn encode_publish(publish: &OutboundPublish<'_>, protocol: Protocol, buf: &mut BytesMut) {
        encode::publish(publish, protocol, buf);
    }

    /// The encoded size of an outbound PUBLISH, fixed header included, so that a message larger
    /// than a subscriber's maximum packet size can be skipped without encoding it.
    pub fn publish_len(publish: &OutboundPublish<'_>, protocol: Protocol) -> usize {
        encode::publish_len(publish, protocol)
    }
}
