//! Clients trying to get where they do not belong, over the network, in MQTT 5 and 3.1.1: each
//! row is one attempt, and every one must be denied with the right code (5.0: PUBACK/SUBACK
//! 0x87 with a reason string naming the topic; 3.1.1: SUBACK 0x80, a denied publish
//! acknowledged and dropped; CONNACK 0x87 / 3.1.1 0x05 for a refused connection). A few
//! control rows must be allowed, so a broker that denies everything does not pass.
//!
//! Identities: `[auth] allow_anonymous = true`, so a client connects under its Username; a
//! registered client (by authentication name, case-insensitively) is judged by its registered
//! name and attributes. `pw1` has a password, so nobody reaches it anonymously. Rows that need
//! certificates or tokens (expired certificates, unregistered CAs, `alg: none`, wrong audience)
//! belong to the authentication suites.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use gateway::mqtt::{Packet, Protocol, QoS, ReasonCode};
use gateway_tests::Gridmq;
use gateway_tests::packet_client::{PacketClient, connect_packet, publish};

const WAIT: Duration = Duration::from_secs(5);

fn config() -> String {
    let hash = gateway::auth::hash_password("pw1-secret");
    format!(
        r##"
[auth]
allow_anonymous = true

[clients.car1]
attributes = {{ fleet = "north" }}
[clients.car2]
attributes = {{ fleet = "south" }}
[clients.slash]
attributes = {{ fleet = "a/b" }}
[clients.plus]
attributes = {{ fleet = "+" }}
[clients.hash]
attributes = {{ fleet = "#" }}
[clients.off]
state = "Disabled"
[clients.pw1]
passwordHash = "{hash}"
[clients.spy]

[clientGroups.spies]
query = "authenticationName = 'spy'"

[topicSpaces.own]
topicTemplates = ["vehicles/${{client.authenticationName}}/#"]
[topicSpaces.fleet]
topicTemplates = ["fleets/${{client.attributes.fleet}}/status"]
[topicSpaces.everything]
topicTemplates = ["#"]

[permissionBindings.own-pub]
clientGroupName = "$all"
topicSpaceName = "own"
permission = "Publisher"
[permissionBindings.own-sub]
clientGroupName = "$all"
topicSpaceName = "own"
permission = "Subscriber"
[permissionBindings.fleet-pub]
clientGroupName = "$all"
topicSpaceName = "fleet"
permission = "Publisher"
[permissionBindings.fleet-sub]
clientGroupName = "$all"
topicSpaceName = "fleet"
permission = "Subscriber"
[permissionBindings.spy-sub]
clientGroupName = "spies"
topicSpaceName = "everything"
permission = "Subscriber"
"##
    )
}

