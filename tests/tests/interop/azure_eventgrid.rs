//! The unmodified Azure `azure-eventgrid` Python SDK (4.2x) against the gridmq binary: publish
//! one event and a batch, receive, renew locks, acknowledge, release with and without a delay,
//! reject, and a failed token's `error.code`, over HTTP and over HTTPS with a self-signed CA
//! (`connection_verify`); and events routed from MQTT received through the SDK.
//!
//! Each scenario is one Python process (`tests/azure_sdk/eventgrid_scenario.py`) that prints
//! what the SDK returned as JSON; the assertions are here.

use std::path::Path;

use gateway_tests::Gridmq;
use gateway_tests::azure_sdk::{self, Target};
use gateway_tests::certs::{Identity, Pki};
use gateway_tests::clients::v5;
use serde_json::{Value, json};

/// The namespace access key (base64, as Event Grid shows keys).
const KEY: &str = "YXp1cmUtZXZlbnRncmlkLXNkay1rZXktMDEyMzQ1";

fn config(tls: Option<&Identity>) -> String {
    let tls = tls
        .map(|server| {
            format!(
                "certificate = \"{}\"\nprivate_key = \"{}\"\n",
                server.cert_path.display(),
                server.key_path.display()
            )
        })
        .unwrap_or_default();
    format!(
        r#"
[http]
listen = "127.0.0.1:0"
access_keys = ["{KEY}"]
{tls}
[[routing.routes]]
topic_filter = "vehicles/#"
topic = "orders"

[topics.orders.eventSubscriptions.worker]
deliveryMode = "Queue"
receiveLockDurationInSeconds = 60
"#
    )
}

/// Runs `scenario` against the `orders` topic's `worker` subscription at `endpoint`.
async fn run(scenario: &str, endpoint: &str, ca: Option<&Path>) -> Value {
    let target = Target { endpoint, key: KEY, topic: "orders", subscription: "worker", ca };
    azure_sdk::run(scenario, &target).await
}

/// What the lifecycle scenario must see, whatever the transport.
fn check_lifecycle(report: &Value) {
    let received = report["received"].as_array().expect("received");
    assert_eq!(received.len(), 4, "{received:#?}");
    let single = &received[0];
    assert_eq!(single["type"], "Sdk.Single");
    assert_eq!(single["source"], "/sdk/test");
    assert_eq!(single["subject"], "orders/1");
    assert_eq!(single["data"], json!({"n": 1, "name": "one"}));
    assert_eq!(single["extensions"], json!({"tenant": "contoso"}));
    assert_eq!(single["deliveryCount"], 1);
    let batch: Vec<&Value> = received[1..].iter().map(|r| &r["data"]["n"]).collect();
    assert_eq!(batch, [&json!(2), &json!(3), &json!(4)], "the batch arrives in order");
    assert!(received[1..].iter().all(|r| r["type"] == "Sdk.Batch"));
    let tokens: Vec<&Value> = received.iter().map(|r| &r["lockToken"]).collect();

    assert_eq!(report["renew"], json!({"succeeded": tokens, "failed": []}));
    // One good token and one unknown: the SDK reads the failure's error.code.
    assert_eq!(report["acknowledge"]["succeeded"], json!([tokens[0]]));
    let failed = &report["acknowledge"]["failed"];
    assert_eq!(failed[0]["lockToken"], "not-a-token");
    assert_eq!(failed[0]["code"], "BadToken");
    assert!(failed[0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{failed}");
    // Every token failed: the SDK still gets an answer (200), not an exception.
    assert_eq!(report["acknowledgeAgain"]["succeeded"], json!([]));
    assert_eq!(report["acknowledgeAgain"]["failed"][0]["code"], "BadToken");
    for operation in ["releaseDelayed", "reject", "releaseNow"] {
        assert_eq!(report[operation]["failed"], json!([]), "{operation}: {report:#}");
        assert_eq!(report[operation]["succeeded"].as_array().map(Vec::len), Some(1));
    }
    // Released without delay: back at once, counted twice.
    assert_eq!(report["redelivered"][0]["data"]["n"], 4, "{report:#}");
    assert_eq!(report["redelivered"][0]["deliveryCount"], 2);
    // Released with 10 s: back after the delay.
    assert_eq!(report["delayed"][0]["data"]["n"], 2, "{report:#}");
    assert_eq!(report["delayed"][0]["deliveryCount"], 2);
    let after = report["delayedAfterSecs"].as_f64().expect("seconds");
    assert!((9.0..40.0).contains(&after), "the delayed release came back after {after} s");
    // The rejected event is dead-lettered, the others acknowledged: nothing is left.
    assert_eq!(report["leftOver"], json!([]));
}

#[tokio::test]
async fn the_sdk_publishes_receives_and_settles_over_http() {
    let gridmq = Gridmq::start_with_config(&config(None));
    let api = gridmq.api.expect("data-plane API");
    let report = run("lifecycle", &format!("http://{api}"), None).await;
    check_lifecycle(&report);
}

#[tokio::test]
async fn the_sdk_publishes_receives_and_settles_over_https_trusting_a_self_signed_ca() {
    let pki = Pki::new("sdk-ca");
    let server = pki.server();
    let gridmq = Gridmq::start_with_config(&config(Some(&server)));
    assert!(gridmq.api_tls, "the data plane is announced as HTTPS");
    let api = gridmq.api.expect("data-plane API");
    let endpoint = format!("https://localhost:{}", api.port());
    let report = run("lifecycle", &endpoint, Some(&pki.ca_path)).await;
    check_lifecycle(&report);
}

#[tokio::test]
async fn the_sdk_receives_events_routed_from_mqtt() {
    let gridmq = Gridmq::start_with_config(&config(None));
    let api = gridmq.api.expect("data-plane API");
    let client = v5::Client::connect(gridmq.addr, "car1").await;
    let mut json = v5::no_properties();
    json.payload_format_indicator = Some(1);
    json.content_type = Some("application/json".into());
    let speed = br#"{"speed":42,"unit":"km/h"}"#;
    client.publish_with("vehicles/car1/speed", v5::QoS::AtLeastOnce, false, speed, json).await;
    let mut text = v5::no_properties();
    text.payload_format_indicator = Some(1);
    client.publish_with("vehicles/car1/note", v5::QoS::AtLeastOnce, false, b"parked", text).await;

    let report = run("drain:2", &format!("http://{api}"), None).await;
    let received = report["received"].as_array().expect("received");
    assert_eq!(received.len(), 2, "{report:#}");
    let speed = received.iter().find(|r| r["subject"] == "vehicles/car1/speed").expect("speed");
    assert_eq!(speed["type"], "MQTT.EventPublished");
    assert_eq!(speed["data"], json!({"speed": 42, "unit": "km/h"}));
    let note = received.iter().find(|r| r["subject"] == "vehicles/car1/note").expect("note");
    assert_eq!(note["data"], "parked");
    assert_eq!(report["acknowledge"]["failed"], json!([]));
    assert_eq!(report["acknowledge"]["succeeded"].as_array().map(Vec::len), Some(2));
}
