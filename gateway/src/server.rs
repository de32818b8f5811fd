//! Listeners: bind, accept, and spawn one task per connection. The gateway's lifetime (what
//! is started in which order, and shutdown) is [`crate::gateway`]'s.
//!
//! Each `[[server.listeners]]` entry ([`config`]) becomes one socket with its own accept loop
//! and connection limit. The transport (plain TCP, TLS, WebSocket, WebSocket over TLS) is
//! peeled off in the connection's own task, bounded by the listener's handshake timeout, and
//! what remains is a byte stream handed to [`connection::serve`](crate::connection::serve),
//! which does not know which transport it runs on. TLS client certificates travel with it in
//! [`Peer::certificates`](crate::connection::Peer).
//!
//! [`https`] is the listener of the HTTP APIs (management, data plane, metrics), plain or TLS.

pub mod config;
pub mod fd_table;
pub mod https;
pub(crate) mod listener;
mod tls;
mod ws;

#[cfg(test)]
mod tests;

pub use config::ListenerKind;
pub use ws::WsStream;
