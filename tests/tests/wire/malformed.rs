//! Malformed input, one rule broken per test, as raw bytes on the wire.
//!
//! For a 5.0 connection the broker must answer a malformed packet after CONNECT with a DISCONNECT
//! carrying the reason code, and a bad CONNECT with a CONNACK carrying it, then close (MQTT 5.0
//! §4.13). A 3.1.1 connection is closed without a word (3.1.1 has no DISCONNECT from the server).
//! Every test keeps a bystander ([`Healthy`]) connected through the attack and checks afterwards
//! that the broker still routes its messages.
//!
//! Where the specification names the reason code the test asserts exactly that code; where it only
//! says "MUST NOT" (so §4.13 leaves the choice between 0x81 Malformed Packet and 0x82 Protocol
//! Error), the test accepts both, and the row says so.

use anyhow::{Context, Result, ensure};
use gateway_tests::Gridmq;
use gateway_tests::raw::{
    Ack, Healthy, PINGREQ, PINGRESP, QUIET, RawClient, WAIT, binary, connack_properties, connect,
    connect_v3, connect_v5, disconnect_reason, expect_connack_refusal, expect_disconnect, packet,
    parse_ack_v5, parse_publish, properties, publish_v3, publish_v5, publish_v5_raw,
    remaining_length, subscribe_v3, subscribe_v5, unsubscribe_v5, utf8,
};

/// Either code is acceptable where the specification does not pick one (§4.13).
const MALFORMED_OR_PROTOCOL: [u8; 2] = [0x81, 0x82];

/// Concatenates byte pieces.
fn cat(pieces: &[&[u8]]) -> Vec<u8> {
    pieces.concat()
}

/// A 5.0 SUBSCRIBE whose filter field is `filter_field` verbatim (length prefix included).
fn subscribe_v5_raw(
    first_byte: u8,
    packet_id: u16,
    props: &[u8],
    filter_field: &[u8],
    options: u8,
) -> Vec<u8> {
    packet(
        first_byte,
        &cat(&[&packet_id.to_be_bytes(), &properties(props), filter_field, &[options]]),
    )
}

/// Connects a 5.0 client, sends `attack`, and checks the broker answers DISCONNECT with a reason
/// code in `allowed`, closes, and still serves the bystander.
async fn v5_disconnects(attack: Vec<u8>, allowed: &[u8]) -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "attacker").await?;
    client.send(&attack).await?;
    expect_disconnect(&mut client, allowed)
        .await
        .with_context(|| format!("after sending {attack:02X?}"))?;
    healthy.check().await
}

/// Connects a 3.1.1 client, sends `attack`, and checks the broker closes without sending a byte
/// and still serves the bystander.
async fn v3_closes(attack: Vec<u8>) -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect_v3(broker.addr, "attacker").await?;
    client.send(&attack).await?;
    client.expect_closed(WAIT).await.with_context(|| format!("after sending {attack:02X?}"))?;
    healthy.check().await
}

/// Sends `connect` as the first packet and checks the broker answers CONNACK with a reason code
/// in `allowed`, closes, and still serves the bystander.
async fn v5_connect_refused(connect: Vec<u8>, allowed: &[u8]) -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    client.send(&connect).await?;
    expect_connack_refusal(&mut client, allowed)
        .await
        .with_context(|| format!("after sending {connect:02X?}"))?;
    healthy.check().await
}

/// Sends `first` as the first packet and checks the broker answers exactly `answer` (nothing
/// when empty), closes, and still serves the bystander.
async fn first_packet_answered(first: Vec<u8>, answer: &[u8]) -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    client.send(&first).await?;
    let context = || format!("after sending {first:02X?}");
    if !answer.is_empty() {
        let got = client.expect_packet(WAIT).await.with_context(context)?;
        ensure!(got == answer, "expected {answer:02X?}, got {got:02X?} (sent {first:02X?})");
    }
    client.expect_closed(WAIT).await.with_context(context)?;
    healthy.check().await
}

