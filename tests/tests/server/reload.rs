//! Config reload without restart, end to end: the test edits the real binary's config file and
//! sends SIGHUP (or `POST /config:reload`), then checks what MQTT clients receive, what a real
//! webhook (wiremock) receives and what the management API answers.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use gateway::mqtt::{Packet, Protocol, QoS, ReasonCode};
use gateway_tests::Gridmq;
use gateway_tests::http::request;
use gateway_tests::packet_client::{PacketClient, connect_packet, publish};
use gateway_tests::webhook;
use serde_json::json;
use wiremock::MockServer;

const TOKEN: &str = "e2e-admin-token-0123456789";

/// How long a test waits for something that must happen.
const WAIT: Duration = Duration::from_secs(20);

/// Anonymous clients connect under their Username; `watcher` is in group `watchers`, which may
/// subscribe to `vehicles/#`; everyone may publish there and use `status/#`. Topic `telemetry`
/// pushes to `url`; `routes` is spliced in.
fn config(url: &str, watchers: bool, routes: &str, extra: &str) -> String {
    let watchers = if watchers {
        r#"
[clientGroups.watchers]
query = "attributes.role = 'watch'"
[permissionBindings.watchers-sub]
clientGroupName = "watchers"
topicSpaceName = "vehicles"
permission = "Subscriber"
"#
    } else {
        ""
    };
    format!(
        r#"
[auth]
allow_anonymous = true

[clients.watcher]
attributes = {{ role = "watch" }}
[clients.other]

[topicSpaces.vehicles]
topicTemplates = ["vehicles/#"]
[topicSpaces.status]
topicTemplates = ["status/#"]
[permissionBindings.all-pub]
clientGroupName = "$all"
topicSpaceName = "vehicles"
permission = "Publisher"
[permissionBindings.status-pub]
clientGroupName = "$all"
topicSpaceName = "status"
permission = "Publisher"
[permissionBindings.status-sub]
clientGroupName = "$all"
topicSpaceName = "status"
permission = "Subscriber"
{watchers}
{routes}

[topics.telemetry.eventSubscriptions.hook]
retryDelaysSeconds = [0.2]
[topics.telemetry.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "{url}"

{extra}
"#
    )
}

const ROUTE: &str = r#"
[[routing.routes]]
topic_filter = "vehicles/#"
topic = "telemetry"
"#;

/// The bodies of the POSTs received so far.
async fn posted(server: &MockServer) -> Vec<String> {
    let requests = server.received_requests().await.unwrap_or_default();
    requests
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

/// Whether some POST carried `marker`.
async fn delivered(server: &MockServer, marker: &str) -> bool {
    posted(server).await.iter().any(|body| body.contains(marker))
}

/// Waits until a POST carries `marker`.
async fn wait_delivered(server: &MockServer, marker: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !delivered(server, marker).await {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no POST carried {marker}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Connects (MQTT 5, clean) under Username `id`.
async fn connect(addr: SocketAddr, id: &str) -> Result<PacketClient> {
    let mut connect = connect_packet(Protocol::V5, id, true, 0);
    connect.username = Some(id.to_string());
    let (client, connack) = PacketClient::connect(addr, connect).await?;
    anyhow::ensure!(connack.code == ReasonCode::Success, "{id}: CONNACK {:?}", connack.code);
    Ok(client)
}

/// Subscribes at QoS 0 and checks the grant.
async fn subscribe(client: &mut PacketClient, filter: &str) -> Result<()> {
    let suback = client.subscribe(filter, QoS::AtMostOnce).await?;
    anyhow::ensure!(suback.reasons == [ReasonCode::Success], "{filter}: {suback:?}");
    Ok(())
}

/// Publishes `{"m": marker}` at QoS 0 to `{space}/{marker}`, so a routed event's subject
/// names the marker too.
async fn send(client: &mut PacketClient, space: &str, marker: &str) -> Result<()> {
    let payload = json!({ "m": marker }).to_string();
    let topic = format!("{space}/{marker}");
    client.send(&Packet::Publish(publish(&topic, QoS::AtMostOnce, None, payload))).await
}

/// The payloads `client` receives within `within`; an error when its connection ends.
async fn received(client: &mut PacketClient, within: Duration) -> Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut payloads = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.recv(left).await.context("the connection stays up")? {
            Some(Packet::Publish(publish)) => {
                payloads.push(String::from_utf8_lossy(&publish.payload).into_owned())
            }
            Some(_) => {}
            None => return Ok(payloads),
        }
    }
}

/// Publishes fresh markers to `vehicles/...` until the webhook receives one: the reload has
/// then applied. Returns how many markers it took.
async fn publish_until_routed(
    car: &mut PacketClient,
    server: &MockServer,
    prefix: &str,
) -> Result<usize> {
    let deadline = tokio::time::Instant::now() + WAIT;
    for n in 0.. {
        let marker = format!("{prefix}-{n}");
        send(car, "vehicles", &marker).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if delivered(server, &marker).await {
            return Ok(n + 1);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the new route never delivered");
    }
    unreachable!("the loop returns or fails")
}

#[tokio::test]
async fn sighup_applies_a_new_route_and_a_removed_group_and_refuses_an_invalid_edit() -> Result<()>
{
    let server = webhook::accepting().await;
    let url = format!("{}/hook", server.uri());
    let (gridmq, log) = Gridmq::start_logged(&config(&url, true, "", ""), &[], "info");
    let mut watcher = connect(gridmq.addr, "watcher").await?;
    subscribe(&mut watcher, "vehicles/#").await?;
    let mut other = connect(gridmq.addr, "other").await?;
    subscribe(&mut other, "status/#").await?;
    let mut car = connect(gridmq.addr, "car").await?;

    // Before: the watcher gets vehicle messages; nothing is routed.
    send(&mut car, "vehicles", "before").await?;
    let got = received(&mut watcher, Duration::from_millis(500)).await?;
    assert!(got.iter().any(|p| p.contains("before")), "{got:?}");

    // The edit: a route to `telemetry`, and group `watchers` with its binding gone.
    gridmq.rewrite_config(&config(&url, false, ROUTE, ""));
    gridmq.hangup();
    let sent = publish_until_routed(&mut car, &server, "routed").await?;
    assert!(!delivered(&server, "before").await, "nothing was routed before the reload");

    // The watcher lost its subscription but not its connection; the other client kept both.
    send(&mut car, "vehicles", "after").await?;
    send(&mut car, "status", "status-after").await?;
    wait_delivered(&server, "vehicles/after").await?;
    let got = received(&mut watcher, Duration::from_millis(800)).await?;
    assert!(
        !got.iter().any(|p| p.contains("\"after\"")),
        "the watcher's subscription was removed: {got:?}"
    );
    // Markers published before the reload applied may have reached it; none after.
    assert!(got.len() < sent, "{got:?}");
    let got = received(&mut other, Duration::from_millis(800)).await?;
    assert!(got.iter().any(|p| p.contains("status-after")), "{got:?}");

    // An invalid edit (a broken group query, and the route removed): refused whole.
    let broken = "[clientGroups.broken]\nquery = \"attributes.role = \"\n";
    gridmq.rewrite_config(&config(&url, false, "", broken));
    gridmq.hangup();
    let deadline = tokio::time::Instant::now() + WAIT;
    let refusal = loop {
        if let Some(line) =
            log.lines().into_iter().find(|line| line.contains("Config reload refused"))
        {
            break line;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no refusal logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(refusal.contains("clientGroups[broken].query"), "the field is named: {refusal}");
    // The old config stays in force: the route still delivers, the other client still gets its
    // messages over the same connection.
    send(&mut car, "vehicles", "still-routed").await?;
    send(&mut car, "status", "still-status").await?;
    wait_delivered(&server, "still-routed").await?;
    let got = received(&mut other, Duration::from_millis(800)).await?;
    assert!(got.iter().any(|p| p.contains("still-status")), "{got:?}");
    Ok(())
}

#[tokio::test]
async fn post_config_reload_answers_what_applied_and_what_needs_a_restart() -> Result<()> {
    let server = webhook::accepting().await;
    let url = format!("{}/hook", server.uri());
    let management = format!("[management]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n");
    let gridmq = Gridmq::start_with_config(&config(&url, true, "", &management));
    let api = gridmq.http.expect("management API");

    // Without the admin token: 401, and nothing is read.
    let (status, _) = request(api, "POST", "/config:reload", "wrong-token", None).await?;
    assert_eq!(status, 401);

    // A topic created through the management API under a name the file does not declare.
    let topic = json!({"properties": {"eventRetentionInDays": 1}});
    let (status, _) = request(api, "PUT", "/topics/api-made", TOKEN, Some(&topic)).await?;
    assert_eq!(status, 201);

    // The edit: a new route, a new declared topic, and a store setting (restart only).
    let extra = format!("{management}\n[topics.orders]\n\n[store]\ncommit_linger_ms = 7\n");
    gridmq.rewrite_config(&config(&url, true, ROUTE, &extra));
    let (status, body) = request(api, "POST", "/config:reload", TOKEN, None).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], json!(["routing.routes", "topics"]), "{body}");
    assert_eq!(body["restartRequired"], json!(["store"]), "{body}");

    // Applied: the declared topic exists and belongs to the file; the API-made one stays.
    let (status, _) = request(api, "GET", "/topics/orders", TOKEN, None).await?;
    assert_eq!(status, 200);
    let (status, _) = request(api, "PUT", "/topics/orders", TOKEN, Some(&topic)).await?;
    assert_eq!(status, 409, "the file owns the topic it declares");
    let (status, _) = request(api, "GET", "/topics/api-made", TOKEN, None).await?;
    assert_eq!(status, 200, "a topic the API created is kept");
    let mut car = connect(gridmq.addr, "car").await?;
    send(&mut car, "vehicles", "posted-route").await?;
    wait_delivered(&server, "posted-route").await?;

    // An invalid file: 400 naming the field; the config in force stays.
    let broken = format!(
        "{extra}\n[topics.orders.eventSubscriptions.bad]\ndeliveryMode = \"Queue\"\nmaxDeliveryCount = 0\n"
    );
    gridmq.rewrite_config(&config(&url, true, "", &broken));
    let (status, body) = request(api, "POST", "/config:reload", TOKEN, None).await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "InvalidConfig", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("topics.orders.eventSubscriptions.bad.maxDeliveryCount"),
        "the field is named: {message}"
    );
    let (status, _) =
        request(api, "GET", "/topics/orders/eventSubscriptions/bad", TOKEN, None).await?;
    assert_eq!(status, 404);
    send(&mut car, "vehicles", "route-kept").await?;
    wait_delivered(&server, "route-kept").await?;
    Ok(())
}
