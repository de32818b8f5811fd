//! Unit tests for the codec, written as data: hand-made bytes and the packet (or the exact
//! error) they must decode to.
//!
//! `check` does more than compare one decode: it also feeds every prefix of the bytes and
//! expects `Ok(None)` with nothing consumed, and re-encodes the packet and expects the input
//! bytes back (`check_value` skips that last step for inputs that are valid but not in the form
//! the encoder writes).

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};

use super::{Codec, OutboundPublish};
use crate::mqtt::Protocol::{V5, V311};
use crate::mqtt::*;

// === helpers ===

/// Concatenates byte pieces: arrays, vectors, slices and strings.
macro_rules! cat {
    ($($piece:expr),* $(,)?) => {{
        let mut out: Vec<u8> = Vec::new();
        $( out.extend_from_slice(AsRef::<[u8]>::as_ref(&$piece)); )*
        out
    }};
}

const MAX: usize = 1 << 20;

fn varint(mut value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A length-prefixed string or binary field.
fn s(text: impl AsRef<[u8]>) -> Vec<u8> {
    let text = text.as_ref();
    cat![(text.len() as u16).to_be_bytes(), text]
}

/// A whole packet: first byte, remaining length, body.
fn pkt(first: u8, body: Vec<u8>) -> Vec<u8> {
    cat![[first], varint(body.len()), body]
}

/// A property block: its length, then the properties.
fn props(body: Vec<u8>) -> Vec<u8> {
    cat![varint(body.len()), body]
}

fn decode(bytes: &[u8], protocol: Option<Protocol>) -> Result<Option<Packet>, DecodeError> {
    Codec::new(MAX).decode(&mut BytesMut::from(bytes), protocol)
}

fn encode(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut buf = BytesMut::new();
    Codec::encode(packet, protocol, &mut buf);
    buf.to_vec()
}

/// Decodes `bytes` to `expected`, checks every truncation, and re-encodes to the same bytes.
#[track_caller]
fn check(protocol: Option<Protocol>, bytes: &[u8], expected: Packet) {
    check_value(protocol, bytes, expected.clone());
    let version = protocol.unwrap_or(V311);
    let version = match &expected {
        Packet::Connect(c) => c.protocol,
        _ => version,
    };
    assert_eq!(encode(&expected, version), bytes, "re-encoding {expected:?}");
}

/// Like `check`, for input the encoder would write differently (e.g. a long form).
#[track_caller]
fn check_value(protocol: Option<Protocol>, bytes: &[u8], expected: Packet) {
    let mut buf = BytesMut::from(bytes);
    let decoded = Codec::new(MAX).decode(&mut buf, protocol);
    assert_eq!(decoded, Ok(Some(expected.clone())), "decoding {bytes:02x?}");
    assert!(buf.is_empty(), "the whole packet is consumed");
    for len in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..len]);
        assert_eq!(Codec::new(MAX).decode(&mut buf, protocol), Ok(None), "prefix of {len} bytes");
        assert_eq!(buf.len(), len, "a prefix consumes nothing");
    }
    let version = match &expected {
        Packet::Connect(c) => c.protocol,
        _ => protocol.unwrap_or(V311),
    };
    let again = decode(&encode(&expected, version), protocol);
    assert_eq!(again, Ok(Some(expected)), "re-encoded packet decodes to itself");
}

#[track_caller]
fn check_err(protocol: Option<Protocol>, bytes: &[u8], expected: DecodeError) {
    assert_eq!(decode(bytes, protocol), Err(expected), "decoding {bytes:02x?}");
}

fn user(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}

fn publish(qos: QoS, topic: &str, packet_id: Option<u16>, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_owned(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::from_static(payload),
    }
}

fn connect_v311_bytes() -> Vec<u8> {
    pkt(
        0x10,
        cat![s("MQTT"), [4, 0b1110_1110, 0, 60], s("dev1"), s("lwt"), s("bye"), s("u"), s("p")],
    )
}

fn connect_v311() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 60,
        client_id: "dev1".into(),
        will: Some(LastWill {
            topic: "lwt".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: Properties::default(),
    }))
}

/// A 5.0 CONNECT: the properties, will and flags are spliced into a fixed frame.
fn connect_v5_with(flags: u8, properties: Vec<u8>, will: Vec<u8>, tail: Vec<u8>) -> Vec<u8> {
    pkt(0x10, cat![s("MQTT"), [5, flags, 0, 30], properties, s("dev1"), will, tail])
}

fn connect_v5_bytes() -> Vec<u8> {
    connect_v5_with(
        0b1110_1110,
        props(cat![[0x11, 0, 0, 0, 10], [0x21, 0, 20], [0x26], s("k"), s("v")]),
        cat![props(cat![[0x01, 1], [0x18, 0, 0, 0, 5]]), s("lwt"), s("bye")],
        cat![s("u"), s("p")],
    )
}

fn connect_v5() -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 30,
        client_id: "dev1".into(),
        will: Some(LastWill {
            topic: "lwt".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                payload_format_indicator: Some(1),
                will_delay_interval: Some(5),
                ..Properties::default()
            },
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: Properties {
            session_expiry_interval: Some(10),
            receive_maximum: Some(20),
            user_properties: vec![user("k", "v")],
            ..Properties::default()
        },
    }))
}

