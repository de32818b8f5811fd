use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::json;
use sinks::JsonText;

use super::*;

fn event(data: Data) -> CloudEvent {
    CloudEvent {
        id: "evt-1".into(),
        source: "testnamespace".into(),
        ty: "MQTT.EventPublished".into(),
        subject: Some("Vehicles/Vehicle1/GPS".into()),
        time: Some("2019-11-18T15:13:39.4589254Z".into()),
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        extensions: BTreeMap::from([
            ("clienttype".to_string(), JsonText::string("Sensor")),
            ("mqttpfi".to_string(), JsonText::from_value(&json!(1))),
            ("floor".to_string(), JsonText::from_value(&json!(-3))),
            ("flag".to_string(), JsonText::from_value(&json!(true))),
        ]),
        data,
    }
}

fn json_event() -> CloudEvent {
    event(Data::from_json_value(json!({
        "counter": 5,
        "temp": 70.5,
        "name": "Azure Data Factory",
        "enabled": true,
        "nested": {"deep": {"x": "Y"}},
        "nothing": null,
        "code": 42,
        "numbers": [1, 2, 3],
        "strings": ["Contoso", "Fabrikam"],
        "mixed": [1, "two", true, {"o": 1}, [4]],
        "empty": [],
        "objects": [{"a": 1}],
    })))
}

/// Compiles `config` (a JSON `filter` object) under the prefix `sub`, then checks `event`
/// against it; an error's text is compared instead.
fn check(config: Value, event: &CloudEvent, expected: Result<bool, &str>) {
    let parsed: FiltersConfig = serde_json::from_value(config.clone()).unwrap();
    let actual = parsed.compile("sub").map(|filter| filter.matches(event));
    assert_eq!(actual.map_err(|e| e.to_string()), expected.map_err(str::to_owned), "{config}");
}

/// One advanced filter; `operands` holds its `value` or `values`.
fn advanced(operator: &str, key: &str, operands: Value, arrays: bool) -> Value {
    let mut filter = json!({"operatorType": operator, "key": key});
    if let (Some(filter), Value::Object(operands)) = (filter.as_object_mut(), operands) {
        filter.extend(operands);
    }
    json!({"enableAdvancedFilteringOnArrays": arrays, "advancedFilters": [filter]})
}

