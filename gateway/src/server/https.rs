//! The listener of the HTTP APIs (`[http]` data plane, `[management]`): plain HTTP, or HTTPS
//! when the table names a `certificate` and a `private_key`.
//!
//! TLS handshakes run in their own tasks, each bounded by [`DEFAULT_HANDSHAKE_TIMEOUT`], so a
//! client that stalls its handshake (or never sends one) cannot hold up the accept loop; at most
//! [`MAX_HANDSHAKES`] run at once, and further connections wait in the kernel's backlog. The
//! handshake tasks belong to the listener and are aborted when it is dropped, which
//! `axum::serve` does on shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::config::{DEFAULT_HANDSHAKE_TIMEOUT, ServerConfigError, TlsVersion};

/// The most TLS handshakes one HTTPS listener runs at once.
pub const MAX_HANDSHAKES: usize = 256;

/// An HTTP API listener that could not start; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum HttpBindError {
    /// The TLS settings, e.g. `invalid config: http.certificate: cannot read ...`.
    #[error("invalid config: {0}")]
    Tls(#[from] ServerConfigError),
    /// The address, e.g. `http.listen: 127.0.0.1:8080: Address in use`.
    #[error("{section}.listen: {addr}: {source}")]
    Bind { section: &'static str, addr: SocketAddr, source: std::io::Error },
    /// The bound socket has no local address.
    #[error("{section}.listen: {source}")]
    LocalAddr { section: &'static str, source: std::io::Error },
}

/// A bound HTTP API listener.
pub enum HttpListener {
    /// Plain HTTP.
    Plain(TcpListener),
    /// HTTPS only.
    Tls(TlsListener),
}

impl HttpListener {
    /// Binds `addr` for the table `section` (`http` or `management`), over TLS when
    /// `certificate` and `private_key` are set. Errors name the field, e.g.
    /// `http.listen: 127.0.0.1:8080: Address in use` or `http.certificate: cannot read ...`.
    pub async fn bind(
        section: &'static str,
        addr: SocketAddr,
        certificate: Option<&Path>,
        private_key: Option<&Path>,
        min_tls_version: TlsVersion,
    ) -> Result<(HttpListener, SocketAddr), HttpBindError> {
        check_pair(section, certificate, private_key)?;
        let acceptor = match certificate {
            Some(_) => Some(super::tls::https_acceptor(
                section,
                certificate,
                private_key,
                min_tls_version,
            )?),
            None => None,
        };
        let tcp = TcpListener::bind(addr).await.map_err(|source| HttpBindError::Bind {
            section,
            addr,
            source,
        })?;
        let bound =
            tcp.local_addr().map_err(|source| HttpBindError::LocalAddr { section, source })?;
        let listener = match acceptor {
            Some(acceptor) => HttpListener::Tls(TlsListener {
                tcp,
                acceptor,
                handshakes: JoinSet::new(),
                timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            }),
            None => {
                if !bound.ip().is_loopback() {
                    tracing::warn!(addr = %bound, section, "An HTTP API listens beyond loopback over plain HTTP: set certificate and private_key, or put a TLS proxy in front.");
                }
                HttpListener::Plain(tcp)
            }
        };
        Ok((listener, bound))
    }

    /// Whether this listener speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        matches!(self, HttpListener::Tls(_))
    }

    /// Serves `app` until `shutdown` is cancelled; `name` goes into the error log.
    pub async fn serve(self, app: Router, shutdown: CancellationToken, name: &'static str) {
        let served = match self {
            HttpListener::Plain(tcp) => {
                axum::serve(tcp, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
            }
            HttpListener::Tls(tls) => {
                axum::serve(tls, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
            }
        };
        if let Err(error) = served {
            tracing::error!(%error, api = name, "HTTP API failed.");
        }
    }
}

/// Checks that `certificate` and `private_key` of the table `section` are set together.
pub fn check_pair(
    section: &'static str,
    certificate: Option<&Path>,
    private_key: Option<&Path>,
) -> Result<(), ServerConfigError> {
    match (certificate, private_key) {
        (Some(_), None) => Err(ServerConfigError::section(
            section,
            "private_key",
            "required with certificate (HTTPS needs both)",
        )),
        (None, Some(_)) => Err(ServerConfigError::section(
            section,
            "certificate",
            "required with private_key (HTTPS needs both)",
        )),
        _ => Ok(()),
    }
}

/// An HTTPS listener for `axum::serve`: accepts TCP connections and yields them once their TLS
/// handshake is done.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    /// Handshakes in progress; each yields its stream, or `None` when it failed or timed out.
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
    timeout: Duration,
}

impl TlsListener {
    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        let acceptor = self.acceptor.clone();
        let timeout = self.timeout;
        self.handshakes.spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some((tls, peer)),
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "HTTPS handshake failed.");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "HTTPS handshake timed out.");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    // Both branches are cancel-safe (`TcpListener::accept`, `JoinSet::join_next`), as
    // `axum::serve` requires: it drops this future when shutdown begins.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.handshakes.len() < MAX_HANDSHAKES;
            tokio::select! {
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((stream, peer)) => self.start_handshake(stream, peer),
                    Err(error) => accept_failed(error).await,
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(ready)) = done {
                        return ready;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A failed `accept(2)`: a connection reset before it was accepted is nothing; anything else
/// (out of file descriptors) is logged and retried after a pause, as `axum::serve` does.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "HTTPS accept failed.");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