/// A minimal 5.0 CONNECT whose only property block is `properties`.
fn connect_v5_props(properties: Vec<u8>) -> Vec<u8> {
    connect_v5_with(0x02, props(properties), vec![], vec![])
}

/// A 5.0 PUBLISH at QoS 0 on topic "t" carrying `properties`.
fn publish_v5_props(properties: Vec<u8>) -> Vec<u8> {
    pkt(0x30, cat![s("t"), props(properties), b"x"])
}

// === decoding every packet type ===

#[test]
fn connect_both_versions() {
    check(None, &connect_v311_bytes(), connect_v311());
    check(None, &connect_v5_bytes(), connect_v5());
    // CONNECT is also decoded once the version is known; the broker rejects it.
    check(Some(V5), &connect_v5_bytes(), connect_v5());
    // Minimal: empty client id, no will, no credentials.
    let minimal = Connect {
        protocol: V311,
        clean_start: false,
        keep_alive: 0,
        client_id: String::new(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    check(
        None,
        &pkt(0x10, cat![s("MQTT"), [4, 0, 0, 0], s("")]),
        Packet::Connect(Box::new(minimal)),
    );
}

#[test]
fn connect_v5_password_without_username() {
    let bytes = connect_v5_with(0x42, props(vec![]), vec![], s("token"));
    let Ok(Some(Packet::Connect(c))) = decode(&bytes, None) else { panic!("decodes") };
    assert_eq!(c.username, None);
    assert_eq!(c.password, Some(Bytes::from_static(b"token")));
}

#[test]
fn connack_both_versions() {
    let ok = ConnAck {
        session_present: true,
        code: ReasonCode::Success,
        properties: Properties::default(),
    };
    check(Some(V311), &[0x20, 2, 1, 0], Packet::ConnAck(ok.clone()));
    let refused = ConnAck { session_present: false, code: ReasonCode::NotAuthorized, ..ok.clone() };
    check(Some(V311), &[0x20, 2, 0, 5], Packet::ConnAck(refused));
    let v5 = ConnAck {
        session_present: false,
        code: ReasonCode::Success,
        properties: Properties {
            assigned_client_identifier: Some("gen-1".into()),
            maximum_qos: Some(1),
            maximum_packet_size: Some(1024),
            ..Properties::default()
        },
    };
    let bytes =
        pkt(0x20, cat![[0, 0], props(cat![[0x12], s("gen-1"), [0x24, 1], [0x27, 0, 0, 4, 0]])]);
    check(Some(V5), &bytes, Packet::ConnAck(v5));
    let banned = ConnAck { session_present: false, code: ReasonCode::Banned, ..ok };
    check(Some(V5), &[0x20, 3, 0, 0x8A, 0], Packet::ConnAck(banned));
}

#[test]
fn publish_both_versions() {
    check(
        Some(V311),
        &pkt(0x30, cat![s("a/b"), b"hi"]),
        Packet::Publish(publish(QoS::AtMostOnce, "a/b", None, b"hi")),
    );
    let mut p = publish(QoS::ExactlyOnce, "a", Some(7), b"");
    p.dup = true;
    p.retain = true;
    check(Some(V311), &pkt(0x3D, cat![s("a"), [0, 7]]), Packet::Publish(p));

    let mut p = publish(QoS::AtLeastOnce, "a/b", Some(1), b"payload");
    p.properties = Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01")),
        subscription_identifiers: vec![1, 200],
        topic_alias: Some(3),
        user_properties: vec![user("a", "1"), user("a", "2")],
        ..Properties::default()
    };
    let properties = cat![
        [0x01, 1],
        [0x02, 0, 0, 0, 60],
        [0x03],
        s("text/plain"),
        [0x08],
        s("reply"),
        [0x09],
        s([0, 1]),
        [0x0B, 1],
        [0x0B, 0xC8, 0x01],
        [0x23, 0, 3],
        [0x26],
        s("a"),
        s("1"),
        [0x26],
        s("a"),
        s("2"),
    ];
    check(
        Some(V5),
        &pkt(0x32, cat![s("a/b"), [0, 1], props(properties), b"payload"]),
        Packet::Publish(p),
    );

    // An empty topic is legal in 5.0 when a topic alias names the topic.
    let mut p = publish(QoS::AtMostOnce, "", None, b"x");
    p.properties.topic_alias = Some(9);
    check(Some(V5), &pkt(0x30, cat![s(""), props(vec![0x23, 0, 9]), b"x"]), Packet::Publish(p));
}

#[test]
fn publish_payload_is_a_slice_of_the_input() {
    let bytes = pkt(0x30, cat![s("t"), b"zero-copy payload"]);
    let mut buf = BytesMut::from(&bytes[..]);
    let range = buf.as_ptr_range();
    let Ok(Some(Packet::Publish(p))) = Codec::new(MAX).decode(&mut buf, Some(V311)) else {
        panic!("decodes")
    };
    assert!(range.contains(&p.payload.as_ptr()), "payload points into the input buffer");
}

#[test]
fn acks_both_versions() {
    for (first, make) in [
        (0x40, Packet::PubAck as fn(Ack) -> Packet),
        (0x50, Packet::PubRec),
        (0x62, Packet::PubRel),
        (0x70, Packet::PubComp),
    ] {
        check(Some(V311), &[first, 2, 0, 9], make(Ack::new(9)));
        // 5.0 short form: remaining length 2 means success without properties.
        check(Some(V5), &[first, 2, 0, 9], make(Ack::new(9)));
        // The long forms of the same packet decode to the same value.
        check_value(Some(V5), &[first, 3, 0, 9, 0], make(Ack::new(9)));
        check_value(Some(V5), &[first, 4, 0, 9, 0, 0], make(Ack::new(9)));
    }
    let not_authorized =
        Ack { packet_id: 1, reason: ReasonCode::NotAuthorized, properties: Properties::default() };
    check(Some(V5), &[0x40, 3, 0, 1, 0x87], Packet::PubAck(not_authorized));
    let not_found = Ack {
        packet_id: 2,
        reason: ReasonCode::PacketIdentifierNotFound,
        properties: Properties { reason_string: Some("gone".into()), ..Properties::default() },
    };
    check(
        Some(V5),
        &pkt(0x62, cat![[0, 2, 0x92], props(cat![[0x1F], s("gone")])]),
        Packet::PubRel(not_found),
    );
}

#[test]
fn subscribe_both_versions() {
    let v311 = Subscribe {
        packet_id: 10,
        filters: vec![
            ("a/+".into(), SubscriptionOptions::with_qos(QoS::AtLeastOnce)),
            ("#".into(), SubscriptionOptions::with_qos(QoS::ExactlyOnce)),
        ],
        properties: Properties::default(),
    };
    check(
        Some(V311),
        &pkt(0x82, cat![[0, 10], s("a/+"), [1], s("#"), [2]]),
        Packet::Subscribe(v311),
    );
    let v5 = Subscribe {
        packet_id: 11,
        filters: vec![
            (
                "s/#".into(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            ),
            ("$share/g/x/+".into(), SubscriptionOptions::with_qos(QoS::AtMostOnce)),
        ],
        properties: Properties {
            subscription_identifiers: vec![268_435_455],
            user_properties: vec![user("k", "")],
            ..Properties::default()
        },
    };
    let properties = cat![[0x0B, 0xFF, 0xFF, 0xFF, 0x7F, 0x26], s("k"), s("")];
    let bytes = pkt(
        0x82,
        cat![[0, 11], props(properties), s("s/#"), [0b0010_1101], s("$share/g/x/+"), [0]],
    );
    check(Some(V5), &bytes, Packet::Subscribe(v5));
}

#[test]
fn suback_both_versions() {
    use ReasonCode::*;
    let v311 = SubAck {
        packet_id: 3,
        reasons: vec![Success, GrantedQoS1, GrantedQoS2, UnspecifiedError],
        properties: Properties::default(),
    };
    check(Some(V311), &[0x90, 6, 0, 3, 0, 1, 2, 0x80], Packet::SubAck(v311));
    let v5 = SubAck {
        packet_id: 3,
        reasons: vec![GrantedQoS1, NotAuthorized, WildcardSubscriptionsNotSupported],
        properties: Properties { reason_string: Some("r".into()), ..Properties::default() },
    };
    check(
        Some(V5),
        &pkt(0x90, cat![[0, 3], props(cat![[0x1F], s("r")]), [1, 0x87, 0xA2]]),
        Packet::SubAck(v5),
    );
}

#[test]
fn unsubscribe_both_versions() {
    let v311 = Unsubscribe {
        packet_id: 4,
        filters: vec!["a/b".into(), "c/#".into()],
        properties: Properties::default(),
    };
    check(
        Some(V311),
        &pkt(0xA2, cat![[0, 4], s("a/b"), s("c/#")]),
        Packet::Unsubscribe(v311.clone()),
    );
    let v5 = Unsubscribe {
        properties: Properties { user_properties: vec![user("x", "y")], ..Properties::default() },
        ..v311
    };
    check(
        Some(V5),
        &pkt(0xA2, cat![[0, 4], props(cat![[0x26], s("x"), s("y")]), s("a/b"), s("c/#")]),
        Packet::Unsubscribe(v5),
    );
}

#[test]
fn unsuback_both_versions() {
    let v311 = UnsubAck { packet_id: 5, reasons: vec![], properties: Properties::default() };
    check(Some(V311), &[0xB0, 2, 0, 5], Packet::UnsubAck(v311));
    let v5 = UnsubAck {
        packet_id: 5,
        reasons: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        properties: Properties::default(),
    };
    check(Some(V5), &[0xB0, 5, 0, 5, 0, 0x00, 0x11], Packet::UnsubAck(v5));
}

#[test]
fn ping_disconnect_auth() {
    for version in [V311, V5] {
        check(Some(version), &[0xC0, 0], Packet::PingReq);
        check(Some(version), &[0xD0, 0], Packet::PingResp);
        check(
            Some(version),
            &[0xE0, 0],
            Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
        );
    }
    // The one-byte form decodes; we always write the property length (see encode.rs).
    check_value(
        Some(V5),
        &[0xE0, 1, 0x04],
        Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWill)),
    );
    check(
        Some(V5),
        &[0xE0, 2, 0x04, 0],
        Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWill)),
    );
    check_value(
        Some(V5),
        &[0xE0, 2, 0, 0],
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    let with_props = Disconnect {
        reason: ReasonCode::ServerMoved,
        properties: Properties {
            server_reference: Some("other".into()),
            session_expiry_interval: Some(0),
            ..Properties::default()
        },
    };
    check(
        Some(V5),
        &pkt(0xE0, cat![[0x9D], props(cat![[0x11, 0, 0, 0, 0, 0x1C], s("other")])]),
        Packet::Disconnect(with_props),
    );

    check(
        Some(V5),
        &[0xF0, 0],
        Packet::Auth(Auth { reason: ReasonCode::Success, properties: Properties::default() }),
    );
    let auth = Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: Properties {
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(b"\x01\x02")),
            ..Properties::default()
        },
    };
    check(
        Some(V5),
        &pkt(0xF0, cat![[0x18], props(cat![[0x15], s("SCRAM"), [0x16], s([1, 2])])]),
        Packet::Auth(auth),
    );
}

