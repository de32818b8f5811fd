//! gridmq's gateway: an MQTT 3.1.1/5.0 broker whose messages are routed as CloudEvents.
//!
//! # Layout
//! - [`mqtt`]: the wire protocol (packets, properties, reason codes, the pure codec, topics).
//! - [`connection`]: one task per client connection: handshake, inbound packets, outbound
//!   deliveries.
//! - [`broker`]: sessions, the subscription tree, retained messages and fan-out.
//! - [`hooks`]: the traits that authentication, authorization, routing and lifecycle events
//!   plug into.
//! - [`server`]: the listeners (MQTT over TCP, TLS, WebSocket; the HTTP APIs' listener).
//! - [`gateway`]: the composition root: every part built from its config section, started
//!   and shut down in order.
//! - [`access`]: Event Grid's namespace resources and the authorization they grant.
//! - [`auth`]: the authentication methods.
//! - [`namespace`]: resources, authorization and authentication assembled into the broker's
//!   hooks; changes applied to live sessions.
//! - [`mgmt`]: the REST management API over the namespace's resources.
//! - [`console`]: the operator console at `/console` on the management listener.
//! - [`routing`]: every publish and lifecycle event as a CloudEvent, durably buffered and
//!   delivered to event subscriptions (push through `sinks`, or queues for pull delivery).
//! - [`dataplane`]: the data-plane HTTP API (namespace topic publish, HTTP publish into MQTT,
//!   retained messages, pull delivery).
//! - [`embed`]: a whole gateway in-process from a config string, for users' routing tests.
//! - [`reload`]: config reload without restart (SIGHUP, `POST /config:reload`).
//! - [`startup`] and [`store`]: durable state and recovery at start-up.
//! - [`config`]: the configuration file, composed of each module's own config.
//! - [`diagnostics`]: Event Grid's diagnostic log categories as rate-limited `tracing` events.
//! - [`logging`]: the `[log]` table and the log's format.
//! - [`readiness`]: what `/readyz` answers from.
//! - [`telemetry`]: Prometheus metrics (`/metrics`) and the metric catalogue.

pub mod access;
pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod console;
pub mod dataplane;
pub mod diagnostics;
pub mod embed;
pub mod gateway;
pub mod hooks;
pub mod logging;
pub mod mgmt;
#[cfg(test)]
mod module_graph;
pub mod mqtt;
pub mod namespace;
pub mod readiness;
pub mod reload;
pub mod routing;
pub mod server;
pub mod startup;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use gateway::{Gateway, StartError};
pub use hooks::Hooks;
