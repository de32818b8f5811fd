use bytes::Bytes;
use serde_json::json;
use sinks::Data;

use super::*;
use crate::hooks::ClientIdentity;
use crate::mqtt::{Properties, Protocol, QoS};

/// Configured key/value pairs.
type Pairs<'a> = &'a [(&'a str, &'a str)];

fn map(pairs: Pairs<'_>) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn message(protocol: Protocol, properties: Properties) -> RoutedMessage {
    let s = |v: &str| AttributeValue::String(v.into());
    RoutedMessage {
        publisher: ClientIdentity {
            client_id: "id-1".into(),
            authentication_name: "client1".into(),
            attributes: BTreeMap::from([
                ("type".into(), s("operator")),
                ("floor".into(), AttributeValue::Integer(-3)),
                ("serial".into(), AttributeValue::Integer(5_000_000_000)),
                ("sensors".into(), AttributeValue::StringArray(vec!["gps".into(), "can".into()])),
                ("none".into(), AttributeValue::StringArray(vec![])),
                ("it's".into(), s("quoted")),
            ]),
        },
        protocol,
        topic: "campus/buildings/building17".into(),
        qos: QoS::AtMostOnce,
        retain: false,
        payload: Bytes::new(),
        properties: properties.into_shared(),
    }
}

fn full_v5() -> RoutedMessage {
    let user = [
        ("location", "North America"),
        ("client.address", "1 Microsoft Way"),
        ("dup", "value1"),
        ("dup", "value2"),
        ("x y", "spaced"),
        ("a'b\\c", "escaped"),
        ("Location", "case differs"),
    ];
    message(
        Protocol::V5,
        Properties {
            payload_format_indicator: Some(1),
            response_topic: Some("campus/buildings/building17/response".into()),
            correlation_data: Some(Bytes::from_static(b"request1")),
            user_properties: user.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            ..Properties::default()
        },
    )
}

fn event() -> CloudEvent {
    CloudEvent {
        id: "1".into(),
        source: "testnamespace".into(),
        ty: "MQTT.EventPublished".into(),
        subject: None,
        time: None,
        datacontenttype: None,
        dataschema: None,
        extensions: BTreeMap::from([
            ("clientext".to_string(), JsonText::string("client")),
            ("mine".to_string(), JsonText::from_value(&json!(1))),
        ]),
        data: Data::None,
    }
}

/// Parses `(static, dynamic)`; on success applies them to `message` and compares the event's
/// extensions with `expected`, on failure compares the error text.
fn check(config: (Pairs<'_>, Pairs<'_>), message: &RoutedMessage, expected: Result<Value, &str>) {
    let parsed = Enrichments::parse(&map(config.0), &map(config.1));
    match (parsed, expected) {
        (Ok(enrichments), Ok(expected)) => {
            let mut event = event();
            enrichments.apply(message, &mut event);
            assert_eq!(
                Value::Object(
                    event.extensions.iter().map(|(k, v)| (k.clone(), v.to_value())).collect()
                ),
                expected,
                "{config:?}"
            );
        }
        (Err(error), Err(expected)) => assert_eq!(error.to_string(), expected, "{config:?}"),
        (actual, expected) => panic!("{config:?}: got {actual:?}, expected {expected:?}"),
    }
}

#[test]
fn variables() {
    let v5 = full_v5();
    let cases: &[(&str, Value)] = &[
        ("${client.authenticationName}", json!("client1")),
        ("${client.attributes.type}", json!("operator")),
        ("${client.attributes['type']}", json!("operator")),
        ("${client.attributes['it\\'s']}", json!("quoted")),
        ("${client.attributes.floor}", json!(-3)),
        // Past the CloudEvents Integer range, which the SDKs refuse: its decimal string.
        ("${client.attributes.serial}", json!("5000000000")),
        ("${client.attributes.sensors}", json!("gps,can")),
        ("${client.attributes.none}", json!("")),
        ("${client.attributes.missing}", json!("")),
        ("${mqtt.message.topicName}", json!("campus/buildings/building17")),
        ("${mqtt.message.userProperties.location}", json!("North America")),
        ("${mqtt.message.userProperties.Location}", json!("case differs")),
        ("${mqtt.message.userProperties['client.address']}", json!("1 Microsoft Way")),
        ("${mqtt.message.userProperties['x y']}", json!("spaced")),
        ("${mqtt.message.userProperties['a\\'b\\\\c']}", json!("escaped")),
        ("${mqtt.message.userProperties.dup}", json!("value1,value2")),
        ("${mqtt.message.userProperties.missing}", json!("")),
        ("${mqtt.message.responseTopic}", json!("campus/buildings/building17/response")),
        ("${mqtt.message.correlationData}", json!("cmVxdWVzdDE=")),
        ("${mqtt.message.pfi}", json!(1)),
    ];
    for (variable, value) in cases {
        let expected = json!({"clientext": "client", "mine": 1, "enriched": value});
        check((&[], &[("enriched", variable)]), &v5, Ok(expected));
    }
}

