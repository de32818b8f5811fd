//! MQTT 5 property blocks, in both directions.
//!
//! Decoding enforces the table of section 2.2.2.2 (which packet may carry which property), the
//! once-only rule (only User Property, and Subscription Identifier in PUBLISH, may repeat) and
//! the value ranges of section 3. Encoding writes every property that is set, in identifier
//! order, straight into the output buffer; a PUBLISH can substitute its per-delivery fields
//! through `Overrides` without cloning the shared `Properties`.

use bytes::{BufMut, Bytes, BytesMut};

use super::read::Reader;
use super::write::{VARINT_MAX, field_len, varint_len, write_field, write_varint};
use crate::mqtt::DecodeError;
use crate::mqtt::Properties;
use crate::mqtt::properties::id;

/// The packet (or the will) a property block belongs to: a bit in the allowed-property table
/// and the name used in `PropertyNotAllowed`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Context {
    bit: u16,
    name: &'static str,
}

const CONNECT: u16 = 1 << 0;
const CONNACK: u16 = 1 << 1;
const PUBLISH: u16 = 1 << 2;
const WILL: u16 = 1 << 3;
const ACK: u16 = 1 << 4;
const SUBSCRIBE: u16 = 1 << 5;
const SUBACK: u16 = 1 << 6;
const UNSUBSCRIBE: u16 = 1 << 7;
const UNSUBACK: u16 = 1 << 8;
const DISCONNECT: u16 = 1 << 9;
const AUTH: u16 = 1 << 10;
const EVERY: u16 = (1 << 11) - 1;

impl Context {
    pub(super) const CONNECT: Context = Context { bit: CONNECT, name: "CONNECT" };
    pub(super) const CONNACK: Context = Context { bit: CONNACK, name: "CONNACK" };
    pub(super) const PUBLISH: Context = Context { bit: PUBLISH, name: "PUBLISH" };
    pub(super) const WILL: Context = Context { bit: WILL, name: "will properties" };
    pub(super) const PUBACK: Context = Context { bit: ACK, name: "PUBACK" };
    pub(super) const PUBREC: Context = Context { bit: ACK, name: "PUBREC" };
    pub(super) const PUBREL: Context = Context { bit: ACK, name: "PUBREL" };
    pub(super) const PUBCOMP: Context = Context { bit: ACK, name: "PUBCOMP" };
    pub(super) const SUBSCRIBE: Context = Context { bit: SUBSCRIBE, name: "SUBSCRIBE" };
    pub(super) const SUBACK: Context = Context { bit: SUBACK, name: "SUBACK" };
    pub(super) const UNSUBSCRIBE: Context = Context { bit: UNSUBSCRIBE, name: "UNSUBSCRIBE" };
    pub(super) const UNSUBACK: Context = Context { bit: UNSUBACK, name: "UNSUBACK" };
    pub(super) const DISCONNECT: Context = Context { bit: DISCONNECT, name: "DISCONNECT" };
    pub(super) const AUTH: Context = Context { bit: AUTH, name: "AUTH" };
}

/// The per-delivery PUBLISH fields that replace the matching entries of `Properties`. For every
/// other packet they are simply the properties' own values.
#[derive(Debug, Clone, Copy)]
pub(super) struct Overrides<'a> {
    pub(super) topic_alias: Option<u16>,
    pub(super) subscription_identifiers: &'a [u32],
    pub(super) message_expiry_interval: Option<u32>,
}

