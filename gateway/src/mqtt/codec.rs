//! The codec: bytes in, packets out, and packets in, bytes out. Pure: no I/O, no broker state.
//!
//! (Placeholder signatures; the implementation lands with the codec work.)

use bytes::{Bytes, BytesMut};

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
        let _ = (buf, protocol);
        unimplemented!("codec")
    }

    /// Appends the encoding of `packet` for `protocol` to `buf`.
    pub fn encode(packet: &Packet, protocol: Protocol, buf: &mut BytesMut) {
        let _ = (packet, protocol, buf);
        unimplemented!("codec")
    }

    /// Appends an outbound PUBLISH to `buf`.
    pub fn encode_publish(publish: &OutboundPublish<'_>, protocol: Protocol, buf: &mut BytesMut) {
        let _ = (publish, protocol, buf);
        unimplemented!("codec")
    }

    /// The encoded size of an outbound PUBLISH, fixed header included, so that a message larger
    /// than a subscriber's maximum packet size can be skipped without encoding it.
    pub fn publish_len(publish: &OutboundPublish<'_>, protocol: Protocol) -> usize {
        let _ = (publish, protocol);
        unimplemented!("codec")
    }
}