/// One `#[tokio::test]` per row; the test's name is the row's name.
macro_rules! rows {
    ($check:ident { $($(#[$doc:meta])* $name:ident: $input:expr $(=> $expect:expr)?;)* }) => {$(
        $(#[$doc])*
        #[tokio::test]
        async fn $name() -> Result<()> {
            $check($input $(, &$expect)?).await
        }
    )*};
}

// === 5.0, after CONNECT: DISCONNECT with a reason code, then close ===

rows!(v5_disconnects {
    /// §2.1.3: PUBREL flags must be 0010; anything else is a Malformed Packet.
    pubrel_reserved_flags_not_0010: vec![0x60, 0x02, 0x00, 0x01] => [0x81];
    /// §2.1.3: PUBACK flags are reserved 0000.
    puback_reserved_flags_set: vec![0x41, 0x02, 0x00, 0x01] => [0x81];
    /// §2.1.3: SUBSCRIBE flags must be 0010.
    subscribe_reserved_flags_not_0010: subscribe_v5_raw(0x80, 1, &[], &utf8("a/b"), 0x00) => [0x81];
    /// §2.1.3: UNSUBSCRIBE flags must be 0010.
    unsubscribe_reserved_flags_not_0010: {
        let mut p = unsubscribe_v5(1, "a/b");
        p[0] = 0xA0;
        p
    } => [0x81];
    /// §2.1.3: PINGREQ flags are reserved 0000.
    pingreq_with_flags: vec![0xC1, 0x00] => [0x81];
    /// §2.1.3: DISCONNECT flags are reserved 0000.
    disconnect_with_flags: vec![0xE2, 0x00] => [0x81];
    /// §2.1.1: packet type 0 is reserved.
    reserved_packet_type_0: vec![0x00, 0x00] => MALFORMED_OR_PROTOCOL;
    /// §3.3.1.2: QoS 3 in PUBLISH is a Malformed Packet.
    publish_qos_3: publish_v5_raw(0x36, &utf8("a/b"), 1, &[], b"x") => [0x81];
    /// §3.3.1.1 [MQTT-3.3.1-2]: DUP must be 0 for QoS 0 (code not named by the spec).
    publish_qos0_with_dup: publish_v5_raw(0x38, &utf8("a/b"), 0, &[], b"x") => MALFORMED_OR_PROTOCOL;
    /// §3.3.2.3.2: Payload Format Indicator more than once is a Protocol Error.
    publish_duplicate_property: publish_v5("a/b", 0, 0, &[0x01, 0x00, 0x01, 0x00], b"x") => [0x82];
    /// §3.3.2.3.3: Message Expiry Interval more than once is a Protocol Error.
    publish_duplicate_message_expiry: publish_v5(
        "a/b", 0, 0, &[0x02, 0, 0, 0, 10, 0x02, 0, 0, 0, 10], b"x") => [0x82];
    /// §2.2.2.2: an identifier not valid for the packet type is a Malformed Packet (0x04 is
    /// defined for no packet).
    publish_unknown_property: publish_v5("a/b", 0, 0, &[0x04, 0x00], b"x") => [0x81];
    /// §2.2.2.2: Session Expiry Interval (0x11) is not valid in PUBLISH.
    publish_property_not_allowed: publish_v5("a/b", 0, 0, &[0x11, 0, 0, 0, 10], b"x") => [0x81];
    /// §2.2.2.2: Payload Format Indicator (0x01) is not valid in SUBSCRIBE.
    subscribe_property_not_allowed: subscribe_v5_raw(0x82, 1, &[0x01, 0x00], &utf8("a/b"), 0x00) => [0x81];
    /// §2.2.2.2: Reason String (0x1F) is valid in a client's DISCONNECT; Topic Alias (0x23) is not.
    disconnect_property_not_allowed: packet(0xE0, &[0x00, 0x03, 0x23, 0x00, 0x01]) => [0x81];
    /// §1.5.4: ill-formed UTF-8 (0xFF) in a topic name is a Malformed Packet.
    publish_topic_invalid_utf8: publish_v5_raw(0x30, &binary(b"a/\xFF"), 0, &[], b"x") => [0x81];
    /// §1.5.4: an encoded UTF-16 surrogate (U+D800) is ill-formed UTF-8.
    publish_topic_utf16_surrogate: publish_v5_raw(0x30, &binary(b"a/\xED\xA0\x80"), 0, &[], b"x") => [0x81];
    /// §1.5.4: an overlong encoding ('/' as C0 AF) is ill-formed UTF-8.
    publish_topic_overlong_utf8: publish_v5_raw(0x30, &binary(b"a\xC0\xAF"), 0, &[], b"x") => [0x81];
    /// §1.5.4 [MQTT-1.5.4-2]: U+0000 in a string is a Malformed Packet.
    publish_topic_nul: publish_v5_raw(0x30, &binary(b"a/\x00b"), 0, &[], b"x") => [0x81];
    /// §1.5.4: ill-formed UTF-8 in a topic filter is a Malformed Packet.
    subscribe_filter_invalid_utf8: subscribe_v5_raw(0x82, 1, &[], &binary(b"a/\xFF"), 0x00) => [0x81];
    /// §1.5.4: U+0000 in a topic filter is a Malformed Packet.
    subscribe_filter_nul: subscribe_v5_raw(0x82, 1, &[], &binary(b"a/\x00"), 0x00) => [0x81];
    /// §3.3.2.1 [MQTT-3.3.2-2]: no wildcard in a topic name; 0x90 Topic Name invalid.
    publish_topic_plus_wildcard: publish_v5("a/+/b", 0, 0, &[], b"x") => [0x90];
    /// §3.3.2.1 [MQTT-3.3.2-2]: no wildcard in a topic name; 0x90 Topic Name invalid.
    publish_topic_hash_wildcard: publish_v5("a/#", 0, 0, &[], b"x") => [0x90];
    /// §2.2.1 [MQTT-2.2.1-3]: a QoS 1 PUBLISH needs a non-zero packet id (code not named).
    publish_qos1_packet_id_0: publish_v5("a/b", 1, 0, &[], b"x") => MALFORMED_OR_PROTOCOL;
    /// §2.2.1 [MQTT-2.2.1-3]: a QoS 2 PUBLISH needs a non-zero packet id (code not named).
    publish_qos2_packet_id_0: publish_v5("a/b", 2, 0, &[], b"x") => MALFORMED_OR_PROTOCOL;
    /// §2.2.1 [MQTT-2.2.1-3]: SUBSCRIBE needs a non-zero packet id (code not named).
    subscribe_packet_id_0: subscribe_v5(0, "a/b", 0x00) => MALFORMED_OR_PROTOCOL;
    /// §2.2.1 [MQTT-2.2.1-3]: UNSUBSCRIBE needs a non-zero packet id (code not named).
    unsubscribe_packet_id_0: unsubscribe_v5(0, "a/b") => MALFORMED_OR_PROTOCOL;
    /// §3.8.3: a SUBSCRIBE with no payload is a Protocol Error.
    subscribe_without_filters: packet(0x82, &[0x00, 0x01, 0x00]) => [0x82];
    /// §3.10.3: an UNSUBSCRIBE with no payload is a Protocol Error.
    unsubscribe_without_filters: packet(0xA2, &[0x00, 0x01, 0x00]) => [0x82];
    /// §3.8.3.1 [MQTT-3.8.3-5]: reserved bits 6–7 of the subscription options: Malformed Packet.
    subscribe_options_reserved_bits: subscribe_v5(1, "a/b", 0xC0) => [0x81];
    /// §3.8.3.1: Maximum QoS 3 is a Protocol Error.
    subscribe_options_qos_3: subscribe_v5(1, "a/b", 0x03) => [0x82];
    /// §3.8.3.1: Retain Handling 3 is a Protocol Error.
    subscribe_options_retain_handling_3: subscribe_v5(1, "a/b", 0x30) => [0x82];
    /// §1.5.5: a Variable Byte Integer has at most 4 bytes (value 0 so far: no size limit applies).
    publish_remaining_length_five_bytes: vec![0x30, 0x80, 0x80, 0x80, 0x80, 0x01] => [0x81];
    /// §1.5.5: the same for PINGREQ.
    pingreq_remaining_length_five_bytes: vec![0xC0, 0x80, 0x80, 0x80, 0x80, 0x00] => [0x81];
    /// §2.2.2.1: a property length of 10 with 2 bytes left in the packet.
    property_length_overruns_packet: packet(0x30, &cat(&[&utf8("a/b"), &[0x0A, 0x01, 0x00]])) => [0x81];
    /// §2.2.2: Message Expiry Interval (4 bytes) inside a property block announced as 2 bytes.
    property_overruns_property_length: packet(
        0x30, &cat(&[&utf8("a/b"), &[0x02, 0x02, 0x00], b"xyzw"])) => [0x81];
    /// §3.12.3: PINGREQ has no variable header or payload; a trailing byte is malformed.
    pingreq_trailing_byte: vec![0xC0, 0x01, 0x00] => [0x81];
    /// §3.4.2.2: a byte after PUBACK's (empty) property block is malformed.
    puback_trailing_byte: vec![0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0xFF] => [0x81];
    /// §3.14.2.2: a byte after DISCONNECT's (empty) property block is malformed.
    disconnect_trailing_byte: vec![0xE0, 0x03, 0x00, 0x00, 0xFF] => [0x81];
    /// §3.8.3: a SUBSCRIBE whose payload ends with one stray byte (half a filter length).
    subscribe_trailing_byte: {
        let mut body = subscribe_v5(1, "a/b", 0x00)[2..].to_vec();
        body.push(0x00);
        packet(0x82, &body)
    } => [0x81];
    /// §3.3.2.3.4 [MQTT-3.3.2-8]: Topic Alias 0 is not permitted. The spec names no code (0x94's
    /// description covers only "greater than the maximum"), so 0x82 or 0x94.
    topic_alias_zero: publish_v5("a/b", 0, 0, &[0x23, 0x00, 0x00], b"x") => [0x82, 0x94];
    /// §3.3.2.3.4 [MQTT-3.3.2-9]: above the broker's Topic Alias Maximum (10): 0x94.
    topic_alias_above_maximum: publish_v5("a/b", 0, 0, &[0x23, 0x00, 0x0B], b"x") => [0x94];
    /// §3.3.4: an empty topic name without a Topic Alias is a Protocol Error.
    publish_empty_topic_without_alias: publish_v5("", 0, 0, &[], b"x") => [0x82];
    /// §3.3.2.3.4: an empty topic name with an alias that has no mapping (0x82, or 0x94).
    publish_empty_topic_unmapped_alias: publish_v5("", 0, 0, &[0x23, 0x00, 0x05], b"x") => [0x82, 0x94];
    /// §3.1 [MQTT-3.1.0-2]: a second CONNECT is a Protocol Error.
    second_connect: connect_v5("attacker") => [0x82];
    /// §4.12: AUTH when CONNECT carried no Authentication Method is a Protocol Error.
    auth_without_authentication_method: vec![0xF0, 0x00] => [0x82];
    /// §1.5.4: ill-formed UTF-8 in an UNSUBSCRIBE topic filter is a Malformed Packet.
    unsubscribe_filter_invalid_utf8: packet(0xA2, &cat(&[&[0x00, 0x01, 0x00], &binary(b"a/\xFF")])) => [0x81];
    /// §3.8.2.1.2: a Subscription Identifier of 0 is a Protocol Error.
    subscribe_subscription_identifier_zero: subscribe_v5_raw(0x82, 1, &[0x0B, 0x00], &utf8("a/b"), 0x00) => [0x82];
    /// §3.8.2.1.2: the Subscription Identifier more than once is a Protocol Error.
    subscribe_duplicate_subscription_identifier: subscribe_v5_raw(
        0x82, 1, &[0x0B, 0x01, 0x0B, 0x02], &utf8("a/b"), 0x00) => [0x82];
    /// §3.3.4 [MQTT-3.3.4-6]: a client's PUBLISH must not carry a Subscription Identifier (code
    /// not named).
    publish_with_subscription_identifier: publish_v5("a/b", 0, 0, &[0x0B, 0x01], b"x") => MALFORMED_OR_PROTOCOL;
    /// §3.8.3.1 [MQTT-3.8.3-4]: No Local on a shared subscription is a Protocol Error.
    subscribe_shared_with_no_local: subscribe_v5(1, "$share/g/a/b", 0x04) => [0x82];
});

// === 3.1.1, after CONNECT: the connection is closed, nothing sent ===

rows!(v3_closes {
    /// 3.1.1 §2.2.2 [MQTT-2.2.2-2]: PUBREL flags must be 0010.
    v3_pubrel_reserved_flags_not_0010: vec![0x60, 0x02, 0x00, 0x01];
    /// 3.1.1 §2.2.2: PINGREQ flags are reserved 0000.
    v3_pingreq_with_flags: vec![0xC1, 0x00];
    /// 3.1.1 §3.3.1.2 [MQTT-3.3.1-4]: QoS 3 in PUBLISH.
    v3_publish_qos_3: {
        let mut p = publish_v3("a/b", 1, 1, b"x");
        p[0] = 0x36;
        p
    };
    /// 3.1.1 §3.3.1.1 [MQTT-3.3.1-2]: DUP set on QoS 0.
    v3_publish_qos0_with_dup: {
        let mut p = publish_v3("a/b", 0, 0, b"x");
        p[0] = 0x38;
        p
    };
    /// 3.1.1 §1.5.3 [MQTT-1.5.3-1]: ill-formed UTF-8 in a topic name.
    v3_publish_topic_invalid_utf8: packet(0x30, &cat(&[&binary(b"a/\xFF"), b"x"]));
    /// 3.1.1 §1.5.3 [MQTT-1.5.3-2]: U+0000 in a topic name.
    v3_publish_topic_nul: packet(0x30, &cat(&[&binary(b"a/\x00b"), b"x"]));
    /// 3.1.1 §3.3.2.1 [MQTT-3.3.2-2]: a wildcard in a topic name.
    v3_publish_topic_wildcard: publish_v3("a/+", 0, 0, b"x");
    /// 3.1.1 §4.7.3 [MQTT-4.7.3-1]: a topic name must be at least one character.
    v3_publish_empty_topic: publish_v3("", 0, 0, b"x");
    /// 3.1.1 §2.3.1 [MQTT-2.3.1-1]: packet id 0 in a QoS 1 PUBLISH.
    v3_publish_qos1_packet_id_0: publish_v3("a/b", 1, 0, b"x");
    /// 3.1.1 §3.8.3 [MQTT-3.8.3-3]: a SUBSCRIBE with no payload.
    v3_subscribe_without_filters: packet(0x82, &[0x00, 0x01]);
    /// 3.1.1 §3.10.3 [MQTT-3.10.3-2]: an UNSUBSCRIBE with no payload.
    v3_unsubscribe_without_filters: packet(0xA2, &[0x00, 0x01]);
    /// 3.1.1 §3.8.3.1 [MQTT-3-8.3-4]: reserved bits of the requested QoS byte (0x04 is 5.0's
    /// No Local, reserved in 3.1.1).
    v3_subscribe_reserved_bits: subscribe_v3(1, "a/b", 0x04);
    /// 3.1.1 §3.8.3.1 [MQTT-3-8.3-4]: requested QoS 3.
    v3_subscribe_qos_3: subscribe_v3(1, "a/b", 0x03);
    /// 3.1.1 §2.2.1: packet type 15 (AUTH in 5.0) is reserved in 3.1.1.
    v3_auth_packet: vec![0xF0, 0x00];
    /// 3.1.1 §3.1 [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
    v3_second_connect: connect_v3("attacker");
    /// 3.1.1 §2.2.3: a remaining length of more than 4 bytes.
    v3_remaining_length_five_bytes: vec![0x30, 0x80, 0x80, 0x80, 0x80, 0x01];
    /// 3.1.1 §3.12: PINGREQ with a trailing byte.
    v3_pingreq_trailing_byte: vec![0xC0, 0x01, 0x00];
});

// === 5.0 CONNECT: CONNACK with a reason code, then close ===

rows!(v5_connect_refused {
    /// §3.1.2.3 [MQTT-3.1.2-3]: the reserved connect flag set is a Malformed Packet.
    connect_reserved_flag: connect(5, 0x03, 60, Some(&[]), &utf8("attacker")) => [0x81];
    /// §3.1.2.6 [MQTT-3.1.2-11]: Will QoS 1 without the Will Flag (code not named).
    connect_will_qos_without_will_flag: connect(5, 0x0A, 60, Some(&[]), &utf8("attacker"))
        => MALFORMED_OR_PROTOCOL;
    /// §3.1.2.7 [MQTT-3.1.2-13]: Will Retain without the Will Flag (code not named).
    connect_will_retain_without_will_flag: connect(5, 0x22, 60, Some(&[]), &utf8("attacker"))
        => MALFORMED_OR_PROTOCOL;
    /// §3.1.2.6: Will QoS 3 is a Malformed Packet.
    connect_will_qos_3: connect(5, 0x1E, 60, Some(&[]),
        &cat(&[&utf8("attacker"), &[0x00], &utf8("will/t"), &binary(b"w")])) => [0x81];
    /// §3.1.3: the Will Flag set but no will properties, topic or payload.
    connect_will_flag_without_will_fields: connect(5, 0x06, 60, Some(&[]), &utf8("attacker")) => [0x81];
    /// §3.1.3.5: the User Name Flag set but no user name.
    connect_username_flag_without_username: connect(5, 0x82, 60, Some(&[]), &utf8("attacker")) => [0x81];
    /// §3.1.2.11.2: Session Expiry Interval more than once is a Protocol Error.
    connect_duplicate_property: connect(5, 0x02, 60,
        Some(&[0x11, 0, 0, 0, 10, 0x11, 0, 0, 0, 10]), &utf8("attacker")) => [0x82];
    /// §2.2.2.2: identifier 0x04 is defined for no packet: Malformed Packet.
    connect_unknown_property: connect(5, 0x02, 60, Some(&[0x04, 0x00]), &utf8("attacker")) => [0x81];
    /// §2.2.2.2: Topic Alias (0x23) is not valid in CONNECT.
    connect_property_not_allowed: connect(5, 0x02, 60, Some(&[0x23, 0x00, 0x01]), &utf8("attacker")) => [0x81];
    /// §2.2.2.2: Topic Alias (0x23) is not valid among the will properties either.
    connect_will_property_not_allowed: connect(5, 0x06, 60, Some(&[]),
        &cat(&[&utf8("attacker"), &properties(&[0x23, 0x00, 0x01]), &utf8("will/t"), &binary(b"w")])) => [0x81];
    /// §3.1.2.11.3: Receive Maximum 0 is a Protocol Error.
    connect_receive_maximum_zero: connect(5, 0x02, 60, Some(&[0x21, 0x00, 0x00]), &utf8("attacker")) => [0x82];
    /// §3.1.2.11.4: Maximum Packet Size 0 is a Protocol Error.
    connect_maximum_packet_size_zero: connect(5, 0x02, 60,
        Some(&[0x27, 0x00, 0x00, 0x00, 0x00]), &utf8("attacker")) => [0x82];
    /// §1.5.4: ill-formed UTF-8 in the client identifier.
    connect_client_id_invalid_utf8: connect(5, 0x02, 60, Some(&[]), &binary(b"a\xFFb")) => [0x81];
    /// §1.5.4: U+0000 in the client identifier.
    connect_client_id_nul: connect(5, 0x02, 60, Some(&[]), &binary(b"a\x00b")) => [0x81];
    /// §3.1.3: a byte after the last payload field.
    connect_trailing_byte: connect(5, 0x02, 60, Some(&[]), &cat(&[&utf8("attacker"), &[0x00]])) => [0x81];
    /// §2.2.2.1: a property length of 32 in a CONNECT with 3 bytes left.
    connect_property_length_overrun: packet(0x10,
        &cat(&[&utf8("MQTT"), &[0x05, 0x02, 0x00, 0x3C, 0x20], &utf8("x")])) => [0x81];
});

// === First packets: unknown protocol levels, 3.1.1 CONNECT errors, non-CONNECT ===

rows!(first_packet_answered {
    /// §3.1.2.2: level 6 is unknown; a 3.1.1-style CONNACK, return code 0x01, then close.
    connect_protocol_level_6: connect(6, 0x02, 60, Some(&[]), &utf8("attacker")) => [0x20, 0x02, 0x00, 0x01];
    /// §3.1.2.2: level 3 with protocol name "MQTT" is not MQTT 3.1 (that was "MQIsdp").
    connect_protocol_level_3: connect(3, 0x02, 60, None, &utf8("attacker")) => [0x20, 0x02, 0x00, 0x01];
    /// §3.1.2.2: level 0.
    connect_protocol_level_0: connect(0, 0x02, 60, None, &utf8("attacker")) => [0x20, 0x02, 0x00, 0x01];
    /// 3.1.1 §3.1.2.3 [MQTT-3.1.2-3]: reserved flag set: disconnect, no CONNACK.
    v3_connect_reserved_flag: connect(4, 0x03, 60, None, &utf8("attacker")) => [];
    /// 3.1.1 §3.1.2.6 [MQTT-3.1.2-13]: Will QoS without the Will Flag: disconnect, no CONNACK.
    v3_connect_will_qos_without_will_flag: connect(4, 0x0A, 60, None, &utf8("attacker")) => [];
    /// 3.1.1 §3.1.2.6: Will QoS 3.
    v3_connect_will_qos_3: connect(4, 0x1E, 60, None,
        &cat(&[&utf8("attacker"), &utf8("will/t"), &binary(b"w")])) => [];
    /// 3.1.1 §3.1.2.9 [MQTT-3.1.2-22]: Password Flag without User Name Flag.
    v3_connect_password_without_username: connect(4, 0x42, 60, None,
        &cat(&[&utf8("attacker"), &binary(b"secret")])) => [];
    /// 3.1.1 §3.1.3.1 [MQTT-3.1.3-8]: empty client id with CleanSession 0: return code 0x02.
    v3_connect_empty_client_id_persistent: connect(4, 0x00, 60, None, &utf8("")) => [0x20, 0x02, 0x00, 0x02];
    /// 3.1.1 §1.5.3: ill-formed UTF-8 in the client identifier.
    v3_connect_client_id_invalid_utf8: connect(4, 0x02, 60, None, &binary(b"a\xFFb")) => [];
    /// §3.1 [MQTT-3.1.0-1]: the first packet must be CONNECT; PINGREQ first is closed.
    first_packet_pingreq: PINGREQ.to_vec() => [];
    /// §3.1 [MQTT-3.1.0-1]: PUBLISH first is closed.
    first_packet_publish: publish_v3("a/b", 0, 0, b"x") => [];
    /// §3.1 [MQTT-3.1.0-1]: SUBSCRIBE first is closed.
    first_packet_subscribe: subscribe_v3(1, "a/b", 0) => [];
    /// §3.1 [MQTT-3.1.0-1]: DISCONNECT first is closed.
    first_packet_disconnect: vec![0xE0, 0x00] => [];
    /// §3.1 [MQTT-3.1.0-1]: AUTH first is closed.
    first_packet_auth: vec![0xF0, 0x00] => [];
    /// Not MQTT at all: an HTTP request.
    first_packet_http_request: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec() => [];
});

// === Tests that need more than one packet or a config ===

/// A PUBLISH of exactly `total` bytes on the wire (QoS 1, packet id `packet_id`, no properties).
fn publish_of_size(topic: &str, packet_id: u16, total: usize) -> Vec<u8> {
    let mut payload_len = total.saturating_sub(publish_v5(topic, 1, packet_id, &[], &[]).len());
    loop {
        let publish = publish_v5(topic, 1, packet_id, &[], &vec![b'p'; payload_len]);
        match publish.len().cmp(&total) {
            std::cmp::Ordering::Equal => return publish,
            std::cmp::Ordering::Greater => payload_len -= 1,
            std::cmp::Ordering::Less => payload_len += 1,
        }
    }
}

/// The value of property `id` in a 5.0 CONNACK.
fn connack_property(connack: &[u8], id: u8) -> Result<Option<Vec<u8>>> {
    Ok(connack_properties(connack)?.into_iter().find(|(p, _)| *p == id).map(|(_, v)| v))
}

/// §3.2.2.3.6: the broker advertises `max_packet_size`, accepts a packet of exactly that size
/// (fixed header included) and answers one byte more with DISCONNECT 0x95.
#[tokio::test]
async fn packet_too_large() -> Result<()> {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_packet_size = 1024\n");
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, connack) = RawClient::connect_v5(broker.addr, "attacker").await?;
    let advertised = connack_property(&connack, 0x27)?;
    ensure!(
        advertised.as_deref() == Some(&[0x00, 0x00, 0x04, 0x00][..]),
        "CONNACK must carry Maximum Packet Size 1024 (27 00 00 04 00): {connack:02X?}"
    );

    let fits = publish_of_size("healthy/big", 1, 1024);
    client.send(&fits).await?;
    let puback = client.expect_packet(WAIT).await.context("PUBACK for the 1024-byte PUBLISH")?;
    let ack = parse_ack_v5(&puback)?;
    ensure!(
        ack == Ack { first_byte: 0x40, packet_id: 1, reasons: vec![0x00] },
        "expected PUBACK id 1 success for the 1024-byte PUBLISH, got {puback:02X?}"
    );
    let payload = parse_publish(&fits, true)?.payload;
    healthy.expect_message("healthy/big", &[], &payload).await?;

    client.send(&publish_of_size("healthy/big", 2, 1025)).await?;
    expect_disconnect(&mut client, &[0x95]).await.context("after a 1025-byte PUBLISH")?;
    healthy.expect_no_message().await?;
    healthy.check().await
}

/// §3.2.2.3.6: a fixed header announcing 2 MB against a 1024-byte limit is refused (0x95) at once,
/// without waiting for (or buffering) the body.
#[tokio::test]
async fn packet_too_large_announced_in_header() -> Result<()> {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_packet_size = 1024\n");
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "attacker").await?;
    client.send(&cat(&[&[0x30], &remaining_length(2_000_000), &utf8("a/b"), &[0x00]])).await?;
    expect_disconnect(&mut client, &[0x95]).await?;
    healthy.check().await
}

/// The default limit is 1 MiB (1048576): one byte more is refused.
#[tokio::test]
async fn packet_too_large_default_limit() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "attacker").await?;
    client.send(&cat(&[&[0x30], &remaining_length(1_048_576), &utf8("a/b"), &[0x00]])).await?;
    expect_disconnect(&mut client, &[0x95]).await?;
    healthy.check().await
}