impl<'a> Overrides<'a> {
    /// No substitution: write `properties` as they are.
    pub(super) fn of(properties: &'a Properties) -> Overrides<'a> {
        Overrides {
            topic_alias: properties.topic_alias,
            subscription_identifiers: &properties.subscription_identifiers,
            message_expiry_interval: properties.message_expiry_interval,
        }
    }
}

/// Reads a property block (its length, then the properties) for the packet `ctx`.
pub(super) fn decode(r: &mut Reader, ctx: Context) -> Result<Properties, DecodeError> {
    let len = r.varint()? as usize;
    let mut block = Reader::new(r.take(len)?);
    let mut p = Properties::default();
    while !block.is_empty() {
        // Identifiers are Variable Byte Integers, but every defined one fits in a single byte;
        // a byte with the continuation bit set therefore starts an unknown identifier.
        let pid = block.u8()?;
        let allowed = allowed_in(pid).ok_or(DecodeError::UnknownProperty(pid))?;
        if allowed & ctx.bit == 0 {
            return Err(DecodeError::PropertyNotAllowed { id: pid, packet: ctx.name });
        }
        decode_one(&mut block, pid, ctx, &mut p)?;
    }
    Ok(p)
}

/// The length of the properties' content, without the length prefix.
pub(super) fn content_len(p: &Properties, ov: &Overrides<'_>) -> usize {
    let mut n = 0;
    n += fixed(&p.payload_format_indicator, 1);
    n += fixed(&ov.message_expiry_interval, 4);
    n += text(&p.content_type);
    n += text(&p.response_topic);
    n += binary(&p.correlation_data);
    for &sid in ov.subscription_identifiers {
        n += 1 + varint_len(sid.min(VARINT_MAX) as usize);
    }
    n += fixed(&p.session_expiry_interval, 4);
    n += text(&p.assigned_client_identifier);
    n += fixed(&p.server_keep_alive, 2);
    n += text(&p.authentication_method);
    n += binary(&p.authentication_data);
    n += fixed(&p.request_problem_information, 1);
    n += fixed(&p.will_delay_interval, 4);
    n += fixed(&p.request_response_information, 1);
    n += text(&p.response_information);
    n += text(&p.server_reference);
    n += text(&p.reason_string);
    n += fixed(&p.receive_maximum, 2);
    n += fixed(&p.topic_alias_maximum, 2);
    n += fixed(&ov.topic_alias, 2);
    n += fixed(&p.maximum_qos, 1);
    n += fixed(&p.retain_available, 1);
    for (key, value) in &p.user_properties {
        n += 1 + field_len(key.as_bytes()) + field_len(value.as_bytes());
    }
    n += fixed(&p.maximum_packet_size, 4);
    n += fixed(&p.wildcard_subscription_available, 1);
    n += fixed(&p.subscription_identifier_available, 1);
    n += fixed(&p.shared_subscription_available, 1);
    n
}

/// The length of a whole property block: the length prefix and the content.
pub(super) fn block_len(content_len: usize) -> usize {
    varint_len(content_len) + content_len
}

/// Writes a property block whose content length `content_len` came from `content_len`.
pub(super) fn write(buf: &mut BytesMut, p: &Properties, ov: &Overrides<'_>, content_len: usize) {
    write_varint(buf, content_len);
    if content_len == 0 {
        return;
    }
    put_u8(buf, id::PAYLOAD_FORMAT_INDICATOR, p.payload_format_indicator);
    put_u32(buf, id::MESSAGE_EXPIRY_INTERVAL, ov.message_expiry_interval);
    put_text(buf, id::CONTENT_TYPE, &p.content_type);
    put_text(buf, id::RESPONSE_TOPIC, &p.response_topic);
    put_binary(buf, id::CORRELATION_DATA, &p.correlation_data);
    for &sid in ov.subscription_identifiers {
        buf.put_u8(id::SUBSCRIPTION_IDENTIFIER);
        write_varint(buf, sid.min(VARINT_MAX) as usize);
    }
    put_u32(buf, id::SESSION_EXPIRY_INTERVAL, p.session_expiry_interval);
    put_text(buf, id::ASSIGNED_CLIENT_IDENTIFIER, &p.assigned_client_identifier);
    put_u16(buf, id::SERVER_KEEP_ALIVE, p.server_keep_alive);
    put_text(buf, id::AUTHENTICATION_METHOD, &p.authentication_method);
    put_binary(buf, id::AUTHENTICATION_DATA, &p.authentication_data);
    put_u8(buf, id::REQUEST_PROBLEM_INFORMATION, p.request_problem_information);
    put_u32(buf, id::WILL_DELAY_INTERVAL, p.will_delay_interval);
    put_u8(buf, id::REQUEST_RESPONSE_INFORMATION, p.request_response_information);
    put_text(buf, id::RESPONSE_INFORMATION, &p.response_information);
    put_text(buf, id::SERVER_REFERENCE, &p.server_reference);
    put_text(buf, id::REASON_STRING, &p.reason_string);
    put_u16(buf, id::RECEIVE_MAXIMUM, p.receive_maximum);
    put_u16(buf, id::TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
    put_u16(buf, id::TOPIC_ALIAS, ov.topic_alias);
    put_u8(buf, id::MAXIMUM_QOS, p.maximum_qos);
    put_u8(buf, id::RETAIN_AVAILABLE, p.retain_available);
    for (key, value) in &p.user_properties {
        buf.put_u8(id::USER_PROPERTY);
        write_field(buf, key.as_bytes());
        write_field(buf, value.as_bytes());
    }
    put_u32(buf, id::MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    put_u8(buf, id::WILDCARD_SUBSCRIPTION_AVAILABLE, p.wildcard_subscription_available);
    put_u8(buf, id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, p.subscription_identifier_available);
    put_u8(buf, id::SHARED_SUBSCRIPTION_AVAILABLE, p.shared_subscription_available);
}

// === decoding helpers ===

/// The packets that may carry property `pid` (section 2.2.2.2), or `None` for an identifier the
/// specification does not define.
fn allowed_in(pid: u8) -> Option<u16> {
    Some(match pid {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => PUBLISH | WILL,
        id::SUBSCRIPTION_IDENTIFIER => PUBLISH | SUBSCRIBE,
        id::SESSION_EXPIRY_INTERVAL => CONNECT | CONNACK | DISCONNECT,
        id::ASSIGNED_CLIENT_IDENTIFIER | id::SERVER_KEEP_ALIVE | id::RESPONSE_INFORMATION => {
            CONNACK
        }
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => CONNECT | CONNACK | AUTH,
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => CONNECT,
        id::WILL_DELAY_INTERVAL => WILL,
        id::SERVER_REFERENCE => CONNACK | DISCONNECT,
        id::REASON_STRING => CONNACK | ACK | SUBACK | UNSUBACK | DISCONNECT | AUTH,
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => {
            CONNECT | CONNACK
        }
        id::TOPIC_ALIAS => PUBLISH,
        id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => CONNACK,
        id::USER_PROPERTY => EVERY,
        _ => return None,
    })
}

/// Reads the value of property `pid` (already known to be allowed) into `p`.
fn decode_one(
    r: &mut Reader,
    pid: u8,
    ctx: Context,
    p: &mut Properties,
) -> Result<(), DecodeError> {
    match pid {
        id::PAYLOAD_FORMAT_INDICATOR => once(&mut p.payload_format_indicator, flag(r, pid)?, pid),
        id::MESSAGE_EXPIRY_INTERVAL => once(&mut p.message_expiry_interval, r.u32()?, pid),
        id::CONTENT_TYPE => once(&mut p.content_type, r.string()?, pid),
        id::RESPONSE_TOPIC => once(&mut p.response_topic, r.string()?, pid),
        id::CORRELATION_DATA => once(&mut p.correlation_data, r.binary()?, pid),
        id::SUBSCRIPTION_IDENTIFIER => {
            let sid = r.varint()?;
            if sid == 0 {
                return Err(DecodeError::InvalidPropertyValue(pid));
            }
            // A server may attach one identifier per matching subscription to a PUBLISH, but a
            // SUBSCRIBE names exactly one.
            if ctx.bit == SUBSCRIBE && !p.subscription_identifiers.is_empty() {
                return Err(DecodeError::DuplicateProperty(pid));
            }
            p.subscription_identifiers.push(sid);
            Ok(())
        }
        id::SESSION_EXPIRY_INTERVAL => once(&mut p.session_expiry_interval, r.u32()?, pid),
        id::ASSIGNED_CLIENT_IDENTIFIER => once(&mut p.assigned_client_identifier, r.string()?, pid),
        id::SERVER_KEEP_ALIVE => once(&mut p.server_keep_alive, r.u16()?, pid),
        id::AUTHENTICATION_METHOD => once(&mut p.authentication_method, r.string()?, pid),
        id::AUTHENTICATION_DATA => once(&mut p.authentication_data, r.binary()?, pid),
        id::REQUEST_PROBLEM_INFORMATION => {
            once(&mut p.request_problem_information, flag(r, pid)?, pid)
        }
        id::WILL_DELAY_INTERVAL => once(&mut p.will_delay_interval, r.u32()?, pid),
        id::REQUEST_RESPONSE_INFORMATION => {
            once(&mut p.request_response_information, flag(r, pid)?, pid)
        }
        id::RESPONSE_INFORMATION => once(&mut p.response_information, r.string()?, pid),
        id::SERVER_REFERENCE => once(&mut p.server_reference, r.string()?, pid),
        id::REASON_STRING => once(&mut p.reason_string, r.string()?, pid),
        id::RECEIVE_MAXIMUM => once(&mut p.receive_maximum, nonzero_u16(r, pid)?, pid),
        id::TOPIC_ALIAS_MAXIMUM => once(&mut p.topic_alias_maximum, r.u16()?, pid),
        id::TOPIC_ALIAS => once(&mut p.topic_alias, nonzero_u16(r, pid)?, pid),
        id::MAXIMUM_QOS => once(&mut p.maximum_qos, flag(r, pid)?, pid),
        id::RETAIN_AVAILABLE => once(&mut p.retain_available, flag(r, pid)?, pid),
        id::USER_PROPERTY => {
            let key = r.string()?;
            let value = r.string()?;
            p.user_properties.push((key, value));
            Ok(())
        }
        id::MAXIMUM_PACKET_SIZE => {
            let size = r.u32()?;
            if size == 0 {
                return Err(DecodeError::InvalidPropertyValue(pid));
            }
            once(&mut p.maximum_packet_size, size, pid)
        }
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
            once(&mut p.wildcard_subscription_available, flag(r, pid)?, pid)
        }
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            once(&mut p.subscription_identifier_available, flag(r, pid)?, pid)
        }
        id::SHARED_SUBSCRIPTION_AVAILABLE => {
            once(&mut p.shared_subscription_available, flag(r, pid)?, pid)
        }
        _ => Err(DecodeError::UnknownProperty(pid)),
    }
}

/// Stores a property that may appear at most once.
fn once<T>(slot: &mut Option<T>, value: T, pid: u8) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(pid));
    }
    *slot = Some(value);
    Ok(())
}

