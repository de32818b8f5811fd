//! Property tests for the codec: any valid packet, encoded and decoded again, comes back equal.
//!
//! The strategies build only packets that are valid for the version at hand: 3.1.1 packets get
//! no properties and no reason codes beyond what 3.1.1 can say, and 5.0 packets get only the
//! properties and reason codes their packet type may carry.

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use gateway::mqtt::codec::OutboundPublish;
use gateway::mqtt::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// Which packet a property block is generated for (section 2.2.2.2 of MQTT 5).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ctx {
    Connect,
    ConnAck,
    Publish,
    Will,
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

// === primitive strategies ===

/// Any UTF-8 string without U+0000, including multi-byte characters.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 /_é€😀-]{0,12}"
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9/é$]{1,16}"
}

fn topic_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof!["[a-z0-9é]{0,4}", Just("+".to_owned())];
    (vec(level, 1..4), any::<bool>(), option::of("[a-z0-9]{1,4}")).prop_map(
        |(levels, multi, share)| {
            let mut filter = levels.join("/");
            if multi {
                filter.push_str("/#");
            }
            // A single empty level would be the empty filter, which is invalid.
            if filter.is_empty() {
                filter.push('+');
            }
            match share {
                Some(group) => format!("$share/{group}/{filter}"),
                None => filter,
            }
        },
    )
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn reason(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(codes).prop_map(|byte| ReasonCode::from_u8(byte).unwrap())
}

const CONNACK: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const V311_CONNACK: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
const PUBACK: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL: &[u8] = &[0x00, 0x92];
const SUBACK: &[u8] = &[0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2];
const V311_SUBACK: &[u8] = &[0x00, 0x01, 0x02, 0x80];
const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH: &[u8] = &[0x00, 0x18, 0x19];

// === properties ===

/// Properties with every field drawn, then cut down to what `ctx` may carry.
fn properties(ctx: Ctx) -> impl Strategy<Value = Properties> {
    let flag = || option::of(0u8..=1);
    let message = (
        flag(),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(text()),
        option::of(binary()),
        vec(1u32..=268_435_455, 0..3),
        option::of(1u16..),
    );
    let session = (
        option::of(any::<u32>()),
        option::of(text()),
        option::of(any::<u16>()),
        option::of(text()),
        option::of(binary()),
        flag(),
        option::of(any::<u32>()),
        flag(),
        option::of(text()),
        option::of(text()),
    );
    let limits = (
        option::of(text()),
        option::of(1u16..),
        option::of(any::<u16>()),
        flag(),
        flag(),
        vec((text(), text()), 0..3),
        option::of(1u32..),
        flag(),
        flag(),
        flag(),
    );
    (message, session, limits).prop_map(move |(m, s, l)| {
        let mut p = Properties {
            payload_format_indicator: m.0,
            message_expiry_interval: m.1,
            content_type: m.2,
            response_topic: m.3,
            correlation_data: m.4,
            subscription_identifiers: m.5,
            topic_alias: m.6,
            session_expiry_interval: s.0,
            assigned_client_identifier: s.1,
            server_keep_alive: s.2,
            authentication_method: s.3,
            authentication_data: s.4,
            request_problem_information: s.5,
            will_delay_interval: s.6,
            request_response_information: s.7,
            response_information: s.8,
            server_reference: s.9,
            reason_string: l.0,
            receive_maximum: l.1,
            topic_alias_maximum: l.2,
            maximum_qos: l.3,
            retain_available: l.4,
            user_properties: l.5,
            maximum_packet_size: l.6,
            wildcard_subscription_available: l.7,
            subscription_identifier_available: l.8,
            shared_subscription_available: l.9,
        };
        restrict(&mut p, ctx);
        p
    })
}