/// §3.1 / §4.13: a CONNECT larger than max_packet_size gets CONNACK 0x95.
#[tokio::test]
async fn connect_too_large() -> Result<()> {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_packet_size = 1024\n");
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect(broker.addr).await?;
    // A user property padded so that the whole CONNECT is 1025 bytes.
    let user_property = |len: usize| cat(&[&[0x26], &utf8("k"), &utf8(&"v".repeat(len))]);
    let big_connect = |len| connect(5, 0x02, 60, Some(&user_property(len)), &utf8("attacker"));
    let mut len = 1025 - big_connect(0).len();
    while big_connect(len).len() > 1025 {
        len -= 1;
    }
    let big = big_connect(len);
    ensure!(big.len() == 1025, "test bug: CONNECT is {} bytes", big.len());
    client.send(&big).await?;
    expect_connack_refusal(&mut client, &[0x95]).await?;
    healthy.check().await
}

/// 3.1.1 has no DISCONNECT: a PUBLISH over max_packet_size closes the connection silently.
#[tokio::test]
async fn v3_packet_too_large() -> Result<()> {
    let broker = Gridmq::start_with_config("[mqtt]\nmax_packet_size = 1024\n");
    let mut healthy = Healthy::start(broker.addr).await?;
    let mut client = RawClient::connect_v3(broker.addr, "attacker").await?;
    let mut body = utf8("healthy/big");
    body.extend([0x00, 0x01]);
    let total = |body_len: usize| 1 + remaining_length(body_len).len() + body_len;
    while total(body.len()) < 1025 {
        body.push(b'p');
    }
    client.send(&packet(0x32, &body)).await?;
    client.expect_closed(WAIT).await?;
    healthy.expect_no_message().await?;
    healthy.check().await
}