#[test]
fn missing_message_properties() {
    // A v5 message without properties, and a 3.1.1 message, which cannot have any.
    for protocol in [Protocol::V5, Protocol::V311] {
        let message = message(protocol, Properties::default());
        let dynamic = [
            ("clientname", "${client.authenticationName}"),
            ("mqtttopic", "${mqtt.message.topicName}"),
            ("region", "${mqtt.message.userProperties.location}"),
            ("mqttresponsetopic", "${mqtt.message.responseTopic}"),
            ("mqttcorrelationdata", "${mqtt.message.correlationData}"),
            ("mqttpfi", "${mqtt.message.pfi}"),
        ];
        let expected = json!({
            "clientext": "client",
            "mine": 1,
            "clientname": "client1",
            "mqtttopic": "campus/buildings/building17",
            "region": "",
            "mqttresponsetopic": "",
            "mqttcorrelationdata": "",
            "mqttpfi": 0,
        });
        check((&[], &dynamic), &message, Ok(expected));
    }
}

#[test]
fn static_values_and_overrides() {
    let v5 = full_v5();
    let long = "v".repeat(128);
    let long_static = [("long", long.as_str())];
    let cases: Vec<((Pairs<'_>, Pairs<'_>), Value)> = vec![
        ((&[], &[]), json!({"clientext": "client", "mine": 1})),
        // Static values are literal, `${...}` included.
        (
            (
                &[
                    ("namespaceid", "123"),
                    ("literal", "${client.authenticationName}"),
                    ("empty", ""),
                ],
                &[],
            ),
            json!({"clientext": "client", "mine": 1, "namespaceid": "123", "literal": "${client.authenticationName}", "empty": ""}),
        ),
        ((&long_static, &[]), json!({"clientext": "client", "mine": 1, "long": long})),
        // A 20-character key, digits allowed anywhere.
        (
            (&[("a2345678901234567890", "v")], &[]),
            json!({"clientext": "client", "mine": 1, "a2345678901234567890": "v"}),
        ),
        // An enrichment replaces a client's extension of the same name.
        (
            (&[("clientext", "namespace")], &[("mine", "${mqtt.message.pfi}")]),
            json!({"clientext": "namespace", "mine": 1}),
        ),
    ];
    for (config, expected) in cases {
        check(config, &v5, Ok(expected));
    }
}

