use serde_json::json;

use super::*;

const PEM: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ0x+/=\n-----END CERTIFICATE-----\n";
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

/// Event Grid's JSON bodies parse into our types and serialize back unchanged.
#[test]
fn event_grid_json_shapes_round_trip() {
    let bodies = [
        json!({"properties": {"authenticationName": "127.0.0.1", "state": "Enabled",
            "clientCertificateAuthentication": {"validationScheme": "IpMatchesAuthenticationName"},
            "attributes": {"room": "345", "floor": 3, "bldg": "17", "sensors": ["a", "b"]},
            "description": "..."}}),
        json!({"name": "thumb", "properties": {"state": "Disabled",
            "clientCertificateAuthentication": {"validationScheme": "ThumbprintMatch",
                "allowedThumbprints": ["ab".repeat(32)]},
            "passwordHash": HASH}}),
    ];
    for body in bodies {
        let client: Resource<ClientProperties> = serde_json::from_value(body.clone()).unwrap();
        client.properties.validate().unwrap();
        assert_eq!(serde_json::to_value(&client).unwrap(), body);
    }
    let group: Resource<ClientGroupProperties> = serde_json::from_value(
        json!({"properties": {"description": "d", "query": "attributes.b IN ['a', 'b', 'c']"}}),
    )
    .unwrap();
    group.properties.validate().unwrap();
    let space: Resource<TopicSpaceProperties> = serde_json::from_value(json!({"properties": {
        "description": "d",
        "topicTemplates": ["segment1/+/segment3/${client.authenticationName}",
            "segment1/${client.attributes.attribute1}/segment3/#"]}}))
    .unwrap();
    space.properties.validate(&Limits::default()).unwrap();
    let binding: Resource<PermissionBindingProperties> = serde_json::from_value(json!({
        "properties": {"clientGroupName": "$all", "topicSpaceName": "samples",
            "permission": "Publisher"}}))
    .unwrap();
    binding.properties.validate().unwrap();
    let certificate: Resource<CaCertificateProperties> = serde_json::from_value(
        json!({"properties": {"description": "d", "encodedCertificate": PEM}}),
    )
    .unwrap();
    certificate.properties.validate().unwrap();
}

#[test]
fn client_defaults_and_secrets() {
    let client: ClientProperties = serde_json::from_value(json!({"passwordHash": HASH})).unwrap();
    assert_eq!(client.state, ClientState::Enabled);
    assert_eq!(client.authentication_name_or("car1"), "car1");
    assert_eq!(
        serde_json::to_value(client.without_secrets()).unwrap(),
        json!({"state": "Enabled"})
    );
}

#[test]
fn attribute_values_are_typed() {
    let cases: &[(serde_json::Value, &str)] = &[
        (
            json!({"a": 1.5}),
            "invalid type: floating point `1.5`, expected a string, an integer or an array of strings",
        ),
        (
            json!({"a": true}),
            "invalid type: boolean `true`, expected a string, an integer or an array of strings",
        ),
        (json!({"a": ["x", 1]}), "invalid type: integer `1`, expected a string"),
        (
            json!({"a": {"b": "c"}}),
            "invalid type: map, expected a string, an integer or an array of strings",
        ),
        (json!({"a": u64::MAX}), "integer 18446744073709551615 is out of range"),
    ];
    for (attributes, want) in cases {
        let body = json!({ "attributes": attributes });
        let error = serde_json::from_value::<ClientProperties>(body).unwrap_err().to_string();
        assert!(error.starts_with(want), "{attributes}: {error}");
    }
}

const SAMPLE: &str = r#"
[namespace]
name = "fleet"
alternativeAuthenticationNameSources = ["ClientCertificateSubject", "ClientCertificateDns"]

[clients.car1]
attributes = { site = "berlin", floor = 3, sensors = ["gps", "can"] }
clientCertificateAuthentication = { validationScheme = "SubjectMatchesAuthenticationName" }

[clients."device:2.b_c"]
authenticationName = "Device Two"
state = "Disabled"

[clientGroups.berlin]
query = "attributes.site = 'berlin'"

[topicSpaces.vehicles]
topicTemplates = ["vehicles/${client.authenticationName}/#"]

[permissionBindings.berlin-publish]
clientGroupName = "berlin"
topicSpaceName = "vehicles"
permission = "Publisher"

[permissionBindings.all-subscribe]
clientGroupName = "$all"
topicSpaceName = "vehicles"
permission = "Subscriber"