/// §3.3.4: with receive_maximum = 2, the broker advertises 2 and answers a third unacknowledged
/// QoS 2 PUBLISH (no PUBREL sent) with DISCONNECT 0x93.
#[tokio::test]
async fn receive_maximum_exceeded() -> Result<()> {
    let broker = Gridmq::start_with_config("[mqtt]\nreceive_maximum = 2\n");
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, connack) = RawClient::connect_v5(broker.addr, "attacker").await?;
    let advertised = connack_property(&connack, 0x21)?;
    ensure!(
        advertised.as_deref() == Some(&[0x00, 0x02][..]),
        "CONNACK must carry Receive Maximum 2 (21 00 02): {connack:02X?}"
    );
    for id in 1..=2u16 {
        client.send(&publish_v5("inflight/t", 2, id, &[], b"x")).await?;
        let pubrec = client.expect_packet(WAIT).await?;
        let ack = parse_ack_v5(&pubrec)?;
        // 0x10 "No matching subscribers" is a success code too.
        ensure!(
            ack.first_byte == 0x50
                && ack.packet_id == id
                && matches!(ack.reasons[..], [0x00] | [0x10]),
            "expected PUBREC id {id} success, got {pubrec:02X?}"
        );
    }
    client.send(&publish_v5("inflight/t", 2, 3, &[], b"x")).await?;
    expect_disconnect(&mut client, &[0x93]).await?;
    healthy.check().await
}

