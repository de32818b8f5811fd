use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sinks::event::format_time;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::config::Config;
use crate::namespace::Namespace;

const TOKEN: &str = "test-admin-token-0123456789";

/// The subscription `orders/hook` as `GET /routing/subscriptions` (what the console's routing
/// page reads) shows it.
async fn shown(app: &axum::Router) -> Value {
    let request = Request::get("/routing/subscriptions")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("call");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    let listing: Value = serde_json::from_slice(&bytes).expect("json");
    let found = listing["value"].as_array().and_then(|v| v.iter().find(|s| s["name"] == "hook"));
    found.cloned().unwrap_or_else(|| panic!("no orders/hook in {listing}"))
}

#[tokio::test]
async fn a_failing_webhook_puts_its_subscription_on_probation_with_the_error_and_its_time() {
    // An endpoint that passes the handshake and then answers every delivery 503 (retriable).
    let webhook = MockServer::start().await;
    Mock::given(method("OPTIONS"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("WebHook-Allowed-Origin", "eventgrid.azure.net"),
        )
        .mount(&webhook)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).mount(&webhook).await;
    let config = Config::parse(&format!(
        r#"
        [management]
        admin_token = "{TOKEN}"
        [topics.orders.eventSubscriptions.hook.destination]
        endpointType = "WebHook"
        endpointUrl = "{}/hook"
        "#,
        webhook.uri()
    ))
    .expect("config");
    let namespace =
        Namespace::open(config.namespace_section(), &[]).expect("namespace").expect("on");
    let plan = config.routing_section().plan().expect("plan");
    let router = crate::routing::Router::build(&config.namespace, plan, None, &[])
        .expect("router")
        .expect("routing on");
    let app = crate::mgmt::app(namespace, TOKEN, Some(router.clone()));
    let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
    router.start(&tasks, &shutdown);

    let before = shown(&app).await;
    assert_eq!(before["endpoint"]["probation"], false, "{before}");
    assert_eq!(before["endpoint"]["lastError"], Value::Null, "{before}");
    assert_eq!(before["endpoint"]["lastErrorTime"], Value::Null, "{before}");

    let sent = SystemTime::now();
    let event = sinks::CloudEvent::from_json_bytes(
        json!({"specversion": "1.0", "id": "e1", "source": "s", "type": "t"})
            .to_string()
            .as_bytes(),
    )
    .expect("event");
    router.publish_events("orders", vec![event]).expect("admitted");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let after = loop {
        let now = shown(&app).await;
        // The error is recorded before the event is queued again.
        if now["endpoint"]["lastErrorTime"].is_string() && now["waiting"] == 1 {
            break now;
        }
        assert!(tokio::time::Instant::now() < deadline, "no error shown: {now}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seen = SystemTime::now();
    let endpoint = &after["endpoint"];
    assert_eq!(endpoint["validated"], true, "{after}");
    assert_eq!(endpoint["probation"], true, "{after}");
    let error = endpoint["lastError"].as_str().expect("lastError");
    assert!(error.starts_with("Busy (HTTP 503)"), "{error}");
    // RFC 3339 in UTC, fixed width, so the strings order as the times do.
    let time = endpoint["lastErrorTime"].as_str().expect("lastErrorTime");
    assert!(time.ends_with('Z') && time.len() == "2026-01-01T00:00:00.0000000Z".len(), "{time}");
    assert!(format_time(sent).as_str() <= time && time <= format_time(seen).as_str(), "{time}");
    // The default schedule rests a subscription 10 s after a retriable failure.
    let until = endpoint["probationUntil"].as_str().expect("probationUntil");
    let rest = Duration::from_secs(10);
    assert!(
        format_time(sent + rest).as_str() <= until && until <= format_time(seen + rest).as_str(),
        "{until} after {time}"
    );
    // The event waits out the probation: one request went out.
    let posts = webhook.received_requests().await.unwrap_or_default();
    assert_eq!(posts.iter().filter(|r| r.method.as_str() == "POST").count(), 1);

    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
}
