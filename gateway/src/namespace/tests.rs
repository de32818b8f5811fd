use super::*;
use crate::config::Config;

fn stored(kind: &str, name: &str, body: &str) -> (String, String, Vec<u8>) {
    (kind.into(), name.into(), body.as_bytes().to_vec())
}

#[test]
fn the_embedded_default_has_no_namespace() {
    let config = Config::default();
    assert!(Namespace::open(config.namespace_section(), &[]).expect("open").is_none());
    let config = Config::parse("[namespace]\nname = \"fleet\"\n").expect("config");
    assert!(Namespace::open(config.namespace_section(), &[]).expect("open").is_none());
}

#[test]
fn stored_resources_turn_access_control_on() {
    let rows = [stored("clientGroups", "fleet", r#"{"query":"attributes.a = 1"}"#)];
    let namespace = Namespace::open(Config::default().namespace_section(), &rows)
        .expect("open")
        .expect("namespace");
    assert!(namespace.resources().client_groups.contains_key("fleet"));
    assert!(!namespace.is_declared(ResourceKind::ClientGroups, "fleet"));
}

#[test]
fn the_config_is_authoritative_for_the_names_it_declares() {
    let config =
        Config::parse("[topicSpaces.vehicles]\ntopicTemplates = [\"config/#\"]\n").expect("config");
    let rows = [
        stored("topicSpaces", "vehicles", r#"{"topicTemplates":["stored/#"]}"#),
        stored("topicSpaces", "extra", r#"{"topicTemplates":["extra/#"]}"#),
        stored("queues", "unknown-kind", "{}"),
    ];
    let namespace =
        Namespace::open(config.namespace_section(), &rows).expect("open").expect("namespace");
    let resources = namespace.resources();
    assert_eq!(resources.topic_spaces["vehicles"].topic_templates, ["config/#"]);
    assert_eq!(resources.topic_spaces["extra"].topic_templates, ["extra/#"]);
    assert!(namespace.is_declared(ResourceKind::TopicSpaces, "vehicles"));
}

#[test]
fn an_invalid_stored_resource_is_named() {
    let rows = [stored(
        "permissionBindings",
        "b-one",
        r#"{"clientGroupName":"gone","topicSpaceName":"gone","permission":"Publisher"}"#,
    )];
    let error = Namespace::open(Config::default().namespace_section(), &rows)
        .err()
        .expect("invalid")
        .to_string();
    assert!(error.contains("permissionBindings[b-one].clientGroupName"), "{error}");
    let rows = [stored("clients", "car1", "not json")];
    let error = Namespace::open(Config::default().namespace_section(), &rows)
        .err()
        .expect("invalid")
        .to_string();
    assert!(error.starts_with("store: clients[car1]"), "{error}");
}

#[test]
fn errors_about_the_changed_resource_are_relative_to_the_body() {
    let error = ValidationError::new("clientGroups[edge].query", "bad");
    assert_eq!(relative_to(error, "clientGroups[edge]").path, "properties.query");
    let error = ValidationError::new("clientGroups[edge]", "bad");
    assert_eq!(relative_to(error, "clientGroups[edge]").path, "properties");
    let error = ValidationError::new("clientGroups[edge2].query", "bad");
    assert_eq!(relative_to(error, "clientGroups[edge]").path, "clientGroups[edge2].query");
}

#[tokio::test]
async fn another_authentication_name_cannot_take_a_known_client_id() {
    use std::net::SocketAddr;

    use crate::hooks::AuthStep;
    use crate::mqtt::Protocol;

    let config = Config::parse("[auth]\nallow_anonymous = true\n").expect("config");
    let namespace =
        Namespace::open(config.namespace_section(), &[]).expect("open").expect("namespace");
    let gatekeeper = Gatekeeper { namespace: namespace.clone() };
    let request = |username: &'static str| AuthRequest {
        step: AuthStep::Connect,
        protocol: Protocol::V5,
        client_id: "dev",
        username: Some(username),
        password: None,
        method: None,
        data: None,
        peer_addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        peer_certificates: &[],
    };
    let AuthDecision::Allow { identity, .. } = gatekeeper.authenticate(request("alice")).await
    else {
        panic!("alice may connect")
    };
    let identity = ClientIdentity { client_id: "dev".into(), ..identity };
    namespace.on_event(&LifecycleEvent::Connected {
        identity,
        connection: 1,
        session_present: false,
        sequence: None,
    });
    assert!(matches!(gatekeeper.authenticate(request("ALICE")).await, AuthDecision::Allow { .. }));
    let AuthDecision::Deny { code, reason } = gatekeeper.authenticate(request("bob")).await else {
        panic!("bob may not take alice's client id")
    };
    assert_eq!(code, ReasonCode::NotAuthorized);
    assert!(reason.unwrap_or_default().contains("another authentication name"));
}

#[tokio::test]
async fn a_reload_keeps_api_resources_and_replaces_declared_ones() {
    let config = Config::parse(
        "[topicSpaces.declared]\ntopicTemplates = [\"a/#\"]\n\
         [topicSpaces.dropped]\ntopicTemplates = [\"b/#\"]\n",
    )
    .expect("config");
    let rows = [
        stored("topicSpaces", "api-kept", r#"{"topicTemplates":["kept/#"]}"#),
        stored("topicSpaces", "api-taken", r#"{"topicTemplates":["api/#"]}"#),
    ];
    let namespace =
        Namespace::open(config.namespace_section(), &rows).expect("open").expect("namespace");
    let reloaded = Config::parse(
        "[topicSpaces.declared]\ntopicTemplates = [\"new/#\"]\n\
         [topicSpaces.api-taken]\ntopicTemplates = [\"file/#\"]\n\
         [access.limits]\ntopic_spaces = 5\n",
    )
    .expect("config");
    let plan = namespace.plan_reload(reloaded.namespace_section(), false).expect("valid");
    assert_eq!(namespace.resources().topic_spaces["declared"].topic_templates, ["a/#"]);
    namespace.apply_reload(plan).await;
    let resources = namespace.resources();
    assert_eq!(resources.topic_spaces["declared"].topic_templates, ["new/#"]);
    assert_eq!(resources.topic_spaces["api-taken"].topic_templates, ["file/#"]);
    assert_eq!(resources.topic_spaces["api-kept"].topic_templates, ["kept/#"]);
    assert!(!resources.topic_spaces.contains_key("dropped"), "the file no longer declares it");
    assert!(namespace.is_declared(ResourceKind::TopicSpaces, "api-taken"));
    assert!(!namespace.is_declared(ResourceKind::TopicSpaces, "dropped"));
    assert_eq!(namespace.registry().limits().topic_spaces, 5);
}

#[tokio::test]
async fn a_reload_that_breaks_api_resources_is_refused_whole() {
    let config = Config::parse(
        "[auth]\nallow_anonymous = true\n[topicSpaces.vehicles]\ntopicTemplates = [\"a/#\"]\n",
    )
    .expect("config");
    // A binding the management API created refers to the declared topic space.
    let rows = [stored(
        "permissionBindings",
        "api-binding",
        r#"{"clientGroupName":"$all","topicSpaceName":"vehicles","permission":"Publisher"}"#,
    )];
    let namespace =
        Namespace::open(config.namespace_section(), &rows).expect("open").expect("namespace");
    let reloaded = Config::parse("[auth]\nallow_anonymous = true\n").expect("config");
    let error = namespace.plan_reload(reloaded.namespace_section(), false).err().expect("refused");
    assert!(
        error.to_string().contains("permissionBindings[api-binding].topicSpaceName"),
        "{error}"
    );
    assert!(namespace.resources().topic_spaces.contains_key("vehicles"), "nothing changed");
}
