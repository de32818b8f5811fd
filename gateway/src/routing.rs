//! The routing pipeline: every authorized publish, and every client lifecycle event, as a
//! CloudEvent, durably buffered and pushed to the event subscriptions of namespace topics.
//!
//! # Path of one message
//! 1. The broker calls the routing tap ([`router::Router`] implements
//!    [`RoutingTap`](crate::hooks::RoutingTap)) for each authorized publish, before fan-out.
//! 2. The routes (`[[routing.routes]]`, MQTT topic filters) pick the namespace topics; the
//!    message becomes one CloudEvent ([`event`]) with the enrichments ([`enrich`]).
//! 3. Each topic's event subscriptions whose filters ([`filter`]) take the event get a
//!    delivery; the event and its deliveries go into the [`buffer`] and the journal as one
//!    atomic group, whose ticket holds the publisher's PUBACK until it is committed.
//! 4. Each subscription's [`dispatch::Dispatcher`] sends due deliveries through its sink
//!    (`sinks` crate: webhook, custom topic), and applies the shared retry policy to the
//!    outcome: delivered (rows deleted), retried at a time (row updated), or dead-lettered
//!    ([`dead_letter`]).
//!
//! Lifecycle events ([`lifecycle`]) take the same path from step 3, on the system topic.
//!
//! In cluster mode, step 3 stores the event in the cluster's routing log instead ([`shared`]),
//! and step 4 leases it from there, on whichever node serves the subscription.
//!
//! **Invariant**: nothing acknowledged to a publisher is lost: an event's rows are committed
//! before the PUBACK, and deleted only after a 2xx from the destination or after the event is
//! dead-lettered. After a crash, delivery is at least once.

pub mod arm;
pub mod buffer;
pub mod config;
pub mod dead_letter;
pub mod dispatch;
pub mod enrich;
pub mod event;
pub mod filter;
pub mod lifecycle;
pub mod offline;
pub mod queue;
pub mod router;
pub mod shared;

pub use router::{BuildError, Router};
