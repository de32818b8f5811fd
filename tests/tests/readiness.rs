//! `/readyz` on the management and data-plane listeners, end to end: 503 naming the push
//! subscription while its webhook's abuse-protection handshake is pending (a wiremock that
//! answers it late) or refused, then 200 once it is validated. `/healthz` stays 200 throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway_tests::Gridmq;
use gateway_tests::http_raw::request;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "e2e-admin-token-0123456789";
const KEY: &str = "cmVhZGluZXNzLWtleQ==";
/// How late the webhook answers its handshake.
const HANDSHAKE_DELAY: Duration = Duration::from_secs(3);

fn config(url: &str) -> String {
    format!(
        r#"
[management]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"

[http]
listen = "127.0.0.1:0"
access_keys = ["{KEY}"]

[topics.vehicles.eventSubscriptions.hook.destination]
endpointType = "WebHook"
endpointUrl = "{url}/hook"
"#
    )
}

/// `GET path` without a credential: status and JSON body.
async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let response = request(addr, "GET", path, &[], b"").await.expect("HTTP request");
    (response.status, response.json().expect("a JSON body"))
}

fn listeners(gridmq: &Gridmq) -> [SocketAddr; 2] {
    [gridmq.http.expect("management API"), gridmq.api.expect("data-plane API")]
}

#[tokio::test]
async fn readyz_is_503_while_a_webhook_handshake_is_pending_then_200() {
    let server = MockServer::start().await;
    Mock::given(method("OPTIONS"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("WebHook-Allowed-Origin", "*")
                .set_delay(HANDSHAKE_DELAY),
        )
        .mount(&server)
        .await;
    let started = Instant::now();
    let gridmq = Gridmq::start_with_config(&config(&server.uri()));
    let pending = json!({"ready": false, "notReady": [
        {"component": "dispatcher", "name": "vehicles/hook", "reason": "handshake pending"}
    ]});
    for addr in listeners(&gridmq) {
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!((status, &body), (503, &pending), "on {addr}");
        // Liveness does not wait for the handshake.
        assert_eq!(get(addr, "/healthz").await, (200, json!({"status": "ok"})), "on {addr}");
    }
    assert!(started.elapsed() < HANDSHAKE_DELAY, "the checks ran while the handshake was pending");
    let deadline = Instant::now() + Duration::from_secs(20);
    for addr in listeners(&gridmq) {
        loop {
            let (status, body) = get(addr, "/readyz").await;
            if status == 200 {
                assert_eq!(body, json!({"ready": true, "notReady": []}));
                break;
            }
            assert_eq!((status, &body), (503, &pending), "on {addr}");
            assert!(Instant::now() < deadline, "never ready on {addr}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(started.elapsed() >= HANDSHAKE_DELAY, "ready only once the handshake was answered");
}

#[tokio::test]
async fn readyz_names_a_refused_handshake_and_stays_503() {
    let server = MockServer::start().await;
    Mock::given(method("OPTIONS")).respond_with(ResponseTemplate::new(405)).mount(&server).await;
    let gridmq = Gridmq::start_with_config(&config(&server.uri()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let [management, data_plane] = listeners(&gridmq);
    let reason = loop {
        let (status, body) = get(management, "/readyz").await;
        assert_eq!(status, 503, "{body}");
        let entry = &body["notReady"][0];
        assert_eq!(
            (&entry["component"], &entry["name"]),
            (&json!("dispatcher"), &json!("vehicles/hook"))
        );
        let reason = entry["reason"].as_str().unwrap_or_default().to_string();
        if reason.starts_with("handshake failed") {
            break reason;
        }
        assert!(Instant::now() < deadline, "the refusal never showed: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reason.contains("OPTIONS"), "the reason says which handshake failed: {reason}");
    let (status, body) = get(data_plane, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body["notReady"][0]["reason"], json!(reason));
}
