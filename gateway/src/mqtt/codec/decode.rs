//! Decoding: the fixed header here, the packet bodies in `decode/`.
//!
//! The fixed header is checked byte by byte as it arrives. Errors visible in the first byte
//! (packet type, reserved flags, PUBLISH QoS) and in the remaining length (too long, packet too
//! large) are reported at once, so a peer cannot make the server buffer a packet it is going to
//! reject anyway. Only when the whole packet is present are its bytes split off the buffer and
//! frozen, which is what lets payloads be handed out as slices without a copy.

mod connect;
mod control;
mod publish;
mod reasons;
mod subscribe;

use bytes::{Buf, BytesMut};

use super::read::Reader;
use crate::mqtt::{Ack, DecodeError, Packet, Protocol, ReasonCode};

/// Packet type names by their four-bit type number, for errors.
const NAMES: [&str; 16] = [
    "reserved type 0",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "AUTH",
];

pub(super) const CONNECT: u8 = 1;
pub(super) const PUBLISH: u8 = 3;
pub(super) const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;

/// Decodes one packet from the front of `buf`; see `Codec::decode`.
pub(super) fn packet(
    buf: &mut BytesMut,
    protocol: Option<Protocol>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (kind, flags) = (first >> 4, first & 0x0F);
    check_first_byte(kind, flags, protocol)?;
    let Some((remaining, len_bytes)) = remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let size = 1 + len_bytes + remaining;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge { size, max: max_packet_size });
    }
    if buf.len() < size {
        return Ok(None);
    }
    if (PUBACK..=PUBCOMP).contains(&kind) && size == 4 && protocol.is_some() {
        // A bare acknowledgement (the packet id alone: every one a 3.1.1 client sends, and a
        // 5.0 success) is read in place. A fan-out to a thousand QoS 1 subscribers reads a
        // thousand of them per message; splitting off and freezing each 4-byte frame cost
        // more than decoding it.
        let id = u16::from_be_bytes([buf[2], buf[3]]);
        buf.advance(size);
        if id == 0 {
            return Err(DecodeError::ZeroPacketId);
        }
        let ack = Ack::new(id);
        return Ok(Some(match kind {
            PUBACK => Packet::PubAck(ack),
            PUBREC => Packet::PubRec(ack),
            PUBREL => Packet::PubRel(ack),
            _ => Packet::PubComp(ack),
        }));
    }
    let mut body = buf.split_to(size).freeze();
    body.advance(1 + len_bytes);
    let mut r = Reader::new(body);
    let packet = match protocol {
        // CONNECT announces its own version, so it is decoded by that even mid-connection; the
        // broker is the one to reject a second CONNECT.
        _ if kind == CONNECT => connect::connect(&mut r)?,
        None => return Err(DecodeError::ExpectedConnect(NAMES[usize::from(kind)])),
        Some(version) => body_of(kind, flags, version, &mut r)?,
    };
    r.finish()?;
    Ok(Some(packet))
}

/// The packet id of PUBLISH (QoS > 0), the acknowledgements and (UN)SUBSCRIBE/(UN)SUBACK,
/// where 0 is not a legal value.
pub(super) fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::ZeroPacketId),
        id => Ok(id),
    }
}

/// Reads a reason code byte that must be one of `allowed`.
pub(super) fn reason(r: &mut Reader, allowed: &[ReasonCode]) -> Result<ReasonCode, DecodeError> {
    let byte = r.u8()?;
    ReasonCode::from_u8(byte)
        .filter(|code| allowed.contains(code))
        .ok_or(DecodeError::InvalidReasonCode(byte))
}

/// Everything but CONNECT, once the version is known.
fn body_of(kind: u8, flags: u8, version: Protocol, r: &mut Reader) -> Result<Packet, DecodeError> {
    use super::properties::Context;
    Ok(match kind {
        2 => connect::connack(r, version)?,
        PUBLISH => publish::publish(r, flags, version)?,
        4 => Packet::PubAck(publish::ack(r, version, Context::PUBACK, reasons::PUBACK)?),
        5 => Packet::PubRec(publish::ack(r, version, Context::PUBREC, reasons::PUBACK)?),
        6 => Packet::PubRel(publish::ack(r, version, Context::PUBREL, reasons::PUBREL)?),
        7 => Packet::PubComp(publish::ack(r, version, Context::PUBCOMP, reasons::PUBREL)?),
        8 => subscribe::subscribe(r, version)?,
        9 => subscribe::suback(r, version)?,
        10 => subscribe::unsubscribe(r, version)?,
        11 => subscribe::unsuback(r, version)?,
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => control::disconnect(r, version)?,
        15 => control::auth(r)?,
        _ => return Err(DecodeError::UnknownPacketType(kind)),
    })
}

/// The checks that need only the first byte of the fixed header.
fn check_first_byte(kind: u8, flags: u8, protocol: Option<Protocol>) -> Result<(), DecodeError> {
    if kind == 0 || (kind == 15 && protocol == Some(Protocol::V311)) {
        return Err(DecodeError::UnknownPacketType(kind));
    }
    let name = NAMES[usize::from(kind)];
    if protocol.is_none() && kind != CONNECT {
        return Err(DecodeError::ExpectedConnect(name));
    }
    match kind {
        PUBLISH => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::InvalidQoS);
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(DecodeError::Protocol("DUP set on a QoS 0 PUBLISH"));
            }
        }
        // PUBREL, SUBSCRIBE and UNSUBSCRIBE carry the fixed flags 0b0010.
        6 | 8 | 10 if flags != 0b0010 => return Err(DecodeError::ReservedFlags(name)),
        6 | 8 | 10 => {}
        _ if flags != 0 => return Err(DecodeError::ReservedFlags(name)),
        _ => {}
    }
    Ok(())
}

/// Parses the remaining length from the bytes after the first one: `Ok(None)` while it is still
/// incomplete, otherwise the value and how many bytes it took.
fn remaining_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 { Err(DecodeError::RemainingLengthTooLong) } else { Ok(None) }
}
