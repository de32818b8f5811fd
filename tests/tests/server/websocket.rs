//! MQTT over WebSocket against the real binary: Eclipse Paho (Python) over `ws` with MQTT 3.1.1
//! and 5.0 and over `wss`; a raw tokio-tungstenite client for what a real client never does on
//! purpose (one packet split over several frames, several packets in one frame, text frames,
//! pings), and the upgrade's path and subprotocol rules.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use gateway_tests::Gridmq;
use gateway_tests::certs::Pki;
use gateway_tests::clients::{TIMEOUT, topic5, v5};
use gateway_tests::raw::frame_length;
use gateway_tests::raw::{self, WAIT, connack_reason};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const WS_CONFIG: &str = "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
                         [[server.listeners]]\nkind = \"ws\"\naddress = \"127.0.0.1:0\"\n";

/// Subscribes over WebSocket, publishes to itself (QoS 1, a payload bigger than one TCP
/// segment) and waits for it to come back, then publishes `ws/out` for the test's TCP
/// subscriber. Arguments: port, "311" or "5", and for wss the CA file.
const PAHO: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt

port, version = int(sys.argv[1]), sys.argv[2]
ca = sys.argv[3] if len(sys.argv) > 3 else None
protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-ws-" + version,
                protocol=protocol, transport="websockets")
c.ws_set_options(path="/mqtt")
if ca:
    c.tls_set(ca_certs=ca)
connected, subscribed, echoed = threading.Event(), threading.Event(), threading.Event()
payload = bytes(range(256)) * 400
c.on_connect = lambda c, u, f, rc, p=None: connected.set()
c.on_subscribe = lambda c, u, mid, rcs, p=None: subscribed.set()
def on_message(c, u, msg):
    if msg.topic == "ws/echo" and msg.payload == payload:
        echoed.set()
c.on_message = on_message
c.connect("localhost", port)
c.loop_start()
assert connected.wait(5), "paho did not connect"
c.subscribe("ws/echo", qos=1)
assert subscribed.wait(5), "no SUBACK"
c.publish("ws/echo", payload, qos=1).wait_for_publish(5)
assert echoed.wait(5), "own message did not come back"
c.publish("ws/out", b"from paho " + version.encode(), qos=1).wait_for_publish(5)
c.disconnect()
c.loop_stop()
"#;

async fn run_paho(port: u16, version: &str, ca: Option<&str>) {
    let mut args = vec!["-c".to_string(), PAHO.to_string(), port.to_string(), version.to_string()];
    args.extend(ca.map(str::to_string));
    let output = tokio::time::timeout(
        TIMEOUT * 3,
        tokio::process::Command::new("python3").args(&args).kill_on_drop(true).output(),
    )
    .await
    .expect("paho script finished in time")
    .expect("run python3 (tests/run installs paho-mqtt)");
    assert!(
        output.status.success(),
        "paho over WebSocket (MQTT {version}) failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn paho_round_trip(config: &str, scheme: &str, version: &str, ca: Option<&str>) {
    let broker = Gridmq::with_listeners(config);
    let mut sub = v5::Client::connect(broker.listener("mqtt"), "tcp-sub").await;
    sub.subscribe("ws/out", v5::QoS::AtLeastOnce).await;
    run_paho(broker.listener(scheme).port(), version, ca).await;
    let message = sub.recv().await;
    assert_eq!(topic5(&message), "ws/out");
    assert_eq!(message.payload, format!("from paho {version}").into_bytes());
}

#[tokio::test]
async fn paho_mqtt_311_over_ws() {
    paho_round_trip(WS_CONFIG, "ws", "311", None).await;
}

#[tokio::test]
async fn paho_mqtt_5_over_ws() {
    paho_round_trip(WS_CONFIG, "ws", "5", None).await;
}

#[tokio::test]
async fn paho_mqtt_5_over_wss() {
    let pki = Pki::new("ca");
    let server = pki.server();
    let config = format!(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
         [[server.listeners]]\nkind = \"wss\"\naddress = \"127.0.0.1:0\"\n\
         certificate = \"{}\"\nprivate_key = \"{}\"\n",
        server.cert_path.display(),
        server.key_path.display()
    );
    paho_round_trip(&config, "wss", "5", Some(&pki.ca_path.display().to_string())).await;
}

/// A WebSocket client speaking raw MQTT bytes.
struct WsClient {
    ws: WebSocketStream<TcpStream>,
    /// Payload bytes received that do not form a whole packet yet.
    buf: Vec<u8>,
}

impl WsClient {
    /// Upgrades to `path`, offering `protocols` (a `Sec-WebSocket-Protocol` value) if any.
    async fn connect(
        addr: SocketAddr,
        path: &str,
        protocols: Option<&'static str>,
    ) -> Result<(WsClient, Response), WsError> {
        let mut request = format!("ws://{addr}{path}").into_client_request()?;
        if let Some(protocols) = protocols {
            request
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocols));
        }
        let tcp = TcpStream::connect(addr).await?;
        let (ws, response) = tokio_tungstenite::client_async(request, tcp).await?;
        Ok((WsClient { ws, buf: Vec::new() }, response))
    }

    /// Sends each of `frames` as one binary message.
    async fn send_frames(&mut self, frames: &[&[u8]]) {
        for frame in frames {
            self.ws.send(Message::binary(frame.to_vec())).await.expect("send frame");
        }
    }

    /// The next whole MQTT packet, wherever the message boundaries fell; `None` when the
    /// connection closed.
    async fn packet(&mut self) -> Option<Vec<u8>> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(len) = frame_length(&self.buf).expect("a remaining length") {
                    return Some(self.buf.drain(..len).collect());
                }
                match self.ws.next().await {
                    Some(Ok(Message::Binary(data))) => self.buf.extend_from_slice(&data),
                    Some(Ok(Message::Text(text))) => panic!("the broker sent a text frame: {text}"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("a packet or a close in time")
    }
}