#[test]
fn two_packets_in_one_buffer() {
    let mut buf = BytesMut::from(&cat![[0xC0, 0], pkt(0x30, cat![s("t"), b"p"]), [0xE0]][..]);
    let codec = Codec::new(MAX);
    assert_eq!(codec.decode(&mut buf, Some(V311)), Ok(Some(Packet::PingReq)));
    assert_eq!(
        codec.decode(&mut buf, Some(V311)),
        Ok(Some(Packet::Publish(publish(QoS::AtMostOnce, "t", None, b"p"))))
    );
    // The third packet is incomplete: nothing is consumed until its length byte arrives.
    assert_eq!(codec.decode(&mut buf, Some(V311)), Ok(None));
    assert_eq!(&buf[..], &[0xE0]);
    buf.extend_from_slice(&[0]);
    assert_eq!(
        codec.decode(&mut buf, Some(V311)),
        Ok(Some(Packet::Disconnect(Disconnect::new(ReasonCode::Success))))
    );
    assert!(buf.is_empty());
}

// === fixed header errors ===

#[test]
fn fixed_header_errors() {
    use DecodeError::*;
    check_err(Some(V5), &[0x00, 0], UnknownPacketType(0));
    check_err(Some(V311), &[0xF0, 0], UnknownPacketType(15));
    check_err(None, &[0x30, 3, 0, 1, b't'], ExpectedConnect("PUBLISH"));
    check_err(None, &[0xC0, 0], ExpectedConnect("PINGREQ"));
    check_err(None, &[0x11], ReservedFlags("CONNECT"));
    check_err(Some(V5), &[0x60, 2, 0, 1], ReservedFlags("PUBREL"));
    check_err(Some(V5), &[0x80], ReservedFlags("SUBSCRIBE"));
    check_err(Some(V5), &[0xA3], ReservedFlags("UNSUBSCRIBE"));
    check_err(Some(V311), &[0x42, 2, 0, 1], ReservedFlags("PUBACK"));
    check_err(Some(V311), &[0xC8, 0], ReservedFlags("PINGREQ"));
    check_err(Some(V5), &[0xE1, 0], ReservedFlags("DISCONNECT"));
    check_err(Some(V5), &[0x36], InvalidQoS);
    check_err(Some(V5), &[0x38, 4, 0, 1, b't', b'x'], Protocol("DUP set on a QoS 0 PUBLISH"));
    check_err(Some(V5), &[0x30, 0xFF, 0xFF, 0xFF, 0xFF], RemainingLengthTooLong);
    assert_eq!(decode(&[0x30, 0xFF, 0xFF, 0xFF], Some(V5)), Ok(None));
}

