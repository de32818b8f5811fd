//! One listener: its socket, its transport, its connection limit and its accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, warn};

use super::config::{ListenerConfig, ListenerKind, ServerConfigError};
use super::{tls, ws};
use crate::broker::Broker;
use crate::connection::{self, Parker, Peer, Socket};

/// A listener whose TLS material is loaded, ready to bind.
pub(crate) struct Prepared {
    index: usize,
    config: ListenerConfig,
    transport: Transport,
}

/// Why a `wss` handshake failed: the TLS layer or the WebSocket upgrade over it.
#[derive(Debug, thiserror::Error)]
enum SecureWsError {
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("WebSocket: {0}")]
    WebSocket(tokio_tungstenite::tungstenite::Error),
}

/// A bound listener.
pub(crate) struct Bound {
    pub(crate) kind: ListenerKind,
    pub(crate) addr: SocketAddr,
    listener: TcpListener,
    transport: Arc<Transport>,
    limit: usize,
}

/// How a listener turns an accepted TCP stream into an MQTT byte stream.
enum Transport {
    Tcp,
    Tls { acceptor: TlsAcceptor, timeout: Duration },
    Ws { path: String, max_message: usize, timeout: Duration },
    Wss { acceptor: TlsAcceptor, path: String, max_message: usize, timeout: Duration },
}

/// Loads every listener's TLS material; errors name the field.
pub(crate) fn prepare(
    listeners: &[ListenerConfig],
    max_packet_size: u32,
) -> Result<Vec<Prepared>, ServerConfigError> {
    // A WebSocket message usually carries one MQTT packet, but may carry several.
    let max_message = usize::try_from(max_packet_size).unwrap_or(usize::MAX).saturating_mul(2);
    listeners
        .iter()
        .enumerate()
        .map(|(index, config)| {
            let timeout = config.handshake_timeout();
            let path = config.ws_path().to_owned();
            let transport = match config.kind {
                ListenerKind::Tcp => Transport::Tcp,
                ListenerKind::Tls => {
                    Transport::Tls { acceptor: tls::acceptor(config, index)?, timeout }
                }
                ListenerKind::Ws => Transport::Ws { path, max_message, timeout },
                ListenerKind::Wss => Transport::Wss {
                    acceptor: tls::acceptor(config, index)?,
                    path,
                    max_message,
                    timeout,
                },
            };
            Ok(Prepared { index, config: config.clone(), transport })
        })
        .collect()
}

impl Prepared {
    /// Binds the socket; the error names the listener's address field.
    pub(crate) async fn bind(self) -> Result<Bound, ServerConfigError> {
        let address = self.config.address;
        let error = |e: std::io::Error| {
            ServerConfigError::listener(
                self.index,
                "address",
                format!("cannot listen on {address}: {e}"),
            )
        };
        let socket = if address.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
        let socket = socket.map_err(error)?;
        // As `TcpListener::bind` does, SO_REUSEADDR lets a restart rebind at once while old
        // connections linger in TIME_WAIT; unlike it, the backlog is the configured one.
        #[cfg(unix)]
        socket.set_reuseaddr(true).map_err(error)?;
        socket.bind(address).map_err(error)?;
        let listener = socket.listen(self.config.backlog).map_err(error)?;
        super::fd_table::reserve(&listener, self.config.max_connections);
        let addr = listener.local_addr().map_err(error)?;
        Ok(Bound {
            kind: self.config.kind,
            addr,
            listener,
            transport: Arc::new(self.transport),
            limit: self.config.max_connections,
        })
    }
}

