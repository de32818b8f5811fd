//! Listeners and the gateway's lifetime: bind, accept, spawn one task per connection, and shut
//! everything down in order.
//!
//! Shutdown order: stop accepting; tell every connection (5.0 clients get DISCONNECT 0x8B);
//! wait for connection tasks and timers, bounded by the grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{Instrument, info, warn};

use crate::broker::Broker;
use crate::config::Config;
use crate::connection::{self, Peer};
use crate::hooks::Hooks;

/// How often expired retained messages are swept out.
const RETAINED_SWEEP: Duration = Duration::from_secs(60);

/// A running gateway.
pub struct Gateway {
    mqtt_addr: SocketAddr,
    broker: Arc<Broker>,
    grace: Duration,
}

impl Gateway {
    /// Binds the listeners and starts serving.
    pub async fn start(config: Config, hooks: Hooks) -> std::io::Result<Gateway> {
        let listener = TcpListener::bind(config.server.listen).await?;
        let mqtt_addr = listener.local_addr()?;
        let broker = Broker::new(config.mqtt.clone(), hooks);
        let limit = Arc::new(Semaphore::new(config.server.max_connections));
        broker.tasks.spawn(accept_loop(listener, broker.clone(), limit));
        broker.tasks.spawn(sweep_retained(broker.clone()));
        Ok(Gateway {
            mqtt_addr,
            broker,
            grace: Duration::from_secs(config.server.shutdown_grace_secs),
        })
    }

    /// The address of the MQTT listener (useful with port 0).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// The broker, for in-process embedding and tests.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, disconnects every client and waits for all tasks, at most the grace
    /// period. Returns false when the grace period ran out.
    pub async fn shutdown(self) -> bool {
        self.broker.shutdown.cancel();
        self.broker.tasks.close();
        tokio::time::timeout(self.grace, self.broker.tasks.wait()).await.is_ok()
    }
}

async fn accept_loop(listener: TcpListener, broker: Arc<Broker>, limit: Arc<Semaphore>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = broker.shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = broker.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, addr)) => {
                backoff = Duration::from_millis(10);
                let broker = broker.clone();
                let span = tracing::debug_span!("connection", peer = %addr);
                broker.tasks.clone().spawn(
                    async move {
                        serve_tcp(stream, addr, broker).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(error) => {
                // Out of file descriptors and similar: back off rather than spin.
                warn!(%error, "Accept failed.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn serve_tcp(stream: TcpStream, addr: SocketAddr, broker: Arc<Broker>) {
    // MQTT packets are small and latency-sensitive; batching happens in our write buffer.
    let _ = stream.set_nodelay(true);
    connection::serve(stream, Peer { addr, certificates: Vec::new() }, broker).await;
}

async fn sweep_retained(broker: Arc<Broker>) {
    let mut interval = tokio::time::interval(RETAINED_SWEEP);
    loop {
        tokio::select! {
            _ = interval.tick() => broker.purge_expired_retained(),
            () = broker.shutdown.cancelled() => return,
        }
    }
}

/// Logs where the gateway listens, for people and for the end-to-end harness.
pub fn announce(gateway: &Gateway) {
    info!(mqtt = %gateway.mqtt_addr(), "Listening.");
    println!("gridmq listening mqtt {}", gateway.mqtt_addr());
}
