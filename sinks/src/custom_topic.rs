//! Publishing to an Event Grid (basic) custom topic: `POST <endpoint>/api/events` with a JSON
//! array of CloudEvents, authenticated by `aeg-sas-key` or a signed `aeg-sas-token`.
//!
//! - [`config`]: the topic's settings (`CustomTopicConfig`).
//! - `sas`: signing shared access tokens.
//!
//! Success is 200 (any of 200..=204 is accepted). Failures are sorted for the custom topic
//! schedule: 400, 401, 403 and 413 are not retried, everything else is; Event Grid's error
//! body (`{"error":{"code","message"}}`) becomes the failure's detail.

pub mod config;
mod sas;

use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderValue};

use crate::batch::BatchLimits;
use crate::config::ConfigProblem;
use crate::error::{DeliveryError, FailureKind};
use crate::http::BATCH;
use crate::retry::Schedule;
use crate::sink::{BoxFuture, Delivery, Sink};
pub use config::CustomTopicConfig;

/// A custom topic, ready to publish to.
pub struct CustomTopicSink {
    config: CustomTopicConfig,
    url: reqwest::Url,
    credential: Credential,
    limits: BatchLimits,
    timeout: Duration,
    http: reqwest::Client,
}

/// How requests authenticate.
enum Credential {
    Key(HeaderValue),
    Token { key: Vec<u8>, ttl: Duration },
}

impl CustomTopicSink {
    /// A sink for `config` (validated here) over `http`, normally a shared
    /// [`crate::http_client`].
    pub fn new(
        config: CustomTopicConfig,
        http: reqwest::Client,
    ) -> Result<CustomTopicSink, ConfigProblem> {
        config.validate()?;
        let url = config.events_url()?;
        let credential = match (&config.sas_key, config.signing_key()?) {
            (_, Some(key)) => {
                Credential::Token { key, ttl: Duration::from_secs(config.sas_token_ttl_seconds) }
            }
            (Some(key), None) => Credential::Key(
                HeaderValue::from_str(key)
                    .map_err(|_| ConfigProblem::new("sasKey", "must be a topic access key"))?,
            ),
            (None, None) => {
                return Err(ConfigProblem::new(
                    "sasKey",
                    "one of sasKey and sasTokenKey is required",
                ));
            }
        };
        let limits =
            BatchLimits::new(config.max_events_per_batch, config.preferred_batch_size_in_kilobytes);
        let timeout = Duration::from_secs(config.timeout_seconds);
        Ok(CustomTopicSink { config, url, credential, limits, timeout, http })
    }

    pub fn config(&self) -> &CustomTopicConfig {
        &self.config
    }

    async fn publish(&self, batch: &[Delivery<'_>]) -> Result<(), DeliveryError> {
        if batch.is_empty() {
            return Ok(());
        }
        let body = crate::event::batch_json_bytes(batch.iter().map(|d| d.event));
        let request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, BATCH)
            .body(body)
            .timeout(self.timeout);
        let request = match &self.credential {
            Credential::Key(key) => request.header("aeg-sas-key", key.clone()),
            Credential::Token { key, ttl } => {
                let expires = SystemTime::now() + *ttl;
                let token = sas::token(self.url.as_str(), key, expires);
                let token = HeaderValue::from_str(&token).map_err(|_| {
                    DeliveryError::new(
                        FailureKind::BadArgument,
                        "the SAS token is not a header value",
                    )
                })?;
                request.header("aeg-sas-token", token)
            }
        };
        crate::http::send(request).await
    }
}

impl std::fmt::Debug for CustomTopicSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomTopicSink").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Sink for CustomTopicSink {
    fn schedule(&self) -> Schedule {
        Schedule::CustomTopic
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

    /// Topics need no handshake.
    fn validate(&self) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn send<'a>(&'a self, batch: &'a [Delivery<'a>]) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(self.publish(batch))
    }
}

#[cfg(test)]
mod tests;