#[test]
fn packet_too_large_is_reported_before_the_body_arrives() {
    let codec = Codec::new(10);
    let mut buf = BytesMut::from(&[0x30, 100][..]);
    assert_eq!(
        codec.decode(&mut buf, Some(V5)),
        Err(DecodeError::PacketTooLarge { size: 102, max: 10 })
    );
    // Exactly the limit is fine.
    let mut buf = BytesMut::from(&pkt(0x30, cat![s("t"), [0; 5]])[..]);
    assert_eq!(buf.len(), 10);
    assert!(matches!(codec.decode(&mut buf, Some(V5)), Ok(Some(Packet::Publish(_)))));
}

// === CONNECT errors ===

#[test]
fn connect_errors() {
    use DecodeError::*;
    let unsupported = |name: &str, level| UnsupportedProtocol { name: name.into(), level };
    check_err(None, &pkt(0x10, cat![s("MQIsdp"), [3, 2, 0, 60], s("c")]), unsupported("MQIsdp", 3));
    check_err(None, &pkt(0x10, cat![s("MQTT"), [3, 2, 0, 60], s("c")]), unsupported("MQTT", 3));
    check_err(None, &pkt(0x10, cat![s("MQTT"), [6, 2, 0, 60], s("c")]), unsupported("MQTT", 6));
    check_err(None, &pkt(0x10, cat![s("mqtt"), [4, 2, 0, 60], s("c")]), unsupported("mqtt", 4));

    let v311 =
        |flags: u8, tail: Vec<u8>| pkt(0x10, cat![s("MQTT"), [4, flags, 0, 60], s("c"), tail]);
    check_err(None, &v311(0x03, vec![]), Malformed("CONNECT reserved flag is set"));
    let no_will = Protocol("will QoS or will retain set without a will");
    check_err(None, &v311(0x08, vec![]), no_will.clone());
    check_err(None, &v311(0x20, vec![]), no_will);
    check_err(None, &v311(0x1C, cat![s("w"), s("p")]), InvalidQoS);
    check_err(None, &v311(0x40, s("p")), Protocol("password flag set without the user name flag"));
    check_err(None, &v311(0x04, cat![s("w/+"), s("p")]), InvalidTopicName("w/+".into()));
    check_err(None, &v311(0x04, cat![s(""), s("p")]), InvalidTopicName(String::new()));
    // A user name flag whose field is missing overruns the packet.
    check_err(None, &v311(0x80, vec![]), Malformed("a field runs past the end of the packet"));
    check_err(None, &v311(0x02, vec![0]), Malformed("bytes left over after the packet's fields"));
    // Bad strings in the client id and the user name.
    check_err(None, &pkt(0x10, cat![s("MQTT"), [4, 2, 0, 60], s([0xC3, 0x28])]), InvalidUtf8);
    check_err(None, &pkt(0x10, cat![s("MQTT"), [4, 2, 0, 60], s("a\0b")]), NullCharacter);
    check_err(None, &v311(0x80, s([0xFF])), InvalidUtf8);
}