#[tokio::test]
async fn packets_split_over_frames_and_batched_in_one_frame() {
    let broker = Gridmq::with_listeners(WS_CONFIG);
    let addr = broker.listener("ws");
    for (v5, connect) in [(true, raw::connect_v5("split-5")), (false, raw::connect_v3("split-3"))] {
        let (mut client, _) =
            WsClient::connect(addr, "/mqtt", Some("mqtt")).await.expect("upgrade");
        // CONNECT in three frames, cut inside the fixed header and inside the payload.
        client.send_frames(&[&connect[..1], &connect[1..5], &connect[5..]]).await;
        let connack = client.packet().await.expect("CONNACK");
        assert_eq!(connack_reason(&connack).expect("CONNACK"), 0x00, "{connack:02X?}");

        // SUBSCRIBE, a QoS 1 PUBLISH to it and PINGREQ, all in one frame.
        let (subscribe, publish) = if v5 {
            (raw::subscribe_v5(1, "ws/batch", 0x01), raw::publish_v5("ws/batch", 1, 2, &[], b"x"))
        } else {
            (raw::subscribe_v3(1, "ws/batch", 1), raw::publish_v3("ws/batch", 1, 2, b"x"))
        };
        let batch = [&subscribe[..], &publish[..], &raw::PINGREQ[..]].concat();
        client.send_frames(&[&batch]).await;
        let mut kinds = Vec::new();
        for _ in 0..4 {
            kinds.push(client.packet().await.expect("answer")[0] >> 4);
        }
        kinds.sort_unstable();
        // SUBACK (9), PUBACK (4), the message itself (3), PINGRESP (13).
        assert_eq!(kinds, [3, 4, 9, 13], "protocol 5.0: {v5}");

        // A second packet split right after its first byte, the rest with a whole PINGREQ.
        let ping = [&raw::PINGREQ[1..], &raw::PINGREQ[..]].concat();
        client.send_frames(&[&raw::PINGREQ[..1], &ping]).await;
        assert_eq!(client.packet().await.expect("PINGRESP"), raw::PINGRESP);
        assert_eq!(client.packet().await.expect("PINGRESP"), raw::PINGRESP);
    }
}

#[tokio::test]
async fn upgrade_checks_the_path_and_negotiates_the_subprotocol() {
    let broker = Gridmq::with_listeners(WS_CONFIG);
    let addr = broker.listener("ws");
    let chosen = |response: &Response| {
        response
            .headers()
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    for (offered, expected) in [
        ("mqtt", "mqtt"),
        ("mqttv3.1", "mqttv3.1"),
        ("chat, mqtt", "mqtt"),
        ("mqtt, mqttv3.1", "mqtt"),
    ] {
        let (_, response) = WsClient::connect(addr, "/mqtt", Some(offered)).await.expect("upgrade");
        assert_eq!(chosen(&response).as_deref(), Some(expected), "offered {offered}");
    }
    let status = |result: Result<(WsClient, Response), WsError>| match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
    };
    assert_eq!(status(WsClient::connect(addr, "/mqtt", None).await), 400);
    assert_eq!(status(WsClient::connect(addr, "/mqtt", Some("chat")).await), 400);
    assert_eq!(status(WsClient::connect(addr, "/other", Some("mqtt")).await), 404);
    // The query string is not part of the path.
    WsClient::connect(addr, "/mqtt?token=x", Some("mqtt")).await.expect("upgrade with a query");
}

