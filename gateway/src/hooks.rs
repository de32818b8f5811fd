//! The points where the rest of gridmq plugs into the broker core: authentication,
//! authorization, the routing tap and lifecycle observers.
//!
//! The core owns these traits; access control and the routing pipeline implement them. The
//! defaults (`AllowAll`, no tap, no observer) serve only the no-config embedded mode.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::mqtt::{Protocol, QoS, ReasonCode, SharedProperties};

/// A boxed future, so the hook traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One client attribute value, with Event Grid's three types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    String(String),
    Integer(i64),
    StringArray(Vec<String>),
}

/// Who a connected client is, once authenticated. Handed to the authorizer and the routing tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub client_id: Arc<str>,
    /// Event Grid's authentication name; the username, a certificate name or a token subject.
    pub authentication_name: Arc<str>,
    pub attributes: BTreeMap<String, AttributeValue>,
}

/// Which step of authentication a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStep {
    /// The CONNECT packet.
    Connect,
    /// An AUTH 0x18 from the client answering our challenge during CONNECT.
    Continue,
    /// An AUTH 0x19 from a connected client starting re-authentication.
    ReAuthenticate,
}

/// Everything an authenticator may look at.
#[derive(Debug, Clone)]
pub struct AuthRequest<'a> {
    pub step: AuthStep,
    pub protocol: Protocol,
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a Bytes>,
    /// MQTT 5 Authentication Method.
    pub method: Option<&'a str>,
    /// MQTT 5 Authentication Data of this step.
    pub data: Option<&'a Bytes>,
    pub peer_addr: SocketAddr,
    /// The TLS peer certificate chain, leaf first, DER-encoded; empty on plain TCP.
    pub peer_certificates: &'a [Bytes],
}

/// An authenticator's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthDecision {
    /// The client is who it says. `expires_in` ends the session when credentials lapse (JWT).
    Allow { identity: ClientIdentity, expires_in: Option<Duration> },
    /// Send AUTH 0x18 with this data and wait for the client's answer.
    Continue { data: Bytes },
    /// Refuse with this CONNACK reason code and an optional reason string.
    Deny { code: ReasonCode, reason: Option<String> },
}

/// Decides who may connect.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> BoxFuture<'a, AuthDecision>;
}

/// A refusal by the authorizer, as a reason code and a reason string that names what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub code: ReasonCode,
    pub reason: String,
}

/// Decides each PUBLISH and each SUBSCRIBE filter. Synchronous, because it sits on the publish
/// path: implementations compile permissions when a client connects, not per message.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize_publish(&self, identity: &ClientIdentity, topic: &str) -> Result<(), Denied>;
    /// `filter` is the filter as subscribed; shared filters arrive with their `$share/g/` prefix.
    fn authorize_subscribe(&self, identity: &ClientIdentity, filter: &str) -> Result<(), Denied>;
}

/// An authorized publish as the routing tap sees it.
#[derive(Debug, Clone)]
pub struct RoutedMessage {
    pub publisher: ClientIdentity,
    /// The publisher's protocol version: 3.1.1 payloads have no format indicator or content
    /// type, so they route as bytes.
    pub protocol: Protocol,
    pub topic: Arc<str>,
    pub qos: QoS,
    pub retain: bool,
    pub payload: Bytes,
    /// The publish's MQTT 5 properties (topic alias removed).
    pub properties: SharedProperties,
}

/// Why the routing tap could not take a message; the publisher gets this reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapRefused {
    pub code: ReasonCode,
    pub reason: String,
}

/// Receives every authorized publish, before the broker fans it out.
///
/// Synchronous, because it sits on the publish path: an implementation takes the message into
/// its own bounded buffer and returns at once. When that buffer is durable it returns the
/// journal ticket of what it wrote; the broker then sends PUBACK/PUBREC only once that ticket is
/// committed (the connection's durability barrier), so a message acknowledged to a device is
/// never lost between broker and router, and commits stay grouped across connections.
pub trait RoutingTap: Send + Sync + 'static {
    fn accept(&self, message: &RoutedMessage) -> Result<Option<crate::store::Ticket>, TapRefused>;

    /// Whether the tap takes messages now. A tap with nothing to route (the router without
    /// routes, until a config reload adds some) says no, and a publish then skips building
    /// the [`RoutedMessage`].
    fn active(&self) -> bool {
        true
    }
}

