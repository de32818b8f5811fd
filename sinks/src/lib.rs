//! Delivery sinks for gridmq: they know CloudEvents and HTTP, not MQTT.
//!
//! The gateway holds each event's durable delivery state and drives a [`Sink`]: it asks how
//! many queued events go into the next request ([`Sink::batch_len`]), sends them
//! ([`Sink::send`]), and on failure asks the [`RetryPolicy`] for a [`Verdict`]: retry at a
//! time, or dead-letter with a [`DeadLetterReason`] in a [`DeadLetterRecord`].
//!
//! Layout:
//!
//! - [`event`]: the CloudEvent type, its JSON format, ids and Event Grid's time format.
//! - [`sink`]: the `Sink` trait and `Delivery`.
//! - [`error`]: `DeliveryError` and `FailureKind`, failures in Event Grid's outcome names.
//! - [`retry`]: `RetryPolicy`, Event Grid's retry schedules as a pure function.
//! - [`dead_letter`]: dead-letter records in Event Grid's shape.
//! - [`webhook`]: CloudEvents over HTTP to webhooks, with the abuse-protection handshake.
//! - [`custom_topic`]: publishing to Event Grid custom topics with SAS keys or tokens.
//! - [`event_hubs`]: CloudEvents over AMQP to Event Hubs, in batches by partition key.
//! - [`delivery_property`]: custom delivery headers, static or read from the event.
//! - [`json_path`]: the JSON path lookup that filters and delivery properties share.
//! - [`media_type`]: whether a content type is JSON, the one rule every path uses.
//! - [`batch`], [`http`], [`config`]: batching limits, the shared HTTP client, config problems.
//!
//! **Invariant:** a sink never sleeps, loops or retries; retrying is the gateway's, by the
//! verdicts of [`RetryPolicy`].

pub mod batch;
pub mod config;
pub mod custom_topic;
pub mod dead_letter;
pub mod delivery_property;
pub mod error;
pub mod event;
pub mod event_hubs;
pub mod http;
pub mod json_path;
pub mod media_type;
pub mod retry;
pub mod sink;
pub mod webhook;

pub use config::ConfigProblem;
pub use custom_topic::{CustomTopicConfig, CustomTopicSink};
pub use dead_letter::{DeadLetterReason, DeadLetterRecord};
pub use delivery_property::DeliveryProperty;
pub use error::{DeliveryError, FailureKind};
pub use event::{CloudEvent, Data, JsonText};
pub use event_hubs::{EventHubsConfig, EventHubsSink};
pub use http::{ClientError, http_client, http_client_builder};
pub use retry::{RetryPolicy, Schedule, Verdict};
pub use sink::{BoxFuture, Delivery, Sink};
pub use webhook::{ContentMode, WebhookConfig, WebhookSink};

#[cfg(test)]
pub(crate) mod test_util;
