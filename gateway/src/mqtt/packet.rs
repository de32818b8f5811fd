//! One Rust value per MQTT control packet, shared by both protocol versions.
//!
//! A field that exists only in MQTT 5 (reason codes, properties) is carried for 3.1.1 packets too
//! and ignored by the 3.1.1 encoder; this lets the broker handle both versions with one code path
//! and convert between them when a 3.1.1 publisher reaches a 5.0 subscriber.

use bytes::Bytes;

use super::{Properties, ReasonCode};

/// The protocol level announced in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// MQTT 3.1.1, protocol name "MQTT", level 4.
    V311,
    /// MQTT 5.0, protocol name "MQTT", level 5.
    V5,
}

/// Quality of service of a PUBLISH or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// Converts the two QoS bits; 3 is not a QoS and yields `None`.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Every MQTT control packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5 only.
    Auth(Auth),
}

impl Packet {
    /// The packet's name as the specification spells it, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// CONNECT. The protocol version decides how every later packet on the connection is decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    pub protocol: Protocol,
    /// "Clean session" in 3.1.1, "clean start" in 5.0.
    pub clean_start: bool,
    /// Seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    /// May be empty: the server then assigns one (5.0) or accepts it for a clean session (3.1.1).
    pub client_id: String,
    pub will: Option<LastWill>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub properties: Properties,
}

/// The will message carried in CONNECT.
#[derive(Debug, Clone, PartialEq)]
pub struct LastWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will properties (5.0): will delay, payload format, expiry, content type, response topic,
    /// correlation data, user properties.
    pub properties: Properties,
}

/// CONNACK. For 3.1.1 the encoder maps `code` onto the six 3.1.1 return codes.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: ReasonCode,
    pub properties: Properties,
}

/// PUBLISH, in either direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in 5.0 when a topic alias names the topic.
    pub topic: String,
    /// Present exactly when `qos` is 1 or 2; never 0.
    pub packet_id: Option<u16>,
    pub properties: Properties,
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub packet_id: u16,
    /// `Success` when the packet carries no reason code (always so in 3.1.1).
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Ack {
    /// A successful acknowledgement with no properties.
    pub fn new(packet_id: u16) -> Ack {
        Ack { packet_id, reason: ReasonCode::Success, properties: Properties::default() }
    }
}

/// How retained messages are sent when a subscription is made (5.0; 3.1.1 always uses 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not already exist.
    SendIfNew = 1,
    /// Never send them.
    DoNotSend = 2,
}

/// The options byte of one SUBSCRIBE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

/// Why a subscription options byte is not valid (MQTT 5 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OptionsByteError {
    #[error("reserved subscription option bits are set")]
    ReservedBits,
    #[error("subscription maximum QoS 3 is reserved")]
    ReservedQoS,
    #[error("retain handling 3 is reserved")]
    ReservedRetainHandling,
}

impl SubscriptionOptions {
    /// The 5.0 options byte: QoS in bits 0-1, No Local in bit 2, Retain As Published in bit 3,
    /// Retain Handling in bits 4-5. The codec writes it in SUBSCRIBE and the store keeps it in
    /// a session's record.
    pub fn to_byte(self) -> u8 {
        self.qos as u8
            | u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | (self.retain_handling as u8) << 4
    }

    /// Options from a 5.0 options byte, as [`SubscriptionOptions::to_byte`] writes it.
    pub fn from_byte(byte: u8) -> Result<SubscriptionOptions, OptionsByteError> {
        if byte & 0b1100_0000 != 0 {
            return Err(OptionsByteError::ReservedBits);
        }
        let qos = QoS::from_u8(byte & 0b11).ok_or(OptionsByteError::ReservedQoS)?;
        let retain_handling = match (byte >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(OptionsByteError::ReservedRetainHandling),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0b0100 != 0,
            retain_as_published: byte & 0b1000 != 0,
            retain_handling,
        })
    }

    /// Options with every 5.0 flag off, which is what a 3.1.1 subscription means.
    pub fn with_qos(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }
}

/// SUBSCRIBE: at least one filter (an empty list is a protocol violation caught by the codec).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub filters: Vec<(String, SubscriptionOptions)>,
    /// Subscription identifier (at most one) and user properties.
    pub properties: Properties,
}

/// SUBACK: one reason code per filter. 3.1.1 uses 0x00, 0x01, 0x02 and 0x80, which are the same
/// bytes as the 5.0 codes `GrantedQoS0..2` and `UnspecifiedError`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubAck {
    pub packet_id: u16,
    pub reasons: Vec<ReasonCode>,
    pub properties: Properties,
}

/// UNSUBSCRIBE: at least one filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub filters: Vec<String>,
    pub properties: Properties,
}

/// UNSUBACK: one reason code per filter in 5.0; empty in 3.1.1.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsubAck {
    pub packet_id: u16,
    pub reasons: Vec<ReasonCode>,
    pub properties: Properties,
}

/// DISCONNECT. A 3.1.1 DISCONNECT is always `NormalDisconnection` with no properties.
#[derive(Debug, Clone, PartialEq)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Disconnect {
    /// A DISCONNECT with a reason code and nothing else.
    pub fn new(reason: ReasonCode) -> Disconnect {
        Disconnect { reason, properties: Properties::default() }
    }
}

/// AUTH (5.0 enhanced authentication).
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Properties,
}

#[cfg(test)]
mod tests;