/// A byte property whose only legal values are 0 and 1.
fn flag(r: &mut Reader, pid: u8) -> Result<u8, DecodeError> {
    let value = r.u8()?;
    if value > 1 {
        return Err(DecodeError::InvalidPropertyValue(pid));
    }
    Ok(value)
}

/// A two-byte property for which 0 is not a legal value.
fn nonzero_u16(r: &mut Reader, pid: u8) -> Result<u16, DecodeError> {
    let value = r.u16()?;
    if value == 0 {
        return Err(DecodeError::InvalidPropertyValue(pid));
    }
    Ok(value)
}

// === encoding helpers ===

/// Identifier plus a fixed-size value, when present.
fn fixed<T>(value: &Option<T>, size: usize) -> usize {
    if value.is_some() { 1 + size } else { 0 }
}

fn text(value: &Option<String>) -> usize {
    value.as_ref().map_or(0, |s| 1 + field_len(s.as_bytes()))
}

fn binary(value: &Option<Bytes>) -> usize {
    value.as_ref().map_or(0, |b| 1 + field_len(b))
}

fn put_u8(buf: &mut BytesMut, pid: u8, value: Option<u8>) {
    if let Some(v) = value {
        buf.put_u8(pid);
        buf.put_u8(v);
    }
}

fn put_u16(buf: &mut BytesMut, pid: u8, value: Option<u16>) {
    if let Some(v) = value {
        buf.put_u8(pid);
        buf.put_u16(v);
    }
}

fn put_u32(buf: &mut BytesMut, pid: u8, value: Option<u32>) {
    if let Some(v) = value {
        buf.put_u8(pid);
        buf.put_u32(v);
    }
}

fn put_text(buf: &mut BytesMut, pid: u8, value: &Option<String>) {
    if let Some(v) = value {
        buf.put_u8(pid);
        write_field(buf, v.as_bytes());
    }
}

fn put_binary(buf: &mut BytesMut, pid: u8, value: &Option<Bytes>) {
    if let Some(v) = value {
        buf.put_u8(pid);
        write_field(buf, v);
    }
}