impl Bound {
    /// Accepts connections until shutdown, at most `max_connections` at a time, each served
    /// by its own task in the broker's task tracker.
    pub(crate) async fn accept_loop(self, broker: Arc<Broker>, parker: Option<Arc<Parker>>) {
        let Bound { kind, listener, transport, limit, .. } = self;
        let limit = Arc::new(Semaphore::new(limit));
        let mut backoff = Duration::from_millis(10);
        loop {
            let permit = broker.shutdown.run_until_cancelled(limit.clone().acquire_owned()).await;
            let Some(Ok(permit)) = permit else { return };
            let Some(accepted) = broker.shutdown.run_until_cancelled(listener.accept()).await
            else {
                return;
            };
            match accepted {
                Ok((stream, addr)) => {
                    backoff = Duration::from_millis(10);
                    // MQTT packets are small and latency-sensitive; batching happens in our
                    // write buffer.
                    let _ = stream.set_nodelay(true);
                    let peer = Peer { addr, certificates: Box::default() };
                    let span = tracing::debug_span!("connection", peer = %addr, listener = %kind);
                    // A plain TCP connection's task is the connection itself, with no layer
                    // of ours around it, and it parks when idle. The other transports'
                    // handshakes come first, boxed.
                    if let Transport::Tcp = *transport {
                        let start = Box::new(connection::Start {
                            stream: Socket::new(stream),
                            peer,
                            broker: broker.clone(),
                            slot: Some(permit),
                            parker: parker.clone(),
                        });
                        broker.tasks.spawn(connection::serve(start).instrument(span));
                    } else {
                        let start = Box::new(connection::Start {
                            stream,
                            peer,
                            broker: broker.clone(),
                            slot: Some(permit),
                            parker: None,
                        });
                        let transport = transport.clone();
                        broker.tasks.spawn(
                            async move { Box::pin(serve_secured(&transport, start)).await }
                                .instrument(span),
                        );
                    }
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
}

/// Runs the TLS and WebSocket handshakes (bounded by the handshake timeout, and cut short by
/// shutdown), then serves the connection over the resulting byte stream. Boxed by its caller:
/// a rustls handshake is tens of kilobytes.
async fn serve_secured(transport: &Transport, start: Box<connection::Start<TcpStream>>) {
    let connection::Start { stream, mut peer, broker, slot, .. } = *start;
    let parker = None;
    match transport {
        // Served by the accept loop, without this layer; here it would not park.
        Transport::Tcp => {
            let stream = Socket::new(stream);
            connection::serve(Box::new(connection::Start { stream, peer, broker, slot, parker }))
                .await;
        }
        Transport::Tls { acceptor, timeout } => {
            let handshake = acceptor.accept(stream);
            let Some(stream) = handshake_within(*timeout, &broker, "TLS", handshake).await else {
                return;
            };
            peer.certificates = tls::peer_certificates(stream.get_ref().1).into();
            connection::serve(Box::new(connection::Start { stream, peer, broker, slot, parker }))
                .await;
        }
        Transport::Ws { path, max_message, timeout } => {
            let handshake = ws::accept(stream, path, *max_message);
            let Some(stream) = handshake_within(*timeout, &broker, "WebSocket", handshake).await
            else {
                return;
            };
            connection::serve(Box::new(connection::Start { stream, peer, broker, slot, parker }))
                .await;
        }
        Transport::Wss { acceptor, path, max_message, timeout } => {
            let handshake = async {
                let tls = acceptor.accept(stream).await.map_err(SecureWsError::Tls)?;
                let certificates = tls::peer_certificates(tls.get_ref().1);
                let ws =
                    ws::accept(tls, path, *max_message).await.map_err(SecureWsError::WebSocket)?;
                Ok::<_, SecureWsError>((ws, certificates))
            };
            let Some((stream, certificates)) =
                handshake_within(*timeout, &broker, "TLS+WebSocket", handshake).await
            else {
                return;
            };
            peer.certificates = certificates.into();
            connection::serve(Box::new(connection::Start { stream, peer, broker, slot, parker }))
                .await;
        }
    }
}

async fn handshake_within<T, E: std::fmt::Display>(
    timeout: Duration,
    broker: &Broker,
    what: &str,
    handshake: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    match broker.shutdown.run_until_cancelled(tokio::time::timeout(timeout, handshake)).await? {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            debug!(%error, "{what} handshake failed.");
            None
        }
        Err(_) => {
            debug!(?timeout, "{what} handshake timed out.");
            None
        }
    }
}
