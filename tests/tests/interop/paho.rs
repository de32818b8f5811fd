//! Interoperability with the Eclipse Paho Python client (paho-mqtt 2.x, run via `python3 -c`).

use gateway_tests::Gridmq;
use gateway_tests::clients::{TIMEOUT, topic5, v5};

/// Connects with MQTT 5.0 and a will, publishes a QoS 1 message with a user property, then
/// sends DISCONNECT 0x04 (disconnect with will message).
const SCRIPT: &str = r#"
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

port = int(sys.argv[1])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho", protocol=mqtt.MQTTv5)
c.will_set("paho/will", b"paho-will", qos=1)
c.connect("127.0.0.1", port)
c.loop_start()
deadline = time.time() + 5
while not c.is_connected() and time.time() < deadline:
    time.sleep(0.02)
assert c.is_connected(), "paho did not connect"
props = Properties(PacketTypes.PUBLISH)
props.UserProperty = ("from", "paho")
info = c.publish("paho/data", b"paho-data", qos=1, properties=props)
info.wait_for_publish(5)
c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
c.loop_stop()
"#;

#[tokio::test]
async fn paho_v5_publish_and_disconnect_with_will() {
    let broker = Gridmq::start();
    let mut sub = v5::Client::connect(broker.addr, "sub").await;
    sub.subscribe("paho/#", v5::QoS::AtLeastOnce).await;

    let output = tokio::time::timeout(
        TIMEOUT * 2,
        tokio::process::Command::new("python3")
            .args(["-c", SCRIPT, &broker.addr.port().to_string()])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("paho script finished in time")
    .expect("run python3 (tests/run installs paho-mqtt)");
    assert!(
        output.status.success(),
        "paho script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let data = sub.recv().await;
    assert_eq!(topic5(&data), "paho/data");
    assert_eq!(&data.payload[..], b"paho-data");
    assert_eq!(v5::user_property(&data, "from"), Some("paho"));
    let will = sub.recv().await;
    assert_eq!(topic5(&will), "paho/will");
    assert_eq!(&will.payload[..], b"paho-will");
}
