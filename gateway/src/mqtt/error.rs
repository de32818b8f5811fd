//! Decoding errors, each mapped to the reason code the specification prescribes.
//!
//! An incomplete packet is not an error: the codec returns `Ok(None)` and waits for more bytes.

use super::ReasonCode;

/// Why a sequence of bytes is not a valid MQTT packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The variable-length "remaining length" continued past its fourth byte.
    #[error("remaining length is longer than 4 bytes")]
    RemainingLengthTooLong,
    /// The packet (fixed header included) is larger than the configured maximum.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: usize },
    /// The first byte names packet type 0 or 15 (15 is AUTH, valid only in 5.0).
    #[error("unknown packet type {0}")]
    UnknownPacketType(u8),
    /// The four flag bits of the fixed header differ from what the packet type requires.
    #[error("reserved flag bits of {0} are set wrongly")]
    ReservedFlags(&'static str),
    /// The first packet on a connection was not CONNECT, or CONNECT came again.
    #[error("expected CONNECT as the first packet, got {0}")]
    ExpectedConnect(&'static str),
    /// CONNECT named a protocol or level this server does not speak.
    #[error("unsupported protocol name {name:?} level {level}")]
    UnsupportedProtocol { name: String, level: u8 },
    /// A string field is not well-formed UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A string field holds U+0000, which MQTT forbids.
    #[error("string contains the null character U+0000")]
    NullCharacter,
    /// A property identifier the specification does not define.
    #[error("unknown property identifier 0x{0:02x}")]
    UnknownProperty(u8),
    /// A property that may appear at most once appeared twice.
    #[error("property 0x{0:02x} appears more than once")]
    DuplicateProperty(u8),
    /// A defined property that this packet type may not carry.
    #[error("property 0x{id:02x} is not allowed in {packet}")]
    PropertyNotAllowed { id: u8, packet: &'static str },
    /// A property value outside its allowed range (e.g. receive maximum 0).
    #[error("property 0x{0:02x} has an invalid value")]
    InvalidPropertyValue(u8),
    /// A PUBLISH topic name (or will topic) holds `+` or `#`, or is empty where it must not be.
    #[error("invalid topic name {0:?}")]
    InvalidTopicName(String),
    /// A SUBSCRIBE or UNSUBSCRIBE filter breaks the wildcard rules or is empty.
    #[error("invalid topic filter {0:?}")]
    InvalidTopicFilter(String),
    /// A packet identifier of 0 where a non-zero one is required.
    #[error("packet identifier must not be 0")]
    ZeroPacketId,
    /// SUBSCRIBE or UNSUBSCRIBE with no topic filter.
    #[error("{0} carries no topic filter")]
    NoTopicFilters(&'static str),
    /// QoS bits set to 3.
    #[error("QoS 3 is not a valid quality of service")]
    InvalidQoS,
    /// A reason code byte that the packet may not carry.
    #[error("invalid reason code 0x{0:02x}")]
    InvalidReasonCode(u8),
    /// Structural damage: a length field that overruns the packet, trailing bytes, and so on.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Well-formed bytes that break a protocol rule (e.g. will QoS set without the will flag).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

impl DecodeError {
    /// The reason code to send in CONNACK (during CONNECT) or DISCONNECT (afterwards).
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            UnsupportedProtocol { .. } => ReasonCode::UnsupportedProtocolVersion,
            InvalidTopicName(_) => ReasonCode::TopicNameInvalid,
            InvalidTopicFilter(_) => ReasonCode::TopicFilterInvalid,
            ExpectedConnect(_)
            | ZeroPacketId
            | NoTopicFilters(_)
            | Protocol(_)
            | DuplicateProperty(_)
            | InvalidPropertyValue(_) => ReasonCode::ProtocolError,
            RemainingLengthTooLong
            | UnknownPacketType(_)
            | ReservedFlags(_)
            | InvalidUtf8
            | NullCharacter
            | UnknownProperty(_)
            | PropertyNotAllowed { .. }
            | InvalidQoS
            | InvalidReasonCode(_)
            | Malformed(_) => ReasonCode::MalformedPacket,
        }
    }
}