#[test]
fn operators() {
    let event = json_event();
    let long = "x".repeat(512);
    let cases: &[(&str, &str, Value, bool)] = &[
        ("NumberIn", "data.counter", json!({"values": [5, 1]}), true),
        ("NumberIn", "data.counter", json!({"values": [5.0]}), true),
        ("NumberIn", "data.counter", json!({"values": [4]}), false),
        ("NumberIn", "data.counter", json!({"value": 5}), true),
        ("NumberIn", "data.temp", json!({"values": [70.5]}), true),
        ("NumberIn", "data.name", json!({"values": [5]}), false),
        ("NumberIn", "data.missing", json!({"values": [5]}), false),
        ("NumberIn", "data.nothing", json!({"values": [5]}), false),
        ("NumberNotIn", "data.counter", json!({"values": [41, 0]}), true),
        ("NumberNotIn", "data.counter", json!({"values": [41, 5]}), false),
        ("NumberNotIn", "data.missing", json!({"values": [5]}), true),
        ("NumberNotIn", "data.nothing", json!({"values": [5]}), true),
        ("NumberNotIn", "data.name", json!({"values": [5]}), true),
        ("NumberLessThan", "data.counter", json!({"value": 6}), true),
        ("NumberLessThan", "data.counter", json!({"value": 5}), false),
        ("NumberGreaterThan", "data.counter", json!({"value": 4.5}), true),
        ("NumberGreaterThan", "data.counter", json!({"value": 5}), false),
        ("NumberGreaterThan", "data.missing", json!({"value": 0}), false),
        ("NumberGreaterThan", "data.name", json!({"value": 0}), false),
        ("NumberLessThanOrEquals", "data.counter", json!({"value": 5}), true),
        ("NumberLessThanOrEquals", "data.counter", json!({"value": 4}), false),
        ("NumberGreaterThanOrEquals", "data.counter", json!({"value": 5}), true),
        ("NumberGreaterThanOrEquals", "data.counter", json!({"value": 6}), false),
        ("NumberInRange", "data.temp", json!({"values": [[3.5, 999.95], [3000, 4000]]}), true),
        ("NumberInRange", "data.temp", json!({"values": [[3000, 4000]]}), false),
        ("NumberInRange", "data.counter", json!({"values": [[5, 5]]}), true),
        ("NumberInRange", "data.missing", json!({"values": [[0, 9]]}), false),
        ("NumberNotInRange", "data.temp", json!({"values": [[3000, 4000]]}), true),
        ("NumberNotInRange", "data.temp", json!({"values": [[0, 1], [70.5, 80]]}), false),
        ("NumberNotInRange", "data.missing", json!({"values": [[0, 9]]}), true),
        ("BoolEquals", "data.enabled", json!({"value": true}), true),
        ("BoolEquals", "data.enabled", json!({"value": false}), false),
        ("BoolEquals", "data.name", json!({"value": true}), false),
        ("BoolEquals", "data.missing", json!({"value": false}), false),
        ("StringContains", "data.name", json!({"values": ["microsoft", "azure"]}), true),
        ("StringContains", "data.name", json!({"values": ["DATA fact"]}), true),
        ("StringContains", "data.name", json!({"value": "factory"}), true),
        ("StringContains", "data.name", json!({"values": ["aws"]}), false),
        ("StringContains", "data.missing", json!({"values": [""]}), false),
        ("StringNotContains", "data.name", json!({"values": ["contoso", "fabrikam"]}), true),
        ("StringNotContains", "data.name", json!({"values": ["contoso", "AZURE"]}), false),
        ("StringNotContains", "data.missing", json!({"values": ["x"]}), false),
        ("StringBeginsWith", "data.name", json!({"values": ["event", "azure"]}), true),
        ("StringBeginsWith", "data.name", json!({"values": ["data"]}), false),
        ("StringNotBeginsWith", "data.name", json!({"values": ["event", "message"]}), true),
        ("StringNotBeginsWith", "data.name", json!({"values": ["AZURE"]}), false),
        ("StringNotBeginsWith", "data.missing", json!({"values": ["x"]}), false),
        ("StringEndsWith", "data.name", json!({"values": ["jpg", "Factory"]}), true),
        ("StringEndsWith", "data.name", json!({"values": ["azure"]}), false),
        ("StringNotEndsWith", "data.name", json!({"values": ["jpg", "png"]}), true),
        ("StringNotEndsWith", "data.name", json!({"values": ["FACTORY"]}), false),
        ("StringNotEndsWith", "data.missing", json!({"values": ["x"]}), false),
        ("StringIn", "data.name", json!({"values": ["contoso", "azure data factory"]}), true),
        ("StringIn", "data.name", json!({"values": ["azure"]}), false),
        ("StringIn", "data.name", json!({"values": [long]}), false),
        ("StringIn", "data.missing", json!({"values": ["x"]}), false),
        ("StringNotIn", "data.name", json!({"values": ["aws", "bridge"]}), true),
        ("StringNotIn", "data.name", json!({"values": ["Azure Data Factory"]}), false),
        ("StringNotIn", "data.missing", json!({"values": ["x"]}), true),
        ("StringNotIn", "data.nested", json!({"values": ["x"]}), true),
        // String operators read numbers and booleans by their JSON text; objects not at all.
        ("StringIn", "data.code", json!({"values": ["42"]}), true),
        ("StringBeginsWith", "data.temp", json!({"values": ["70."]}), true),
        ("StringBeginsWith", "data.enabled", json!({"values": ["TR"]}), true),
        ("StringContains", "data.nested", json!({"values": ["deep"]}), false),
        // Paths: member names are case-sensitive, the `data` prefix is not.
        ("StringIn", "data.nested.deep.x", json!({"values": ["y"]}), true),
        ("StringIn", "Data.nested.deep.x", json!({"values": ["y"]}), true),
        ("StringIn", "data.Nested.deep.x", json!({"values": ["y"]}), false),
        ("StringIn", "data.name.x", json!({"values": ["y"]}), false),
        // Array items by index, as delivery properties read them (`sinks::json_path`).
        ("StringIn", "data.numbers.0", json!({"values": ["1"]}), true),
        ("NumberIn", "data.numbers.2", json!({"values": [3]}), true),
        ("NumberIn", "data.numbers.1", json!({"values": [3]}), false),
        ("NumberIn", "data.objects.0.a", json!({"values": [1]}), true),
        ("BoolEquals", "data.mixed.2", json!({"value": true}), true),
        ("NumberIn", "data.mixed.4.0", json!({"values": [4]}), true),
        ("IsNullOrUndefined", "data.numbers.3", json!({}), true),
        ("IsNullOrUndefined", "data.numbers.first", json!({}), true),
        ("StringNotIn", "data.numbers.9", json!({"values": ["1"]}), true),
        ("IsNullOrUndefined", "data.missing", json!({}), true),
        ("IsNullOrUndefined", "data.nothing", json!({}), true),
        ("IsNullOrUndefined", "data.counter", json!({}), false),
        ("IsNullOrUndefined", "data.numbers", json!({}), false),
        ("IsNullOrUndefined", "data", json!({}), false),
        ("IsNotNull", "data.counter", json!({}), true),
        ("IsNotNull", "data.nested", json!({}), true),
        ("IsNotNull", "data.numbers", json!({}), true),
        ("IsNotNull", "data.missing", json!({}), false),
        ("IsNotNull", "data.nothing", json!({}), false),
        // Context attributes, any case.
        ("StringIn", "subject", json!({"values": ["vehicles/vehicle1/gps"]}), true),
        ("StringBeginsWith", "Subject", json!({"values": ["VEHICLES/"]}), true),
        ("StringIn", "type", json!({"values": ["mqtt.eventpublished"]}), true),
        ("StringIn", "id", json!({"values": ["EVT-1"]}), true),
        ("StringIn", "source", json!({"values": ["testnamespace"]}), true),
        ("StringBeginsWith", "time", json!({"values": ["2019-11-18"]}), true),
        ("StringIn", "datacontenttype", json!({"values": ["application/json"]}), true),
        ("StringIn", "specversion", json!({"values": ["1.0"]}), true),
        ("IsNullOrUndefined", "dataschema", json!({}), true),
        ("NumberIn", "id", json!({"values": [1]}), false),
        // Extension attributes, e.g. enrichments.
        ("StringContains", "clienttype", json!({"values": ["sensor"]}), true),
        ("StringContains", "ClientType", json!({"values": ["sensor"]}), true),
        ("NumberGreaterThan", "mqttpfi", json!({"value": 0}), true),
        ("StringBeginsWith", "floor", json!({"values": ["-3"]}), true),
        ("NumberLessThan", "floor", json!({"value": 0}), true),
        ("BoolEquals", "flag", json!({"value": true}), true),
        ("IsNullOrUndefined", "nosuchext", json!({}), true),
        ("StringNotIn", "nosuchext", json!({"values": ["a"]}), true),
        ("StringIn", "nosuchext", json!({"values": ["a"]}), false),
    ];
    for (operator, key, operands, expected) in cases {
        check(advanced(operator, key, operands.clone(), false), &event, Ok(*expected));
    }
}

