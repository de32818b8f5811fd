use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::*;
use crate::hooks::ClientIdentity;
use crate::mqtt::QoS;

/// 2019-11-18T15:13:39.4589254Z, Event Grid's sample time.
fn received() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_574_090_019, 458_925_400)
}

fn properties(pfi: Option<u8>, content_type: Option<&str>, user: &[(&str, &str)]) -> Properties {
    Properties {
        payload_format_indicator: pfi,
        content_type: content_type.map(str::to_owned),
        user_properties: user.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        ..Properties::default()
    }
}

fn message(protocol: Protocol, properties: Properties, payload: &[u8]) -> RoutedMessage {
    RoutedMessage {
        publisher: ClientIdentity {
            client_id: "client1".into(),
            authentication_name: "client1".into(),
            attributes: BTreeMap::new(),
        },
        protocol,
        topic: "campus/buildings/building17".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        payload: Bytes::copy_from_slice(payload),
        properties: properties.into_shared(),
    }
}

fn v5(pfi: Option<u8>, content_type: Option<&str>, payload: &[u8]) -> RoutedMessage {
    message(Protocol::V5, properties(pfi, content_type, &[]), payload)
}

fn binary(user: &[(&str, &str)], content_type: Option<&str>, payload: &[u8]) -> RoutedMessage {
    message(Protocol::V5, properties(None, content_type, user), payload)
}

/// The routed event in the JSON format must equal `expected`; an `"id": "*"` there stands for a
/// freshly generated UUID.
fn check(message: RoutedMessage, expected: Value) {
    let event = to_cloud_event("testnamespace", &message, received());
    let mut actual = event.to_json();
    if expected["id"] == "*" {
        assert_eq!(event.id.len(), 36, "{event:?}");
        assert_ne!(event.id, to_cloud_event("testnamespace", &message, received()).id);
        actual["id"] = json!("*");
    }
    assert_eq!(actual, expected, "{message:?}");
}

/// A plain `MQTT.EventPublished` event with these extra members (`data`, `datacontenttype`).
fn published(extra: Value) -> Value {
    let mut event = json!({
        "specversion": "1.0",
        "id": "*",
        "time": "2019-11-18T15:13:39.4589254Z",
        "type": "MQTT.EventPublished",
        "source": "testnamespace",
        "subject": "campus/buildings/building17",
    });
    if let (Some(event), Value::Object(extra)) = (event.as_object_mut(), extra) {
        event.extend(extra);
    }
    event
}

