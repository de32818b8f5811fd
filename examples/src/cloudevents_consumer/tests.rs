use cloudevents::Data;

use super::*;

const RESOURCE_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/\
                           providers/Microsoft.EventGrid/namespaces/fleet-ns";

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn a_structured_event_keeps_a_resource_id_source_and_seven_fractional_digits() {
    let body = format!(
        r#"{{"specversion":"1.0","id":"1","source":"{RESOURCE_ID}","type":"t","subject":"s",
            "time":"2026-12-04T19:00:00.1234567Z","site":"plant 7","mqttpfi":1,
            "datacontenttype":"application/json","data":{{"a":1}}}}"#
    );
    let parsed = events(&headers(&[("content-type", STRUCTURED)]), Bytes::from(body)).unwrap();
    let [event] = parsed.as_slice() else { panic!("{parsed:?}") };
    assert_eq!(event.source(), RESOURCE_ID);
    assert_eq!(event.time().unwrap().to_rfc3339(), "2026-12-04T19:00:00.123456700+00:00");
    assert_eq!(event.extension("site"), Some(&ExtensionValue::String("plant 7".into())));
    assert_eq!(event.extension("mqttpfi"), Some(&ExtensionValue::Integer(1)));
    assert_eq!(event.data(), Some(&Data::Json(serde_json::json!({"a":1}))));
}

/// What a consumer should know: the SDK holds structured JSON data as a `serde_json::Value`, so
/// its text is not the text on the wire (keys sorted, numbers re-rounded). Binary mode keeps the
/// body's bytes.
#[test]
fn structured_json_data_is_a_value_to_the_sdk() {
    let body = r#"{"specversion":"1.0","id":"1","source":"s","type":"t",
                   "datacontenttype":"application/json","data":{"z":1,"a":47.782000000000004}}"#;
    let map = headers(&[("content-type", STRUCTURED)]);
    let parsed = events(&map, Bytes::from_static(body.as_bytes())).unwrap();
    let data = parsed[0].data().cloned().map(Vec::<u8>::try_from);
    assert_eq!(data.unwrap().unwrap(), br#"{"a":47.782,"z":1}"#);
}

#[test]
fn a_batch_is_every_event_in_order() {
    let body = r#"[{"specversion":"1.0","id":"1","source":"fleet-ns","type":"t",
                    "datacontenttype":"application/octet-stream","data_base64":"AAH+/w=="},
                   {"specversion":"1.0","id":"2","source":"fleet-ns","type":"t"}]"#;
    let map = headers(&[("content-type", "application/cloudevents-batch+json; charset=utf-8")]);
    let parsed = events(&map, Bytes::from_static(body.as_bytes())).unwrap();
    assert_eq!(parsed.iter().map(|e| e.id()).collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(parsed[0].data(), Some(&Data::Binary(vec![0, 1, 0xfe, 0xff])));
    assert_eq!(parsed[1].data(), None);
}

#[test]
fn binary_headers_are_percent_decoded() {
    let map = headers(&[
        ("ce-specversion", "1.0"),
        ("ce-id", "7"),
        ("ce-source", "fleet-ns"),
        ("ce-type", "MQTT.EventPublished"),
        ("ce-subject", "vehicles/car%201/%C3%A9tat"),
        ("ce-time", "2026-12-04T19:00:00.1234567Z"),
        ("ce-dataschema", "https://schemas.example/reading%2520v1.json"),
        ("ce-site", "plant%207%25"),
        ("ce-mqttpfi", "0"),
        ("content-type", "application/octet-stream"),
    ]);
    let parsed = events(&map, Bytes::from_static(b"\x00\xff")).unwrap();
    let [event] = parsed.as_slice() else { panic!("{parsed:?}") };
    assert_eq!(event.subject(), Some("vehicles/car 1/état"));
    let schema = event.dataschema().map(|url| url.as_str());
    assert_eq!(schema, Some("https://schemas.example/reading%20v1.json"));
    assert_eq!(event.extension("site"), Some(&ExtensionValue::String("plant 7%".into())));
    // Headers are text: the binary mode cannot say that `mqttpfi` was a number.
    assert_eq!(event.extension("mqttpfi"), Some(&ExtensionValue::String("0".into())));
    assert_eq!(event.datacontenttype(), Some("application/octet-stream"));
    assert_eq!(event.time().unwrap().to_rfc3339(), "2026-12-04T19:00:00.123456700+00:00");
    assert_eq!(event.data(), Some(&Data::Binary(vec![0, 0xff])));
}

#[test]
fn what_is_not_a_delivery_is_refused() {
    let bad_escape = headers(&[
        ("ce-specversion", "1.0"),
        ("ce-id", "7"),
        ("ce-source", "s"),
        ("ce-type", "t"),
        ("ce-subject", "a%2"),
    ]);
    let error = events(&bad_escape, Bytes::new()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the ce-subject header is not percent-encoded UTF-8 (or, for dataschema, a URL)"
    );
    let not_utf8 = headers(&[
        ("ce-specversion", "1.0"),
        ("ce-id", "%FF"),
        ("ce-source", "s"),
        ("ce-type", "t"),
    ]);
    assert!(matches!(events(&not_utf8, Bytes::new()), Err(ParseError::HeaderEncoding { .. })));
    let plain = headers(&[("content-type", "application/json")]);
    assert!(matches!(events(&plain, Bytes::from_static(b"{}")), Err(ParseError::NotCloudEvents)));
    let structured = headers(&[("content-type", STRUCTURED)]);
    let no_id = br#"{"specversion":"1.0","source":"s","type":"t"}"#;
    assert!(matches!(events(&structured, Bytes::from_static(no_id)), Err(ParseError::Event(_))));
    let batch = headers(&[("content-type", BATCH)]);
    assert!(matches!(events(&batch, Bytes::from_static(b"{}")), Err(ParseError::Batch(_))));
}

#[test]
fn the_handshake_allows_the_requesting_origin() {
    let response = handshake(&headers(&[("webhook-request-origin", "eventgrid.azure.net")]));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["webhook-allowed-origin"], "eventgrid.azure.net");
    assert_eq!(response.headers()["allow"], "POST");
}

#[test]
fn the_mode_comes_from_the_headers() {
    let batch = headers(&[("content-type", "Application/CloudEvents-Batch+JSON")]);
    assert_eq!(Mode::of(&batch), Some(Mode::Batched));
    let structured = headers(&[("content-type", "application/cloudevents+json; charset=utf-8")]);
    assert_eq!(Mode::of(&structured), Some(Mode::Structured));
    let binary = headers(&[("content-type", "application/json"), ("ce-specversion", "1.0")]);
    assert_eq!(Mode::of(&binary), Some(Mode::Binary));
    assert_eq!(Mode::of(&headers(&[("content-type", "application/json")])), None);
}
