//! Event Hubs delivery: CloudEvents as AMQP messages to an event hub, always batched, as Event
//! Grid's namespace topics push to Event Hubs. The AMQP work is the `azure_messaging_eventhubs`
//! SDK's (fe2o3-amqp underneath).
//!
//! - [`config`]: the destination's settings (`EventHubsConfig`).
//! - `message`: events → `EventData` (structured JSON body, `aeg-` application properties).
//! - `failure`: SDK errors → delivery outcomes.
//!
//! One [`EventHubsSink`] keeps one `ProducerClient` (one AMQP connection), opened on first
//! use and opened afresh after a failure. The SDK's own retries are turned off: a sink never
//! retries, the gateway does. A request's events share one partition key (`batch_len` groups
//! them so); `send` puts them into as few SDK batches as fit the hub's message size and sends
//! those in order. It succeeds only if every batch was accepted: a failure after some batches
//! went means those events are delivered again with the rest (at least once).

pub mod config;
mod failure;
mod message;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use azure_messaging_eventhubs::error::ErrorKind;
use azure_messaging_eventhubs::{
    EventDataBatch, EventDataBatchOptions, ProducerClient, RetryOptions,
};
use tokio::sync::Mutex;

use crate::config::ConfigProblem;
use crate::delivery_property::DeliveryProperty;
use crate::error::{DeliveryError, FailureKind};
use crate::event::CloudEvent;
use crate::retry::Schedule;
use crate::sink::{BoxFuture, Delivery, Sink};
pub use config::EventHubsConfig;
use config::{MAX_BATCH_BYTES, Target};

/// How long closing a discarded connection may take: the SDK's close may never complete when
/// the peer is gone.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// An event hub, ready to deliver to.
pub struct EventHubsSink {
    config: EventHubsConfig,
    target: Target,
    subscription_name: String,
    partition_key: Option<DeliveryProperty>,
    properties: Vec<DeliveryProperty>,
    timeout: Duration,
    /// The most bytes one batch message takes: the configured cap, lowered to the hub's own
    /// limit once a sending link has reported it.
    batch_bytes: AtomicU64,
    /// The open client, if any. Held across connecting, so one attempt connects at a time.
    client: Mutex<Option<Arc<ProducerClient>>>,
}