/// Why a connection ended, as lifecycle observers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT (with this reason code).
    ClientDisconnect(ReasonCode),
    /// The network connection was lost or closed without DISCONNECT.
    ConnectionLost,
    /// The keep-alive expired.
    KeepAliveTimeout,
    /// Another connection took the client id.
    SessionTakenOver,
    /// The client broke the protocol; the broker sent this reason code.
    ProtocolViolation(ReasonCode),
    /// The server is shutting down.
    ServerShutdown,
    /// Credentials expired or an administrator disconnected the client.
    Administrative(ReasonCode),
    /// The session's queue overflowed under the `end-session` policy.
    SessionOverflow,
}

/// What happened to a client, for lifecycle observers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// A client completed CONNECT/CONNACK. `connection` numbers this network connection,
    /// unique for the process, so that its `Disconnected` can be paired with it even when a
    /// takeover's new `Connected` is observed first. `sequence` is the connection's number
    /// among its client id's connections when a cluster counts them (the router counts them
    /// itself otherwise).
    Connected {
        identity: ClientIdentity,
        connection: u64,
        session_present: bool,
        sequence: Option<u64>,
    },
    /// A connected client's network connection ended.
    Disconnected { identity: ClientIdentity, connection: u64, reason: DisconnectReason },
    /// A session ended without a connection: its expiry passed, or it was discarded.
    SessionExpired { client_id: Arc<str> },
    /// A registered client was created or changed (management API). `created` is set when it
    /// was created by this change.
    ClientChanged {
        name: Arc<str>,
        authentication_name: Arc<str>,
        enabled: bool,
        attributes: serde_json::Map<String, serde_json::Value>,
        created: Option<std::time::SystemTime>,
    },
    /// A registered client was deleted (management API).
    ClientDeleted { name: Arc<str>, authentication_name: Arc<str> },
}

/// Observes lifecycle events. Called inline on connection tasks: it must not block; an
/// implementation that does work queues it.
pub trait LifecycleObserver: Send + Sync + 'static {
    fn on_event(&self, event: &LifecycleEvent);
}

/// The hooks a broker runs with.
#[derive(Clone)]
pub struct Hooks {
    pub authenticator: Arc<dyn Authenticator>,
    pub authorizer: Arc<dyn Authorizer>,
    pub tap: Option<Arc<dyn RoutingTap>>,
    pub observers: Vec<Arc<dyn LifecycleObserver>>,
}

impl Hooks {
    /// Anonymous access, everything authorized, no routing: the no-config embedded mode.
    pub fn allow_all() -> Hooks {
        Hooks {
            authenticator: Arc::new(AllowAll),
            authorizer: Arc::new(AllowAll),
            tap: None,
            observers: Vec::new(),
        }
    }

    pub(crate) fn emit(&self, event: LifecycleEvent) {
        for observer in &self.observers {
            observer.on_event(&event);
        }
    }
}

/// Lets every client in under its client id (or username) and authorizes everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> BoxFuture<'a, AuthDecision> {
        let name = request.username.unwrap_or(request.client_id);
        let identity = ClientIdentity {
            client_id: request.client_id.into(),
            authentication_name: name.into(),
            attributes: BTreeMap::new(),
        };
        Box::pin(std::future::ready(AuthDecision::Allow { identity, expires_in: None }))
    }
}

impl Authorizer for AllowAll {
    fn authorize_publish(&self, _: &ClientIdentity, _: &str) -> Result<(), Denied> {
        Ok(())
    }

    fn authorize_subscribe(&self, _: &ClientIdentity, _: &str) -> Result<(), Denied> {
        Ok(())
    }
}
