//! Webhook delivery: CloudEvents over HTTP POST to an endpoint, as Event Grid's namespace
//! topics push to webhooks.
//!
//! - [`config`]: the destination's settings (`WebhookConfig`, `ContentMode`).
//! - `handshake`: the abuse-protection `OPTIONS` handshake done before delivering.
//! - `request`: events → headers and body (structured, batch, binary).
//!
//! Success is 200..=204. Failures are sorted for the namespace schedule: 400, 401, 403, 404,
//! 413 and 414 are not retried.

pub mod config;
mod handshake;
mod request;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::HeaderValue;

use crate::batch::BatchLimits;
use crate::config::ConfigProblem;
use crate::error::DeliveryError;
use crate::event::CloudEvent;
use crate::retry::Schedule;
use crate::sink::{BoxFuture, Delivery, Sink};
pub use config::{ContentMode, WebhookConfig};

/// A webhook destination, ready to deliver.
#[derive(Debug)]
pub struct WebhookSink {
    config: WebhookConfig,
    endpoint: reqwest::Url,
    origin: HeaderValue,
    subscription_name: HeaderValue,
    limits: BatchLimits,
    timeout: Duration,
    http: reqwest::Client,
}

impl WebhookSink {
    /// A sink for `config` (validated here) over `http`, normally a shared
    /// [`crate::http_client`], delivering for the event subscription `subscription_name`
    /// (sent as `aeg-subscription-name`).
    pub fn new(
        config: WebhookConfig,
        http: reqwest::Client,
        subscription_name: impl AsRef<str>,
    ) -> Result<WebhookSink, ConfigProblem> {
        let subscription_name = subscription_name.as_ref();
        config.validate()?;
        let endpoint = config.endpoint()?;
        let origin = HeaderValue::from_str(&config.webhook_origin)
            .map_err(|_| ConfigProblem::new("webhookOrigin", "must be a host name"))?;
        let subscription_name = HeaderValue::from_str(subscription_name).map_err(|_| {
            ConfigProblem::new("name", format!("{subscription_name:?} cannot be an HTTP header"))
        })?;
        let limits = match config.content_mode {
            ContentMode::Binary => BatchLimits::new(1, config.preferred_batch_size_in_kilobytes),
            ContentMode::Structured => BatchLimits::new(
                config.max_events_per_batch,
                config.preferred_batch_size_in_kilobytes,
            ),
        };
        let timeout = Duration::from_secs(config.timeout_seconds);
        Ok(WebhookSink { config, endpoint, origin, subscription_name, limits, timeout, http })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    async fn deliver(&self, batch: &[Delivery<'_>]) -> Result<(), DeliveryError> {
        if batch.is_empty() {
            return Ok(());
        }
        let settings = request::Settings {
            mode: self.config.content_mode,
            batching: self.config.max_events_per_batch > 1,
            origin: &self.origin,
            subscription_name: &self.subscription_name,
            properties: &self.config.delivery_attribute_mappings,
        };
        let request::Request { headers, body } = request::build(&settings, batch)?;
        let request =
            self.http.post(self.endpoint.clone()).headers(headers).body(body).timeout(self.timeout);
        crate::http::send(request).await
    }
}

impl Sink for WebhookSink {
    fn schedule(&self) -> Schedule {
        Schedule::Namespace
    }

    fn max_concurrency(&self) -> usize {
        self.config.max_concurrency
    }

    fn batch_len(&self, events: &[Delivery<'_>]) -> usize {
        self.limits.batch_len(events)
    }

    fn max_batch_events(&self) -> usize {
        self.limits.max_events
    }

    fn validate(&self) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(handshake::validate(&self.http, &self.endpoint, &self.origin, self.timeout))
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

#[cfg(test)]
mod tests;