/// §3.3.2.3.4: the broker advertises Topic Alias Maximum 10 and accepts alias 10: set with a
/// topic, then used with an empty topic; subscribers get the full topic name.
#[tokio::test]
async fn topic_alias_at_maximum_is_accepted() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, connack) = RawClient::connect_v5(broker.addr, "aliaser").await?;
    let advertised = connack_property(&connack, 0x22)?;
    ensure!(
        advertised.as_deref() == Some(&[0x00, 0x0A][..]),
        "CONNACK must carry Topic Alias Maximum 10 (22 00 0A): {connack:02X?}"
    );
    client.send(&publish_v5("healthy/alias", 0, 0, &[0x23, 0x00, 0x0A], b"one")).await?;
    healthy.expect_message("healthy/alias", &[], b"one").await?;
    client.send(&publish_v5("", 0, 0, &[0x23, 0x00, 0x0A], b"two")).await?;
    healthy.expect_message("healthy/alias", &[], b"two").await?;
    client.send(&PINGREQ).await?;
    let pong = client.expect_packet(WAIT).await?;
    ensure!(pong == PINGRESP, "expected PINGRESP, got {pong:02X?}");
    healthy.check().await
}

/// §3.3.2.3.2: Payload Format Indicator 1 with a payload that is not UTF-8: PUBACK 0x99 for QoS 1,
/// the message is not delivered, the connection stays up; a valid UTF-8 one goes through with
/// its indicator.
#[tokio::test]
async fn payload_format_invalid() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "attacker").await?;
    client.send(&publish_v5("healthy/pfi", 1, 7, &[0x01, 0x01], b"\xFF\xFE")).await?;
    let puback = client.expect_packet(WAIT).await?;
    let ack = parse_ack_v5(&puback)?;
    ensure!(
        ack == Ack { first_byte: 0x40, packet_id: 7, reasons: vec![0x99] },
        "expected PUBACK id 7 reason 0x99, got {puback:02X?}"
    );
    healthy.expect_no_message().await?;

    client.send(&publish_v5("healthy/pfi", 1, 8, &[0x01, 0x01], "héllo".as_bytes())).await?;
    let puback = client.expect_packet(WAIT).await?;
    let ack = parse_ack_v5(&puback)?;
    ensure!(
        ack == Ack { first_byte: 0x40, packet_id: 8, reasons: vec![0x00] },
        "expected PUBACK id 8 success, got {puback:02X?}"
    );
    healthy.expect_message("healthy/pfi", &[0x01, 0x01], "héllo".as_bytes()).await?;
    healthy.check().await
}