#[test]
fn connect_property_errors() {
    use DecodeError::*;
    check_err(None, &connect_v5_props(vec![0x7F, 0]), UnknownProperty(0x7F));
    check_err(
        None,
        &connect_v5_props(vec![0x23, 0, 1]),
        PropertyNotAllowed { id: 0x23, packet: "CONNECT" },
    );
    check_err(
        None,
        &connect_v5_props(vec![0x18, 0, 0, 0, 1]),
        PropertyNotAllowed { id: 0x18, packet: "CONNECT" },
    );
    check_err(
        None,
        &connect_v5_props(vec![0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]),
        DuplicateProperty(0x11),
    );
    check_err(None, &connect_v5_props(vec![0x21, 0, 0]), InvalidPropertyValue(0x21));
    check_err(None, &connect_v5_props(vec![0x27, 0, 0, 0, 0]), InvalidPropertyValue(0x27));
    check_err(None, &connect_v5_props(vec![0x17, 2]), InvalidPropertyValue(0x17));
    check_err(None, &connect_v5_props(vec![0x19, 2]), InvalidPropertyValue(0x19));
    check_err(None, &connect_v5_props(cat![[0x26], s("k"), s([0xFF])]), InvalidUtf8);
    check_err(None, &connect_v5_props(cat![[0x26], s("k\0"), s("v")]), NullCharacter);
    // The property length claims more bytes than the packet has.
    let overrun = pkt(0x10, cat![s("MQTT"), [5, 2, 0, 30, 10, 0x11, 0, 0, 0, 1]]);
    check_err(None, &overrun, Malformed("a field runs past the end of the packet"));
    // A property value cut short by its own block.
    check_err(
        None,
        &connect_v5_props(vec![0x11, 0, 0]),
        Malformed("a field runs past the end of the packet"),
    );
    // Will properties have their own allowed set.
    let will = |will_props: Vec<u8>| {
        connect_v5_with(0x06, props(vec![]), cat![props(will_props), s("w"), s("p")], vec![])
    };
    check_err(
        None,
        &will(vec![0x11, 0, 0, 0, 1]),
        PropertyNotAllowed { id: 0x11, packet: "will properties" },
    );
    check_err(None, &will(vec![0x01, 2]), InvalidPropertyValue(0x01));
    check_err(None, &will(vec![0x18, 0, 0, 0, 1, 0x18, 0, 0, 0, 1]), DuplicateProperty(0x18));
}

// === PUBLISH errors ===

#[test]
fn publish_errors() {
    use DecodeError::*;
    check_err(Some(V311), &pkt(0x30, cat![s("a/+"), b"x"]), InvalidTopicName("a/+".into()));
    check_err(Some(V5), &pkt(0x30, cat![s("a/#"), [0]]), InvalidTopicName("a/#".into()));
    check_err(Some(V311), &pkt(0x30, cat![s(""), b"x"]), InvalidTopicName(String::new()));
    check_err(
        Some(V5),
        &pkt(0x30, cat![s(""), [0], b"x"]),
        Protocol("empty topic name without a topic alias"),
    );
    check_err(Some(V311), &pkt(0x30, cat![s([b'a', 0xFF]), b"x"]), InvalidUtf8);
    check_err(Some(V311), &pkt(0x30, cat![s("a\0"), b"x"]), NullCharacter);
    check_err(Some(V311), &pkt(0x32, cat![s("a"), [0, 0]]), ZeroPacketId);
    check_err(Some(V5), &pkt(0x34, cat![s("a"), [0, 0], [0]]), ZeroPacketId);
    // The topic length overruns the packet.
    check_err(
        Some(V311),
        &[0x30, 3, 0, 5, b'a'],
        Malformed("a field runs past the end of the packet"),
    );
    check_err(Some(V5), &publish_v5_props(vec![0x01, 2]), InvalidPropertyValue(0x01));
    check_err(Some(V5), &publish_v5_props(vec![0x23, 0, 0]), InvalidPropertyValue(0x23));
    check_err(Some(V5), &publish_v5_props(vec![0x0B, 0]), InvalidPropertyValue(0x0B));
    check_err(
        Some(V5),
        &publish_v5_props(vec![0x0B, 0x80, 0x80, 0x80, 0x80, 0x01]),
        Malformed("variable byte integer longer than four bytes"),
    );
    check_err(
        Some(V5),
        &publish_v5_props(vec![0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1]),
        DuplicateProperty(0x02),
    );
    check_err(
        Some(V5),
        &publish_v5_props(vec![0x11, 0, 0, 0, 1]),
        PropertyNotAllowed { id: 0x11, packet: "PUBLISH" },
    );
    check_err(Some(V5), &publish_v5_props(cat![[0x03], s([0xFE])]), InvalidUtf8);
    check_err(Some(V5), &publish_v5_props(cat![[0x08], s("r\0")]), NullCharacter);
    check_err(Some(V5), &publish_v5_props(vec![0x00]), UnknownProperty(0x00));
}