impl EventHubsSink {
    /// A sink for `config` (validated here) delivering for the event subscription
    /// `subscription_name` (sent as `aeg-subscription-name`). Nothing connects until the first
    /// `validate` or `send`.
    pub fn new(
        config: EventHubsConfig,
        subscription_name: impl Into<String>,
    ) -> Result<EventHubsSink, ConfigProblem> {
        config.validate()?;
        let target = config.target()?;
        let partition_key = config.partition_key().cloned();
        let properties = config.application_properties().cloned().collect();
        let timeout = Duration::from_secs(config.timeout_seconds);
        let batch_bytes = AtomicU64::new(config.max_batch_size_in_bytes.unwrap_or(MAX_BATCH_BYTES));
        Ok(EventHubsSink {
            config,
            target,
            subscription_name: subscription_name.into(),
            partition_key,
            properties,
            timeout,
            batch_bytes,
            client: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &EventHubsConfig {
        &self.config
    }

    fn settings(&self) -> message::Settings<'_> {
        message::Settings {
            subscription_name: &self.subscription_name,
            properties: &self.properties,
        }
    }

    fn partition_key_of(&self, event: &CloudEvent) -> Option<String> {
        message::partition_key(self.partition_key.as_ref(), event)
    }

    /// Runs `work` with the client within the timeout; on failure drops the connection when a
    /// new one may help.
    async fn with_client<T>(
        &self,
        work: impl AsyncFnOnce(&ProducerClient) -> Result<T, DeliveryError>,
    ) -> Result<T, DeliveryError> {
        let attempt = async {
            let client = self.client().await?;
            match work(&client).await {
                Ok(value) => Ok(value),
                Err(error) => {
                    if failure::needs_new_connection(&error) {
                        self.discard(client).await;
                    }
                    Err(error)
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                // The client may be stuck half-way; start afresh next time.
                if let Some(client) = self.client.lock().await.take() {
                    close_in_background(client);
                }
                Err(DeliveryError::new(
                    FailureKind::TimedOut,
                    format!("no answer from the event hub within {} s", self.timeout.as_secs()),
                ))
            }
        }
    }

    /// The open client, connecting first if there is none.
    async fn client(&self) -> Result<Arc<ProducerClient>, DeliveryError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        install_crypto_provider();
        let mut builder = ProducerClient::builder()
            .with_application_id("gridmq".to_owned())
            .with_retry_options(no_retries());
        if let Some(endpoint) = &self.config.custom_endpoint {
            builder = builder.with_custom_endpoint(endpoint.clone());
        }
        let client = builder
            .open_with_connection_string(
                &self.target.connection_string,
                Some(&self.target.event_hub),
            )
            .await
            .map_err(|error| failure::classify(&error))?;
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Forgets `client` if it is still the open one, and closes it.
    async fn discard(&self, client: Arc<ProducerClient>) {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_some_and(|open| Arc::ptr_eq(open, &client)) {
            slot.take();
            drop(slot);
            close_in_background(client);
        }
    }

    async fn deliver(&self, batch: &[Delivery<'_>]) -> Result<(), DeliveryError> {
        if batch.is_empty() {
            return Ok(());
        }
        let settings = self.settings();
        // Events keep their order; each run of one partition key goes in its own batches.
        let mut runs: Vec<(Option<String>, Vec<&Delivery<'_>>)> = Vec::new();
        for delivery in batch {
            let key = self.partition_key_of(delivery.event);
            match runs.last_mut() {
                Some((last, run)) if *last == key => run.push(delivery),
                _ => runs.push((key, vec![delivery])),
            }
        }
        self.with_client(async |client| {
            for (key, run) in &runs {
                self.send_run(client, &settings, key.as_deref(), run).await?;
            }
            Ok(())
        })
        .await
    }

    /// Sends events of one partition key, in as many SDK batches as they need.
    async fn send_run(
        &self,
        client: &ProducerClient,
        settings: &message::Settings<'_>,
        partition_key: Option<&str>,
        run: &[&Delivery<'_>],
    ) -> Result<(), DeliveryError> {
        let mut pending = self.create_batch(client, partition_key).await?;
        for delivery in run {
            if try_add(&pending, settings, delivery)? {
                continue;
            }
            if pending.is_empty() {
                return Err(DeliveryError::new(
                    FailureKind::PayloadTooLarge,
                    format!(
                        "event {} is larger than the event hub's largest message",
                        delivery.event.id
                    ),
                ));
            }
            client.send_batch(pending, None).await.map_err(|e| failure::classify(&e))?;
            pending = self.create_batch(client, partition_key).await?;
            if !try_add(&pending, settings, delivery)? {
                return Err(DeliveryError::new(
                    FailureKind::PayloadTooLarge,
                    format!(
                        "event {} is larger than the event hub's largest message",
                        delivery.event.id
                    ),
                ));
            }
        }
        if !pending.is_empty() {
            client.send_batch(pending, None).await.map_err(|e| failure::classify(&e))?;
        }
        Ok(())
    }

    /// An empty batch for `partition_key`, at most `batch_bytes` large; learns the hub's limit
    /// when the configured cap is above it.
    async fn create_batch<'c>(
        &self,
        client: &'c ProducerClient,
        partition_key: Option<&str>,
    ) -> Result<EventDataBatch<'c>, DeliveryError> {
        let options = |max_size_in_bytes| EventDataBatchOptions {
            max_size_in_bytes,
            partition_key: partition_key.map(str::to_owned),
            partition_id: None,
        };
        let cap = self.batch_bytes.load(Ordering::Relaxed);
        match client.create_batch(Some(options(Some(cap)))).await {
            Ok(batch) => Ok(batch),
            Err(error) => match error.kind {
                ErrorKind::InvalidBatchSize { max_allowed, .. } if max_allowed > 0 => {
                    self.batch_bytes.fetch_min(max_allowed, Ordering::Relaxed);
                    client
                        .create_batch(Some(options(Some(max_allowed.min(cap)))))
                        .await
                        .map_err(|e| failure::classify(&e))
                }
                _ => Err(failure::classify(&error)),
            },
        }
    }

    /// Reads the hub's properties: the connection, the token and the hub's name all work.
    async fn check(&self) -> Result<(), DeliveryError> {
        self.with_client(async |client| {
            let properties =
                client.get_eventhub_properties().await.map_err(|e| failure::classify(&e))?;
            if properties.partition_ids.is_empty() {
                return Err(DeliveryError::new(
                    FailureKind::ServiceError,
                    format!("event hub {} reports no partitions", properties.name),
                ));
            }
            Ok(())
        })
        .await
    }

    /// How many events from the front go into the next request: one partition key, within
    /// the hub's message size by a generous estimate (an oversize event still goes, alone).
    fn next_batch_len(&self, events: &[Delivery<'_>]) -> usize {
        let Some(first) = events.first() else { return 0 };
        let settings = self.settings();
        let limit = usize::try_from(self.batch_bytes.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let key = self.partition_key_of(first.event);
        let mut bytes = message::ENVELOPE_OVERHEAD;
        let mut count = 0;
        for delivery in events {
            let size = message::estimated_size(&settings, delivery);
            if count > 0 && (bytes + size > limit || self.partition_key_of(delivery.event) != key) {
                break;
            }
            bytes += size;
            count += 1;
        }
        count
    }
}

impl std::fmt::Debug for EventHubsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHubsSink")
            .field("config", &self.config)
            .field("subscription_name", &self.subscription_name)
            .finish_non_exhaustive()
    }
}

impl Drop for EventHubsSink {
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take() {
            close_in_background(client);
        }
    }
}

impl Sink for EventHubsSink {
    fn schedule(&self) -> Schedule {
        Schedule::Namespace
    }

    fn max_concurrency(&self) -> usize {
        self.config.max_concurrency
    }

    fn batch_len(&self, events: &[Delivery<'_>]) -> usize {
        self.next_batch_len(events)
    }

    /// Connects and reads the hub's properties; unreachable is a retriable `SocketError`.
    fn validate(&self) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(self.check())
    }

    fn send<'a>(&'a self, batch: &'a [Delivery<'a>]) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(self.deliver(batch))
    }