#[test]
fn arrays() {
    let event = json_event();
    // (operator, key, operands, with enableAdvancedFilteringOnArrays, without)
    let cases: &[(&str, &str, Value, bool, bool)] = &[
        ("NumberIn", "data.numbers", json!({"values": [2]}), true, false),
        ("NumberIn", "data.numbers", json!({"values": [9]}), false, false),
        ("NumberNotIn", "data.numbers", json!({"values": [9]}), true, false),
        ("NumberNotIn", "data.numbers", json!({"values": [9, 2]}), false, false),
        ("NumberGreaterThan", "data.numbers", json!({"value": 2}), true, false),
        ("NumberGreaterThan", "data.numbers", json!({"value": 3}), false, false),
        ("NumberLessThanOrEquals", "data.numbers", json!({"value": 1}), true, false),
        ("NumberInRange", "data.numbers", json!({"values": [[2, 2]]}), true, false),
        ("NumberNotInRange", "data.numbers", json!({"values": [[2, 2]]}), false, false),
        ("NumberNotInRange", "data.numbers", json!({"values": [[7, 9]]}), true, false),
        ("StringIn", "data.strings", json!({"values": ["contoso"]}), true, false),
        ("StringNotIn", "data.strings", json!({"values": ["fabrikam"]}), false, false),
        ("StringNotContains", "data.strings", json!({"values": ["x"]}), true, false),
        ("StringEndsWith", "data.strings", json!({"values": ["KAM"]}), true, false),
        // Elements the operator does not compare are ignored.
        ("NumberIn", "data.mixed", json!({"values": [1]}), true, false),
        ("NumberIn", "data.mixed", json!({"values": [4]}), false, false),
        ("NumberNotIn", "data.mixed", json!({"values": [4]}), true, false),
        ("StringIn", "data.mixed", json!({"values": ["two"]}), true, false),
        ("StringIn", "data.mixed", json!({"values": ["1"]}), true, false),
        ("BoolEquals", "data.mixed", json!({"value": true}), true, false),
        ("BoolEquals", "data.mixed", json!({"value": false}), false, false),
        ("StringContains", "data.objects", json!({"values": ["a"]}), false, false),
        ("NumberNotIn", "data.objects", json!({"values": [1]}), true, false),
        // An empty array: nothing matches, so the `Not` operators hold.
        ("NumberIn", "data.empty", json!({"values": [1]}), false, false),
        ("NumberNotIn", "data.empty", json!({"values": [1]}), true, false),
        ("StringNotContains", "data.empty", json!({"values": ["x"]}), true, false),
        ("IsNotNull", "data.empty", json!({}), true, true),
        ("IsNullOrUndefined", "data.empty", json!({}), false, false),
        // Scalars are unaffected by the flag.
        ("NumberIn", "data.counter", json!({"values": [5]}), true, true),
    ];
    for (operator, key, operands, with, without) in cases {
        check(advanced(operator, key, operands.clone(), true), &event, Ok(*with));
        check(advanced(operator, key, operands.clone(), false), &event, Ok(*without));
    }
}

