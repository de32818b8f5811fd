//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (sections 3.8 to 3.11).

use super::{Reader, packet_id, reason, reasons};
use crate::mqtt::codec::properties::{self, Context};
use crate::mqtt::codec::topic;
use crate::mqtt::{
    DecodeError, OptionsByteError, Packet, Properties, Protocol, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};

/// SUBSCRIBE: packet id, properties (5.0), then one or more (filter, options) pairs.
pub(super) fn subscribe(r: &mut Reader, version: Protocol) -> Result<Packet, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_of(r, version, Context::SUBSCRIBE)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        topic::check_filter(&filter)?;
        let options = options(r.u8()?, version)?;
        if options.no_local && topic::is_shared(&filter) {
            return Err(DecodeError::Protocol("no local set on a shared subscription"));
        }
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters("SUBSCRIBE"));
    }
    Ok(Packet::Subscribe(Subscribe { packet_id, filters, properties }))
}

/// SUBACK: packet id, properties (5.0), then one reason code per filter.
pub(super) fn suback(r: &mut Reader, version: Protocol) -> Result<Packet, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_of(r, version, Context::SUBACK)?;
    let allowed = match version {
        Protocol::V311 => reasons::V311_SUBACK,
        Protocol::V5 => reasons::SUBACK,
    };
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reasons.push(reason(r, allowed)?);
    }
    if reasons.is_empty() {
        return Err(DecodeError::Protocol("SUBACK carries no reason code"));
    }
    Ok(Packet::SubAck(SubAck { packet_id, reasons, properties }))
}

/// UNSUBSCRIBE: packet id, properties (5.0), then one or more filters.
pub(super) fn unsubscribe(r: &mut Reader, version: Protocol) -> Result<Packet, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties_of(r, version, Context::UNSUBSCRIBE)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        topic::check_filter(&filter)?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoTopicFilters("UNSUBSCRIBE"));
    }
    Ok(Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties }))
}

/// UNSUBACK: just the packet id in 3.1.1; properties and one reason code per filter in 5.0.
pub(super) fn unsuback(r: &mut Reader, version: Protocol) -> Result<Packet, DecodeError> {
    let packet_id = packet_id(r)?;
    let mut reasons = Vec::new();
    let properties = match version {
        Protocol::V311 => Properties::default(),
        Protocol::V5 => {
            let properties = properties::decode(r, Context::UNSUBACK)?;
            reasons.reserve(r.remaining());
            while !r.is_empty() {
                reasons.push(reason(r, reasons::UNSUBACK)?);
            }
            if reasons.is_empty() {
                return Err(DecodeError::Protocol("UNSUBACK carries no reason code"));
            }
            properties
        }
    };
    Ok(Packet::UnsubAck(UnsubAck { packet_id, reasons, properties }))
}

/// The property block of a 5.0 packet; 3.1.1 packets have none.
fn properties_of(
    r: &mut Reader,
    version: Protocol,
    ctx: Context,
) -> Result<Properties, DecodeError> {
    match version {
        Protocol::V311 => Ok(Properties::default()),
        Protocol::V5 => properties::decode(r, ctx),
    }
}

/// The subscription options byte. 3.1.1 defines only the QoS bits; 5.0 adds no local, retain
/// as published and retain handling, and keeps bits 6 and 7 reserved.
fn options(byte: u8, version: Protocol) -> Result<SubscriptionOptions, DecodeError> {
    if version == Protocol::V311 && byte & 0b1111_1100 != 0 {
        return Err(DecodeError::Malformed("reserved subscription option bits are set"));
    }
    // In SUBSCRIBE, Maximum QoS 3 is a Protocol Error (MQTT 5 3.8.3.1), unlike a PUBLISH's
    // QoS 3, which is malformed.
    SubscriptionOptions::from_byte(byte).map_err(|error| match error {
        OptionsByteError::ReservedBits => {
            DecodeError::Malformed("reserved subscription option bits are set")
        }
        OptionsByteError::ReservedQoS => {
            DecodeError::Protocol("subscription maximum QoS 3 is reserved")
        }
        OptionsByteError::ReservedRetainHandling => {
            DecodeError::Protocol("retain handling 3 is reserved")
        }
    })
}
