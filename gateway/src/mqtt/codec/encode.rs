//! Encoding every packet for either version.
//!
//! Each packet is written in two steps: its remaining length is computed from the fields (and
//! the property block's length from the properties), then the buffer is reserved once and the
//! fields are written straight into it. 3.1.1 packets simply leave out reason codes and
//! properties. In 5.0 the short forms are used whenever the specification allows them: an
//! acknowledgement, DISCONNECT or AUTH that reports success without properties stops early.

use bytes::{BufMut, BytesMut};

use super::OutboundPublish;
use super::properties::{self, Overrides};
use super::write::{field_len, packet_len, write_field, write_header};
use crate::mqtt::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, Properties, Protocol, QoS, ReasonCode, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};

/// The protocol name every supported CONNECT carries.
const PROTOCOL_NAME: &[u8] = b"MQTT";

/// Appends `packet`; see `Codec::encode`.
pub(super) fn packet(packet: &Packet, protocol: Protocol, buf: &mut BytesMut) {
    match packet {
        Packet::Connect(c) => connect(c, protocol, buf),
        Packet::ConnAck(c) => connack(c, protocol, buf),
        Packet::Publish(p) => {
            let outbound = OutboundPublish {
                dup: p.dup,
                qos: p.qos,
                retain: p.retain,
                topic: &p.topic,
                packet_id: p.packet_id,
                properties: &p.properties,
                payload: &p.payload,
                topic_alias: p.properties.topic_alias,
                subscription_identifiers: &p.properties.subscription_identifiers,
                message_expiry_interval: p.properties.message_expiry_interval,
            };
            publish(&outbound, protocol, buf);
        }
        Packet::PubAck(a) => ack(0x40, a, protocol, buf),
        Packet::PubRec(a) => ack(0x50, a, protocol, buf),
        Packet::PubRel(a) => ack(0x62, a, protocol, buf),
        Packet::PubComp(a) => ack(0x70, a, protocol, buf),
        Packet::Subscribe(s) => subscribe(s, protocol, buf),
        Packet::SubAck(s) => suback(s, protocol, buf),
        Packet::Unsubscribe(u) => unsubscribe(u, protocol, buf),
        Packet::UnsubAck(u) => unsuback(u, protocol, buf),
        Packet::PingReq => write_header(buf, 0xC0, 0),
        Packet::PingResp => write_header(buf, 0xD0, 0),
        Packet::Disconnect(Disconnect { reason, properties }) => {
            reason_and_properties(0xE0, *reason, properties, protocol, buf);
        }
        Packet::Auth(Auth { reason, properties }) => {
            // AUTH does not exist in 3.1.1; there is nothing meaningful to write.
            if protocol == Protocol::V5 {
                reason_and_properties(0xF0, *reason, properties, protocol, buf);
            }
        }
    }
}

/// Appends an outbound PUBLISH; see `Codec::encode_publish`.
pub(super) fn publish(p: &OutboundPublish<'_>, protocol: Protocol, buf: &mut BytesMut) {
    let overrides = overrides(p);
    let (props, body) = publish_body_len(p, &overrides, protocol);
    let first = 0x30 | u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain);
    write_header(buf, first, body);
    write_field(buf, p.topic.as_bytes());
    if p.qos != QoS::AtMostOnce {
        // A QoS 1 or 2 PUBLISH without an id is a caller bug; 0 makes the peer reject it.
        buf.put_u16(p.packet_id.unwrap_or(0));
    }
    if protocol == Protocol::V5 {
        properties::write(buf, p.properties, &overrides, props);
    }
    buf.put_slice(p.payload);
}

/// The size `publish` writes, computed with the same arithmetic; see `Codec::publish_len`.
pub(super) fn publish_len(p: &OutboundPublish<'_>, protocol: Protocol) -> usize {
    packet_len(publish_body_len(p, &overrides(p), protocol).1)
}

// === one function per packet ===

fn connect(c: &Connect, protocol: Protocol, buf: &mut BytesMut) {
    let v5 = protocol == Protocol::V5;
    let props = content_len(&c.properties, v5);
    let will_props = c.will.as_ref().map_or(0, |w| content_len(&w.properties, v5));
    let mut body = field_len(PROTOCOL_NAME) + 1 + 1 + 2;
    body += block_len(props, v5) + field_len(c.client_id.as_bytes());
    if let Some(w) = &c.will {
        body += block_len(will_props, v5);
        body += field_len(w.topic.as_bytes()) + field_len(&w.payload);
    }
    body += c.username.as_ref().map_or(0, |u| field_len(u.as_bytes()));
    body += c.password.as_ref().map_or(0, |p| field_len(p));

    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3;
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }

    write_header(buf, 0x10, body);
    write_field(buf, PROTOCOL_NAME);
    buf.put_u8(if v5 { 5 } else { 4 });
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    if v5 {
        properties::write(buf, &c.properties, &Overrides::of(&c.properties), props);
    }
    write_field(buf, c.client_id.as_bytes());
    if let Some(w) = &c.will {
        if v5 {
            properties::write(buf, &w.properties, &Overrides::of(&w.properties), will_props);
        }
        write_field(buf, w.topic.as_bytes());
        write_field(buf, &w.payload);
    }
    if let Some(username) = &c.username {
        write_field(buf, username.as_bytes());
    }
    if let Some(password) = &c.password {
        write_field(buf, password);
    }
}

