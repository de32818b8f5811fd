//! The reason codes each packet may carry in MQTT 5 (section 2.4 and the table in each packet's
//! section), and the four SUBACK return codes of 3.1.1.
//!
//! A defined reason code that a packet may not carry is rejected like an undefined byte: a peer
//! that sends "granted QoS 1" in a PUBACK does not speak the protocol.

use crate::mqtt::ReasonCode;
use crate::mqtt::ReasonCode::*;

/// CONNACK in 5.0 (3.1.1 has its own six return codes).
pub(super) const CONNACK: &[ReasonCode] = &[
    Success,
    UnspecifiedError,
    MalformedPacket,
    ProtocolError,
    ImplementationSpecificError,
    UnsupportedProtocolVersion,
    ClientIdentifierNotValid,
    BadUserNameOrPassword,
    NotAuthorized,
    ServerUnavailable,
    ServerBusy,
    Banned,
    BadAuthenticationMethod,
    TopicNameInvalid,
    PacketTooLarge,
    QuotaExceeded,
    PayloadFormatInvalid,
    RetainNotSupported,
    QoSNotSupported,
    UseAnotherServer,
    ServerMoved,
    ConnectionRateExceeded,
];

/// PUBACK and PUBREC.
pub(super) const PUBACK: &[ReasonCode] = &[
    Success,
    NoMatchingSubscribers,
    UnspecifiedError,
    ImplementationSpecificError,
    NotAuthorized,
    TopicNameInvalid,
    PacketIdentifierInUse,
    QuotaExceeded,
    PayloadFormatInvalid,
];

/// PUBREL and PUBCOMP.
pub(super) const PUBREL: &[ReasonCode] = &[Success, PacketIdentifierNotFound];

pub(super) const SUBACK: &[ReasonCode] = &[
    Success,
    GrantedQoS1,
    GrantedQoS2,
    UnspecifiedError,
    ImplementationSpecificError,
    NotAuthorized,
    TopicFilterInvalid,
    PacketIdentifierInUse,
    QuotaExceeded,
    SharedSubscriptionsNotSupported,
    SubscriptionIdentifiersNotSupported,
    WildcardSubscriptionsNotSupported,
];

/// The four SUBACK return codes of 3.1.1.
pub(super) const V311_SUBACK: &[ReasonCode] =
    &[Success, GrantedQoS1, GrantedQoS2, UnspecifiedError];

pub(super) const UNSUBACK: &[ReasonCode] = &[
    Success,
    NoSubscriptionExisted,
    UnspecifiedError,
    ImplementationSpecificError,
    NotAuthorized,
    TopicFilterInvalid,
    PacketIdentifierInUse,
];

pub(super) const DISCONNECT: &[ReasonCode] = &[
    Success,
    DisconnectWithWill,
    UnspecifiedError,
    MalformedPacket,
    ProtocolError,
    ImplementationSpecificError,
    NotAuthorized,
    ServerBusy,
    ServerShuttingDown,
    KeepAliveTimeout,
    SessionTakenOver,
    TopicFilterInvalid,
    TopicNameInvalid,
    ReceiveMaximumExceeded,
    TopicAliasInvalid,
    PacketTooLarge,
    MessageRateTooHigh,
    QuotaExceeded,
    AdministrativeAction,
    PayloadFormatInvalid,
    RetainNotSupported,
    QoSNotSupported,
    UseAnotherServer,
    ServerMoved,
    SharedSubscriptionsNotSupported,
    ConnectionRateExceeded,
    MaximumConnectTime,
    SubscriptionIdentifiersNotSupported,
    WildcardSubscriptionsNotSupported,
];

pub(super) const AUTH: &[ReasonCode] = &[Success, ContinueAuthentication, ReAuthenticate];
