//! gridmq's gateway: an MQTT 3.1.1/5.0 broker whose messages will be routed as CloudEvents.
//!
//! # Layout
//! - [`mqtt`]: the wire protocol (packets, properties, reason codes, the pure codec, topics).
//! - [`connection`]: one task per client connection: handshake, inbound packets, outbound
//!   deliveries.
//! - [`broker`]: sessions, the subscription tree, retained messages and fan-out.
//! - [`hooks`]: the traits that authentication, authorization, routing and lifecycle events
//!   plug into.
//! - [`server`]: listeners, the gateway's lifetime and shutdown.
//! - [`config`]: the configuration file, composed of each module's own config.

pub mod access;
pub mod auth;
pub mod broker;
pub mod config;
pub mod connection;
pub mod hooks;
pub mod mqtt;
pub mod server;
pub mod startup;
pub mod store;

pub use config::Config;
pub use hooks::Hooks;
pub use server::Gateway;
