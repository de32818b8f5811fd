//! The management API against the real binary: CRUD for every resource kind, the admin token,
//! bad bodies, persistence across a restart, and changes reaching live MQTT sessions at once.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use gateway::mqtt::{Packet, Protocol, QoS, ReasonCode};
use gateway_tests::Gridmq;
use gateway_tests::http::send;
use gateway_tests::packet_client::{PacketClient, connect_packet, publish};

const TOKEN: &str = "e2e-admin-token-0123456789";

fn config() -> String {
    format!(
        r#"
[management]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"

[auth]
allow_anonymous = true
"#
    )
}

struct Api(SocketAddr);

impl Api {
    fn of(gridmq: &Gridmq) -> Api {
        Api(gridmq.http.expect("the management API is announced"))
    }

    async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        send(self.0, "GET", path, Some(TOKEN), None).await.expect("GET")
    }

    async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        send(self.0, "PUT", path, Some(TOKEN), Some(&body)).await.expect("PUT")
    }

    async fn delete(&self, path: &str) -> u16 {
        send(self.0, "DELETE", path, Some(TOKEN), None).await.expect("DELETE").0
    }

    /// Grants `$all` publish and subscribe on `vehicles/${client.authenticationName}/#` and
    /// subscribe on `fleet/#` to group `fleet` (every client).
    async fn setup_fleet(&self) {
        let calls = [
            (
                "/clientGroups/fleet",
                serde_json::json!({"properties": {"query": "authenticationName <> ''"}}),
            ),
            (
                "/topicSpaces/vehicles",
                serde_json::json!({"properties": {"topicTemplates": ["vehicles/${client.authenticationName}/#"]}}),
            ),
            (
                "/topicSpaces/fleet-all",
                serde_json::json!({"properties": {"topicTemplates": ["vehicles/#"]}}),
            ),
            (
                "/permissionBindings/own-pub",
                serde_json::json!({"properties": {"clientGroupName": "$all", "topicSpaceName": "vehicles", "permission": "Publisher"}}),
            ),
            (
                "/permissionBindings/fleet-sub",
                serde_json::json!({"properties": {"clientGroupName": "fleet", "topicSpaceName": "fleet-all", "permission": "Subscriber"}}),
            ),
        ];
        for (path, body) in calls {
            let (status, answer) = self.put(path, body).await;
            assert!(status == 200 || status == 201, "{path}: {status} {answer}");
        }
    }
}

fn named(protocol: Protocol, client_id: &str, username: &str) -> gateway::mqtt::Connect {
    let mut connect = connect_packet(protocol, client_id, true, 0);
    connect.username = Some(username.to_string());
    connect
}

#[tokio::test]
async fn crud_for_every_kind() {
    let gridmq = Gridmq::start_with_config(&config());
    let api = Api::of(&gridmq);
    let kinds = [
        (
            "clients",
            "car1",
            serde_json::json!({"properties": {"attributes": {"site": "berlin"}, "state": "Enabled"}}),
            ("state", serde_json::json!("Disabled")),
        ),
        (
            "clientGroups",
            "berlin",
            serde_json::json!({"properties": {"query": "attributes.site = 'berlin'"}}),
            ("query", serde_json::json!("attributes.site = 'paris'")),
        ),
        (
            "topicSpaces",
            "vehicles",
            serde_json::json!({"properties": {"topicTemplates": ["vehicles/+/x"]}}),
            ("topicTemplates", serde_json::json!(["vehicles/#"])),
        ),
        (
            "permissionBindings",
            "berlin-pub",
            serde_json::json!({"properties": {"clientGroupName": "berlin", "topicSpaceName": "vehicles", "permission": "Publisher"}}),
            ("permission", serde_json::json!("Subscriber")),
        ),
        (
            "caCertificates",
            "fleet-ca",
            serde_json::json!({"properties": {"encodedCertificate": "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----"}}),
            ("description", serde_json::json!("the fleet CA")),
        ),
    ];
    for (kind, name, body, _) in &kinds {
        let path = format!("/{kind}/{name}");
        let (status, created) = api.put(&path, body.clone()).await;
        assert_eq!(status, 201, "{path}: {created}");
        let (status, read) = api.get(&path).await;
        assert_eq!((status, &read), (200, &created), "{path}");
        assert_eq!(read["name"], *name);
        let (status, list) = api.get(&format!("/{kind}")).await;
        assert_eq!(status, 200);
        assert_eq!(list["value"].as_array().map(Vec::len), Some(1), "{kind}: {list}");
    }
    // Update: send back what GET returned, one field changed.
    for (kind, name, _, (field, value)) in &kinds {
        let path = format!("/{kind}/{name}");
        let (_, mut read) = api.get(&path).await;
        read["properties"][field] = value.clone();
        let (status, updated) = api.put(&path, read).await;
        assert_eq!(status, 200, "{path}: {updated}");
        assert_eq!(updated["properties"][field], *value, "{path}");
    }
    // Delete in dependency order: bindings before what they name.
    for (kind, name, _, _) in kinds.iter().rev() {
        let path = format!("/{kind}/{name}");
        assert_eq!(api.delete(&path).await, 200, "{path}");
        assert_eq!(api.get(&path).await.0, 404, "{path}");
        assert_eq!(api.delete(&path).await, 204, "{path}");
    }
}

