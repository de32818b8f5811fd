//! The unmodified Python `azure-mgmt-eventgrid` SDK (api-version 2025-02-15) against gridmq's
//! management API over HTTPS, with the admin token as its bearer token: it creates a namespace
//! topic with a queue and a webhook subscription, a client (thumbprint authentication), a
//! client group, a topic space and a permission binding (`tests/azure_mgmt/setup_namespace.py`).
//! An MQTT client then publishes under those grants with its certificate; the SDK updates the
//! queue subscription and the topic (PATCH) while the event waits; the event arrives at the
//! wiremock webhook and through a data-plane receive. After a restart the resources and the
//! queued event are still there, and the unmodified `azure-eventgrid` SDK receives it.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use gateway::auth::x509::thumbprint_sha256;
use gateway_tests::Gridmq;
use gateway_tests::azure_sdk::{self, Target};
use gateway_tests::certs::{ALL_VERSIONS, Pki, client_config};
use gateway_tests::http_raw;
use gateway_tests::webhook;
use serde_json::{Value, json};

const TOKEN: &str = "arm-sdk-admin-token-0123456789";
const KEY: &str = "YXJtLXNkay1kYXRhLXBsYW5lLWtleS0wMTIzNDU2Nzg5";
const SUBSCRIPTION: &str = "6a0f3e52-1c7b-4d2e-9a4f-0b8c2d1e3f40";
const GROUP: &str = "rg-fleet";
const NAMESPACE: &str = "fleet-ns";
const WAIT: Duration = Duration::from_secs(20);

fn config(pki: &Pki) -> String {
    let server = pki.server();
    let (cert, key) = (server.cert_path.display(), server.key_path.display());
    format!(
        r#"
[namespace]
name = "{NAMESPACE}"
subscription_id = "{SUBSCRIPTION}"
resource_group = "{GROUP}"

[[server.listeners]]
kind = "tls"
address = "127.0.0.1:0"
certificate = "{cert}"
private_key = "{key}"
client_auth = "required"

[[server.listeners]]
kind = "tcp"
address = "127.0.0.1:0"

[management]
listen = "127.0.0.1:0"
admin_token = "{TOKEN}"
certificate = "{cert}"
private_key = "{key}"

[http]
listen = "127.0.0.1:0"
access_keys = ["{KEY}"]

# The topic does not exist until the SDK creates it.
[[routing.routes]]
topic_filter = "vehicles/#"
topic = "telemetry"
"#
    )
}

/// Receives from the `pull` queue subscription with the access key.
async fn receive(api: SocketAddr) -> Value {
    let target = "/topics/telemetry/eventsubscriptions/pull:receive?api-version=2024-06-01&maxEvents=10&maxWaitTime=10";
    let response = http_raw::request(api, "POST", target, &[("aeg-sas-key", KEY)], b"")
        .await
        .expect("receive");
    assert_eq!(response.status, 200, "{}", response.error_message());
    response.json().expect("JSON")
}

