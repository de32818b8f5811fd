//! Routing through the management API: client lifecycle events from resource changes, and dead
//! letters listed, re-driven and deleted while gridmq runs.

use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::v5;
use gateway_tests::http::request;
use gateway_tests::webhook;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const TOKEN: &str = "e2e-admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn config(url: &str) -> String {
    format!(
        r#"
[management]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"

[auth]
allow_anonymous = true

[topicSpaces.vehicles]
topicTemplates = ["vehicles/#"]

[permissionBindings.all-pub]
clientGroupName = "$all"
topicSpaceName = "vehicles"
permission = "Publisher"

[[routing.routes]]
topic = "telemetry"

[topics.telemetry.eventSubscriptions.hook]
retryDelaysSeconds = [0.2]

[topics.telemetry.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "{url}/hook"

[systemTopic.eventSubscriptions.lifecycle.destination]
endpointType = "WebHook"
endpointUrl = "{url}/lifecycle"
"#
    )
}

#[tokio::test]
async fn client_changes_become_lifecycle_events() -> anyhow::Result<()> {
    let server = webhook::accepting().await;
    let gridmq = Gridmq::start_with_config(&config(&server.uri()));
    let api = gridmq.http.expect("management API");
    let body = json!({"properties": {"authenticationName": "dev-1", "attributes": {"floor": 7}}});
    assert_eq!(request(api, "PUT", "/clients/dev1", TOKEN, Some(&body)).await?.0, 201);
    let body = json!({"properties": {"authenticationName": "dev-1", "state": "Disabled"}});
    assert_eq!(request(api, "PUT", "/clients/dev1", TOKEN, Some(&body)).await?.0, 200);
    assert_eq!(request(api, "DELETE", "/clients/dev1", TOKEN, None).await?.0, 200);
    let posts = webhook::wait_posts(&server, "/lifecycle", WAIT, |p| webhook::events(p).len() >= 3);
    let events = webhook::events(&posts.await);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(types.iter().filter(|t| t.ends_with("MQTTClientCreatedOrUpdated")).count(), 2);
    assert_eq!(types.iter().filter(|t| t.ends_with("MQTTClientDeleted")).count(), 1);
    for event in &events {
        assert_eq!(event["subject"], "clients/dev1");
        assert_eq!(event["data"]["clientAuthenticationName"], "dev-1");
        let schema = if event["type"].as_str().unwrap_or_default().ends_with("Deleted") {
            "lifecycle-client-deleted.schema.json"
        } else {
            "lifecycle-client-created-or-updated.schema.json"
        };
        gateway_tests::schema::validate(schema, event).expect("lifecycle schema");
    }
    let created = events.iter().find(|e| e["data"]["attributes"]["floor"] == 7).expect("created");
    assert_eq!(created["data"]["state"], "Enabled");
    assert!(events.iter().any(|e| e["data"]["state"] == "Disabled"));
    Ok(())
}

#[tokio::test]
async fn dead_letters_are_listed_redriven_and_deleted() -> anyhow::Result<()> {
    let server = webhook::accepting().await;
    // The hook refuses for good at first, then accepts (the webhook's default).
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(404))
        .up_to_n_times(3)
        .mount(&server)
        .await;
    let gridmq = Gridmq::start_with_config(&config(&server.uri()));
    let api = gridmq.http.expect("management API");
    let client = v5::Client::connect(gridmq.addr, "car1").await;
    for payload in [b"a", b"b", b"c"] {
        client.publish("vehicles/car1", v5::QoS::AtLeastOnce, false, payload).await;
    }
    let letters = "/routing/topics/telemetry/eventSubscriptions/hook/deadLetters";
    let deadline = tokio::time::Instant::now() + WAIT;
    let listed = loop {
        let (status, body) = request(api, "GET", letters, TOKEN, None).await?;
        assert_eq!(status, 200, "{body}");
        if body["value"].as_array().map_or(0, Vec::len) == 3 {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "dead letters: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first = &listed["value"][0];
    assert_eq!(first["record"]["deadletterProperties"]["deliveryresult"], "NotFound");
    let ids: Vec<u64> =
        listed["value"].as_array().into_iter().flatten().filter_map(|v| v["id"].as_u64()).collect();
    // Re-drive two (the endpoint now accepts), delete the third.
    let (status, body) = request(
        api,
        "POST",
        &format!("{letters}/redrive"),
        TOKEN,
        Some(&json!({"ids": &ids[..2]})),
    )
    .await?;
    assert_eq!((status, body["redriven"].as_u64()), (200, Some(2)));
    webhook::wait_posts(&server, "/hook", WAIT, |p| webhook::events(p).len() >= 5).await;
    let (status, body) = request(api, "DELETE", letters, TOKEN, None).await?;
    assert_eq!((status, body["deleted"].as_u64()), (200, Some(1)));
    let (_, body) = request(api, "GET", letters, TOKEN, None).await?;
    assert_eq!(body["value"], json!([]));
    let (_, subscriptions) = request(api, "GET", "/routing/subscriptions", TOKEN, None).await?;
    let hook = subscriptions["value"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "hook")
        .expect("hook");
    assert_eq!(hook["endpoint"]["validated"], true);
    assert_eq!(
        request(
            api,
            "GET",
            "/routing/topics/telemetry/eventSubscriptions/nope/deadLetters",
            TOKEN,
            None
        )
        .await?
        .0,
        404
    );
    Ok(())
}
