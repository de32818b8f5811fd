//! The `[server]` table: listeners and shutdown.
//!
//! Each `[[server.listeners]]` entry is one socket gridmq accepts MQTT connections on, over one
//! transport (`kind`). Fields that only make sense for some kinds (TLS material for `tls` and
//! `wss`, `path` for `ws` and `wss`) are rejected on the others, so a typo'd or misplaced
//! setting never silently does nothing.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// An invalid listener or TLS setting; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ServerConfigError {
    /// A field of `[server]` itself, e.g. `server.listeners`.
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    /// A field of one `[[server.listeners]]` entry, shown as `server.listeners[INDEX].FIELD`.
    #[error("server.listeners[{index}].{field}: {problem}")]
    Listener { index: usize, field: &'static str, problem: String },
    /// A field of an HTTP API's table, shown as `SECTION.FIELD`, e.g. `http.certificate`.
    #[error("{section}.{field}: {problem}")]
    Section { section: &'static str, field: &'static str, problem: String },
}

impl ServerConfigError {
    /// An invalid field of the listener at `index`.
    pub fn listener(
        index: usize,
        field: &'static str,
        problem: impl Into<String>,
    ) -> ServerConfigError {
        ServerConfigError::Listener { index, field, problem: problem.into() }
    }

    /// An invalid `field` of the table `section`.
    pub fn section(
        section: &'static str,
        field: &'static str,
        problem: impl Into<String>,
    ) -> ServerConfigError {
        ServerConfigError::Section { section, field, problem: problem.into() }
    }
}

/// Where gridmq listens and how it shuts down.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The listeners, each `[[server.listeners]]`. Default: one `tcp` listener on
    /// `127.0.0.1:1883` (loopback only, because the embedded default admits anonymous clients).
    /// Declaring any listener replaces the default. `--listen ADDR` replaces the address of the
    /// first `tcp` listener, or adds one.
    pub listeners: Vec<ListenerConfig>,
    /// Seconds that graceful shutdown may take before remaining connections are dropped.
    /// Default 10.
    pub shutdown_grace_secs: u64,
}

/// The transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// MQTT over plain TCP (1883 by convention).
    Tcp,
    /// MQTT over TLS (8883 by convention).
    Tls,
    /// MQTT over WebSocket (binary frames, subprotocol `mqtt`).
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

/// Whether a TLS listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is requested.
    #[default]
    None,
    /// A client certificate is requested; clients without one still connect.
    Optional,
    /// A client without a certificate fails the TLS handshake.
    Required,
}

/// The oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// One `[[server.listeners]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// `tcp`, `tls`, `ws` or `wss`. Required.
    pub kind: ListenerKind,
    /// The socket address to bind, e.g. `"0.0.0.0:8883"`; port 0 picks a free port (the bound
    /// address is printed at start-up). Required.
    pub address: SocketAddr,
    /// Most concurrent connections on this listener (TLS and WebSocket handshakes in progress
    /// included); further connections wait in the accept backlog. Default 100000.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections the kernel may hold completed or half-open before gridmq accepts them
    /// (`listen(2)` backlog; the kernel caps it at `net.core.somaxconn`). Default 4096: a
    /// storm of reconnecting devices past a short backlog has its SYNs dropped and retried a
    /// second later.
    #[serde(default = "default_backlog")]
    pub backlog: u32,
    /// `tls`, `ws`, `wss`: seconds a new connection has for its TLS and WebSocket handshakes,
    /// so a silent client cannot hold a connection slot. Default 10. (The MQTT CONNECT has its
    /// own `mqtt.connect_timeout_secs` after that.)
    pub handshake_timeout_secs: Option<u64>,
    /// `ws`, `wss`: the HTTP path of the WebSocket endpoint; must start with `/`. Default
    /// `"/mqtt"`. Requests for other paths get 404.
    pub path: Option<String>,
    /// `tls`, `wss`: the server certificate chain, PEM, leaf first. Required for those kinds.
    /// Relative paths are relative to gridmq's working directory.
    pub certificate: Option<PathBuf>,
    /// `tls`, `wss`: the server's private key, PEM (PKCS#8, PKCS#1 or SEC1). Required for those
    /// kinds.
    pub private_key: Option<PathBuf>,
    /// `tls`, `wss`: `none`, `optional` or `required` client certificates. Default `none`.
    /// The client's chain (leaf first) is handed to the authenticator.
    pub client_auth: Option<ClientAuth>,
    /// `tls`, `wss`: CA certificates (PEM) for client certificates. Sent to clients as the
    /// acceptable issuers; with `verify_client_chain = true`, the roots the chain must lead to.
    /// Only with `client_auth` `optional` or `required`.
    pub client_ca: Option<PathBuf>,
    /// `tls`, `wss`: whether the TLS layer verifies client certificate chains against
    /// `client_ca` (which it then requires). Default `false`: any well-formed certificate is
    /// accepted once the client proves it holds the key, self-signed ones included, and the
    /// authenticator decides (thumbprint match or its own chain check).
    pub verify_client_chain: Option<bool>,
    /// `tls`, `wss`: the oldest TLS version accepted, `"1.2"` or `"1.3"`. Default `"1.2"`.
    pub min_tls_version: Option<TlsVersion>,
}

/// The default `max_connections` of a listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// The default WebSocket path.
pub const DEFAULT_WS_PATH: &str = "/mqtt";
/// The default TLS / WebSocket handshake timeout.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default accept backlog of a listener.
pub const DEFAULT_BACKLOG: u32 = 4096;

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