/// Clears every property that `ctx` may not carry.
fn restrict(p: &mut Properties, ctx: Ctx) {
    use Ctx::*;
    let message = matches!(ctx, Publish | Will);
    if !message {
        p.payload_format_indicator = None;
        p.message_expiry_interval = None;
        p.content_type = None;
        p.response_topic = None;
        p.correlation_data = None;
    }
    match ctx {
        Publish => {}
        Subscribe => p.subscription_identifiers.truncate(1),
        _ => p.subscription_identifiers.clear(),
    }
    if ctx != Publish {
        p.topic_alias = None;
    }
    if !matches!(ctx, Connect | ConnAck | Disconnect) {
        p.session_expiry_interval = None;
    }
    if ctx != ConnAck {
        p.assigned_client_identifier = None;
        p.server_keep_alive = None;
        p.response_information = None;
        p.maximum_qos = None;
        p.retain_available = None;
        p.wildcard_subscription_available = None;
        p.subscription_identifier_available = None;
        p.shared_subscription_available = None;
    }
    if !matches!(ctx, Connect | ConnAck | Auth) {
        p.authentication_method = None;
        p.authentication_data = None;
    }
    if ctx != Connect {
        p.request_problem_information = None;
        p.request_response_information = None;
    }
    if ctx != Will {
        p.will_delay_interval = None;
    }
    if !matches!(ctx, ConnAck | Disconnect) {
        p.server_reference = None;
    }
    if !matches!(ctx, ConnAck | Ack | SubAck | UnsubAck | Disconnect | Auth) {
        p.reason_string = None;
    }
    if !matches!(ctx, Connect | ConnAck) {
        p.receive_maximum = None;
        p.topic_alias_maximum = None;
        p.maximum_packet_size = None;
    }
}

/// `properties(ctx)` in 5.0, nothing in 3.1.1.
fn props_for(version: Protocol, ctx: Ctx) -> BoxedStrategy<Properties> {
    match version {
        Protocol::V311 => Just(Properties::default()).boxed(),
        Protocol::V5 => properties(ctx).boxed(),
    }
}

// === packets ===

fn connect(version: Protocol) -> impl Strategy<Value = Packet> {
    let will = (topic_name(), binary(), qos(), any::<bool>(), props_for(version, Ctx::Will))
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        option::of(will),
        option::of(text()),
        option::of(binary()),
        props_for(version, Ctx::Connect),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, props)| {
                // 3.1.1 allows a password only together with a user name.
                let password =
                    if version == Protocol::V311 && username.is_none() { None } else { password };
                Packet::Connect(Box::new(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties: props,
                }))
            },
        )
}

fn connack(version: Protocol) -> impl Strategy<Value = Packet> {
    let codes = if version == Protocol::V311 { V311_CONNACK } else { CONNACK };
    (any::<bool>(), reason(codes), props_for(version, Ctx::ConnAck)).prop_map(
        |(session_present, code, properties)| {
            Packet::ConnAck(ConnAck { session_present, code, properties })
        },
    )
}

fn publish(version: Protocol) -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        props_for(version, Ctx::Publish),
        binary(),
        any::<bool>(),
    )
        .prop_map(move |(qos, dup, retain, topic, id, properties, payload, empty_topic)| {
            let at_most_once = qos == QoS::AtMostOnce;
            // An empty topic stands for an alias in 5.0, so it needs one.
            let topic =
                if empty_topic && properties.topic_alias.is_some() { String::new() } else { topic };
            Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic,
                packet_id: if at_most_once { None } else { Some(id) },
                properties,
                payload,
            }
        })
}

fn ack(version: Protocol, codes: &'static [u8]) -> impl Strategy<Value = Ack> {
    let reasons = if version == Protocol::V311 { &[0u8][..] } else { codes };
    (packet_id(), reason(reasons), props_for(version, Ctx::Ack))
        .prop_map(|(packet_id, reason, properties)| Ack { packet_id, reason, properties })
}

fn options(version: Protocol, shared: bool) -> BoxedStrategy<SubscriptionOptions> {
    if version == Protocol::V311 {
        return qos().prop_map(SubscriptionOptions::with_qos).boxed();
    }
    let handling = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendIfNew),
        Just(RetainHandling::DoNotSend),
    ];
    (qos(), any::<bool>(), any::<bool>(), handling)
        .prop_map(move |(qos, no_local, retain_as_published, retain_handling)| {
            // No local on a shared subscription is a protocol error.
            SubscriptionOptions {
                qos,
                no_local: no_local && !shared,
                retain_as_published,
                retain_handling,
            }
        })
        .boxed()
}

fn subscribe(version: Protocol) -> impl Strategy<Value = Packet> {
    let entry = topic_filter().prop_flat_map(move |filter| {
        let shared = filter.starts_with("$share/");
        (Just(filter), options(version, shared))
    });
    (packet_id(), vec(entry, 1..4), props_for(version, Ctx::Subscribe)).prop_map(
        |(packet_id, filters, properties)| {
            Packet::Subscribe(Subscribe { packet_id, filters, properties })
        },
    )
}