fn connack(c: &ConnAck, protocol: Protocol, buf: &mut BytesMut) {
    let v5 = protocol == Protocol::V5;
    let props = content_len(&c.properties, v5);
    write_header(buf, 0x20, 2 + block_len(props, v5));
    buf.put_u8(u8::from(c.session_present));
    if v5 {
        buf.put_u8(c.code.as_u8());
        properties::write(buf, &c.properties, &Overrides::of(&c.properties), props);
    } else {
        buf.put_u8(c.code.to_v311_connack());
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP, whose first byte is `first`.
fn ack(first: u8, a: &Ack, protocol: Protocol, buf: &mut BytesMut) {
    let props = content_len(&a.properties, protocol == Protocol::V5);
    let body = match protocol {
        Protocol::V311 => 2,
        Protocol::V5 if props > 0 => 3 + properties::block_len(props),
        Protocol::V5 if a.reason != ReasonCode::Success => 3,
        Protocol::V5 => 2,
    };
    write_header(buf, first, body);
    buf.put_u16(a.packet_id);
    if body > 2 {
        buf.put_u8(a.reason.as_u8());
    }
    if props > 0 {
        properties::write(buf, &a.properties, &Overrides::of(&a.properties), props);
    }
}

fn subscribe(s: &Subscribe, protocol: Protocol, buf: &mut BytesMut) {
    let v5 = protocol == Protocol::V5;
    let props = content_len(&s.properties, v5);
    let filters: usize = s.filters.iter().map(|(f, _)| field_len(f.as_bytes()) + 1).sum();
    write_header(buf, 0x82, 2 + block_len(props, v5) + filters);
    buf.put_u16(s.packet_id);
    if v5 {
        properties::write(buf, &s.properties, &Overrides::of(&s.properties), props);
    }
    for (filter, options) in &s.filters {
        write_field(buf, filter.as_bytes());
        // 3.1.1 defines only the QoS bits; the rest are reserved there.
        buf.put_u8(if v5 { options.to_byte() } else { options.qos as u8 });
    }
}

fn suback(s: &SubAck, protocol: Protocol, buf: &mut BytesMut) {
    let v5 = protocol == Protocol::V5;
    let props = content_len(&s.properties, v5);
    write_header(buf, 0x90, 2 + block_len(props, v5) + s.reasons.len());
    buf.put_u16(s.packet_id);
    if v5 {
        properties::write(buf, &s.properties, &Overrides::of(&s.properties), props);
    }
    // The 3.1.1 return codes are the same bytes as their 5.0 counterparts.
    for reason in &s.reasons {
        buf.put_u8(reason.as_u8());
    }
}

fn unsubscribe(u: &Unsubscribe, protocol: Protocol, buf: &mut BytesMut) {
    let v5 = protocol == Protocol::V5;
    let props = content_len(&u.properties, v5);
    let filters: usize = u.filters.iter().map(|f| field_len(f.as_bytes())).sum();
    write_header(buf, 0xA2, 2 + block_len(props, v5) + filters);
    buf.put_u16(u.packet_id);
    if v5 {
        properties::write(buf, &u.properties, &Overrides::of(&u.properties), props);
    }
    for filter in &u.filters {
        write_field(buf, filter.as_bytes());
    }
}

fn unsuback(u: &UnsubAck, protocol: Protocol, buf: &mut BytesMut) {
    if protocol == Protocol::V311 {
        write_header(buf, 0xB0, 2);
        buf.put_u16(u.packet_id);
        return;
    }
    let props = content_len(&u.properties, true);
    write_header(buf, 0xB0, 2 + properties::block_len(props) + u.reasons.len());
    buf.put_u16(u.packet_id);
    properties::write(buf, &u.properties, &Overrides::of(&u.properties), props);
    for reason in &u.reasons {
        buf.put_u8(reason.as_u8());
    }
}

/// DISCONNECT and AUTH: nothing in 3.1.1; in 5.0 an optional reason code and optional
/// properties, each left out when it says nothing.
fn reason_and_properties(
    first: u8,
    reason: ReasonCode,
    p: &Properties,
    protocol: Protocol,
    buf: &mut BytesMut,
) {
    let props = content_len(p, protocol == Protocol::V5);
    // With a reason code we always write the property length too, even when it is 0: the
    // one-byte form is valid MQTT 5, but clients in the field (rumqttc 0.25 among them) fail
    // to read it, and the two-byte form is equally valid.
    let body = match protocol {
        Protocol::V311 => 0,
        Protocol::V5 if props > 0 || reason != ReasonCode::Success => {
            1 + properties::block_len(props)
        }
        Protocol::V5 => 0,
    };
    write_header(buf, first, body);
    if body > 0 {
        buf.put_u8(reason.as_u8());
        properties::write(buf, p, &Overrides::of(p), props);
    }
}

// === helpers ===

fn overrides<'a>(p: &OutboundPublish<'a>) -> Overrides<'a> {
    Overrides {
        topic_alias: p.topic_alias,
        subscription_identifiers: p.subscription_identifiers,
        message_expiry_interval: p.message_expiry_interval,
    }
}

/// The PUBLISH property content length and remaining length.
fn publish_body_len(
    p: &OutboundPublish<'_>,
    overrides: &Overrides<'_>,
    protocol: Protocol,
) -> (usize, usize) {
    let v5 = protocol == Protocol::V5;
    let props = if v5 { properties::content_len(p.properties, overrides) } else { 0 };
    let packet_id = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
    let body = field_len(p.topic.as_bytes()) + packet_id + block_len(props, v5) + p.payload.len();
    (props, body)
}

/// The content length of a non-PUBLISH property block, or 0 in 3.1.1.
fn content_len(p: &Properties, v5: bool) -> usize {
    if v5 { properties::content_len(p, &Overrides::of(p)) } else { 0 }
}

/// The length of a property block, or 0 in 3.1.1 where there is none.
fn block_len(content_len: usize, v5: bool) -> usize {
    if v5 { properties::block_len(content_len) } else { 0 }
}
