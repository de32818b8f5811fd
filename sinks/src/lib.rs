//! Delivery sinks for gridmq: they know CloudEvents, not MQTT.
//!
//! This crate is a placeholder until the routing issue lands the webhook, custom-topic and
//! Event Hubs sinks. It exists now so the workspace layout is the one the README describes.