[caCertificates.fleet-ca]
encodedCertificate = """
-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUQ0x
-----END CERTIFICATE-----
"""
"#;

#[test]
fn toml_sample_parses_and_validates() {
    let resources = Resources::from_toml(SAMPLE).unwrap();
    resources.validate(&Limits::default()).unwrap();
    assert_eq!(resources.namespace.name, "fleet");
    assert_eq!(
        resources.clients["car1"].attributes["sensors"],
        AttributeValue::StringArray(vec!["gps".into(), "can".into()])
    );
    let (name, client) = resources.client_by_authentication_name("DEVICE two").unwrap();
    assert_eq!((name, client.state), ("device:2.b_c", ClientState::Disabled));
    assert!(resources.client_by_authentication_name("car2").is_none());
    // The same resources survive a JSON round trip (the store and the API).
    let json = serde_json::to_string(&resources).unwrap();
    assert_eq!(serde_json::from_str::<Resources>(&json).unwrap(), resources);
}

#[test]
fn defaults_and_limits() {
    let resources = Resources::from_toml("").unwrap();
    resources.validate(&Limits::default()).unwrap();
    assert_eq!(resources.namespace.name, "gridmq");
    let limits: Limits = toml::from_str("client_groups = 20").unwrap();
    assert_eq!(limits, Limits { client_groups: 20, ..Limits::default() });
    assert!(toml::from_str::<Limits>("groups = 20").is_err());
}

