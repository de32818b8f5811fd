//! The Event Hubs sink with the real SDK against a fake Event Hubs endpoint on 127.0.0.1
//! (`tests/fake_eventhubs/server.py`, python-qpid-proton): what the hub receives, batching by
//! partition key, and how failures are sorted.
//!
//! These tests need `python3` with the `proton` module (`tests/run` installs it); without them
//! they fail, saying so.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::*;
use crate::event::Data;
use crate::test_util::{event, first_tries};

const HUB: &str = "telemetry";

/// A running fake Event Hubs namespace; stopped (by its pid) when dropped.
struct FakeHub {
    port: u16,
    child: Child,
    record: PathBuf,
}

impl FakeHub {
    async fn start() -> FakeHub {
        FakeHub::start_with(0, &[]).await
    }

    /// Starts the fake on `port` (0: a free one) with extra arguments.
    async fn start_with(port: u16, args: &[&str]) -> FakeHub {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fake_eventhubs/server.py");
        let record = std::env::temp_dir().join(format!(
            "gridmq-fake-eventhubs-{}-{}.jsonl",
            std::process::id(),
            unique()
        ));
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--port", &port.to_string(), "--hub", HUB, "--record"])
            .arg(&record)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 for the fake Event Hubs endpoint ({e}); install python3")
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first = String::new();
        let mut stdout = BufReader::new(stdout);
        let read = stdout.read_line(&mut first);
        let started = tokio::time::timeout(Duration::from_secs(20), read).await;
        let port = match started {
            Ok(Ok(n)) if n > 0 => first.trim().parse::<u16>().ok(),
            _ => None,
        };
        let Some(port) = port else {
            let _ = child.start_kill();
            let output = child.wait_with_output().await.ok();
            let stderr =
                output.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_default();
            panic!(
                "the fake Event Hubs endpoint did not start; it needs python3 with \
                 python-qpid-proton (`python3 -m pip install python-qpid-proton`, or run \
                 tests/run):\n{stderr}"
            );
        };
        // Whatever the fake says on stderr from now on shows with a failing test's output.
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("fake-eventhubs: {line}");
                }
            });
        }
        FakeHub { port, child, record }
    }

    fn endpoint(&self) -> String {
        format!("amqp://127.0.0.1:{}", self.port)
    }

    /// The events the fake received, in order.
    fn received(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        // By pid, as the harness promises; `kill_on_drop` is the backstop.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = std::fs::remove_file(&self.record);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A port on 127.0.0.1 nothing listens on (just freed).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn connection_string(key_name: &str, hub: &str) -> String {
    format!(
        "Endpoint=sb://gridmq-test.servicebus.windows.net/;SharedAccessKeyName={key_name};\
         SharedAccessKey=c2VjcmV0;EntityPath={hub}"
    )
}

fn config(endpoint: String, edit: impl FnOnce(&mut EventHubsConfig)) -> EventHubsConfig {
    let mut config = EventHubsConfig::with_connection_string(connection_string("send", HUB));
    config.custom_endpoint = Some(endpoint);
    config.timeout_seconds = 10;
    edit(&mut config);
    config
}

fn sink(fake: &FakeHub, edit: impl FnOnce(&mut EventHubsConfig)) -> EventHubsSink {
    EventHubsSink::new(config(fake.endpoint(), edit), "orders-sub").unwrap()
}

fn vehicle_event(id: &str, vehicle: &str) -> CloudEvent {
    let mut event = event(id);
    event.data =
        Data::from_json_value(serde_json::json!({"vehicle": {"id": vehicle}, "speed": 12}));
    event
}

fn ids(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["application_properties"]["aeg-output-event-id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_single_event_as_the_hub_receives_it() {
    let fake = FakeHub::start().await;
    let sink = sink(&fake, |c| {
        c.delivery_attribute_mappings = vec![
            DeliveryProperty::Static { name: "site".into(), value: "p7".into(), is_secret: false },
            DeliveryProperty::Dynamic {
                name: "vehicle".into(),
                source_field: "data.vehicle.id".into(),
            },
        ]
    });
    sink.validate().await.unwrap();
    let events = [event("e1")];
    sink.send(&first_tries(&events)).await.unwrap();

    let records = fake.received();
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    let body: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, events[0].to_json());
    assert_eq!(record["properties"]["content_type"], "application/cloudevents+json; charset=utf-8");
    assert_eq!(record["properties"]["message_id"], "e1");
    assert_eq!(
        record["application_properties"],
        serde_json::json!({
            "aeg-subscription-name": "orders-sub",
            "aeg-delivery-count": "0",
            "aeg-output-event-id": "e1",
            "aeg-compatibility-mode-enabled": "false",
            "aeg-metadata-version": "1",
            "site": "p7",
            "vehicle": "v7",
        })
    );
    assert_eq!(record["batch_size"], 1);
    assert_eq!(record["partition_key"], Value::Null);
    assert!(record["address"].as_str().unwrap().ends_with("/telemetry"), "{record}");
}

