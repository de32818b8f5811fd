//! The size of a connection's future: what every idle connection keeps for its whole life.
//! In-process, on a loopback socket: the future's type is the one a plain TCP listener spawns.

use std::sync::Arc;

use gateway::broker::Broker;
use gateway::broker::config::MqttConfig;
use gateway::connection::{Peer, Socket, Start, serve};
use gateway::hooks::Hooks;
use tokio::net::{TcpListener, TcpStream};

/// The bound on the future `serve` returns for a plain TCP connection. The handshake, the
/// teardown, packet handling and the congestion wait are boxed, so that this stays the
/// connection state plus one wait for the socket, the wake-up and one timer. A change that
/// makes it grow should be a deliberate one (ARCHITECTURE.md, "Hot path").
const SERVE_FUTURE_MAX: usize = 1024;

#[tokio::test]
async fn a_connection_future_stays_small() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _client = TcpStream::connect(addr).await.expect("connect");
    let (stream, peer) = listener.accept().await.expect("accept");
    let broker: Arc<Broker> = Broker::new(MqttConfig::default(), Hooks::allow_all(), None);
    let peer = Peer { addr: peer, certificates: Box::default() };
    let stream = Socket::new(stream);
    let future = serve(Box::new(Start { stream, peer, broker, slot: None, parker: None }));
    let size = std::mem::size_of_val(&future);
    eprintln!("serve future: {size} bytes");
    assert!(size <= SERVE_FUTURE_MAX, "a connection's future is {size} bytes");
}