/// Each row: TOML added to a valid base, and the error it must give.
#[test]
fn validation_errors() {
    let many_groups: String = (0..11)
        .map(|i| format!("[clientGroups.group-{i}]\nquery = \"authenticationName = 'x'\"\n"))
        .collect();
    let eleven_templates = format!(
        "[topicSpaces.big]\ntopicTemplates = [{}]",
        (0..11).map(|i| format!("\"t/{i}\"")).collect::<Vec<_>>().join(", ")
    );
    let big_attribute = format!("[clients.c]\nattributes = {{ a = \"{}\" }}", "x".repeat(4095));
    let cases: Vec<(String, &str)> = vec![
        ("[namespace]\nname = \"ns\"".into(), r#"namespace.name: name "ns" must be 3-50 of A-Z, a-z, 0-9 and '-'"#),
        ("[namespace]\nalternativeAuthenticationNameSources = [\"ClientCertificateIp\", \"ClientCertificateIp\"]".into(),
            "namespace.alternativeAuthenticationNameSources[1]: ClientCertificateIp is listed twice"),
        ("[clientGroups.edge]\nquery = \"(attributes.a = 1))\"".into(),
            "clientGroups[edge].query: unexpected token ')' at 18, expected 'and', 'or' or the end of the query"),
        ("[clientGroups.ed]\nquery = \"attributes.a = 1\"".into(), r#"clientGroups[ed]: name "ed" must be 3-50 of A-Z, a-z, 0-9 and '-'"#),
        ("[clientGroups.\"$all\"]\nquery = \"attributes.a = 1\"".into(), r#"clientGroups[$all]: name "$all" must be 3-50 of A-Z, a-z, 0-9 and '-'"#),
        ("[clientGroups.\"a_b\"]\nquery = \"attributes.a = 1\"".into(), r#"clientGroups[a_b]: name "a_b" must be 3-50 of A-Z, a-z, 0-9 and '-'"#),
        (many_groups, "clientGroups: 12 declared, at most 10 allowed"),
        ("[topicSpaces.empty]\ntopicTemplates = []".into(), "topicSpaces[empty].topicTemplates: a topic space holds 1 to 10 templates, not 0"),
        (eleven_templates, "topicSpaces[big].topicTemplates: a topic space holds 1 to 10 templates, not 11"),
        ("[topicSpaces.bad]\ntopicTemplates = [\"a/b\", \"a/#/b\"]".into(), "topicSpaces[bad].topicTemplates[1]: '#' must be the last level"),
        ("[topicSpaces.bad]\ntopicTemplates = [\"$SYS/#\"]".into(), "topicSpaces[bad].topicTemplates[0]: topics starting with '$' are reserved"),
        ("[permissionBindings.b-1]\nclientGroupName = \"nope\"\ntopicSpaceName = \"vehicles\"\npermission = \"Publisher\"".into(),
            r#"permissionBindings[b-1].clientGroupName: no client group named "nope""#),
        ("[permissionBindings.b-1]\nclientGroupName = \"$all\"\ntopicSpaceName = \"nope\"\npermission = \"Subscriber\"".into(),
            r#"permissionBindings[b-1].topicSpaceName: no topic space named "nope""#),
        ("[clients.\"a b\"]".into(), r#"clients[a b]: client name "a b" must be 1-128 of A-Z, a-z, 0-9, '-', ':', '.' and '_'"#),
        (format!("[clients.{}]", "c".repeat(129)), "must be 1-128 of A-Z"),
        ("[clients.c]\nauthenticationName = \"\"".into(), "clients[c].authenticationName: must be 1-128 characters, without U+0000"),
        ("[clients.c]\nauthenticationName = \"CAR1\"".into(),
            r#"clients[car1].authenticationName: "car1" is already the authentication name of client "c" (authentication names are unique case-insensitively)"#),
        ("[clients.c]\nattributes = { \"a-b\" = \"x\" }".into(), "clients[c].attributes.a-b: attribute keys may hold only letters, digits and '_'"),
        (big_attribute, "clients[c].attributes: the attributes take 4096 bytes; they must take less than 4 KB"),
        ("[clients.c]\npasswordHash = \"hunter2\"".into(), "clients[c].passwordHash: must be an Argon2 PHC string"),
        ("[clients.c]\npasswordHash = \"$2b$12$abcdefghijklmnopqrstuv\"".into(), "clients[c].passwordHash: must be an Argon2 PHC string"),
        ("[clients.c]\nclientCertificateAuthentication = { validationScheme = \"ThumbprintMatch\" }".into(),
            "clients[c].clientCertificateAuthentication.allowedThumbprints: ThumbprintMatch needs one or two thumbprints (primary and secondary)"),
        ("[clients.c]\nclientCertificateAuthentication = { validationScheme = \"ThumbprintMatch\", allowedThumbprints = [\"xyz\"] }".into(),
            "clients[c].clientCertificateAuthentication.allowedThumbprints[0]: must be a hex SHA-256 (64 digits) or SHA-1 (40 digits) thumbprint"),
        (format!("[clients.c]\nclientCertificateAuthentication = {{ validationScheme = \"ThumbprintMatch\", allowedThumbprints = [\"{0}\", \"{0}\", \"{0}\"] }}", "a".repeat(40)),
            "clients[c].clientCertificateAuthentication.allowedThumbprints: ThumbprintMatch needs one or two thumbprints"),
        (format!("[clients.c]\nclientCertificateAuthentication = {{ validationScheme = \"DnsMatchesAuthenticationName\", allowedThumbprints = [\"{}\"] }}", "a".repeat(40)),
            "clients[c].clientCertificateAuthentication.allowedThumbprints: allowed only with validationScheme ThumbprintMatch"),
        ("[caCertificates.ca-2]\nencodedCertificate = \"MIIB\"".into(),
            "caCertificates[ca-2].encodedCertificate: must be one PEM block from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----"),
    ];
    for (extra, want) in cases {
        let text = format!("{SAMPLE}\n{extra}");
        let resources = match Resources::from_toml(&text) {
            Ok(resources) => resources,
            // Some rows redefine a sample table; apply those to a minimal base instead.
            Err(_) => Resources::from_toml(&format!(
                "[clients.car1]\n[topicSpaces.vehicles]\ntopicTemplates = [\"v/#\"]\n{extra}"
            ))
            .unwrap_or_else(|e| panic!("{extra}: {e}")),
        };
        let error = resources.validate(&Limits::default()).unwrap_err().to_string();
        assert!(
            error.starts_with(want) || error.contains(want),
            "{extra}\n got: {error}\nwant: {want}"
        );
    }
}

#[test]
fn unknown_fields_and_values_are_refused() {
    let cases = [
        ("[clients.c]\nstate = \"Paused\"", "unknown variant `Paused`"),
        ("[clients.c]\npassword = \"x\"", "unknown field `password`"),
        ("[clientGroups.abc]\nquerry = \"x\"", "unknown field `querry`"),
        (
            "[permissionBindings.abc]\nclientGroupName = \"$all\"\ntopicSpaceName = \"t\"\npermission = \"Admin\"",
            "unknown variant `Admin`",
        ),
        ("[topicSpace.abc]", "unknown field `topicSpace`"),
    ];
    for (text, want) in cases {
        let error = Resources::from_toml(text).unwrap_err().to_string();
        assert!(error.contains(want), "{text}: {error}");
    }
}