#[tokio::test]
async fn several_events_go_in_one_batch() {
    let fake = FakeHub::start().await;
    let sink = sink(&fake, |_| {});
    let events: Vec<CloudEvent> = (1..=5).map(|i| event(&format!("e{i}"))).collect();
    let mut deliveries = first_tries(&events);
    deliveries[2].delivery_count = 4;
    assert_eq!(sink.batch_len(&deliveries), 5);
    sink.send(&deliveries).await.unwrap();

    let records = fake.received();
    assert_eq!(ids(&records), ["e1", "e2", "e3", "e4", "e5"]);
    assert!(records.iter().all(|r| r["batch"] == records[0]["batch"] && r["batch_size"] == 5));
    assert_eq!(records[2]["application_properties"]["aeg-delivery-count"], "3");
    assert_eq!(records[1]["application_properties"]["aeg-delivery-count"], "0");
}

#[tokio::test]
async fn a_static_partition_key_marks_the_batch() {
    let fake = FakeHub::start().await;
    let sink = sink(&fake, |c| {
        c.delivery_attribute_mappings = vec![DeliveryProperty::Static {
            name: "PartitionKey".into(),
            value: "plant-7".into(),
            is_secret: false,
        }]
    });
    let events = [event("e1"), event("e2")];
    assert_eq!(sink.batch_len(&first_tries(&events)), 2);
    sink.send(&first_tries(&events)).await.unwrap();

    let records = fake.received();
    assert_eq!(ids(&records), ["e1", "e2"]);
    for record in &records {
        assert_eq!(record["partition_key"], "plant-7");
        assert_eq!(record["envelope_annotations"]["x-opt-partition-key"], "plant-7");
        assert!(record["application_properties"].get("PartitionKey").is_none(), "{record}");
    }
}

#[tokio::test]
async fn a_dynamic_partition_key_splits_batches_by_value() {
    let fake = FakeHub::start().await;
    let sink = sink(&fake, |c| {
        c.delivery_attribute_mappings = vec![DeliveryProperty::Dynamic {
            name: "PartitionKey".into(),
            source_field: "data.vehicle.id".into(),
        }]
    });
    let events = [
        vehicle_event("e1", "v1"),
        vehicle_event("e2", "v1"),
        vehicle_event("e3", "v2"),
        vehicle_event("e4", "v1"),
    ];
    let deliveries = first_tries(&events);
    // The dispatcher's requests: a run of one key at a time.
    assert_eq!(sink.batch_len(&deliveries), 2);
    assert_eq!(sink.batch_len(&deliveries[2..]), 1);
    assert_eq!(sink.batch_len(&deliveries[3..]), 1);
    sink.send(&deliveries[..2]).await.unwrap();
    // Given mixed keys anyway, send still keeps each batch to one key, in order.
    sink.send(&deliveries[2..]).await.unwrap();

    let records = fake.received();
    assert_eq!(ids(&records), ["e1", "e2", "e3", "e4"]);
    let keys: Vec<&Value> = records.iter().map(|r| &r["partition_key"]).collect();
    assert_eq!(keys, ["v1", "v1", "v2", "v1"]);
    let batches: Vec<&Value> = records.iter().map(|r| &r["batch"]).collect();
    assert_eq!(batches[0], batches[1]);
    assert_ne!(batches[1], batches[2]);
    assert_ne!(batches[2], batches[3]);
}

#[tokio::test]
async fn events_beyond_the_batch_size_go_in_further_batches() {
    let fake = FakeHub::start().await;
    let sink = sink(&fake, |c| c.max_batch_size_in_bytes = Some(2048));
    let events: Vec<CloudEvent> = (1..=6).map(|i| event(&format!("e{i}"))).collect();
    let deliveries = first_tries(&events);
    let planned = sink.batch_len(&deliveries);
    assert!((1..6).contains(&planned), "{planned}");
    // All six given at once still arrive, in several envelopes.
    sink.send(&deliveries).await.unwrap();
    let records = fake.received();
    assert_eq!(ids(&records), ["e1", "e2", "e3", "e4", "e5", "e6"]);
    let last = records.last().unwrap()["batch"].as_u64().unwrap();
    assert!(last > 1, "{records:#?}");

    // An event larger than a whole batch cannot go.
    let mut big = event("big");
    big.data = Data::from_json_value(Value::from("x".repeat(4096)));
    let big = [big];
    assert_eq!(sink.batch_len(&first_tries(&big)), 1);
    let error = sink.send(&first_tries(&big)).await.unwrap_err();
    assert_eq!(error.kind, FailureKind::PayloadTooLarge, "{error}");
    assert!(!error.is_retriable(Schedule::Namespace));
}

