//! Permissions withdrawn while a persistent session is offline: its subscriptions go, whether
//! the change came through the management API or through the config file across a restart.

use std::time::Duration;

use anyhow::Result;
use gateway::mqtt::{Packet, Protocol, QoS, ReasonCode};
use gateway_tests::Gridmq;
use gateway_tests::packet_client::{PacketClient, connect_packet, publish};

const TOKEN: &str = "e2e-admin-token-0123456789";

const GRANTS: &str = r#"
[topicSpaces.vehicles]
topicTemplates = ["vehicles/#"]
[permissionBindings.all-pub]
clientGroupName = "$all"
topicSpaceName = "vehicles"
permission = "Publisher"
"#;

const SUBSCRIBER_GRANT: &str = r#"
[permissionBindings.all-sub]
clientGroupName = "$all"
topicSpaceName = "vehicles"
permission = "Subscriber"
"#;

fn connect(protocol: Protocol, id: &str, clean: bool) -> gateway::mqtt::Connect {
    let mut connect = connect_packet(protocol, id, clean, if clean { 0 } else { 3600 });
    connect.username = Some(id.to_string());
    connect
}

/// Subscribes `watcher` (persistent) to `vehicles/+/x` and disconnects it.
async fn subscribe_offline(gridmq: &Gridmq, protocol: Protocol) -> Result<()> {
    let (mut watcher, connack) =
        PacketClient::connect(gridmq.addr, connect(protocol, "watcher", false)).await?;
    anyhow::ensure!(connack.code == ReasonCode::Success, "CONNACK {:?}", connack.code);
    let suback = watcher.subscribe("vehicles/+/x", QoS::AtLeastOnce).await?;
    anyhow::ensure!(suback.reasons == [ReasonCode::GrantedQoS1], "SUBACK {suback:?}");
    watcher.send(&Packet::Disconnect(gateway::mqtt::Disconnect::new(ReasonCode::Success))).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// Publishes one QoS 1 message to `vehicles/car/x`.
async fn publish_one(gridmq: &Gridmq, payload: &str) -> Result<()> {
    let (mut car, _) =
        PacketClient::connect(gridmq.addr, connect(Protocol::V5, "car", true)).await?;
    car.send(&Packet::Publish(publish(
        "vehicles/car/x",
        QoS::AtLeastOnce,
        Some(1),
        payload.to_string(),
    )))
    .await?;
    anyhow::ensure!(matches!(car.recv(Duration::from_secs(5)).await?, Some(Packet::PubAck(_))));
    Ok(())
}

/// Reconnects the watcher's session and returns the payloads it gets within a second.
async fn reconnect(gridmq: &Gridmq, protocol: Protocol) -> Result<Vec<String>> {
    let (mut watcher, connack) =
        PacketClient::connect(gridmq.addr, connect(protocol, "watcher", false)).await?;
    anyhow::ensure!(connack.session_present, "the session is resumed");
    let mut payloads = Vec::new();
    while let Some(packet) = watcher.recv(Duration::from_secs(1)).await? {
        if let Packet::Publish(publish) = packet {
            watcher.ack(&publish).await?;
            payloads.push(String::from_utf8_lossy(&publish.payload).into_owned());
        }
    }
    Ok(payloads)
}

#[tokio::test]
async fn a_binding_deleted_through_the_api_reaches_offline_sessions() -> Result<()> {
    for protocol in [Protocol::V5, Protocol::V311] {
        let config = format!(
            "[management]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n\
             [auth]\nallow_anonymous = true\n{GRANTS}"
        );
        let gridmq = Gridmq::start_with_config(&config);
        let addr = gridmq.http.expect("management API");
        let binding = r#"{"properties":{"clientGroupName":"$all","topicSpaceName":"vehicles","permission":"Subscriber"}}"#;
        assert_eq!(http(addr, "PUT", "/permissionBindings/all-sub", binding).await?, 201);
        subscribe_offline(&gridmq, protocol).await?;
        publish_one(&gridmq, "before").await?;
        assert_eq!(http(addr, "DELETE", "/permissionBindings/all-sub", "").await?, 200);
        publish_one(&gridmq, "after").await?;
        let received = reconnect(&gridmq, protocol).await?;
        assert!(!received.contains(&"after".to_string()), "{protocol:?}: {received:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_resumed_session_is_rechecked_after_a_restart() -> Result<()> {
    for protocol in [Protocol::V5, Protocol::V311] {
        let open = format!("[auth]\nallow_anonymous = true\n{GRANTS}{SUBSCRIBER_GRANT}");
        let mut first = Gridmq::start_with_config(&open);
        subscribe_offline(&first, protocol).await?;
        first.terminate(Duration::from_secs(10));

        // The same store, a config that no longer grants Subscriber.
        let closed = format!("[auth]\nallow_anonymous = true\n{GRANTS}");
        let second = Gridmq::start_in(first.data_dir(), &closed);
        // Reconnecting re-checks the recovered subscription before anything is published.
        let received = reconnect(&second, protocol).await?;
        assert!(received.is_empty(), "{protocol:?}: {received:?}");
        publish_one(&second, "after").await?;
        let received = reconnect(&second, protocol).await?;
        assert!(received.is_empty(), "{protocol:?}: the subscription was removed: {received:?}");
    }
    Ok(())
}

async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> Result<u16> {
    let body = (!body.is_empty()).then(|| serde_json::from_str(body)).transpose()?;
    Ok(gateway_tests::http::request(addr, method, path, TOKEN, body.as_ref()).await?.0)
}