/// §3.5.2.1: the same for QoS 2: PUBREC 0x99, the message is not delivered, and since the
/// PUBREC carries an error code the exchange ends there (a PUBREL for it gets PUBCOMP 0x92).
#[tokio::test]
async fn payload_format_invalid_qos2() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "attacker").await?;
    client.send(&publish_v5("healthy/pfi", 2, 7, &[0x01, 0x01], b"\xC3\x28")).await?;
    let pubrec = client.expect_packet(WAIT).await?;
    let ack = parse_ack_v5(&pubrec)?;
    ensure!(
        ack == Ack { first_byte: 0x50, packet_id: 7, reasons: vec![0x99] },
        "expected PUBREC id 7 reason 0x99, got {pubrec:02X?}"
    );
    healthy.expect_no_message().await?;
    client.send(&[0x62, 0x02, 0x00, 0x07]).await?;
    let pubcomp = client.expect_packet(WAIT).await?;
    let ack = parse_ack_v5(&pubcomp)?;
    ensure!(
        ack == Ack { first_byte: 0x70, packet_id: 7, reasons: vec![0x92] },
        "expected PUBCOMP id 7 reason 0x92 (Packet Identifier not found), got {pubcomp:02X?}"
    );
    healthy.expect_no_message().await?;
    healthy.check().await
}

