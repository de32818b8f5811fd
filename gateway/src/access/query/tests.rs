use std::collections::BTreeMap;

use super::*;

fn attrs() -> BTreeMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::String(v.into());
    let list = |v: &[&str]| AttributeValue::StringArray(v.iter().map(|s| s.to_string()).collect());
    BTreeMap::from([
        ("type".into(), s("home-sensors")),
        ("room".into(), s("345")),
        ("floor".into(), AttributeValue::Integer(3)),
        ("sensors".into(), list(&["motion", "humidity"])),
        ("empty".into(), list(&[])),
    ])
}

#[track_caller]
fn check(query: &str, want: bool) {
    let attributes = attrs();
    let client = ClientView { authentication_name: "client1", attributes: &attributes };
    let parsed = Query::parse(query).unwrap_or_else(|e| panic!("{query:?}: {e}"));
    assert_eq!(parsed.matches(&client), want, "{query:?}");
}

#[test]
fn evaluation() {
    let cases: &[(&str, bool)] = &[
        // Event Grid's documented examples.
        (
            r#"(attributes.sensors = "motion" or attributes.sensors = "humidity") or attributes.type = "home-sensors""#,
            true,
        ),
        (
            r#"attributes.sensors IN ["motion", "humidity", "temperature"] and attributes.floor <= 5"#,
            true,
        ),
        ("authenticationName IN ['client1', 'client2']", true),
        ("authenticationName IN ['client2', 'client3']", false),
        // Equality and inequality.
        ("authenticationName = 'client1'", true),
        ("authenticationName = 'Client1'", false),
        ("authenticationName <> 'client1'", false),
        ("authenticationName != 'x'", true),
        ("attributes.room = '345'", true),
        ("attributes.room = 345", false),
        ("attributes.floor = 3", true),
        ("attributes.floor = '3'", false),
        ("attributes.floor <> '3'", false),
        ("attributes.floor <> 4", true),
        ("attributes.floor != 3", false),
        // Ordering: integers only.
        ("attributes.floor < 4", true),
        ("attributes.floor < 3", false),
        ("attributes.floor > 2", true),
        ("attributes.floor >= 3", true),
        ("attributes.floor <= 2", false),
        ("attributes.floor > -1", true),
        ("attributes.room > 1", false),
        ("attributes.sensors > 1", false),
        // Arrays: any element for = and IN, no element for <>.
        ("attributes.sensors = 'humidity'", true),
        ("attributes.sensors = 'light'", false),
        ("attributes.sensors <> 'light'", true),
        ("attributes.sensors <> 'motion'", false),
        ("attributes.sensors IN ['light', 'motion']", true),
        ("attributes.sensors IN ['light', 3]", false),
        ("attributes.empty = 'x'", false),
        ("attributes.empty <> 'x'", true),
        // Missing attributes are false under every operator.
        ("attributes.missing = 'x'", false),
        ("attributes.missing <> 'x'", false),
        ("attributes.missing < 10", false),
        ("attributes.missing IN ['x']", false),
        ("attributes.Room = '345'", false),
        // Precedence: and binds tighter than or.
        (
            "attributes.floor = 9 and attributes.room = '345' or authenticationName = 'client1'",
            true,
        ),
        ("authenticationName = 'client1' or attributes.floor = 9 and attributes.room = 'x'", true),
        (
            "(authenticationName = 'client1' or attributes.floor = 9) and attributes.room = 'x'",
            false,
        ),
        ("attributes.room = '345' and (attributes.floor = 9 or attributes.floor = 3)", true),
        // Keywords and operand names are case-insensitive.
        ("AuthenticationName in ['client1'] AND Attributes.floor = 3 OR attributes.x = 1", true),
        ("((((authenticationName = 'client1'))))", true),
        ("authenticationName='client1'and attributes.floor>=3", true),
        ("authenticationName = \"it's\" or authenticationName = 'say \"hi\"'", false),
    ];
    for &(query, want) in cases {
        check(query, want);
    }
}

#[test]
fn parse_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "",
            "unexpected end of query at 0, expected an operand (authenticationName or attributes.<key>)",
        ),
        (
            "attributes.a = 'x')",
            "unexpected token ')' at 18, expected 'and', 'or' or the end of the query",
        ),
        ("(attributes.a = 'x'", "unexpected end of query at 19, expected ')', 'and' or 'or'"),
        (
            "attributes.a = 'x' and )",
            "unexpected token ')' at 23, expected an operand (authenticationName or attributes.<key>)",
        ),
        (
            "name = 'x'",
            "unexpected token 'name' at 0, expected an operand (authenticationName or attributes.<key>)",
        ),
        (
            "attributes. = 'x'",
            "unexpected token 'attributes.' at 0, expected an operand (authenticationName or attributes.<key>)",
        ),
        ("attributes.a-b = 'x'", "unexpected number - at 12, expected a 64-bit integer"),
        ("attributes.a == 'x'", "unexpected token '=' at 14, expected a string or integer literal"),
        (
            "attributes.a < 'x'",
            "unexpected token \"x\" at 15, expected an integer (ordering compares integers only)",
        ),
        (
            "attributes.a 'x'",
            "unexpected token \"x\" at 13, expected an operator (=, <>, !=, <, >, <=, >= or in)",
        ),
        ("attributes.a in 'x'", "unexpected token \"x\" at 16, expected '[' opening the list"),
        ("attributes.a in []", "unexpected token ']' at 17, expected a string or integer literal"),
        ("attributes.a in ['x' 'y']", "unexpected token \"y\" at 21, expected ',' or ']'"),
        (
            "attributes.a in ['x',",
            "unexpected end of query at 21, expected a string or integer literal",
        ),
        ("attributes.a = 'x", "unexpected unterminated string at 15, expected a closing quote"),
        (
            "attributes.a = 99999999999999999999",
            "unexpected number 99999999999999999999 at 15, expected a 64-bit integer",
        ),
        (
            "attributes.a = 'x' && attributes.b = 'y'",
            "unexpected character '&' at 19, expected a token",
        ),
        (
            "attributes.a = 'x' or",
            "unexpected end of query at 21, expected an operand (authenticationName or attributes.<key>)",
        ),
        (
            "$all",
            "unexpected token '$all' at 0, expected an operand (authenticationName or attributes.<key>)",
        ),
        (
            "authenticationName = 'ünï' )",
            "unexpected token ')' at 27, expected 'and', 'or' or the end of the query",
        ),
    ];
    for &(query, want) in cases {
        match Query::parse(query) {
            Ok(parsed) => panic!("{query:?} parsed: {parsed:?}"),
            Err(error) => assert_eq!(error.to_string(), want, "{query:?}"),
        }
    }
}

#[test]
fn nesting_is_bounded() {
    let ok = format!("{}authenticationName = 'a'{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(Query::parse(&ok).is_ok());
    let deep = format!(
        "{}authenticationName = 'a'{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    let error = Query::parse(&deep).unwrap_err();
    assert_eq!(error.position, MAX_DEPTH);
    assert_eq!(error.expected, "at most 32 nested parentheses");
}
