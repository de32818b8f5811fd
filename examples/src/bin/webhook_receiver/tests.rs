use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn the_handshake_allows_the_requesting_origin() {
    let response = handshake(&headers(&[("webhook-request-origin", "eventgrid.azure.net")]));
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["webhook-allowed-origin"], "eventgrid.azure.net");
    assert_eq!(response.headers()["allow"], "POST");
    let response = handshake(&HeaderMap::new());
    assert_eq!(response.headers()["webhook-allowed-origin"], "*");
}

#[test]
fn a_structured_event_is_one_line() {
    let body = br#"{"specversion":"1.0","id":"1","source":"fleet","type":"MQTT.EventPublished",
        "subject":"vehicles/car1","time":"2024-03-01T08:00:00.0000000Z","site":"plant7",
        "data":{"speed":3}}"#;
    let lines = describe(&headers(&[("aeg-delivery-count", "2")]), body);
    assert_eq!(
        lines,
        ["[delivery 2] structured type=MQTT.EventPublished id=1 source=fleet \
             subject=vehicles/car1 time=2024-03-01T08:00:00.0000000Z site=plant7 \
             data={\"speed\":3}"]
    );
}

#[test]
fn a_batch_is_one_line_per_event() {
    let body = br#"[{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"AAEC"},
                    {"specversion":"1.0","id":"2","source":"s","type":"t"}]"#;
    let lines = describe(&HeaderMap::new(), body);
    assert_eq!(
        lines,
        [
            "[delivery -] batch 1/2 type=t id=1 source=s data_base64=3 bytes",
            "[delivery -] batch 2/2 type=t id=2 source=s",
        ]
    );
}

#[test]
fn a_binary_event_reads_its_ce_headers() {
    let map = headers(&[
        ("ce-id", "7"),
        ("ce-specversion", "1.0"),
        ("ce-source", "fleet"),
        ("ce-type", "MQTT.EventPublished"),
        ("ce-subject", "vehicles/car1"),
        ("ce-mqttpfi", "0"),
        ("content-type", "application/octet-stream"),
        ("aeg-delivery-count", "1"),
    ]);
    let lines = describe(&map, b"\xff\x00");
    assert_eq!(
        lines,
        ["[delivery 1] binary type=MQTT.EventPublished id=7 source=fleet subject=vehicles/car1 \
             datacontenttype=application/octet-stream mqttpfi=0 data=2 bytes"]
    );
}

#[test]
fn long_data_is_cut() {
    let text = "x".repeat(500);
    assert_eq!(excerpt(&text).chars().count(), MAX_DATA_CHARS + 1);
    assert_eq!(excerpt("short"), "short");
}

#[test]
fn what_is_not_an_event_is_said_so() {
    let lines = describe(&HeaderMap::new(), b"hello");
    assert!(lines[0].starts_with("[delivery -] body is not JSON"), "{lines:?}");
    let lines = describe(&HeaderMap::new(), b"42");
    assert_eq!(lines, ["[delivery -] not a CloudEvent: 42"]);
}