#[test]
fn data_that_is_not_a_json_object() {
    let text = event(Data::from_json_value(json!("Hello Contoso.")));
    let binary = event(Data::Binary(Bytes::from_static(br#"{"counter": 5}"#)));
    let none = event(Data::None);
    let cases: Vec<(&CloudEvent, &str, &str, Value, bool)> = vec![
        (&text, "StringContains", "data", json!({"value": "contoso"}), true),
        (&text, "StringContains", "data.x", json!({"value": "contoso"}), false),
        (&text, "IsNullOrUndefined", "data.x", json!({}), true),
        (&binary, "NumberIn", "data.counter", json!({"values": [5]}), false),
        (&binary, "StringContains", "data", json!({"values": ["counter"]}), false),
        (&binary, "IsNullOrUndefined", "data", json!({}), true),
        (&binary, "StringNotIn", "data", json!({"values": ["x"]}), true),
        (&none, "IsNullOrUndefined", "data.counter", json!({}), true),
        (&none, "IsNotNull", "data", json!({}), false),
    ];
    for (event, operator, key, operands, expected) in cases {
        check(advanced(operator, key, operands, false), event, Ok(expected));
    }
}

#[test]
fn subjects_types_and_conjunction() {
    let event = json_event();
    let mut no_subject = json_event();
    no_subject.subject = None;
    let all = |filters: Value| -> Value { json!({"advancedFilters": filters}) };
    let cases: Vec<(Value, &CloudEvent, bool)> = vec![
        (json!({}), &event, true),
        (json!({}), &no_subject, true),
        (json!({"subjectBeginsWith": "vehicles/"}), &event, true),
        (json!({"subjectBeginsWith": "vehicles/", "isSubjectCaseSensitive": true}), &event, false),
        (json!({"subjectBeginsWith": "Vehicles/", "isSubjectCaseSensitive": true}), &event, true),
        (json!({"subjectBeginsWith": "factory1/"}), &event, false),
        (json!({"subjectEndsWith": "gps"}), &event, true),
        (json!({"subjectEndsWith": "gps", "isSubjectCaseSensitive": true}), &event, false),
        (json!({"subjectEndsWith": "/GPS", "isSubjectCaseSensitive": true}), &event, true),
        (json!({"subjectBeginsWith": "vehicles/", "subjectEndsWith": "gps"}), &event, true),
        (json!({"subjectBeginsWith": "vehicles/", "subjectEndsWith": "temp"}), &event, false),
        (json!({"subjectBeginsWith": "", "subjectEndsWith": ""}), &event, true),
        (json!({"subjectBeginsWith": "", "subjectEndsWith": ""}), &no_subject, true),
        (json!({"subjectBeginsWith": "v"}), &no_subject, false),
        (json!({"subjectEndsWith": "s"}), &no_subject, false),
        (json!({"includedEventTypes": ["MQTT.EventPublished"]}), &event, true),
        (json!({"includedEventTypes": ["Other", "MQTT.EventPublished"]}), &event, true),
        (json!({"includedEventTypes": ["mqtt.eventpublished"]}), &event, false),
        (json!({"includedEventTypes": ["All"]}), &event, false),
        (
            all(json!([
                {"operatorType": "NumberIn", "key": "data.counter", "values": [5]},
                {"operatorType": "StringIn", "key": "data.name", "values": ["azure data factory"]},
            ])),
            &event,
            true,
        ),
        (
            all(json!([
                {"operatorType": "NumberIn", "key": "data.counter", "values": [5]},
                {"operatorType": "StringIn", "key": "data.name", "values": ["aws"]},
            ])),
            &event,
            false,
        ),
        // The same key may appear in several filters.
        (
            all(json!([
                {"operatorType": "NumberGreaterThan", "key": "data.counter", "value": 1},
                {"operatorType": "NumberLessThan", "key": "data.counter", "value": 9},
            ])),
            &event,
            true,
        ),
        (
            json!({
                "includedEventTypes": ["MQTT.EventPublished"],
                "subjectBeginsWith": "vehicles/",
                "advancedFilters": [{"operatorType": "NumberIn", "key": "data.counter", "values": [4]}],
            }),
            &event,
            false,
        ),
    ];
    for (config, event, expected) in cases {
        check(config, event, Ok(expected));
    }
}

#[test]
fn invalid_filters() {
    let event = json_event();
    let one = |filter: Value| json!({"advancedFilters": [filter]});
    let long = "x".repeat(513);
    let many_filters: Vec<Value> =
        (0..26).map(|_| json!({"operatorType": "IsNotNull", "key": "id"})).collect();
    let many_values: Vec<Value> = (0..13)
        .map(|_| json!({"operatorType": "NumberIn", "key": "data.a", "values": [1, 2]}))
        .collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            one(json!({"operatorType": "NumberIn", "key": "data.a"})),
            "sub.advancedFilters[0]: NumberIn needs at least one of `values`",
        ),
        (
            one(json!({"operatorType": "StringIn", "key": "data.a", "values": []})),
            "sub.advancedFilters[0]: StringIn needs at least one of `values`",
        ),
        (
            one(json!({"operatorType": "NumberIn", "key": "data.a", "values": [1, "2"]})),
            "sub.advancedFilters[0].values[1]: must be a number",
        ),
        (
            one(json!({"operatorType": "NumberNotIn", "key": "data.a", "value": true})),
            "sub.advancedFilters[0].value: must be a number",
        ),
        (
            one(json!({"operatorType": "NumberLessThan", "key": "data.a", "values": [1]})),
            "sub.advancedFilters[0]: NumberLessThan takes a single `value`, not `values`",
        ),
        (
            one(json!({"operatorType": "NumberGreaterThanOrEquals", "key": "data.a"})),
            "sub.advancedFilters[0]: NumberGreaterThanOrEquals needs a `value`",
        ),
        (
            one(json!({"operatorType": "NumberGreaterThan", "key": "data.a", "value": "5"})),
            "sub.advancedFilters[0].value: must be a number",
        ),
        (
            one(json!({"operatorType": "BoolEquals", "key": "data.a", "value": "true"})),
            "sub.advancedFilters[0].value: must be true or false",
        ),
        (
            one(
                json!({"operatorType": "StringIn", "key": "data.a", "value": "a", "values": ["b"]}),
            ),
            "sub.advancedFilters[0]: give `values` or `value`, not both",
        ),
        (
            one(json!({"operatorType": "IsNotNull", "key": "data.a", "value": 1})),
            "sub.advancedFilters[0]: IsNotNull takes no `value` or `values`",
        ),
        (
            one(json!({"operatorType": "IsNullOrUndefined", "key": "data.a", "values": []})),
            "sub.advancedFilters[0]: IsNullOrUndefined takes no `value` or `values`",
        ),
        (
            one(
                json!({"operatorType": "NumberInRange", "key": "data.a", "values": [[1, 2], [5, 1]]}),
            ),
            "sub.advancedFilters[0].values[1]: the low end is above the high end",
        ),
        (
            one(json!({"operatorType": "NumberNotInRange", "key": "data.a", "values": [[1]]})),
            "sub.advancedFilters[0].values[0]: a range must be two numbers, [low, high]",
        ),
        (
            one(json!({"operatorType": "NumberInRange", "key": "data.a", "values": [1, 2]})),
            "sub.advancedFilters[0].values[0]: a range must be two numbers, [low, high]",
        ),
        (
            one(json!({"operatorType": "NumberInRange", "key": "data.a", "values": [["1", 2]]})),
            "sub.advancedFilters[0].values[0]: a range must be two numbers, [low, high]",
        ),
        (
            one(json!({"operatorType": "StringContains", "key": "data.a", "values": ["a", 5]})),
            "sub.advancedFilters[0].values[1]: must be a string",
        ),
        (
            one(json!({"operatorType": "StringContains", "key": "data.a", "values": [long]})),
            "sub.advancedFilters[0].values[0]: longer than 512 characters",
        ),
        // Keys.
        (
            one(json!({"operatorType": "IsNotNull", "key": ""})),
            "sub.advancedFilters[0].key: `` is not a key: use `data`, `data.<path>`, a CloudEvents attribute or an extension attribute name (letters and digits)",
        ),
        (
            one(json!({"operatorType": "IsNotNull", "key": "my-ext"})),
            "sub.advancedFilters[0].key: `my-ext` is not a key: use `data`, `data.<path>`, a CloudEvents attribute or an extension attribute name (letters and digits)",
        ),
        (
            one(json!({"operatorType": "IsNotNull", "key": "data_base64"})),
            "sub.advancedFilters[0].key: `data_base64` is not a key: use `data`, `data.<path>`, a CloudEvents attribute or an extension attribute name (letters and digits)",
        ),
        (
            one(json!({"operatorType": "IsNotNull", "key": "data."})),
            "sub.advancedFilters[0].key: `data.` has an empty member name",
        ),
        (
            one(json!({"operatorType": "IsNotNull", "key": "data.a..b"})),
            "sub.advancedFilters[0].key: `data.a..b` has an empty member name",
        ),
        // Limits.
        (
            json!({"advancedFilters": many_filters}),
            "sub.advancedFilters: 26 advanced filters; at most 25 are allowed",
        ),
        (
            json!({"advancedFilters": many_values}),
            "sub.advancedFilters: 26 values across all advanced filters; at most 25 are allowed",
        ),
        (
            json!({"includedEventTypes": []}),
            "sub.includedEventTypes: lists no event type; omit it to include every type",
        ),
        (
            json!({"includedEventTypes": ["a", ""]}),
            "sub.includedEventTypes[1]: an event type must not be empty",
        ),
    ];
    for (config, expected) in cases {
        check(config, &event, Err(expected));
    }
}

#[test]
fn limits_are_inclusive() {
    let event = json_event();
    let twenty_five: Vec<Value> = (0..25)
        .map(|_| json!({"operatorType": "StringIn", "key": "source", "values": ["testnamespace"]}))
        .collect();
    check(json!({"advancedFilters": twenty_five}), &event, Ok(true));
    let values: Vec<i32> = (0..25).collect();
    check(advanced("NumberIn", "data.counter", json!({"values": values}), false), &event, Ok(true));
    let long = "x".repeat(512);
    check(advanced("StringIn", "source", json!({"values": [long]}), false), &event, Ok(false));
}

#[test]
fn error_fields_use_the_prefix() {
    let config = FiltersConfig { included_event_types: Some(vec![]), ..FiltersConfig::default() };
    assert_eq!(config.compile("").unwrap_err().field, "includedEventTypes");
    assert_eq!(
        config.compile("routes.r1.filter").unwrap_err().field,
        "routes.r1.filter.includedEventTypes"
    );
}

#[test]
fn reads_toml() {
    let config: FiltersConfig = toml::from_str(
        r#"
        subjectBeginsWith = "vehicles/"
        includedEventTypes = ["MQTT.EventPublished"]
        enableAdvancedFilteringOnArrays = true

        [[advancedFilters]]
        operatorType = "NumberGreaterThan"
        key = "data.Temp"
        value = 100

        [[advancedFilters]]
        operatorType = "NumberInRange"
        key = "data.speed"
        values = [[0, 10.5], [20, 30]]
        "#,
    )
    .unwrap();
    assert_eq!(config.advanced_filters[0].operator_type, Operator::NumberGreaterThan);
    assert_eq!(config.advanced_filters[1].values, Some(vec![json!([0, 10.5]), json!([20, 30])]));
    let filter = config.compile("filter").unwrap();
    let mut event = json_event();
    event.data = Data::from_json_value(json!({"Temp": 101, "speed": [25]}));
    assert!(filter.matches(&event));
    event.data = Data::from_json_value(json!({"Temp": 101, "speed": [15]}));
    assert!(!filter.matches(&event));

    for (text, problem) in [
        ("subjectBeginsWIth = 'x'", "unknown field `subjectBeginsWIth`"),
        (
            "[[advancedFilters]]\noperatorType = 'NumberEquals'\nkey = 'id'",
            "unknown variant `NumberEquals`",
        ),
        (
            "[[advancedFilters]]\noperatorType = 'IsNotNull'\nkey = 'id'\nvalus = 1",
            "unknown field `valus`",
        ),
    ] {
        let error = toml::from_str::<FiltersConfig>(text).unwrap_err().to_string();
        assert!(error.contains(problem), "{text}: {error}");
    }
}