#[tokio::test]
async fn the_admin_token_is_required() -> Result<()> {
    let gridmq = Gridmq::start_with_config(&config());
    let addr = gridmq.http.expect("http");
    let (status, body) = send(addr, "GET", "/healthz", None, None).await?;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    for token in [None, Some("not-the-admin-token-000")] {
        let (status, body) = send(addr, "GET", "/clients", token, None).await?;
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body["error"]["code"], "Unauthorized");
        let group = serde_json::json!({"properties": {"query": "authenticationName = 'x'"}});
        let (status, _) = send(addr, "PUT", "/clientGroups/sneaky", token, Some(&group)).await?;
        assert_eq!(status, 401);
    }
    assert_eq!(Api::of(&gridmq).get("/clientGroups/sneaky").await.0, 404);
    Ok(())
}

#[tokio::test]
async fn bad_bodies_are_rejected_with_the_field_named() {
    let gridmq = Gridmq::start_with_config(&config());
    let api = Api::of(&gridmq);
    let cases = [
        (
            "/clientGroups/grp1",
            serde_json::json!({"properties": {"query": "authenticationName = 'a'", "colour": "red"}}),
            "colour",
        ),
        (
            "/clientGroups/no_underscore",
            serde_json::json!({"properties": {"query": "authenticationName = 'a'"}}),
            "name: ",
        ),
        (
            "/clientGroups/grp1",
            serde_json::json!({"properties": {"query": "attributes.floor >= 'three'"}}),
            "properties.query: ",
        ),
        (
            "/clientGroups/grp1",
            serde_json::json!({"properties": {"query": "(attributes.a = 1"}}),
            "properties.query: ",
        ),
        (
            "/permissionBindings/bnd1",
            serde_json::json!({"properties": {"clientGroupName": "ghosts", "topicSpaceName": "nowhere", "permission": "Publisher"}}),
            "properties.clientGroupName: ",
        ),
        (
            "/clients/car1",
            serde_json::json!({"properties": {"passwordHash": "plain-text-password"}}),
            "properties.passwordHash: ",
        ),
        (
            "/topicSpaces/tsp1",
            serde_json::json!({"properties": {"topicTemplates": []}}),
            "properties.topicTemplates: ",
        ),
        (
            "/clientGroups/$all",
            serde_json::json!({"properties": {"query": "authenticationName = 'a'"}}),
            "name: $all",
        ),
    ];
    for (path, body, expected) in cases {
        let (status, answer) = api.put(path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["code"], "InvalidRequest", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{path} {body}: {message}");
    }
    let (_, list) = api.get("/clientGroups").await;
    assert_eq!(list["value"], serde_json::json!([]), "nothing was created");
}

#[tokio::test]
async fn changes_persist_across_a_restart() -> Result<()> {
    let mut first = Gridmq::start_with_config(&config());
    let api = Api::of(&first);
    api.setup_fleet().await;
    let (status, _) =
        api.put("/clients/car9", serde_json::json!({"properties": {"attributes": {"n": 9}}})).await;
    assert_eq!(status, 201);
    assert_eq!(api.delete("/topicSpaces/fleet-all").await, 400, "still bound");
    assert_eq!(api.delete("/permissionBindings/fleet-sub").await, 200);
    // Killed: a 2xx promised durability, so nothing may depend on a clean shutdown.
    first.kill();

    let second = Gridmq::start_in(first.data_dir(), &config());
    let api = Api::of(&second);
    let (status, client) = api.get("/clients/car9").await;
    assert_eq!((status, &client["properties"]["attributes"]["n"]), (200, &serde_json::json!(9)));
    assert_eq!(api.get("/permissionBindings/own-pub").await.0, 200);
    assert_eq!(api.get("/permissionBindings/fleet-sub").await.0, 404, "the deletion persisted");

    // And the persisted resources authorize: own-pub survived, fleet-sub did not.
    let (mut car, _) =
        PacketClient::connect(second.addr, named(Protocol::V5, "c9", "car9")).await?;
    let suback = car.subscribe("vehicles/#", QoS::AtLeastOnce).await?;
    assert_eq!(suback.reasons, [ReasonCode::NotAuthorized]);
    car.send(&Packet::Publish(publish("vehicles/car9/x", QoS::AtLeastOnce, Some(3), "hi"))).await?;
    let Some(Packet::PubAck(ack)) = car.recv(Duration::from_secs(5)).await? else {
        anyhow::bail!("no PUBACK")
    };
    assert_eq!(ack.reason, ReasonCode::NoMatchingSubscribers, "allowed, and nobody listens");
    Ok(())
}

#[tokio::test]
async fn a_disabled_client_is_disconnected_at_once() -> Result<()> {
    let gridmq = Gridmq::start_with_config(&config());
    let api = Api::of(&gridmq);
    api.setup_fleet().await;
    assert_eq!(api.put("/clients/car1", serde_json::json!({"properties": {}})).await.0, 201);
    let (mut v5, connack) =
        PacketClient::connect(gridmq.addr, named(Protocol::V5, "car1-a", "car1")).await?;
    assert_eq!(connack.code, ReasonCode::Success);
    let (mut v3, connack) =
        PacketClient::connect(gridmq.addr, named(Protocol::V311, "car1-b", "car1")).await?;
    assert_eq!(connack.code, ReasonCode::Success);

    let (status, body) =
        api.put("/clients/car1", serde_json::json!({"properties": {"state": "Disabled"}})).await;
    assert_eq!(status, 200, "{body}");
    match v5.recv(Duration::from_secs(5)).await? {
        Some(Packet::Disconnect(disconnect)) => {
            assert_eq!(disconnect.reason, ReasonCode::AdministrativeAction)
        }
        other => anyhow::bail!("expected DISCONNECT 0x98, got {other:?}"),
    }
    assert!(v5.recv(Duration::from_secs(5)).await.is_err(), "closed after DISCONNECT");
    assert!(v3.recv(Duration::from_secs(5)).await.is_err(), "3.1.1 connection closed");
    let (_, connack) =
        PacketClient::connect(gridmq.addr, named(Protocol::V5, "car1-c", "car1")).await?;
    assert_eq!(connack.code, ReasonCode::NotAuthorized, "a disabled client cannot come back");

    // Deleting a registered client disconnects it too.
    assert_eq!(api.put("/clients/car2", serde_json::json!({"properties": {}})).await.0, 201);
    let (mut car2, _) =
        PacketClient::connect(gridmq.addr, named(Protocol::V5, "car2", "car2")).await?;
    assert_eq!(api.delete("/clients/car2").await, 200);
    assert!(matches!(car2.recv(Duration::from_secs(5)).await?, Some(Packet::Disconnect(_))));
    Ok(())
}

#[tokio::test]
async fn a_removed_binding_removes_the_live_subscription() -> Result<()> {
    let gridmq = Gridmq::start_with_config(&config());
    let api = Api::of(&gridmq);
    api.setup_fleet().await;
    let (mut subscriber, _) =
        PacketClient::connect(gridmq.addr, named(Protocol::V5, "watcher", "watcher")).await?;
    let suback = subscriber.subscribe("vehicles/+/telemetry", QoS::AtMostOnce).await?;
    assert_eq!(suback.reasons, [ReasonCode::GRANTED_QOS0]);
    let (mut publisher, _) =
        PacketClient::connect(gridmq.addr, named(Protocol::V5, "car5", "car5")).await?;

    let send = |n: u16| {
        Packet::Publish(publish(
            "vehicles/car5/telemetry",
            QoS::AtLeastOnce,
            Some(n),
            format!("m{n}"),
        ))
    };
    publisher.send(&send(1)).await?;
    let received = next_publish(&mut subscriber).await?;
    assert_eq!(received.as_deref(), Some("m1"));

    assert_eq!(api.delete("/permissionBindings/fleet-sub").await, 200);
    publisher.send(&send(2)).await?;
    assert_eq!(next_publish(&mut subscriber).await?, None, "the subscription is gone");
    // The subscriber is still connected and may subscribe where it still may.
    let suback = subscriber.subscribe("vehicles/watcher/#", QoS::AtMostOnce).await?;
    assert_eq!(suback.reasons, [ReasonCode::NotAuthorized], "no Subscriber binding left");

    // Granting it again lets a new subscription through.
    let binding = serde_json::json!({"properties": {"clientGroupName": "fleet", "topicSpaceName": "fleet-all", "permission": "Subscriber"}});
    assert_eq!(api.put("/permissionBindings/fleet-sub", binding).await.0, 201);
    let suback = subscriber.subscribe("vehicles/+/telemetry", QoS::AtMostOnce).await?;
    assert_eq!(suback.reasons, [ReasonCode::GRANTED_QOS0]);
    publisher.send(&send(3)).await?;
    assert_eq!(next_publish(&mut subscriber).await?.as_deref(), Some("m3"));
    Ok(())
}

/// The payload of the next PUBLISH within two seconds, skipping other packets.
async fn next_publish(client: &mut PacketClient) -> Result<Option<String>> {
    loop {
        match client.recv(Duration::from_secs(2)).await? {
            Some(Packet::Publish(publish)) => {
                return Ok(Some(String::from_utf8_lossy(&publish.payload).into_owned()));
            }
            Some(_) => continue,
            None => return Ok(None),
        }
    }
}