fn suback(version: Protocol) -> impl Strategy<Value = Packet> {
    let codes = if version == Protocol::V311 { V311_SUBACK } else { SUBACK };
    (packet_id(), vec(reason(codes), 1..4), props_for(version, Ctx::SubAck)).prop_map(
        |(packet_id, reasons, properties)| {
            Packet::SubAck(SubAck { packet_id, reasons, properties })
        },
    )
}

fn unsubscribe(version: Protocol) -> impl Strategy<Value = Packet> {
    (packet_id(), vec(topic_filter(), 1..4), props_for(version, Ctx::Unsubscribe)).prop_map(
        |(packet_id, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties })
        },
    )
}

fn unsuback(version: Protocol) -> impl Strategy<Value = Packet> {
    let count = if version == Protocol::V311 { 0..1 } else { 1..4 };
    (packet_id(), vec(reason(UNSUBACK), count), props_for(version, Ctx::UnsubAck)).prop_map(
        |(packet_id, reasons, properties)| {
            Packet::UnsubAck(UnsubAck { packet_id, reasons, properties })
        },
    )
}

fn disconnect(version: Protocol) -> impl Strategy<Value = Packet> {
    let codes = if version == Protocol::V311 { &[0u8][..] } else { DISCONNECT };
    (reason(codes), props_for(version, Ctx::Disconnect))
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
}

fn auth() -> impl Strategy<Value = Packet> {
    (reason(AUTH), properties(Ctx::Auth))
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Every packet type valid in `version`.
fn packet(version: Protocol) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version).prop_map(Packet::Publish),
        ack(version, PUBACK).prop_map(Packet::PubAck),
        ack(version, PUBACK).prop_map(Packet::PubRec),
        ack(version, PUBREL).prop_map(Packet::PubRel),
        ack(version, PUBREL).prop_map(Packet::PubComp),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    match version {
        Protocol::V311 => common.boxed(),
        Protocol::V5 => prop_oneof![13 => common, 1 => auth()].boxed(),
    }
}

fn roundtrip(packet: &Packet, version: Protocol) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    Codec::encode(packet, version, &mut buf);
    let len = buf.len();
    // CONNECT is what the codec expects before the version is known.
    let protocol = if matches!(packet, Packet::Connect(_)) { None } else { Some(version) };
    let decoded = Codec::new(len).decode(&mut buf, protocol);
    prop_assert_eq!(decoded, Ok(Some(packet.clone())));
    prop_assert!(buf.is_empty());
    Ok(())
}

proptest! {
    // Failures are reported with their minimal input; persisting them would write files into
    // the source tree.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn v311_packets_roundtrip(packet in packet(Protocol::V311)) {
        roundtrip(&packet, Protocol::V311)?;
    }

    #[test]
    fn v5_packets_roundtrip(packet in packet(Protocol::V5)) {
        roundtrip(&packet, Protocol::V5)?;
    }

    #[test]
    fn encode_publish_equals_encode(
        version in prop_oneof![Just(Protocol::V311), Just(Protocol::V5)],
        p in publish(Protocol::V5),
        alias in option::of(1u16..),
        ids in vec(1u32..=268_435_455, 0..3),
        expiry in option::of(any::<u32>()),
    ) {
        let outbound = OutboundPublish {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: &p.topic,
            packet_id: p.packet_id,
            properties: &p.properties,
            payload: &p.payload,
            topic_alias: alias,
            subscription_identifiers: &ids,
            message_expiry_interval: expiry,
        };
        let mut direct = BytesMut::new();
        Codec::encode_publish(&outbound, version, &mut direct);
        prop_assert_eq!(Codec::publish_len(&outbound, version), direct.len());
        let mut properties = p.properties.clone();
        properties.topic_alias = alias;
        properties.subscription_identifiers = ids.clone();
        properties.message_expiry_interval = expiry;
        let mut via_packet = BytesMut::new();
        Codec::encode(&Packet::Publish(Publish { properties, ..p.clone() }), version, &mut via_packet);
        prop_assert_eq!(direct, via_packet);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..64)) {
        for protocol in [None, Some(Protocol::V311), Some(Protocol::V5)] {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = Codec::new(1 << 16).decode(&mut buf, protocol) {}
        }
    }
}