fn default_backlog() -> u32 {
    DEFAULT_BACKLOG
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listeners: vec![ListenerConfig::new(
                ListenerKind::Tcp,
                SocketAddr::from(([127, 0, 0, 1], 1883)),
            )],
            shutdown_grace_secs: 10,
        }
    }
}

impl ServerConfig {
    /// Applies `--listen ADDR`: replaces the address of the first `tcp` listener, or adds a
    /// `tcp` listener on `addr` when there is none.
    pub fn set_tcp_address(&mut self, addr: SocketAddr) {
        match self.listeners.iter_mut().find(|l| l.kind == ListenerKind::Tcp) {
            Some(listener) => listener.address = addr,
            None => self.listeners.push(ListenerConfig::new(ListenerKind::Tcp, addr)),
        }
    }

    /// Checks what serde's types alone cannot; errors name the field, e.g.
    /// `server.listeners[1].path`. Certificate and key files are read when the listeners
    /// start ([`crate::Gateway::start`](crate::gateway::Gateway::start)), with errors named the same way.
    pub(crate) fn validate(&self) -> Result<(), ServerConfigError> {
        if self.listeners.is_empty() {
            return Err(ServerConfigError::Invalid {
                field: "server.listeners",
                problem: "at least one listener is needed".into(),
            });
        }
        for (index, listener) in self.listeners.iter().enumerate() {
            listener.validate(index)?;
            // Port 0 asks the system for a free port, so it never collides.
            if listener.address.port() != 0
                && let Some(first) =
                    self.listeners[..index].iter().position(|l| l.address == listener.address)
            {
                return Err(ServerConfigError::listener(
                    index,
                    "address",
                    format!(
                        "{} is already the address of server.listeners[{first}]",
                        listener.address
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl ListenerConfig {
    /// A listener of `kind` on `address` with every optional field at its default. (A `tls` or
    /// `wss` listener still needs `certificate` and `private_key`.)
    pub fn new(kind: ListenerKind, address: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            kind,
            address,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            backlog: DEFAULT_BACKLOG,
            handshake_timeout_secs: None,
            path: None,
            certificate: None,
            private_key: None,
            client_auth: None,
            client_ca: None,
            verify_client_chain: None,
            min_tls_version: None,
        }
    }

    /// The WebSocket path (`ws`, `wss`).
    pub fn ws_path(&self) -> &str {
        self.path.as_deref().unwrap_or(DEFAULT_WS_PATH)
    }

    /// The TLS / WebSocket handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout_secs.map_or(DEFAULT_HANDSHAKE_TIMEOUT, Duration::from_secs)
    }

    fn validate(&self, index: usize) -> Result<(), ServerConfigError> {
        let invalid =
            |field, problem: &str| Err(ServerConfigError::listener(index, field, problem));
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.backlog == 0 {
            return invalid("backlog", "must be at least 1");
        }
        if self.handshake_timeout_secs == Some(0) {
            return invalid("handshake_timeout_secs", "must be at least 1");
        }
        let kind = self.kind;
        if kind == ListenerKind::Tcp && self.handshake_timeout_secs.is_some() {
            return invalid("handshake_timeout_secs", "only tls, ws and wss listeners have one");
        }
        if kind.is_websocket() {
            if let Some(path) = &self.path
                && !path.starts_with('/')
            {
                return invalid("path", &format!("{path:?} must start with '/'"));
            }
        } else if self.path.is_some() {
            return invalid("path", "only ws and wss listeners have one");
        }
        let tls_fields: [(&'static str, bool); 6] = [
            ("certificate", self.certificate.is_some()),
            ("private_key", self.private_key.is_some()),
            ("client_auth", self.client_auth.is_some()),
            ("client_ca", self.client_ca.is_some()),
            ("verify_client_chain", self.verify_client_chain.is_some()),
            ("min_tls_version", self.min_tls_version.is_some()),
        ];
        if !kind.is_tls() {
            if let Some((field, _)) = tls_fields.iter().find(|(_, set)| *set) {
                return invalid(field, &format!("only tls and wss listeners take it, not {kind}"));
            }
            return Ok(());
        }
        if self.certificate.is_none() {
            return invalid(
                "certificate",
                &format!("a PEM certificate chain is required for {kind}"),
            );
        }
        if self.private_key.is_none() {
            return invalid("private_key", &format!("a PEM private key is required for {kind}"));
        }
        let client_auth = self.client_auth.unwrap_or_default();
        if client_auth == ClientAuth::None {
            if self.client_ca.is_some() {
                return invalid("client_ca", "needs client_auth = \"optional\" or \"required\"");
            }
            if self.verify_client_chain.is_some() {
                return invalid(
                    "verify_client_chain",
                    "needs client_auth = \"optional\" or \"required\"",
                );
            }
        }
        if self.verify_client_chain == Some(true) && self.client_ca.is_none() {
            return invalid("client_ca", "verify_client_chain = true needs the CA certificates");
        }
        Ok(())
    }
}

impl ListenerKind {
    /// Whether the listener speaks TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// Whether the listener speaks WebSocket.
    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }

    /// The URL scheme clients use: `mqtt`, `mqtts`, `ws` or `wss`. It is the word in the
    /// start-up line `gridmq listening <scheme> <address>`.
    pub fn scheme(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "mqtt",
            ListenerKind::Tls => "mqtts",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        })
    }
}