#[test]
fn ack_errors() {
    use DecodeError::*;
    for first in [0x40, 0x50, 0x62, 0x70] {
        check_err(Some(V311), &[first, 2, 0, 0], ZeroPacketId);
        check_err(Some(V5), &[first, 2, 0, 0], ZeroPacketId);
        check_err(
            Some(V311),
            &[first, 3, 0, 1, 0],
            Malformed("bytes left over after the packet's fields"),
        );
        check_err(Some(V5), &[first, 3, 0, 1, 0x03], InvalidReasonCode(0x03));
        check_err(Some(V5), &[first, 1, 0], Malformed("a field runs past the end of the packet"));
    }
    // Defined codes that belong to other packets.
    check_err(Some(V5), &[0x40, 3, 0, 1, 0x92], InvalidReasonCode(0x92));
    check_err(Some(V5), &[0x62, 3, 0, 1, 0x10], InvalidReasonCode(0x10));
    check_err(
        Some(V5),
        &pkt(0x40, cat![[0, 1, 0], props(vec![0x26])]),
        Malformed("a field runs past the end of the packet"),
    );
    check_err(
        Some(V5),
        &pkt(0x40, cat![[0, 1, 0], props(vec![0x23, 0, 1])]),
        PropertyNotAllowed { id: 0x23, packet: "PUBACK" },
    );
    check_err(
        Some(V5),
        &pkt(0x70, cat![[0, 1, 0], props(cat![[0x1F], s("a"), [0x1F], s("b")])]),
        DuplicateProperty(0x1F),
    );
    check_err(
        Some(V5),
        &pkt(0x50, cat![[0, 1, 0], props(vec![]), [0]]),
        Malformed("bytes left over after the packet's fields"),
    );
}

// === SUBSCRIBE / UNSUBSCRIBE errors ===

#[test]
fn subscribe_errors() {
    use DecodeError::*;
    let v311 = |body: Vec<u8>| pkt(0x82, cat![[0, 1], body]);
    let v5 = |body: Vec<u8>| pkt(0x82, cat![[0, 1, 0], body]);
    check_err(Some(V311), &pkt(0x82, cat![[0, 0], s("a"), [0]]), ZeroPacketId);
    check_err(Some(V311), &v311(vec![]), NoTopicFilters("SUBSCRIBE"));
    check_err(Some(V5), &v5(vec![]), NoTopicFilters("SUBSCRIBE"));
    check_err(
        Some(V311),
        &v311(cat![s("a"), [3]]),
        Protocol("subscription maximum QoS 3 is reserved"),
    );
    check_err(Some(V5), &v5(cat![s("a"), [3]]), Protocol("subscription maximum QoS 3 is reserved"));
    let reserved = Malformed("reserved subscription option bits are set");
    check_err(Some(V311), &v311(cat![s("a"), [0x04]]), reserved.clone());
    check_err(Some(V311), &v311(cat![s("a"), [0x80]]), reserved.clone());
    check_err(Some(V5), &v5(cat![s("a"), [0x40]]), reserved.clone());
    check_err(Some(V5), &v5(cat![s("a"), [0x80]]), reserved);
    check_err(Some(V5), &v5(cat![s("a"), [0x30]]), Protocol("retain handling 3 is reserved"));
    check_err(
        Some(V5),
        &v5(cat![s("$share/g/a"), [0x04]]),
        Protocol("no local set on a shared subscription"),
    );
    check_err(Some(V5), &v5(cat![s([0xFF]), [0]]), InvalidUtf8);
    check_err(Some(V5), &v5(cat![s("a\0"), [0]]), NullCharacter);
    // A filter without its options byte.
    check_err(Some(V311), &v311(s("a")), Malformed("a field runs past the end of the packet"));
    for bad in [
        "",
        "a/#/b",
        "a#",
        "#/",
        "a/b#",
        "a+",
        "+a/b",
        "a/+b",
        "$share//a",
        "$share/g+/a",
        "$share/g#/a",
        "$share/g",
        "$share/g/",
        "$share/g/a#",
    ] {
        check_err(Some(V5), &v5(cat![s(bad), [0]]), InvalidTopicFilter(bad.into()));
        check_err(Some(V311), &pkt(0xA2, cat![[0, 1], s(bad)]), InvalidTopicFilter(bad.into()));
    }
    for good in ["+", "#", "/", "a//b", "+/+/#", "$SYS/#", "$share/g/#", "$share"] {
        assert!(matches!(decode(&v5(cat![s(good), [0]]), Some(V5)), Ok(Some(_))), "{good}");
    }
    // Subscription identifier: at most one, not 0; subscribe allows no other property but
    // user properties.
    let with_props = |p: Vec<u8>| pkt(0x82, cat![[0, 1], props(p), s("a"), [0]]);
    check_err(Some(V5), &with_props(vec![0x0B, 1, 0x0B, 2]), DuplicateProperty(0x0B));
    check_err(Some(V5), &with_props(vec![0x0B, 0]), InvalidPropertyValue(0x0B));
    check_err(
        Some(V5),
        &with_props(vec![0x1F, 0, 0]),
        PropertyNotAllowed { id: 0x1F, packet: "SUBSCRIBE" },
    );
}

