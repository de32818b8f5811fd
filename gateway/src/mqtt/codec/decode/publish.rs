//! PUBLISH and its four acknowledgements (sections 3.3 to 3.7).

use super::{Reader, packet_id, reason};
use crate::mqtt::codec::properties::{self, Context};
use crate::mqtt::codec::topic;
use crate::mqtt::{Ack, DecodeError, Packet, Properties, Protocol, Publish, QoS, ReasonCode};

/// PUBLISH; `flags` are the fixed-header bits, already checked for QoS 3 and DUP on QoS 0.
pub(super) fn publish(r: &mut Reader, flags: u8, version: Protocol) -> Result<Packet, DecodeError> {
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let topic = r.string()?;
    topic::check_name(&topic)?;
    let packet_id = if qos == QoS::AtMostOnce { None } else { Some(packet_id(r)?) };
    let properties = match version {
        Protocol::V311 => Properties::default(),
        Protocol::V5 => properties::decode(r, Context::PUBLISH)?,
    };
    // An empty topic name is how MQTT 5 says "the topic this alias stands for"; without an
    // alias (or in 3.1.1) it names nothing.
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(match version {
            Protocol::V311 => DecodeError::InvalidTopicName(topic),
            // MQTT 5 3.3.2.1: "a Protocol Error if the Topic Name is zero length and there is
            // no Topic Alias".
            Protocol::V5 => DecodeError::Protocol("empty topic name without a topic alias"),
        });
    }
    Ok(Packet::Publish(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 1 != 0,
        topic,
        packet_id,
        properties,
        payload: r.rest(),
    }))
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP. In 5.0 the reason code and the properties may be left
/// out (remaining length 2 or 3), meaning success and no properties.
pub(super) fn ack(
    r: &mut Reader,
    version: Protocol,
    ctx: Context,
    allowed: &[ReasonCode],
) -> Result<Ack, DecodeError> {
    let packet_id = packet_id(r)?;
    if version == Protocol::V311 || r.is_empty() {
        return Ok(Ack::new(packet_id));
    }
    let reason = reason(r, allowed)?;
    let properties = if r.is_empty() { Properties::default() } else { properties::decode(r, ctx)? };
    Ok(Ack { packet_id, reason, properties })
}