#[test]
fn payloads() {
    let temp = br#"{"Temp": 70, "humidity": 40}"#;
    let temp_json = json!({"Temp": 70, "humidity": 40});
    let cases: Vec<(RoutedMessage, Value)> = vec![
        // MQTT 3.1.1 is always bytes, even with a JSON payload (and properties it cannot carry).
        (
            message(Protocol::V311, Properties::default(), temp),
            json!({"datacontenttype": "application/octet-stream", "data_base64": "eyJUZW1wIjogNzAsICJodW1pZGl0eSI6IDQwfQ=="}),
        ),
        (
            message(Protocol::V311, properties(Some(1), Some("application/json"), &[]), b"{}"),
            json!({"datacontenttype": "application/octet-stream", "data_base64": "e30="}),
        ),
        // MQTT 5 without PFI or Content Type: bytes.
        (
            v5(None, None, b"\xff\x00"),
            json!({"datacontenttype": "application/octet-stream", "data_base64": "/wA="}),
        ),
        (
            v5(Some(0), None, temp),
            json!({"datacontenttype": "application/octet-stream", "data_base64": "eyJUZW1wIjogNzAsICJodW1pZGl0eSI6IDQwfQ=="}),
        ),
        // PFI = 1: JSON inline, other text as a JSON string.
        (
            v5(Some(1), None, temp),
            json!({"datacontenttype": "application/json", "data": temp_json}),
        ),
        (
            v5(Some(1), None, b"Hello Contoso."),
            json!({"datacontenttype": "application/json", "data": "Hello Contoso."}),
        ),
        (v5(Some(1), None, b"  "), json!({"datacontenttype": "application/json", "data": "  "})),
        (v5(Some(1), None, b"null"), json!({"datacontenttype": "application/json", "data": null})),
        (v5(Some(1), None, b"42"), json!({"datacontenttype": "application/json", "data": 42})),
        // PFI = 1 but not UTF-8: bytes.
        (
            v5(Some(1), None, b"\xc3\x28"),
            json!({"datacontenttype": "application/octet-stream", "data_base64": "wyg="}),
        ),
        // A JSON Content Type (any case, any parameters, `+json` suffixes) inlines without PFI.
        (
            v5(None, Some("application/json; charset=utf-8"), temp),
            json!({"datacontenttype": "application/json; charset=utf-8", "data": temp_json}),
        ),
        (
            v5(Some(0), Some("Application/JSON"), b"not json"),
            json!({"datacontenttype": "Application/JSON", "data": "not json"}),
        ),
        (
            v5(None, Some("application/geo+json"), br#"{"type":"Point"}"#),
            json!({"datacontenttype": "application/geo+json", "data": {"type": "Point"}}),
        ),
        // `text/json` is JSON here as on the HTTP paths (`*/json`, CloudEvents' JSON format).
        (
            v5(None, Some("text/json"), br#"{"type":"Point"}"#),
            json!({"datacontenttype": "text/json", "data": {"type": "Point"}}),
        ),
        (
            v5(Some(1), Some("Text/JSON; charset=utf-8"), b"42"),
            json!({"datacontenttype": "Text/JSON; charset=utf-8", "data": 42}),
        ),
        (
            v5(None, Some("application/json"), b"\xff"),
            json!({"datacontenttype": "application/json", "data_base64": "/w=="}),
        ),
        // A non-JSON Content Type: text stays text with PFI = 1, bytes otherwise.
        (
            v5(Some(1), Some("text/plain"), b"42"),
            json!({"datacontenttype": "text/plain", "data": "42"}),
        ),
        (
            v5(None, Some("text/plain"), b"hi"),
            json!({"datacontenttype": "text/plain", "data_base64": "aGk="}),
        ),
        (
            v5(None, Some("application/jsonx"), b"{}"),
            json!({"datacontenttype": "application/jsonx", "data_base64": "e30="}),
        ),
        // An empty payload has no data, and no default content type.
        (v5(None, None, b""), json!({})),
        (v5(Some(1), None, b""), json!({})),
        (message(Protocol::V311, Properties::default(), b""), json!({})),
        (v5(None, Some("text/plain"), b""), json!({"datacontenttype": "text/plain"})),
    ];
    for (message, extra) in cases {
        check(message, published(extra));
    }
}

#[test]
fn binary_mode_keeps_the_clients_attributes() {
    let attributes = [
        ("specversion", "1.0"),
        ("id", "C234-1234-1234"),
        ("source", "/mycontext"),
        ("type", "com.example.someevent"),
        ("subject", "Custom.Subject"),
        ("time", "2018-04-05T17:31:00Z"),
        ("dataschema", "https://example.com/schema"),
        ("comexampleextension1", "value"),
        // Not attribute names: not carried.
        ("Content-Encoding", "gzip"),
        ("my_prop", "x"),
        ("data", "ignored"),
        ("data_base64", "ignored"),
    ];
    let client = |extra: Value| {
        let mut event = json!({
            "specversion": "1.0",
            "id": "C234-1234-1234",
            "source": "/mycontext",
            "type": "com.example.someevent",
            "subject": "Custom.Subject",
            "time": "2018-04-05T17:31:00Z",
            "dataschema": "https://example.com/schema",
            "comexampleextension1": "value",
        });
        if let (Some(event), Value::Object(extra)) = (event.as_object_mut(), extra) {
            event.extend(extra);
        }
        event
    };
    let cases: Vec<(RoutedMessage, Value)> = vec![
        (
            binary(&attributes, Some("application/json; charset=utf-8"), br#"{"Temp":"70"}"#),
            client(
                json!({"datacontenttype": "application/json; charset=utf-8", "data": {"Temp": "70"}}),
            ),
        ),
        // No content type at all: bytes, and no datacontenttype is invented.
        (binary(&attributes, None, b"\x01\x02"), client(json!({"data_base64": "AQI="}))),
        // The `datacontenttype` user property stands in for a missing Content Type...
        (
            binary(
                &[&attributes[..], &[("datacontenttype", "application/json")]].concat(),
                None,
                b"[1]",
            ),
            client(json!({"datacontenttype": "application/json", "data": [1]})),
        ),
        // ...but the Content Type wins over it.
        (
            binary(
                &[&attributes[..], &[("datacontenttype", "application/json")]].concat(),
                Some("application/octet-stream"),
                b"[1]",
            ),
            client(json!({"datacontenttype": "application/octet-stream", "data_base64": "WzFd"})),
        ),
        // PFI = 1 inlines text in binary mode too.
        (
            message(Protocol::V5, properties(Some(1), None, &attributes), b"hello"),
            client(json!({"data": "hello"})),
        ),
        // Only the required attributes.
        (
            binary(&attributes[..4], None, b""),
            json!({
                "specversion": "1.0",
                "id": "C234-1234-1234",
                "source": "/mycontext",
                "type": "com.example.someevent",
            }),
        ),
    ];
    for (message, expected) in cases {
        check(message, expected);
    }
}

#[test]
fn structured_mode_keeps_the_payloads_event() {
    let event = json!({
        "specversion": "1.0",
        "id": "9aeb0fdf",
        "source": "Custom.Source",
        "type": "Custom.Type",
        "subject": "Custom.Subject",
        "comexampleothervalue": 5,
        "datacontenttype": "application/json",
        "data": {"Temp": "70", "humidity": "40"},
    });
    let bytes_event = json!({
        "specversion": "1.0",
        "id": "1",
        "source": "s",
        "type": "t",
        "time": "2018-04-05T03:56:24Z",
        "data_base64": "AQI=",
    });
    let payload = |value: &Value| value.to_string().into_bytes();
    let cases: Vec<(RoutedMessage, Value)> = vec![
        (
            v5(None, Some("application/cloudevents+json; charset=utf-8"), &payload(&event)),
            event.clone(),
        ),
        (
            v5(Some(1), Some("Application/CloudEvents+JSON"), &payload(&bytes_event)),
            bytes_event.clone(),
        ),
        // The structured Content Type wins over binary-mode user properties.
        (
            message(
                Protocol::V5,
                properties(
                    None,
                    Some("application/cloudevents+json"),
                    &[("specversion", "1.0"), ("id", "other"), ("source", "x"), ("type", "y")],
                ),
                &payload(&event),
            ),
            event.clone(),
        ),
    ];
    for (message, expected) in cases {
        check(message, expected);
    }
}

#[test]
fn invalid_client_events_route_as_published_messages() {
    let structured = Some("application/cloudevents+json");
    let required = [("specversion", "1.0"), ("id", "1"), ("source", "s"), ("type", "t")];
    let without = |name: &str| -> Vec<(&str, &str)> {
        required.iter().copied().filter(|(n, _)| *n != name).collect()
    };
    let with = |extra: (&'static str, &'static str)| -> Vec<(&str, &str)> {
        required.iter().copied().chain([extra]).collect()
    };
    let structured_event = |body: Value| body.to_string().into_bytes();
    let cases: Vec<(RoutedMessage, InvalidEvent, Value)> = vec![
        (
            binary(&without("id"), None, b"\x01"),
            InvalidEvent::Missing("id"),
            json!({"datacontenttype": "application/octet-stream", "data_base64": "AQ=="}),
        ),
        (binary(&without("source"), None, b""), InvalidEvent::Missing("source"), json!({})),
        (binary(&without("type"), None, b""), InvalidEvent::Missing("type"), json!({})),
        (
            binary(&[("specversion", "0.3"), ("id", "1"), ("source", "s"), ("type", "t")], None, b""),
            InvalidEvent::SpecVersion("0.3".into()),
            json!({}),
        ),
        (binary(&with(("id", "2")), None, b""), InvalidEvent::Repeated("id".into()), json!({})),
        (
            binary(&with(("specversion", "1.0")), None, b""),
            InvalidEvent::Repeated("specversion".into()),
            json!({}),
        ),
        (
            binary(&with(("myext", "a")).into_iter().chain([("myext", "b")]).collect::<Vec<_>>(), None, b""),
            InvalidEvent::Repeated("myext".into()),
            json!({}),
        ),
        (
            binary(&[("specversion", "1.0"), ("id", "1"), ("source", ""), ("type", "t")], None, b""),
            InvalidEvent::Empty("source".into()),
            json!({}),
        ),
        (binary(&with(("subject", "")), None, b""), InvalidEvent::Empty("subject".into()), json!({})),
        // Structured mode: the payload becomes plain JSON data (a `+json` type) or text.
        (
            v5(None, structured, &structured_event(json!({"specversion": "1.0", "source": "s", "type": "t"}))),
            InvalidEvent::Structured(EventError::Missing("id")),
            json!({
                "datacontenttype": "application/cloudevents+json",
                "data": {"specversion": "1.0", "source": "s", "type": "t"},
            }),
        ),
        (
            v5(None, structured, &structured_event(json!({"specversion": "1.0", "id": "", "source": "s", "type": "t"}))),
            InvalidEvent::Structured(EventError::Empty("id")),
            json!({
                "datacontenttype": "application/cloudevents+json",
                "data": {"specversion": "1.0", "id": "", "source": "s", "type": "t"},
            }),
        ),
        (
            v5(None, structured, br#"{"specversion":"1.0","id":"1","source":"s","type":"t","Big":1}"#),
            InvalidEvent::Structured(EventError::ExtensionName("Big".into())),
            json!({
                "datacontenttype": "application/cloudevents+json",
                "data": {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "Big": 1},
            }),
        ),
        (
            v5(None, structured, br#"{"specversion":"1.0","id":"1","source":"s","type":"t","big":4294967296}"#),
            InvalidEvent::Structured(EventError::IntegerRange("big".into())),
            json!({
                "datacontenttype": "application/cloudevents+json",
                "data": {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "big": 4294967296_u64},
            }),
        ),
        (
            v5(None, structured, b"not an event"),
            InvalidEvent::Structured(EventError::Json("expected ident at line 1 column 2".into())),
            json!({"datacontenttype": "application/cloudevents+json", "data": "not an event"}),
        ),
        (
            v5(None, structured, br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AQ=="}"#),
            InvalidEvent::Structured(EventError::BothData),
            json!({
                "datacontenttype": "application/cloudevents+json",
                "data": {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data": 1, "data_base64": "AQ=="},
            }),
        ),
    ];
    for (message, error, extra) in cases {
        assert_eq!(client_event(&message), Err(error), "{message:?}");
        check(message, published(extra));
    }
}

#[test]
fn messages_that_do_not_claim_to_be_cloud_events() {
    let event = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
    let cases: Vec<(RoutedMessage, Value)> = vec![
        // Attributes without `specversion` are just user properties.
        (
            binary(&[("id", "1"), ("source", "s"), ("type", "t")], None, b"\x01"),
            json!({"datacontenttype": "application/octet-stream", "data_base64": "AQ=="}),
        ),
        // A CloudEvent over MQTT 3.1.1 still routes as bytes.
        (
            message(Protocol::V311, Properties::default(), event.to_string().as_bytes()),
            json!({
                "datacontenttype": "application/octet-stream",
                "data_base64": "eyJpZCI6IjEiLCJzb3VyY2UiOiJzIiwic3BlY3ZlcnNpb24iOiIxLjAiLCJ0eXBlIjoidCJ9",
            }),
        ),
        // A batch, or an event format we do not read.
        (
            v5(None, Some("application/cloudevents-batch+json"), format!("[{event}]").as_bytes()),
            json!({"datacontenttype": "application/cloudevents-batch+json", "data": [event]}),
        ),
        (
            v5(None, Some("application/cloudevents+avro"), b"\x01"),
            json!({"datacontenttype": "application/cloudevents+avro", "data_base64": "AQ=="}),
        ),
    ];
    for (message, extra) in cases {
        assert_eq!(client_event(&message), Ok(None), "{message:?}");
        check(message, published(extra));
    }
}

/// The routed event's `data` is the payload text itself, for plain JSON payloads and for the
/// `data` of structured client events: numbers, key order, duplicates, escapes and whitespace
/// as published.
#[test]
fn json_data_is_the_published_text() {
    for text in sinks::event::FIDELITY_CORPUS {
        let written = |message: &RoutedMessage| {
            let event = to_cloud_event("testnamespace", message, received());
            String::from_utf8(event.to_json_bytes()).unwrap()
        };
        let plain = written(&v5(Some(1), None, text.as_bytes()));
        assert!(plain.ends_with(&format!(r#","data":{text}}}"#)), "{plain}");
        let structured = format!(
            r#"{{"specversion":"1.0","id":"1","source":"s","type":"t","ext":"\u00e9","data":{text}}}"#
        );
        let message = v5(None, Some("application/cloudevents+json"), structured.as_bytes());
        assert_eq!(written(&message), structured);
    }
}