#[test]
fn unsubscribe_errors() {
    use DecodeError::*;
    check_err(Some(V311), &pkt(0xA2, cat![[0, 0], s("a")]), ZeroPacketId);
    check_err(Some(V311), &pkt(0xA2, vec![0, 1]), NoTopicFilters("UNSUBSCRIBE"));
    check_err(Some(V5), &pkt(0xA2, vec![0, 1, 0]), NoTopicFilters("UNSUBSCRIBE"));
    check_err(
        Some(V5),
        &pkt(0xA2, cat![[0, 1], props(vec![0x0B, 1]), s("a")]),
        PropertyNotAllowed { id: 0x0B, packet: "UNSUBSCRIBE" },
    );
    check_err(Some(V5), &pkt(0xA2, cat![[0, 1, 0], s([0xC0, 0x80])]), InvalidUtf8);
}

#[test]
fn suback_unsuback_errors() {
    use DecodeError::*;
    check_err(Some(V311), &[0x90, 3, 0, 0, 0], ZeroPacketId);
    check_err(Some(V311), &[0xB0, 2, 0, 0], ZeroPacketId);
    check_err(Some(V5), &[0xB0, 4, 0, 0, 0, 0], ZeroPacketId);
    check_err(Some(V311), &[0x90, 3, 0, 1, 0x87], InvalidReasonCode(0x87));
    check_err(Some(V311), &[0x90, 3, 0, 1, 3], InvalidReasonCode(3));
    check_err(Some(V5), &[0x90, 4, 0, 1, 0, 0x11], InvalidReasonCode(0x11));
    check_err(Some(V5), &[0xB0, 4, 0, 1, 0, 0x01], InvalidReasonCode(0x01));
    check_err(Some(V311), &[0x90, 2, 0, 1], Protocol("SUBACK carries no reason code"));
    check_err(Some(V5), &[0xB0, 3, 0, 1, 0], Protocol("UNSUBACK carries no reason code"));
    check_err(
        Some(V311),
        &[0xB0, 3, 0, 1, 0],
        Malformed("bytes left over after the packet's fields"),
    );
    check_err(
        Some(V5),
        &pkt(0x90, cat![[0, 1], props(vec![0x0B, 1]), [0]]),
        PropertyNotAllowed { id: 0x0B, packet: "SUBACK" },
    );
}

#[test]
fn connack_errors() {
    use DecodeError::*;
    check_err(Some(V311), &[0x20, 2, 0, 6], InvalidReasonCode(6));
    check_err(Some(V311), &[0x20, 2, 2, 0], Malformed("CONNACK reserved flags are set"));
    check_err(
        Some(V311),
        &[0x20, 3, 0, 0, 0],
        Malformed("bytes left over after the packet's fields"),
    );
    check_err(Some(V5), &[0x20, 3, 0, 0x01, 0], InvalidReasonCode(0x01));
    check_err(Some(V5), &[0x20, 2, 0, 0], Malformed("a field runs past the end of the packet"));
    let connack = |p: Vec<u8>| pkt(0x20, cat![[0, 0], props(p)]);
    for flag in [0x24, 0x25, 0x28, 0x29, 0x2A] {
        check_err(Some(V5), &connack(vec![flag, 2]), InvalidPropertyValue(flag));
    }
    check_err(Some(V5), &connack(vec![0x21, 0, 0]), InvalidPropertyValue(0x21));
    check_err(Some(V5), &connack(vec![0x27, 0, 0, 0, 0]), InvalidPropertyValue(0x27));
    check_err(
        Some(V5),
        &connack(vec![0x17, 1]),
        PropertyNotAllowed { id: 0x17, packet: "CONNACK" },
    );
    check_err(Some(V5), &connack(vec![0x13, 0, 1, 0x13, 0, 1]), DuplicateProperty(0x13));
}

#[test]
fn control_errors() {
    use DecodeError::*;
    let trailing = Malformed("bytes left over after the packet's fields");
    check_err(Some(V5), &[0xC0, 1, 0], trailing.clone());
    check_err(Some(V5), &[0xD0, 1, 0], trailing.clone());
    check_err(Some(V311), &[0xE0, 1, 0], trailing.clone());
    check_err(Some(V5), &[0xE0, 3, 0, 0, 0], trailing);
    check_err(Some(V5), &[0xE0, 1, 0x19], InvalidReasonCode(0x19));
    check_err(Some(V5), &[0xE0, 1, 0x05], InvalidReasonCode(0x05));
    check_err(Some(V5), &[0xF0, 1, 0x04], InvalidReasonCode(0x04));
    check_err(
        Some(V5),
        &pkt(0xE0, cat![[0], props(vec![0x15, 0, 0])]),
        PropertyNotAllowed { id: 0x15, packet: "DISCONNECT" },
    );
    check_err(
        Some(V5),
        &pkt(0xF0, cat![[0x18], props(vec![0x11, 0, 0, 0, 0])]),
        PropertyNotAllowed { id: 0x11, packet: "AUTH" },
    );
    check_err(
        Some(V5),
        &pkt(0xF0, cat![[0x18], props(cat![[0x15], s("a"), [0x15], s("b")])]),
        DuplicateProperty(0x15),
    );
}

