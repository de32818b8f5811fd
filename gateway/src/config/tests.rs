use std::net::SocketAddr;

use super::*;

#[test]
fn empty_text_is_the_embedded_default() {
    let config = Config::parse("").expect("empty config");
    let tcp = ListenerConfig::new(ListenerKind::Tcp, SocketAddr::from(([127, 0, 0, 1], 1883)));
    assert_eq!(config.server.listeners, vec![tcp]);
    assert_eq!(config.mqtt.max_keep_alive, 1160);
}

#[test]
fn unknown_field_is_named() {
    let error = Config::parse("[mqtt]\nmax_keepalive = 3\n").expect_err("unknown field");
    assert!(error.to_string().contains("max_keepalive"), "{error}");
}

#[test]
fn bad_value_names_the_field() {
    let error = Config::parse("[mqtt]\nreceive_maximum = 0\n").expect_err("zero receive maximum");
    assert!(error.to_string().contains("mqtt.receive_maximum"), "{error}");
    let error = Config::parse("[mqtt]\nqueue_full = \"explode\"\n").expect_err("bad policy");
    assert!(error.to_string().contains("queue_full"), "{error}");
}

#[test]
fn the_example_config_is_the_default() {
    let text = include_str!("../../../schemas/gridmq.example.toml");
    let config = Config::parse(text).expect("example config parses");
    let default = Config::default();
    assert_eq!(config.server, default.server);
    assert_eq!(config.mqtt.max_packet_size, default.mqtt.max_packet_size);
    assert_eq!(config.mqtt.queue_full, default.mqtt.queue_full);
    assert_eq!(config.mqtt.max_queued_messages, default.mqtt.max_queued_messages);
    assert_eq!(config.resources(), default.resources());
    assert_eq!(config.access, default.access);
    assert!(config.auth.is_none() && config.management.is_none());
    assert!(!config.access_control_applies());
}

#[test]
fn namespace_resources_sit_at_the_top_level() {
    let config = Config::parse(
        r#"
        [namespace]
        name = "fleet"
        [clients.car1]
        attributes = { site = "berlin" }
        [clientGroups.berlin]
        query = "attributes.site = 'berlin'"
        [topicSpaces.vehicles]
        topicTemplates = ["vehicles/${client.authenticationName}/#"]
        [permissionBindings.berlin-pub]
        clientGroupName = "berlin"
        topicSpaceName = "vehicles"
        permission = "Publisher"
        [access.limits]
        clients = 5
        "#,
    )
    .expect("resources parse");
    let resources = config.resources();
    assert_eq!(resources.namespace.name, "fleet");
    assert_eq!(resources.clients.len(), 1);
    assert_eq!(resources.permission_bindings.len(), 1);
    assert_eq!(config.access.limits.clients, 5);
    assert!(config.access_control_applies());
}

#[test]
fn a_declared_resource_is_validated_with_its_path() {
    let error = Config::parse(
        "[permissionBindings.bnd1]\nclientGroupName = \"nobody\"\ntopicSpaceName = \"none\"\n\
         permission = \"Publisher\"\n",
    )
    .expect_err("unknown group");
    assert!(error.to_string().contains("permissionBindings[bnd1].clientGroupName"), "{error}");
    let error =
        Config::parse("[clientGroups.grp1]\nquery = \"x\"\nbogus = 1\n").expect_err("field");
    assert!(error.to_string().contains("bogus"), "{error}");
}

#[test]
fn the_management_api_requires_a_token() {
    let error = Config::parse("[management]\n").expect_err("no token");
    assert!(error.to_string().contains("management.admin_token"), "{error}");
    let error = Config::parse("[management]\nadmin_token = \"short\"\n").expect_err("short");
    assert!(error.to_string().contains("at least 16"), "{error}");
    let config = Config::parse("[management]\nadmin_token_env = \"GRIDMQ_TEST_NO_SUCH_VAR\"\n")
        .expect("env token");
    let management = config.management.expect("management");
    assert_eq!(management.listen, SocketAddr::from(([127, 0, 0, 1], 8081)));
    assert!(
        management.token().expect_err("unset variable").to_string().contains("admin_token_env")
    );
}

fn listener_error(text: &str) -> String {
    Config::parse(text).expect_err("invalid listener").to_string()
}