    fn custom_delivery_properties(&self, event: &CloudEvent) -> BTreeMap<String, String> {
        self.config
            .delivery_attribute_mappings
            .iter()
            .filter(|property| !property.is_secret())
            .filter_map(|property| Some((property.name().to_string(), property.value_for(event)?)))
            .collect()
    }
}

/// Adds one event's message to `batch`; false when it does not fit.
fn try_add(
    batch: &EventDataBatch<'_>,
    settings: &message::Settings<'_>,
    delivery: &Delivery<'_>,
) -> Result<bool, DeliveryError> {
    batch
        .try_add_event_data(message::event_data(settings, delivery), None)
        .map_err(|e| failure::classify(&e))
}

/// The SDK's retries off: one attempt per call, the gateway decides about the next.
fn no_retries() -> RetryOptions {
    RetryOptions {
        initial_delay: time::Duration::milliseconds(100),
        max_delay: time::Duration::milliseconds(100),
        max_total_elapsed: time::Duration::ZERO,
        max_retries: 0,
    }
}

/// The SDK builds its TLS configuration with rustls' process-wide provider; with both ring
/// (ours) and aws-lc-rs (the SDK's default) compiled in, rustls cannot pick one by itself.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Closes `client` on a task of its own, bounded by [`CLOSE_TIMEOUT`]: the SDK's close may
/// never complete when the peer is gone. Other holders (a send still running) keep it open
/// until they finish; then dropping it ends the connection.
fn close_in_background(client: Arc<ProducerClient>) {
    let Ok(client) = Arc::try_unwrap(client) else { return };
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await;
        });
    }
}

#[cfg(test)]
mod tests;
