//! CONNECT and CONNACK bodies (sections 3.1 and 3.2).

use super::{Reader, reasons};
use crate::mqtt::codec::properties::{self, Context};
use crate::mqtt::codec::topic;
use crate::mqtt::{
    ConnAck, Connect, DecodeError, LastWill, Packet, Properties, Protocol, QoS, ReasonCode,
};

// Bits of the CONNECT flags byte.
const RESERVED: u8 = 0x01;
const CLEAN_START: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

/// CONNECT. Its protocol name and level decide the version, so this is the one body that does
/// not need to be told which version the connection speaks.
pub(super) fn connect(r: &mut Reader) -> Result<Packet, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => Protocol::V311,
        (b"MQTT", 5) => Protocol::V5,
        _ => {
            let name = String::from_utf8_lossy(&name).into_owned();
            return Err(DecodeError::UnsupportedProtocol { name, level });
        }
    };
    let v5 = protocol == Protocol::V5;
    let flags = r.u8()?;
    if flags & RESERVED != 0 {
        return Err(DecodeError::Malformed("CONNECT reserved flag is set"));
    }
    let has_will = flags & WILL != 0;
    let will_qos = (flags >> WILL_QOS_SHIFT) & 0b11;
    let will_retain = flags & WILL_RETAIN != 0;
    if !has_will && (will_qos != 0 || will_retain) {
        return Err(DecodeError::Protocol("will QoS or will retain set without a will"));
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidQoS)?;
    let has_username = flags & USERNAME != 0;
    let has_password = flags & PASSWORD != 0;
    // MQTT 5 lets a password stand alone (e.g. a token); 3.1.1 does not.
    if !v5 && has_password && !has_username {
        return Err(DecodeError::Protocol("password flag set without the user name flag"));
    }
    let keep_alive = r.u16()?;
    let properties =
        if v5 { properties::decode(r, Context::CONNECT)? } else { Properties::default() };
    let client_id = r.string()?;
    let will = if has_will {
        let properties =
            if v5 { properties::decode(r, Context::WILL)? } else { Properties::default() };
        let topic = r.string()?;
        if topic.is_empty() {
            return Err(DecodeError::InvalidTopicName(topic));
        }
        topic::check_name(&topic)?;
        let payload = r.binary()?;
        Some(LastWill { topic, payload, qos: will_qos, retain: will_retain, properties })
    } else {
        None
    };
    let username = if has_username { Some(r.string()?) } else { None };
    let password = if has_password { Some(r.binary()?) } else { None };
    Ok(Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: flags & CLEAN_START != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })))
}

/// CONNACK: the acknowledge flags (only "session present" is defined), then the return code
/// (3.1.1) or reason code and properties (5.0).
pub(super) fn connack(r: &mut Reader, version: Protocol) -> Result<Packet, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("CONNACK reserved flags are set"));
    }
    let byte = r.u8()?;
    let (code, properties) = match version {
        Protocol::V311 => {
            let code =
                ReasonCode::from_v311_connack(byte).ok_or(DecodeError::InvalidReasonCode(byte))?;
            (code, Properties::default())
        }
        Protocol::V5 => {
            let code = ReasonCode::from_u8(byte)
                .filter(|code| reasons::CONNACK.contains(code))
                .ok_or(DecodeError::InvalidReasonCode(byte))?;
            (code, properties::decode(r, Context::CONNACK)?)
        }
    };
    Ok(Packet::ConnAck(ConnAck { session_present: flags & 1 != 0, code, properties }))
}