#[test]
fn listeners_parse_with_their_defaults() {
    let config = Config::parse(
        r#"
        [[server.listeners]]
        kind = "tcp"
        address = "0.0.0.0:1883"
        [[server.listeners]]
        kind = "tls"
        address = "0.0.0.0:8883"
        certificate = "server.pem"
        private_key = "server.key"
        client_auth = "required"
        min_tls_version = "1.3"
        [[server.listeners]]
        kind = "ws"
        address = "0.0.0.0:8080"
        max_connections = 10
        backlog = 16
        [[server.listeners]]
        kind = "wss"
        address = "0.0.0.0:8443"
        path = "/ws"
        certificate = "server.pem"
        private_key = "server.key"
        client_auth = "optional"
        client_ca = "ca.pem"
        verify_client_chain = true
        handshake_timeout_secs = 3
        "#,
    )
    .expect("listeners parse");
    let kinds: Vec<_> = config.server.listeners.iter().map(|l| l.kind).collect();
    use ListenerKind::*;
    assert_eq!(kinds, [Tcp, Tls, Ws, Wss]);
    let [tcp, tls, ws, wss] = &config.server.listeners[..] else { panic!("four listeners") };
    assert_eq!(tcp.max_connections, 100_000);
    assert_eq!(tcp.backlog, 4096);
    assert_eq!(tls.client_auth, Some(ClientAuth::Required));
    assert_eq!(tls.min_tls_version, Some(TlsVersion::Tls13));
    assert_eq!(tls.handshake_timeout(), std::time::Duration::from_secs(10));
    assert_eq!(ws.ws_path(), "/mqtt");
    assert_eq!(ws.max_connections, 10);
    assert_eq!(ws.backlog, 16);
    assert_eq!(wss.ws_path(), "/ws");
    assert_eq!(wss.handshake_timeout(), std::time::Duration::from_secs(3));
}

#[test]
fn bad_listeners_name_the_field() {
    let tls = "[[server.listeners]]\nkind = \"tls\"\naddress = \"127.0.0.1:8883\"\n";
    let error = listener_error(tls);
    assert!(error.contains("server.listeners[0].certificate"), "{error}");
    let error = listener_error(&format!("{tls}certificate = \"a\"\n"));
    assert!(error.contains("server.listeners[0].private_key"), "{error}");
    let keyed = format!("{tls}certificate = \"a\"\nprivate_key = \"b\"\n");
    let error = listener_error(&format!("{keyed}verify_client_chain = true\n"));
    assert!(error.contains("server.listeners[0].verify_client_chain"), "{error}");
    let error =
        listener_error(&format!("{keyed}client_auth = \"required\"\nverify_client_chain = true\n"));
    assert!(error.contains("server.listeners[0].client_ca"), "{error}");
    let error = listener_error(&format!("{keyed}min_tls_version = \"1.1\"\n"));
    assert!(error.contains("min_tls_version") || error.contains("1.1"), "{error}");
    let error = listener_error(&format!("{keyed}client_auth = \"sometimes\"\n"));
    assert!(error.contains("sometimes"), "{error}");

    let error = listener_error(
        "[[server.listeners]]\nkind = \"ws\"\naddress = \"127.0.0.1:80\"\npath = \"mqtt\"\n",
    );
    assert!(error.contains("server.listeners[0].path"), "{error}");
    let error = listener_error(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\npath = \"/mqtt\"\n",
    );
    assert!(error.contains("server.listeners[0].path"), "{error}");
    let error = listener_error(
        "[[server.listeners]]\nkind = \"ws\"\naddress = \"127.0.0.1:1\"\ncertificate = \"a\"\n",
    );
    assert!(error.contains("server.listeners[0].certificate"), "{error}");
    let error = listener_error(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\nmax_connections = 0\n",
    );
    assert!(error.contains("server.listeners[0].max_connections"), "{error}");
    let error = listener_error(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\nbacklog = 0\n",
    );
    assert!(error.contains("server.listeners[0].backlog"), "{error}");
    let error =
        listener_error("[[server.listeners]]\nkind = \"quic\"\naddress = \"127.0.0.1:1\"\n");
    assert!(error.contains("quic"), "{error}");
    let error = listener_error(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\nport = 3\n",
    );
    assert!(error.contains("port"), "{error}");
    let error = listener_error("[server]\nlisteners = []\n");
    assert!(error.contains("server.listeners"), "{error}");
}

#[test]
fn duplicate_listener_addresses_are_rejected_except_port_zero() {
    let two = |address: &str| {
        format!(
            "[[server.listeners]]\nkind = \"tcp\"\naddress = \"{address}\"\n\
             [[server.listeners]]\nkind = \"ws\"\naddress = \"{address}\"\n"
        )
    };
    let error = listener_error(&two("127.0.0.1:1883"));
    assert!(error.contains("server.listeners[1].address"), "{error}");
    assert!(error.contains("server.listeners[0]"), "{error}");
    Config::parse(&two("127.0.0.1:0")).expect("port 0 twice is fine");
}

#[test]
fn listen_flag_replaces_the_first_tcp_listener_or_adds_one() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut server = ServerConfig::default();
    server.set_tcp_address(addr);
    assert_eq!(server.listeners.len(), 1);
    assert_eq!(server.listeners[0].address, addr);

    let mut server = ServerConfig {
        listeners: vec![ListenerConfig::new(
            ListenerKind::Ws,
            SocketAddr::from(([127, 0, 0, 1], 8080)),
        )],
        ..ServerConfig::default()
    };
    server.set_tcp_address(addr);
    assert_eq!(server.listeners.len(), 2);
    assert_eq!(server.listeners[1].kind, ListenerKind::Tcp);
    assert_eq!(server.listeners[1].address, addr);
}