// === encoding ===

#[test]
fn encode_uses_the_short_forms_and_drops_v5_fields_for_v311() {
    let ack = Ack {
        packet_id: 1,
        reason: ReasonCode::NoMatchingSubscribers,
        properties: Properties::default(),
    };
    assert_eq!(encode(&Packet::PubAck(ack.clone()), V5), [0x40, 3, 0, 1, 0x10]);
    assert_eq!(encode(&Packet::PubAck(ack), V311), [0x40, 2, 0, 1]);
    let disconnect = Disconnect {
        reason: ReasonCode::ServerShuttingDown,
        properties: Properties { reason_string: Some("bye".into()), ..Properties::default() },
    };
    assert_eq!(encode(&Packet::Disconnect(disconnect.clone()), V311), [0xE0, 0]);
    assert_eq!(
        encode(&Packet::Disconnect(disconnect), V5),
        pkt(0xE0, cat![[0x8B], props(cat![[0x1F], s("bye")])])
    );
    let connack = ConnAck {
        session_present: false,
        code: ReasonCode::Banned,
        properties: Properties::default(),
    };
    assert_eq!(encode(&Packet::ConnAck(connack), V311), [0x20, 2, 0, 5]);
    let unsuback = UnsubAck {
        packet_id: 2,
        reasons: vec![ReasonCode::Success],
        properties: Properties::default(),
    };
    assert_eq!(encode(&Packet::UnsubAck(unsuback), V311), [0xB0, 2, 0, 2]);
    let auth = Auth { reason: ReasonCode::Success, properties: Properties::default() };
    assert_eq!(encode(&Packet::Auth(auth), V311), [0u8; 0]);
}

#[test]
fn encode_publish_matches_encode_and_publish_len() {
    let properties = Properties {
        message_expiry_interval: Some(100),
        subscription_identifiers: vec![5],
        topic_alias: Some(2),
        content_type: Some("json".into()),
        user_properties: vec![user("a", "b")],
        ..Properties::default()
    };
    let payload = Bytes::from_static(b"{}");
    for version in [V311, V5] {
        let message = Publish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: Some(42),
            properties: properties.clone(),
            payload: payload.clone(),
        };
        let outbound = OutboundPublish {
            dup: true,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b",
            packet_id: Some(42),
            properties: &properties,
            payload: &payload,
            topic_alias: Some(2),
            subscription_identifiers: &[5],
            message_expiry_interval: Some(100),
        };
        let mut buf = BytesMut::new();
        Codec::encode_publish(&outbound, version, &mut buf);
        assert_eq!(buf.to_vec(), encode(&Packet::Publish(message), version));
        assert_eq!(Codec::publish_len(&outbound, version), buf.len());
    }
}

#[test]
fn encode_publish_overrides_replace_the_shared_properties() {
    let properties = Properties {
        message_expiry_interval: Some(100),
        subscription_identifiers: vec![5],
        topic_alias: Some(2),
        ..Properties::default()
    };
    let payload = Bytes::from_static(b"x");
    let outbound = OutboundPublish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "",
        packet_id: None,
        properties: &properties,
        payload: &payload,
        topic_alias: Some(7),
        subscription_identifiers: &[1, 300],
        message_expiry_interval: None,
    };
    let mut buf = BytesMut::new();
    Codec::encode_publish(&outbound, V5, &mut buf);
    assert_eq!(Codec::publish_len(&outbound, V5), buf.len());
    let expected = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: String::new(),
        packet_id: None,
        properties: Properties {
            subscription_identifiers: vec![1, 300],
            topic_alias: Some(7),
            ..Properties::default()
        },
        payload,
    };
    assert_eq!(decode(&buf, Some(V5)), Ok(Some(Packet::Publish(expected))));
}

#[test]
fn head_reads_the_first_byte_only() {
    use super::Head;
    assert_eq!(Codec::head(&[]), None);
    // A lone first byte is enough: the rest of the packet has not arrived.
    assert_eq!(
        Codec::head(&[0x30]),
        Some(Head::Publish { qos: Some(QoS::AtMostOnce), retain: false })
    );
    assert_eq!(
        Codec::head(&[0x3B]),
        Some(Head::Publish { qos: Some(QoS::AtLeastOnce), retain: true })
    );
    assert_eq!(Codec::head(&[0x36]), Some(Head::Publish { qos: None, retain: false }));
    assert_eq!(Codec::head(&[0x40, 0x02]), Some(Head::PubAck));
    assert_eq!(Codec::head(&[0x50]), Some(Head::Other));
    assert_eq!(Codec::head(&[0x00]), Some(Head::Other));
}

#[test]
fn connect_level_is_read_before_the_connect_is_whole() {
    let connect = pkt(0x10, [s("MQTT"), vec![5, 0x02, 0, 60, 0]].concat());
    assert_eq!(Codec::connect_level(&connect[..9]), Some(5));
    assert_eq!(Codec::connect_level(&connect[..8]), None);
    assert_eq!(Codec::connect_level(&[0x20, 0x02, 0, 0]), None);
}