#[tokio::test]
async fn a_custom_path_is_served() {
    let broker = Gridmq::with_listeners(&format!("{WS_CONFIG}path = \"/ws/broker\"\n"));
    let addr = broker.listener("ws");
    let (mut client, _) =
        WsClient::connect(addr, "/ws/broker", Some("mqtt")).await.expect("upgrade");
    client.send_frames(&[&raw::connect_v5("custom-path")]).await;
    assert_eq!(connack_reason(&client.packet().await.expect("CONNACK")).expect("CONNACK"), 0);
    assert!(WsClient::connect(addr, "/mqtt", Some("mqtt")).await.is_err());
}

#[tokio::test]
async fn pings_are_answered_and_text_frames_end_the_connection() {
    let broker = Gridmq::with_listeners(WS_CONFIG);
    let (mut client, _) =
        WsClient::connect(broker.listener("ws"), "/mqtt", Some("mqtt")).await.expect("upgrade");
    client.send_frames(&[&raw::connect_v5("pinger")]).await;
    client.packet().await.expect("CONNACK");

    client.ws.send(Message::Ping(b"are you there".to_vec().into())).await.expect("ping");
    // Nothing else is due: the broker has no message for this client.
    let pong = tokio::time::timeout(WAIT, client.ws.next()).await.expect("pong in time");
    let Some(Ok(Message::Pong(pong))) = pong else { panic!("expected a pong, got {pong:?}") };
    assert_eq!(&pong[..], b"are you there");

    client.ws.send(Message::text("PINGREQ, in text")).await.expect("text frame");
    assert_eq!(client.packet().await, None, "a text frame must close the connection");
}

#[tokio::test]
async fn a_close_frame_ends_the_session_like_a_lost_connection() {
    let broker = Gridmq::with_listeners(WS_CONFIG);
    let mut watcher = v5::Client::connect(broker.listener("mqtt"), "watcher").await;
    watcher.subscribe("ws/will", v5::QoS::AtLeastOnce).await;
    let (mut client, _) =
        WsClient::connect(broker.listener("ws"), "/mqtt", Some("mqtt")).await.expect("upgrade");
    client.send_frames(&[&raw::connect_v5_with_will("closer", "ws/will", b"gone")]).await;
    client.packet().await.expect("CONNACK");
    client.ws.close(None).await.expect("close");
    // The broker answers the close, and the will (no DISCONNECT was sent) is published.
    assert_eq!(client.packet().await, None);
    let will = watcher.recv().await;
    assert_eq!(topic5(&will), "ws/will");
    assert_eq!(&will.payload[..], b"gone");
}

/// The lingering close over WebSocket (issue 22; `wire/linger.rs` has the TCP cases): a client
/// that exceeds Receive Maximum 10 with QoS 2 and goes on sending PUBRELs still reads DISCONNECT
/// 0x93 after a while of writing only, its writes not having failed by then, and then the
/// broker's close frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_writing_reads_its_disconnect() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let broker = Gridmq::with_listeners(&format!("{WS_CONFIG}\n[mqtt]\nreceive_maximum = 10\n"));
    let (mut client, _) =
        WsClient::connect(broker.listener("ws"), "/mqtt", Some("mqtt")).await.expect("upgrade");
    client.send_frames(&[&raw::connect_v5("ws-eager")]).await;
    assert_eq!(connack_reason(&client.packet().await.expect("CONNACK")).expect("CONNACK"), 0);
    let publishes: Vec<u8> =
        (1..=11).flat_map(|id| raw::publish_v5("linger/ws", 2, id, &[], b"x")).collect();
    client.send_frames(&[&publishes]).await;

    let WsClient { ws, mut buf } = client;
    let (mut sink, mut stream) = ws.split();
    let failed = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let failed = failed.clone();
        let pubrels: Vec<u8> = (1..=10).flat_map(|id| raw::ack(0x62, id)).collect();
        async move {
            while sink.send(Message::binary(pubrels.clone())).await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            failed.store(true, Ordering::SeqCst);
        }
    });
    // Busy writing: nothing is read for a while.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let disconnect = tokio::time::timeout(WAIT, async {
        loop {
            while let Some(len) = frame_length(&buf).expect("a remaining length") {
                let packet: Vec<u8> = buf.drain(..len).collect();
                if packet[0] == 0xE0 {
                    return Some(packet);
                }
            }
            match stream.next().await {
                Some(Ok(Message::Binary(data))) => buf.extend_from_slice(&data),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                other => panic!("the connection ended before the DISCONNECT: {other:?}"),
            }
        }
    })
    .await
    .expect("a DISCONNECT in time")
    .expect("a DISCONNECT");
    assert!(
        !failed.load(Ordering::SeqCst),
        "the client's writes failed before it read the DISCONNECT: the broker did not linger"
    );
    assert_eq!(raw::disconnect_reason(&disconnect).expect("DISCONNECT"), 0x93);
    let next = tokio::time::timeout(WAIT, stream.next()).await.expect("a close in time");
    assert!(matches!(next, Some(Ok(Message::Close(_)))), "expected a close frame, got {next:?}");
    writer.abort();
}
