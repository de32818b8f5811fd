//! SIGTERM: MQTT 5.0 clients get DISCONNECT 0x8B, 3.1.1 clients see the socket close, and the
//! process exits 0.

use std::time::Duration;

use gateway_tests::Gridmq;
use gateway_tests::clients::framed::Framed5;
use gateway_tests::clients::{TIMEOUT, v4, v5};
use rumqttc::v5::mqttbytes::v5 as p5;

async fn terminate(broker: Gridmq) -> (Gridmq, Option<std::process::ExitStatus>) {
    tokio::task::spawn_blocking(move || {
        let mut broker = broker;
        let status = broker.terminate(Duration::from_secs(8));
        (broker, status)
    })
    .await
    .expect("terminate task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_server_shutting_down_and_exits_zero() {
    let broker = Gridmq::start();
    let connect = Framed5::connect_packet("c5", 30, true, None);
    let (mut c5, _) = Framed5::connect(broker.addr, connect, None).await;
    let mut c4 = v4::Client::connect(broker.addr, "c4").await;
    c4.subscribe("t", v4::QoS::AtLeastOnce).await;

    let (_broker, status) = terminate(broker).await;
    let reason = c5.closed(TIMEOUT).await.expect("5.0 connection closed");
    assert_eq!(reason, Some(p5::DisconnectReasonCode::ServerShuttingDown));
    assert!(c4.inbox.ended(TIMEOUT).await.is_some(), "3.1.1 connection closed");
    let status = status.expect("gridmq exited within the grace period");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_no_clients_exits_zero() {
    let broker = Gridmq::start();
    let (_broker, status) = terminate(broker).await;
    let status = status.expect("gridmq exited within the grace period");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_connections() {
    let broker = Gridmq::start();
    let addr = broker.addr;
    let (_broker, status) = terminate(broker).await;
    assert!(status.is_some(), "gridmq exited");
    let result = v5::Client::connect_with(v5::options(addr, "late")).await;
    assert!(result.is_err(), "no connection after shutdown");
}
