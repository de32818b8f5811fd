//! Access control on every node: resources changed through the management API of node A
//! authorize and deny on node C within a second, and reach the clients already connected to C
//! as a change made on C would (DISCONNECT 0x98, subscriptions removed).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use gateway::mqtt::{Packet, Protocol, QoS, ReasonCode};
use gateway_tests::cluster::GridmqCluster;
use gateway_tests::http::send;
use gateway_tests::packet_client::{PacketClient, connect_packet, publish};

const TOKEN: &str = "e2e-admin-token-0123456789";

/// What the issue allows between a change's 2xx on one node and its effect on another.
const WITHIN: Duration = Duration::from_secs(1);

/// After every NATS server restarted, a node's watch may sit on a consumer that is gone until
/// it finds the bucket ahead of it (two idle checks half a second apart), and the consumer it
/// starts again may land on a server still catching up: 1 to 5 s here, so the bound is looser.
const AFTER_ROLLING_RESTART: Duration = Duration::from_secs(10);

fn config() -> String {
    format!(
        "[management]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n\n\
         [auth]\nallow_anonymous = true\n"
    )
}

struct Api(SocketAddr);

impl Api {
    fn of(node: &gateway_tests::Gridmq) -> Api {
        Api(node.http.expect("the management API is announced"))
    }

    async fn put(&self, path: &str, body: serde_json::Value) {
        let (status, answer) =
            send(self.0, "PUT", path, Some(TOKEN), Some(&body)).await.expect("PUT");
        assert!(status == 200 || status == 201, "PUT {path}: {status} {answer}");
    }

    async fn delete(&self, path: &str) {
        let (status, answer) =
            send(self.0, "DELETE", path, Some(TOKEN), None).await.expect("DELETE");
        assert_eq!(status, 200, "DELETE {path}: {answer}");
    }

    /// Group `fleet` (every named client), topic space `vehicles` (`vehicles/#`), and the
    /// Publisher and Subscriber bindings of one to the other.
    async fn grant_fleet(&self) {
        self.put(
            "/clientGroups/fleet",
            serde_json::json!({"properties": {"query": "authenticationName <> ''"}}),
        )
        .await;
        self.put(
            "/topicSpaces/vehicles",
            serde_json::json!({"properties": {"topicTemplates": ["vehicles/#"]}}),
        )
        .await;
        for (name, permission) in [("fleet-pub", "Publisher"), ("fleet-sub", "Subscriber")] {
            let binding = serde_json::json!({"properties": {
                "clientGroupName": "fleet", "topicSpaceName": "vehicles", "permission": permission
            }});
            self.put(&format!("/permissionBindings/{name}"), binding).await;
        }
    }
}

fn named(client_id: &str, username: &str) -> gateway::mqtt::Connect {
    let mut connect = connect_packet(Protocol::V5, client_id, true, 0);
    connect.username = Some(username.to_string());
    connect
}