#[derive(Debug, Clone, Copy)]
enum Attempt {
    Subscribe(&'static str),
    Publish(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Denied,
    Allowed,
}

use Attempt::{Publish as Pub, Subscribe as Sub};
use Expect::{Allowed, Denied};

/// (why, username, attempt, expectation). Each runs in 5.0 and 3.1.1 (shared subscriptions in
/// 5.0 only).
const ROWS: &[(&str, &str, Attempt, Expect)] = &[
    ("own topic (control)", "car1", Pub("vehicles/car1/telemetry"), Allowed),
    ("own filter (control)", "car1", Sub("vehicles/car1/#"), Allowed),
    ("single-level wildcard over every vehicle", "car1", Sub("vehicles/+/telemetry"), Denied),
    ("multi-level wildcard over every vehicle", "car1", Sub("vehicles/#"), Denied),
    ("everything", "car1", Sub("#"), Denied),
    ("wildcard first level", "car1", Sub("+/car1/#"), Denied),
    ("another client's filter", "car1", Sub("vehicles/car2/#"), Denied),
    ("another client's topic", "car1", Pub("vehicles/car2/telemetry"), Denied),
    ("own attribute (control)", "car1", Sub("fleets/north/status"), Allowed),
    ("another fleet", "car1", Sub("fleets/south/status"), Denied),
    ("every fleet", "car1", Sub("fleets/+/status"), Denied),
    ("attribute holding '/' as two levels (subscribe)", "slash", Sub("fleets/a/b/status"), Denied),
    ("attribute holding '/' as two levels (publish)", "slash", Pub("fleets/a/b/status"), Denied),
    ("attribute holding '/' split", "slash", Pub("fleets/a/status"), Denied),
    ("attribute holding '+'", "plus", Sub("fleets/+/status"), Denied),
    ("attribute holding '+' reaching a fleet", "plus", Pub("fleets/north/status"), Denied),
    ("attribute holding '#'", "hash", Sub("fleets/#"), Denied),
    ("attribute holding '#' reaching a fleet", "hash", Pub("fleets/south/status"), Denied),
    ("reserved topic publish", "car1", Pub("$SYS/broker/clients"), Denied),
    ("reserved filter", "car1", Sub("$SYS/#"), Denied),
    ("reserved topic under own-looking name", "car1", Pub("$vehicles/car1/x"), Denied),
    (
        "shared bypass: wildcard over every vehicle",
        "car1",
        Sub("$share/g/vehicles/+/telemetry"),
        Denied,
    ),
    ("shared bypass: everything", "car1", Sub("$share/g/#"), Denied),
    ("shared bypass: reserved", "car1", Sub("$share/g/$SYS/#"), Denied),
    ("shared own filter (control)", "car1", Sub("$share/g/vehicles/car1/#"), Allowed),
    (
        "case trick: upper-case name, upper-case topic",
        "CAR1",
        Pub("vehicles/CAR1/telemetry"),
        Denied,
    ),
    ("case trick: upper-case name, upper-case filter", "CAR1", Sub("vehicles/CAR1/#"), Denied),
    ("case trick: mixed-case name, another client", "Car2", Pub("vehicles/car1/telemetry"), Denied),
    ("case trick: unregistered look-alike", "car1 ", Pub("vehicles/car1/telemetry"), Denied),
    ("unregistered client", "stranger", Pub("vehicles/stranger/x"), Allowed),
    ("unregistered client, wildcard", "stranger", Sub("vehicles/+/x"), Denied),
];

#[tokio::test]
async fn every_escape_is_denied() -> Result<()> {
    let gridmq = Gridmq::start_with_config(&config());
    let spy = spy(&gridmq).await?;
    let mut failures = Vec::new();
    let mut published = Vec::new();
    for (index, &(why, user, attempt, expect)) in ROWS.iter().enumerate() {
        for protocol in [Protocol::V5, Protocol::V311] {
            if protocol == Protocol::V311
                && matches!(attempt, Sub(filter) if filter.starts_with("$share/"))
            {
                continue;
            }
            let client_id = format!("row{index}-{protocol:?}");
            let payload = format!("row {index} {protocol:?}");
            let outcome = run(&gridmq, protocol, &client_id, user, attempt, &payload).await;
            if let Pub(topic) = attempt {
                published.push((topic, payload, expect, why));
            }
            match outcome {
                Ok(()) if expect == Allowed => {}
                Ok(()) => {
                    failures.push(format!("{why} ({protocol:?}, {user}): {attempt:?} was allowed"))
                }
                Err(error) if expect == Denied && error.to_string() == "denied" => {}
                Err(error) => {
                    failures.push(format!("{why} ({protocol:?}, {user}): {attempt:?}: {error}"))
                }
            }
        }
    }
    // Denied publishes never reach a subscriber; allowed ones do. The spy may subscribe to `#`.
    let received = collect(spy).await?;
    for (topic, payload, expect, why) in published {
        let arrived = received.contains(&payload);
        if arrived != (expect == Allowed) {
            failures.push(format!("{why}: {payload:?} to {topic:?} arrived: {arrived}"));
        }
    }
    assert!(failures.is_empty(), "{} escapes:\n{}", failures.len(), failures.join("\n"));
    Ok(())
}

#[tokio::test]
async fn a_disabled_client_cannot_connect() -> Result<()> {
    let gridmq = Gridmq::start_with_config(&config());
    for user in ["off", "OFF", "Off"] {
        for protocol in [Protocol::V5, Protocol::V311] {
            let (_, connack) =
                PacketClient::connect(gridmq.addr, named(protocol, "d1", user)).await?;
            assert_eq!(connack.code, ReasonCode::NotAuthorized, "{user} {protocol:?}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn another_identity_cannot_take_over_a_live_client_id() -> Result<()> {
    let gridmq = Gridmq::start_with_config(&config());
    for protocol in [Protocol::V5, Protocol::V311] {
        let id = format!("pw1-device-{protocol:?}");
        let mut connect = named(protocol, &id, "pw1");
        connect.password = Some(Bytes::from_static(b"pw1-secret"));
        let (mut owner, connack) = PacketClient::connect(gridmq.addr, connect.clone()).await?;
        assert_eq!(connack.code, ReasonCode::Success, "pw1 with its password");

        // Anonymous under another name, with the same client id.
        let (_, connack) = PacketClient::connect(gridmq.addr, named(protocol, &id, "car1")).await?;
        assert_eq!(connack.code, ReasonCode::NotAuthorized, "car1 taking pw1's id ({protocol:?})");
        // pw1's name without its password, and with a wrong one.
        let (_, connack) = PacketClient::connect(gridmq.addr, named(protocol, &id, "PW1")).await?;
        assert_ne!(connack.code, ReasonCode::Success, "pw1 without password ({protocol:?})");
        let mut wrong = named(protocol, &id, "pw1");
        wrong.password = Some(Bytes::from_static(b"guess"));
        let (_, connack) = PacketClient::connect(gridmq.addr, wrong).await?;
        assert_ne!(connack.code, ReasonCode::Success, "pw1 with a wrong password ({protocol:?})");

        // The owner is still connected and served.
        let suback = owner.subscribe("vehicles/pw1/#", QoS::AtLeastOnce).await?;
        assert_eq!(suback.reasons, [ReasonCode::GrantedQoS1], "{protocol:?}");
        // The owner itself may take its id over again.
        let (_, connack) = PacketClient::connect(gridmq.addr, connect).await?;
        assert_eq!(connack.code, ReasonCode::Success, "pw1 again ({protocol:?})");
    }
    Ok(())
}

// === helpers ===

fn named(protocol: Protocol, client_id: &str, username: &str) -> gateway::mqtt::Connect {
    let mut connect = connect_packet(protocol, client_id, true, 0);
    connect.username = Some(username.to_string());
    connect
}

/// Runs one attempt: `Ok(())` when allowed, an error `denied` when denied with the right code,
/// any other error when something else happened.
async fn run(
    gridmq: &Gridmq,
    protocol: Protocol,
    client_id: &str,
    user: &str,
    attempt: Attempt,
    payload: &str,
) -> Result<()> {
    let (mut client, connack) =
        PacketClient::connect(gridmq.addr, named(protocol, client_id, user)).await?;
    anyhow::ensure!(connack.code == ReasonCode::Success, "CONNACK {:?}", connack.code);
    match attempt {
        Sub(filter) => {
            let suback = client.subscribe(filter, QoS::AtLeastOnce).await?;
            match (protocol, suback.reasons.as_slice()) {
                (_, [ReasonCode::GrantedQoS1]) => Ok(()),
                (Protocol::V5, [ReasonCode::NotAuthorized]) => {
                    let reason = suback.properties.reason_string.unwrap_or_default();
                    anyhow::ensure!(reason.contains(filter), "reason string {reason:?}");
                    anyhow::bail!("denied")
                }
                (Protocol::V311, [ReasonCode::UnspecifiedError]) => anyhow::bail!("denied"),
                (_, other) => anyhow::bail!("SUBACK {other:?}"),
            }
        }
        Pub(topic) => {
            let packet = publish(topic, QoS::AtLeastOnce, Some(7), payload.as_bytes().to_vec());
            client.send(&Packet::Publish(packet)).await?;
            let ack = loop {
                match client.recv(WAIT).await? {
                    Some(Packet::PubAck(ack)) => break ack,
                    Some(_) => continue,
                    None => anyhow::bail!("no PUBACK"),
                }
            };
            match (protocol, ack.reason) {
                (Protocol::V5, ReasonCode::Success) => Ok(()),
                (Protocol::V5, ReasonCode::NotAuthorized) => {
                    let reason = ack.properties.reason_string.unwrap_or_default();
                    anyhow::ensure!(reason.contains(topic), "reason string {reason:?}");
                    anyhow::bail!("denied")
                }
                // 3.1.1 has no negative PUBACK: a denied publish is acknowledged and dropped;
                // whether it was delivered is checked through the spy.
                (Protocol::V311, ReasonCode::Success) => {
                    if is_denied_row(topic, user) {
                        anyhow::bail!("denied")
                    } else {
                        Ok(())
                    }
                }
                (_, other) => anyhow::bail!("PUBACK {other:?}"),
            }
        }
    }
}

/// For 3.1.1 publishes the PUBACK says nothing: the table's expectation stands in, and the spy
/// checks delivery.
fn is_denied_row(topic: &str, user: &str) -> bool {
    ROWS.iter().any(|&(_, u, attempt, expect)| {
        u == user && matches!(attempt, Pub(t) if t == topic) && expect == Denied
    })
}

/// A client allowed to subscribe to `#`.
async fn spy(gridmq: &Gridmq) -> Result<PacketClient> {
    let (mut spy, connack) =
        PacketClient::connect(gridmq.addr, named(Protocol::V5, "spy-client", "spy")).await?;
    anyhow::ensure!(connack.code == ReasonCode::Success, "spy CONNACK {:?}", connack.code);
    let suback = spy.subscribe("#", QoS::AtMostOnce).await?;
    anyhow::ensure!(suback.reasons == [ReasonCode::GRANTED_QOS0], "spy SUBACK {suback:?}");
    Ok(spy)
}

/// Every payload the spy receives until it has been quiet for a second.
async fn collect(mut spy: PacketClient) -> Result<Vec<String>> {
    let mut payloads = Vec::new();
    while let Some(packet) = spy.recv(Duration::from_secs(1)).await? {
        if let Packet::Publish(publish) = packet {
            payloads.push(String::from_utf8_lossy(&publish.payload).into_owned());
        }
    }
    Ok(payloads)
}