#[tokio::test]
async fn endpoint_down_then_up_loses_nothing() {
    let port = free_port();
    let config = config(format!("amqp://127.0.0.1:{port}"), |_| {});
    let sink = EventHubsSink::new(config, "orders-sub").unwrap();
    let events = [event("e1"), event("e2")];

    let error = sink.validate().await.unwrap_err();
    assert_eq!(error.kind, FailureKind::SocketError, "{error}");
    assert!(error.is_retriable(Schedule::Namespace));
    let error = sink.send(&first_tries(&events)).await.unwrap_err();
    assert_eq!(error.kind, FailureKind::SocketError, "{error}");
    assert!(error.is_retriable(Schedule::Namespace));

    let fake = FakeHub::start_with(port, &[]).await;
    assert_eq!(fake.port, port);
    sink.validate().await.unwrap();
    sink.send(&first_tries(&events)).await.unwrap();
    assert_eq!(ids(&fake.received()), ["e1", "e2"]);

    // And again after the hub went away and came back on the same port.
    drop(fake);
    let error = sink.send(&first_tries(&events[..1])).await.unwrap_err();
    assert!(error.is_retriable(Schedule::Namespace), "{error}");
    let fake = FakeHub::start_with(port, &[]).await;
    sink.send(&first_tries(&events[..1])).await.unwrap();
    assert_eq!(ids(&fake.received()), ["e1"]);
}

#[tokio::test]
async fn a_refused_token_is_unauthorized() {
    let fake = FakeHub::start_with(0, &["--reject-key-name", "revoked"]).await;
    let mut config = config(fake.endpoint(), |_| {});
    config.connection_string = Some(connection_string("revoked", HUB));
    let sink = EventHubsSink::new(config, "orders-sub").unwrap();
    let events = [event("e1")];
    let error = sink.send(&first_tries(&events)).await.unwrap_err();
    assert_eq!(error.kind, FailureKind::Unauthorized, "{error}");
    assert!(!error.is_retriable(Schedule::Namespace));
    assert_eq!(sink.validate().await.unwrap_err().kind, FailureKind::Unauthorized);
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn an_unknown_hub_is_not_found_by_validate() {
    let fake = FakeHub::start().await;
    let config = config(fake.endpoint(), |c| {
        c.connection_string = Some(connection_string("send", "no-such-hub"));
        c.timeout_seconds = 2;
    });
    let sink = EventHubsSink::new(config, "orders-sub").unwrap();
    let error = sink.validate().await.unwrap_err();
    assert_eq!(error.kind, FailureKind::NotFound, "{error}");
    assert!(!error.is_retriable(Schedule::Namespace));
    // A send finds out only by its timeout: the hub refuses the link with `amqp:not-found`,
    // but the SDK (fe2o3-amqp 0.16) keeps waiting for credit on the detached link.
    let events = [event("e1")];
    let error = sink.send(&first_tries(&events)).await.unwrap_err();
    assert!(matches!(error.kind, FailureKind::NotFound | FailureKind::TimedOut), "{error}");
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    // Accepts TCP connections (into the backlog) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let config = config(format!("amqp://127.0.0.1:{port}"), |c| c.timeout_seconds = 1);
    let sink = EventHubsSink::new(config, "orders-sub").unwrap();
    let events = [event("e1")];
    let started = std::time::Instant::now();
    let error = sink.send(&first_tries(&events)).await.unwrap_err();
    assert_eq!(error.kind, FailureKind::TimedOut, "{error}");
    assert!(error.is_retriable(Schedule::Namespace));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn new_refuses_a_bad_config() {
    let mut config = EventHubsConfig::with_connection_string(connection_string("send", HUB));
    config.timeout_seconds = 0;
    assert_eq!(EventHubsSink::new(config, "s").unwrap_err().field, "timeoutSeconds");
}

#[test]
fn secret_properties_stay_out_of_dead_letters() {
    let mut config = EventHubsConfig::with_connection_string(connection_string("send", HUB));
    config.delivery_attribute_mappings = vec![
        DeliveryProperty::Static { name: "key".into(), value: "s3cret".into(), is_secret: true },
        DeliveryProperty::Dynamic { name: "PartitionKey".into(), source_field: "subject".into() },
    ];
    let sink = EventHubsSink::new(config, "s").unwrap();
    let properties = sink.custom_delivery_properties(&event("e1"));
    assert_eq!(
        properties,
        BTreeMap::from([("PartitionKey".to_owned(), "vehicles/7/position".to_owned())])
    );
}