/// Publishes QoS 1 messages from `client` every 20 ms until a PUBACK's reason satisfies
/// `wanted`, for at most `WITHIN` from `since`; returns how long after `since` that was.
async fn publish_until(
    client: &mut PacketClient,
    since: Instant,
    within: Duration,
    wanted: impl Fn(ReasonCode) -> bool,
) -> Result<Duration> {
    let mut id = 0u16;
    loop {
        id += 1;
        let packet = publish("vehicles/car/x", QoS::AtLeastOnce, Some(id), format!("m{id}"));
        client.send(&Packet::Publish(packet)).await?;
        let reason = loop {
            match client.recv(Duration::from_secs(5)).await? {
                Some(Packet::PubAck(ack)) if ack.packet_id == id => break ack.reason,
                Some(Packet::PubAck(_)) => continue,
                other => bail!("expected PUBACK {id}, got {other:?}"),
            }
        };
        if wanted(reason) {
            return Ok(since.elapsed());
        }
        ensure!(
            since.elapsed() < within,
            "still {reason:?} {:?} after the change",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Multi-threaded: the harness blocks while it starts processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_and_its_removal_on_a_apply_on_c_within_a_second() -> Result<()> {
    let cluster = GridmqCluster::start_with(3, &config());
    let (a, c) = (Api::of(&cluster.nodes[0]), &cluster.nodes[2]);
    let (mut car, connack) = PacketClient::connect(c.addr, named("car", "car")).await?;
    ensure!(connack.code == ReasonCode::Success, "CONNACK {:?}", connack.code);
    let refused = |reason| reason == ReasonCode::NotAuthorized;
    publish_until(&mut car, Instant::now(), WITHIN, refused).await?;

    a.grant_fleet().await;
    let allowed =
        |reason| matches!(reason, ReasonCode::Success | ReasonCode::NoMatchingSubscribers);
    let granted = publish_until(&mut car, Instant::now(), WITHIN, allowed).await?;

    a.delete("/permissionBindings/fleet-pub").await;
    let revoked = publish_until(&mut car, Instant::now(), WITHIN, refused).await?;
    eprintln!(
        "a change on node A took effect on node C after {granted:?} (grant), {revoked:?} (removal)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_c_lose_what_a_change_on_a_takes_away() -> Result<()> {
    let cluster = GridmqCluster::start_with(3, &config());
    let (a, c) = (Api::of(&cluster.nodes[0]), &cluster.nodes[2]);
    a.grant_fleet().await;
    a.put("/clients/car1", serde_json::json!({"properties": {}})).await;
    // The grant reaches C within a second; the subscription waits for it.
    tokio::time::sleep(WITHIN).await;
    let (mut watcher, _) = PacketClient::connect(c.addr, named("watcher", "watcher")).await?;
    let suback = watcher.subscribe("vehicles/+/telemetry", QoS::AtMostOnce).await?;
    ensure!(suback.reasons == [ReasonCode::GRANTED_QOS0], "SUBACK {:?}", suback.reasons);
    let (mut car1, connack) = PacketClient::connect(c.addr, named("car1", "car1")).await?;
    ensure!(connack.code == ReasonCode::Success, "CONNACK {:?}", connack.code);
    let telemetry = |n: u16| {
        Packet::Publish(publish(
            "vehicles/car1/telemetry",
            QoS::AtLeastOnce,
            Some(n),
            format!("m{n}"),
        ))
    };
    car1.send(&telemetry(1)).await?;
    ensure!(next_publish(&mut watcher).await?.as_deref() == Some("m1"), "m1 reaches the watcher");

    // The Subscriber binding removed on A: the watcher's live subscription on C goes.
    a.delete("/permissionBindings/fleet-sub").await;
    tokio::time::sleep(WITHIN).await;
    car1.send(&telemetry(2)).await?;
    ensure!(next_publish(&mut watcher).await?.is_none(), "the subscription on C is gone");
    let suback = watcher.subscribe("vehicles/+/telemetry", QoS::AtMostOnce).await?;
    ensure!(suback.reasons == [ReasonCode::NotAuthorized], "SUBACK {:?}", suback.reasons);

    // Client car1 disabled on A: its connection on C gets DISCONNECT 0x98.
    let since = Instant::now();
    a.put("/clients/car1", serde_json::json!({"properties": {"state": "Disabled"}})).await;
    let disconnect = loop {
        match car1.recv(Duration::from_secs(5)).await? {
            Some(Packet::Disconnect(disconnect)) => break disconnect,
            Some(Packet::PubAck(_)) => continue,
            other => bail!("expected DISCONNECT 0x98, got {other:?}"),
        }
    };
    let kicked = since.elapsed();
    ensure!(disconnect.reason == ReasonCode::AdministrativeAction, "{:?}", disconnect.reason);
    ensure!(kicked < WITHIN, "DISCONNECT {kicked:?} after the change on A");
    let (_, connack) = PacketClient::connect(c.addr, named("car1-again", "car1")).await?;
    ensure!(connack.code == ReasonCode::NotAuthorized, "disabled on C too: {:?}", connack.code);
    Ok(())
}

// The watch of the resources bucket is supervised: after every NATS server was restarted in
// turn (so every node's connection and watch broke at least once), a change on A still
// reaches C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_still_reach_c_after_every_nats_server_restarted() -> Result<()> {
    let mut cluster = GridmqCluster::start_with(3, &config());
    for i in 0..3 {
        cluster.nats.terminate(i);
        cluster.nats.restart(i);
    }
    let (a, c) = (Api::of(&cluster.nodes[0]), &cluster.nodes[2]);
    // The management API answers once the change is stored, after NATS took it again.
    a.grant_fleet().await;
    let since = Instant::now();
    // Streams a restarted server hosts may still be recovering: until they answer, a CONNECT
    // is refused as Server unavailable (0x88), and a client connects again, as this one does.
    let mut car = loop {
        let (car, connack) = PacketClient::connect(c.addr, named("car", "car")).await?;
        match connack.code {
            ReasonCode::Success => break car,
            ReasonCode::ServerUnavailable if since.elapsed() < AFTER_ROLLING_RESTART => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            code => bail!("CONNACK {code:?}"),
        }
    };
    let allowed =
        |reason| matches!(reason, ReasonCode::Success | ReasonCode::NoMatchingSubscribers);
    let granted = publish_until(&mut car, since, AFTER_ROLLING_RESTART, allowed).await?;
    eprintln!("after a rolling restart of NATS, a grant on A took effect on C after {granted:?}");
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
