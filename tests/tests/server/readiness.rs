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
const HANDSHAKE_DELAY: Duration = Duration::from_secs(5);

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
    // The dispatcher's task may not have run yet ("not started"); then it waits for its
    // handshake.
    let not_started = json!({"ready": false, "notReady": [
        {"component": "dispatcher", "name": "vehicles/hook", "reason": "not started"}
    ]});
    for addr in listeners(&gridmq) {
        loop {
            let (status, body) = get(addr, "/readyz").await;
            if body == pending {
                assert_eq!(status, 503);
                break;
            }
            assert_eq!((status, &body), (503, &not_started), "on {addr}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local address").port()
}

#[tokio::test]
async fn readyz_is_503_while_recovery_runs_then_200() {
    const RETAINED: usize = 30_000;
    let port = free_port();
    let config = format!("[http]\nlisten = \"127.0.0.1:{port}\"\naccess_keys = [\"{KEY}\"]\n");
    // A store with many retained messages, so that reading it back takes a while.
    let mut first = Gridmq::start_with_config(&config);
    let client = gateway_tests::clients::v5::Client::connect(first.addr, "filler").await;
    let payload = vec![b'x'; 200];
    for i in 0..RETAINED {
        let topic = format!("fill/{}/{i}", i % 100);
        client.publish(&topic, gateway_tests::clients::v5::QoS::AtMostOnce, true, &payload).await;
    }
    // A QoS 1 publish after them: once acknowledged, everything before it has been handled.
    let mut client = client;
    client.publish("fill/end", gateway_tests::clients::v5::QoS::AtLeastOnce, true, b"e").await;
    // The client writes the 30,000 messages before this one and the broker stores them all
    // before it acknowledges: on a loaded machine (other tests of this binary run beside this
    // one) that takes longer than one packet's usual wait.
    let acked = client
        .inbox
        .try_next(Duration::from_secs(30), |p| {
            matches!(p, gateway_tests::clients::v5::Packet::PubAck(_)).then_some(())
        })
        .await;
    assert!(acked.is_some(), "no PUBACK for fill/end within 30 s");
    drop(client);
    let data = first.data_dir();
    first.terminate(Duration::from_secs(20)).expect("a clean exit commits everything");

    let restarted = {
        let data = data.clone();
        let config = config.clone();
        // The harness returns once the broker announces its listeners, after recovery.
        let starting = std::thread::spawn(move || Gridmq::start_in(data, &config));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let recovering = json!({"ready": false, "notReady": [
            {"component": "recovery", "name": "store", "reason": "recovery running"}
        ]});
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen_recovering = false;
        loop {
            assert!(Instant::now() < deadline, "never ready");
            let Ok(response) = request(addr, "GET", "/readyz", &[], b"").await else {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            };
            let body = response.json().expect("JSON");
            if response.status == 200 {
                assert_eq!(body, json!({"ready": true, "notReady": []}));
                break;
            }
            assert_eq!((response.status, &body), (503, &recovering));
            if !seen_recovering {
                // Meanwhile the API's other routes say that it is starting.
                let other = request(addr, "GET", "/topics/t", &[("aeg-sas-key", KEY)], b"")
                    .await
                    .expect("HTTP request");
                assert_eq!(other.status, 503, "{}", String::from_utf8_lossy(&other.body));
            }
            seen_recovering = true;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(seen_recovering, "/readyz never answered while recovery ran");
        starting.join().expect("the broker started")
    };
    // Recovered: the retained messages are there.
    let mut client = gateway_tests::clients::v5::Client::connect(restarted.addr, "reader").await;
    client.subscribe("fill/end", gateway_tests::clients::v5::QoS::AtMostOnce).await;
    let message = client.recv().await;
    assert_eq!(&message.payload[..], b"e");
}