/// §4.7.1: a filter with '#' not last is invalid: the broker either refuses that filter with
/// SUBACK 0x8F (and keeps the connection) or disconnects (0x81, 0x82 or 0x8F).
async fn invalid_filter(filter: &str) -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "attacker").await?;
    client.send(&subscribe_v5(1, filter, 0x00)).await?;
    let answer = client.expect_packet(WAIT).await?;
    if answer[0] == 0xE0 {
        let reason = disconnect_reason(&answer)?;
        ensure!(matches!(reason, 0x81 | 0x82 | 0x8F), "unexpected DISCONNECT {answer:02X?}");
        client.expect_closed(WAIT).await?;
    } else {
        let ack = parse_ack_v5(&answer)?;
        ensure!(
            ack == Ack { first_byte: 0x90, packet_id: 1, reasons: vec![0x8F] },
            "expected SUBACK id 1 reason 0x8F or a DISCONNECT, got {answer:02X?}"
        );
        client.send(&PINGREQ).await?;
        let pong = client.expect_packet(WAIT).await?;
        ensure!(pong == PINGRESP, "expected PINGRESP, got {pong:02X?}");
    }
    healthy.check().await
}

/// §4.7.1.2 [MQTT-4.7.1-1]: '#' must be last.
#[tokio::test]
async fn subscribe_filter_hash_not_last() -> Result<()> {
    invalid_filter("a/#/b").await
}