#[tokio::test]
async fn the_azure_mgmt_sdk_sets_up_a_namespace_that_routes_mqtt() {
    let pki = Pki::new("arm-sdk-ca");
    let device = pki.self_signed_client("dev1");
    let hook = webhook::accepting().await;
    let config = config(&pki);
    let mut gridmq = Gridmq::start_with_config(&config);
    assert!(gridmq.http_tls, "the management API speaks HTTPS");
    let mgmt = gridmq.http.expect("management API");
    let arguments = json!({
        "base_url": format!("https://127.0.0.1:{}", mgmt.port()),
        "token": TOKEN,
        "subscription": SUBSCRIPTION,
        "resource_group": GROUP,
        "namespace": NAMESPACE,
        "ca": pki.ca_path,
        "webhook": format!("{}/hook", hook.uri()),
        "thumbprint": thumbprint_sha256(device.cert.as_ref()),
        "mqtt_port": gridmq.mqtts.expect("MQTT TLS listener").port(),
        "cert": device.cert_path,
        "key": device.key_path,
    });
    let script = gateway_tests::repo_file("tests/azure_mgmt/setup_namespace.py");
    let run = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(arguments.to_string())
            .output()
            .expect("run python3 (tests/run installs azure-mgmt-eventgrid and paho-mqtt)")
    })
    .await
    .expect("python");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the SDK script failed:\n{stderr}");
    let out: Value = serde_json::from_slice(&run.stdout).expect("the script's JSON");

    // What the SDK returned: ARM ids under the configured subscription and resource group,
    // finished operations, the subscription in ARM shape.
    assert_eq!(out["api_version"], "2025-02-15");
    let namespace_id = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.EventGrid/namespaces/{NAMESPACE}"
    );
    assert_eq!(out["topic"]["id"], format!("{namespace_id}/topics/telemetry"));
    assert_eq!(out["topic"]["event_retention_in_days"], 1);
    for key in ["topic", "queue", "push", "client", "group", "space", "binding"] {
        assert_eq!(out[key]["provisioning_state"], "Succeeded", "{key}: {}", out[key]);
    }
    assert_eq!(out["queue"]["type"], "Microsoft.EventGrid/namespaces/topics/eventSubscriptions");
    assert_eq!(out["client"]["id"], format!("{namespace_id}/clients/dev1"));
    assert_eq!(out["subscriptions"], json!(["hook", "pull"]));
    let queue = &out["read_back"]["delivery_configuration"]["queue"];
    assert_eq!(queue["max_delivery_count"], 5);
    assert_eq!(queue["receive_lock_duration_in_seconds"], 60);
    assert_eq!(queue["event_time_to_live"], "PT12H");
    let filters = &out["read_back"]["filters_configuration"];
    assert_eq!(filters["included_event_types"], json!(["MQTT.EventPublished"]));
    assert_eq!(filters["filters"][0]["operator_type"], "StringBeginsWith");
    let push = &out["push"]["delivery_configuration"]["push"]["destination"];
    assert_eq!(push["endpoint_type"], "WebHook");
    assert_eq!(out["elsewhere"], 404, "another resource group is not found");

    // The MQTT client got in with its certificate and published under the new binding.
    assert_eq!(out["mqtt"]["connack"], "Success", "{}", out["mqtt"]);
    // Authorized: 0x10 (no MQTT subscriber; the message is routed all the same), not 0x87.
    assert_eq!(out["mqtt"]["puback"], "No matching subscribers", "{}", out["mqtt"]);

    // Updated (PATCH) after the publish: the merge kept the other queue settings.
    let patched = &out["patched"]["delivery_configuration"]["queue"];
    assert_eq!(patched["max_delivery_count"], 6, "{}", out["patched"]);
    assert_eq!(patched["receive_lock_duration_in_seconds"], 60);
    assert_eq!(patched["event_time_to_live"], "PT12H");
    assert_eq!(out["patched_topic"]["event_retention_in_days"], 2);

    // The event at the webhook (after the abuse-protection handshake)...
    let deadline = tokio::time::Instant::now() + WAIT;
    let delivered = loop {
        let requests = hook.received_requests().await.unwrap_or_default();
        let posted: Vec<Value> = requests
            .iter()
            .filter(|r| r.method.as_str() == "POST")
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect();
        if let Some(event) = posted.into_iter().next() {
            break event;
        }
        assert!(tokio::time::Instant::now() < deadline, "no delivery at the webhook");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(delivered["type"], "MQTT.EventPublished");
    assert_eq!(delivered["subject"], "vehicles/dev1/speed");
    assert_eq!(delivered["source"], NAMESPACE);
    assert_eq!(delivered["data"], json!({"kmh": 47.5}));

    // ...and in the queue, received with the access key.
    let api = gridmq.api.expect("data-plane API");
    let received = receive(api).await;
    let first = &received["value"][0];
    assert_eq!(first["event"]["subject"], "vehicles/dev1/speed", "{received}");
    assert_eq!(first["brokerProperties"]["deliveryCount"], 1);

    // After a restart: the resources the SDK created, and the queued event, are still there.
    gridmq.terminate(Duration::from_secs(10));
    let gridmq = Gridmq::start_in(gridmq.data_dir(), &config);
    let mgmt = gridmq.http.expect("management API");
    let tls = client_config(&pki.ca_cert, None, ALL_VERSIONS);
    let bearer = format!("Bearer {TOKEN}");
    let target =
        format!("{namespace_id}/topics/telemetry/eventSubscriptions/pull?api-version=2025-02-15");
    let got = http_raw::request_tls(mgmt, tls, "GET", &target, &[("authorization", &bearer)], b"")
        .await
        .expect("HTTPS GET");
    assert_eq!(got.status, 200, "{}", got.error_message());
    let got = got.json().expect("JSON");
    assert_eq!(got["properties"]["deliveryConfiguration"]["queue"]["maxDeliveryCount"], 6);
    // The queued event, received (and acknowledged) through the unmodified data-plane SDK.
    let endpoint = format!("http://{}", gridmq.api.expect("data-plane API"));
    let target = Target {
        endpoint: &endpoint,
        key: KEY,
        topic: "telemetry",
        subscription: "pull",
        ca: None,
    };
    let report = azure_sdk::run("drain:1", &target).await;
    let again = &report["received"][0];
    assert_eq!(again["id"], first["event"]["id"], "{report}");
    assert_eq!(again["subject"], "vehicles/dev1/speed", "{report}");
    assert_eq!(again["deliveryCount"], 2, "{report}");
    assert_eq!(again["data"], json!({"kmh": 47.5}), "{report}");
    assert_eq!(report["acknowledge"]["failed"], json!([]), "{report}");
}
