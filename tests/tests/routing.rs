//! Routing MQTT messages as CloudEvents: webhooks, Event Hubs, lifecycle events, routes and
//! subscriptions through the management API, pull delivery, failures, and payload fidelity.

// A crate root looks for its modules beside itself, not in routing/: each names its file.
#[path = "routing/durability.rs"]
mod durability;
#[path = "routing/eventhubs.rs"]
mod eventhubs;
#[path = "routing/fidelity.rs"]
mod fidelity;
#[path = "routing/lifecycle.rs"]
mod lifecycle;
#[path = "routing/mgmt.rs"]
mod mgmt;
#[path = "routing/pull_delivery.rs"]
mod pull_delivery;
#[path = "routing/webhook.rs"]
mod webhook;
