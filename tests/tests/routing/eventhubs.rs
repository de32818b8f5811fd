//! Routing to Event Hubs, end to end: the gridmq binary delivers routed events with the real
//! Azure SDK to the fake Event Hubs AMQP endpoint (`tests/fake_eventhubs/server.py`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::v5;
use serde_json::Value;

/// The fake endpoint, stopped by pid when dropped.
struct FakeHub {
    child: Child,
    port: u16,
    record: tempfile::NamedTempFile,
}

impl FakeHub {
    fn start() -> FakeHub {
        let script = gateway_tests::repo_file("tests/fake_eventhubs/server.py");
        let record = tempfile::NamedTempFile::new().expect("record file");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--port", "0", "--hub", "telemetry", "--record"])
            .arg(record.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python3 (tests/run installs python-qpid-proton)");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut first).expect("read the port");
        let port = first.trim().parse().unwrap_or_else(|_| {
            panic!("the fake Event Hubs endpoint did not start (python-qpid-proton missing? run tests/run): {first:?}")
        });
        FakeHub { child, port, record }
    }

    fn received(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.record.path()).unwrap_or_default();
        text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn routed_events_reach_the_event_hub_with_partition_keys() {
    let hub = FakeHub::start();
    let gridmq = Gridmq::start_with_config(&format!(
        r#"
[[routing.routes]]
topic = "telemetry"

[topics.telemetry.eventSubscriptions.hub]
retryDelaysSeconds = [0.5]

[topics.telemetry.eventSubscriptions.hub.destination]
endpointType = "EventHub"
connectionString = "Endpoint=sb://gridmq-test.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0;EntityPath=telemetry"
customEndpoint = "amqp://127.0.0.1:{}"
deliveryAttributeMappings = [{{ name = "PartitionKey", type = "Dynamic", sourceField = "subject" }}]
"#,
        hub.port
    ));
    let client = v5::Client::connect(gridmq.addr, "car1").await;
    for car in ["car1", "car2", "car1"] {
        client.publish(&format!("vehicles/{car}"), v5::QoS::AtLeastOnce, false, b"x").await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let received = loop {
        let received = hub.received();
        if received.len() >= 3 {
            break received;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 3 events reached the hub",
            received.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for record in &received {
        let text = record.to_string();
        assert!(text.contains("MQTT.EventPublished"), "a CloudEvent body: {text}");
        assert!(text.contains("aeg-subscription-name"), "Event Grid's properties: {text}");
        // The partition key is the event's subject, as the delivery property says.
        let key = record["partition_key"].as_str().unwrap_or_default();
        assert!(key.starts_with("vehicles/car"), "partition key {key:?} in {text}");
    }
    let keys: std::collections::BTreeSet<&str> =
        received.iter().filter_map(|r| r["partition_key"].as_str()).collect();
    assert_eq!(keys.len(), 2, "one key per car: {keys:?}");
}
