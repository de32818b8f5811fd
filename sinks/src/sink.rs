//! The interface between the gateway's dispatcher and a destination.
//!
//! The gateway holds the durable delivery state of every event (attempts, next attempt time)
//! and decides when to call; a sink turns events into one request, sends it, and sorts the
//! outcome. It never sleeps, loops or retries by itself.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::error::DeliveryError;
use crate::event::CloudEvent;
use crate::retry::Schedule;

/// A boxed, sendable future, so `Sink` can be used as `dyn Sink`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One event of a request, with how many times it has been attempted including this attempt
/// (1 on the first try).
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub event: &'a CloudEvent,
    pub delivery_count: u32,
}

/// A destination events are delivered to.
pub trait Sink: Send + Sync + 'static {
    /// Which retry schedule applies (Namespace for webhooks, CustomTopic for custom topics).
    fn schedule(&self) -> Schedule;

    /// Most requests in flight at once to this destination.
    fn max_concurrency(&self) -> usize;

    /// How many events from the front of `events` go into the next request (at least 1 when
    /// `events` is not empty): honours the destination's event count and preferred size; an
    /// oversize single event still goes alone; never waits to fill.
    fn batch_len(&self, events: &[Delivery<'_>]) -> usize;

    /// The most events one request can hold, so that the caller offers `batch_len` no more
    /// than that.
    fn max_batch_events(&self) -> usize {
        usize::MAX
    }

    /// The abuse-protection handshake (webhooks) before the first delivery; Ok at once for
    /// sinks that need none. The gateway calls it before the first send and again after a
    /// failure, never per event.
    fn validate(&self) -> BoxFuture<'_, Result<(), DeliveryError>>;

    /// Sends one request with these events (a batch `batch_len` chose). Ok only for a
    /// 200..=204 answer; an empty batch is Ok without a request.
    fn send<'a>(&'a self, batch: &'a [Delivery<'a>]) -> BoxFuture<'a, Result<(), DeliveryError>>;

    /// The delivery properties (custom headers) that go with `event` and are not secret, for
    /// its dead-letter record's `customDeliveryProperties`.
    fn custom_delivery_properties(&self, event: &CloudEvent) -> BTreeMap<String, String> {
        let _ = event;
        BTreeMap::new()
    }
}