/// §4.7.1.3 [MQTT-4.7.1-2]: '+' must occupy a whole level.
#[tokio::test]
async fn subscribe_filter_plus_inside_level() -> Result<()> {
    invalid_filter("a+/b").await
}

/// §4.7.3 [MQTT-4.7.3-1]: a topic filter must be at least one character long.
#[tokio::test]
async fn subscribe_filter_empty() -> Result<()> {
    invalid_filter("").await
}

/// After a malformed packet from one client, a client that keeps quiet on another connection is
/// untouched: its session neither closes nor receives anything.
#[tokio::test]
async fn other_connection_unaffected() -> Result<()> {
    let broker = Gridmq::start();
    let (mut quiet, _) = RawClient::connect_v5(broker.addr, "quiet").await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "attacker").await?;
    client.send(&[0x60, 0x02, 0x00, 0x01]).await?;
    expect_disconnect(&mut client, &[0x81]).await?;
    quiet.expect_silence(QUIET).await?;
    quiet.send(&PINGREQ).await?;
    let pong = quiet.expect_packet(WAIT).await?;
    ensure!(pong == PINGRESP, "expected PINGRESP, got {pong:02X?}");
    Ok(())
}

/// The negative control for the duplicate-property rows: User Property (0x26) may appear any
/// number of times, even with the same name, and is forwarded unaltered and in order (§3.3.2.3.7).
#[tokio::test]
async fn publish_repeated_user_property_is_allowed() -> Result<()> {
    let broker = Gridmq::start();
    let mut healthy = Healthy::start(broker.addr).await?;
    let (mut client, _) = RawClient::connect_v5(broker.addr, "users").await?;
    let props = cat(&[&[0x26], &utf8("k"), &utf8("1"), &[0x26], &utf8("k"), &utf8("2")]);
    client.send(&publish_v5("healthy/users", 1, 1, &props, b"x")).await?;
    let puback = client.expect_packet(WAIT).await?;
    ensure!(
        parse_ack_v5(&puback)? == Ack { first_byte: 0x40, packet_id: 1, reasons: vec![0x00] },
        "expected PUBACK id 1 success, got {puback:02X?}"
    );
    healthy.expect_message("healthy/users", &props, b"x").await?;
    healthy.check().await
}