#[test]
fn invalid_configurations() {
    let v5 = full_v5();
    let too_long_value = "v".repeat(129);
    let too_long_static = [("k", too_long_value.as_str())];
    let too_many: Vec<(String, String)> =
        (0..21).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let too_many: Vec<(&str, &str)> =
        too_many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let twenty: Vec<(&str, &str)> = too_many[..20].to_vec();
    let cases: Vec<((Pairs<'_>, Pairs<'_>), &str)> = vec![
        // Keys.
        ((&[("", "v")], &[]), "routing.enrichments.static.: the key must not be empty"),
        (
            (&[("Client", "v")], &[]),
            "routing.enrichments.static.Client: keys may hold only lowercase letters a-z and digits 0-9",
        ),
        (
            (&[("client_name", "v")], &[]),
            "routing.enrichments.static.client_name: keys may hold only lowercase letters a-z and digits 0-9",
        ),
        (
            (&[("é", "v")], &[]),
            "routing.enrichments.static.é: keys may hold only lowercase letters a-z and digits 0-9",
        ),
        (
            (&[("a23456789012345678901", "v")], &[]),
            "routing.enrichments.static.a23456789012345678901: the key has 21 characters; at most 20",
        ),
        (
            (&[("azspthing", "v")], &[]),
            "routing.enrichments.static.azspthing: keys must not start with `azsp`",
        ),
        (
            (&[], &[("azsp", "${mqtt.message.pfi}")]),
            "routing.enrichments.dynamic.azsp: keys must not start with `azsp`",
        ),
        (
            (&[("k", "v")], &[("k", "${mqtt.message.pfi}")]),
            "routing.enrichments.dynamic.k: key `k` is also a static enrichment",
        ),
        // Values.
        (
            (&too_long_static, &[]),
            "routing.enrichments.static.k: the value has 129 characters; at most 128",
        ),
        // Counts: 21 in all, split across static and dynamic.
        ((&too_many, &[]), "routing.enrichments: 21 enrichments; at most 20 are allowed"),
        (
            (&twenty, &[("extra", "${mqtt.message.pfi}")]),
            "routing.enrichments: 21 enrichments; at most 20 are allowed",
        ),
        // Variables.
        (
            (&[], &[("k", "${client.foo}")]),
            "routing.enrichments.dynamic.k: unknown variable ${client.foo}",
        ),
        (
            (&[], &[("k", "${client.authenticationname}")]),
            "routing.enrichments.dynamic.k: unknown variable ${client.authenticationname}",
        ),
        (
            (&[], &[("k", "${mqtt.message.qos}")]),
            "routing.enrichments.dynamic.k: unknown variable ${mqtt.message.qos}",
        ),
        (
            (&[], &[("k", "${client.attributesx}")]),
            "routing.enrichments.dynamic.k: unknown variable ${client.attributesx}",
        ),
        (
            (&[], &[("k", "${mqtt.message.userProperties[x]}")]),
            "routing.enrichments.dynamic.k: unknown variable ${mqtt.message.userProperties[x]}",
        ),
        (
            (&[], &[("k", "client1")]),
            "routing.enrichments.dynamic.k: a dynamic value must be exactly one variable such as ${client.authenticationName}, found `client1`",
        ),
        (
            (&[], &[("k", "site-${client.attributes.site}")]),
            "routing.enrichments.dynamic.k: a dynamic value must be exactly one variable such as ${client.authenticationName}, found `site-${client.attributes.site}`",
        ),
        (
            (&[], &[("k", "${client.attributes.site} ")]),
            "routing.enrichments.dynamic.k: a dynamic value must be exactly one variable such as ${client.authenticationName}, found `${client.attributes.site} `",
        ),
        (
            (&[], &[("k", "${client.attributes.}")]),
            "routing.enrichments.dynamic.k: ${client.attributes.}: the name is missing",
        ),
        (
            (&[], &[("k", "${client.attributes['']}")]),
            "routing.enrichments.dynamic.k: ${client.attributes['']}: the name is missing",
        ),
        (
            (&[], &[("k", "${mqtt.message.userProperties.client.address}")]),
            "routing.enrichments.dynamic.k: ${mqtt.message.userProperties.client.address}: a name with characters other than letters, digits, '_' and '-' must be quoted, as in ['client.address']",
        ),
        (
            (&[], &[("k", "${mqtt.message.userProperties.it's}")]),
            "routing.enrichments.dynamic.k: ${mqtt.message.userProperties.it's}: a name with characters other than letters, digits, '_' and '-' must be quoted, as in ['it\\'s']",
        ),
        (
            (&[], &[("k", "${mqtt.message.userProperties['it's']}")]),
            "routing.enrichments.dynamic.k: ${mqtt.message.userProperties['it's']}: an apostrophe in a quoted name must be escaped as \\'",
        ),
        (
            (&[], &[("k", "${mqtt.message.userProperties['tab\\t']}")]),
            "routing.enrichments.dynamic.k: ${mqtt.message.userProperties['tab\\t']}: only \\' and \\\\ may follow a backslash",
        ),
        (
            (&[], &[("k", "${mqtt.message.userProperties['end\\']}")]),
            "routing.enrichments.dynamic.k: ${mqtt.message.userProperties['end\\']}: only \\' and \\\\ may follow a backslash",
        ),
    ];
    for ((static_, dynamic), expected) in cases {
        check((static_, dynamic), &v5, Err(expected));
    }
    for name in CONTEXT_ATTRIBUTES.into_iter().filter(|name| *name != "data_base64") {
        let expected = format!(
            "routing.enrichments.static.{name}: `{name}` is a CloudEvents context attribute"
        );
        check((&[(name, "v")], &[]), &v5, Err(&expected));
    }
}

#[test]
fn error_fields_name_the_config_path() {
    let error =
        Enrichments::parse(&map(&[]), &map(&[("clientname", "${client.foo}")])).unwrap_err();
    assert_eq!(error.field, "routing.enrichments.dynamic.clientname");
    assert_eq!(error.problem.to_string(), "unknown variable ${client.foo}");
}
