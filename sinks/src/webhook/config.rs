//! A webhook destination's configuration, in Event Grid's field names.
//!
//! The gateway embeds it as the destination of an event subscription, e.g.
//!
//! ```toml
//! [subscriptions.destination]
//! endpointType = "WebHook"
//! endpointUrl = "https://example.com/events"
//! maxEventsPerBatch = 10
//! ```

use serde::Deserialize;

use crate::config::{ConfigProblem, check_range};
use crate::delivery_property::{self, DeliveryProperty};

/// How events are written into requests (CloudEvents HTTP binding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ContentMode {
    /// The event as JSON in the body (`application/cloudevents+json`), or a JSON array of
    /// events when batching (`application/cloudevents-batch+json`).
    #[default]
    Structured,
    /// Attributes as `ce-` headers and the data as the body; one event per request.
    Binary,
}

/// A webhook destination.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookConfig {
    /// Where events are POSTed: an `https://` URL (`http://` is accepted for local
    /// receivers). The abuse-protection handshake goes to the same URL. Required.
    pub endpoint_url: String,
    /// `Structured` (default) or `Binary`.
    #[serde(default)]
    pub content_mode: ContentMode,
    /// Most events per request, 1 to 5000. Default 1: no batching. Above 1 every request is a
    /// batch (a JSON array), even of one event, so receivers see one shape. Ignored in binary
    /// mode, which sends one event per request.
    #[serde(default = "default_max_events_per_batch")]
    pub max_events_per_batch: u32,
    /// The size a batch's body should stay within, 1 to 1024 KiB. Default 64. A larger
    /// single event is still sent, alone.
    #[serde(default = "default_preferred_batch_size_in_kilobytes")]
    pub preferred_batch_size_in_kilobytes: u32,
    /// How long one request may take, connecting included, 1 to 300 seconds; past it the
    /// attempt failed as `TimedOut`. Default 30, Event Grid's.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Most requests in flight at once to this endpoint, 1 to 1024. Default 16: enough to
    /// keep a remote receiver busy without a burst of retries opening hundreds of connections
    /// to an endpoint that is struggling.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// The origin we name in the handshake (`WebHook-Request-Origin`) and in each delivery
    /// (`Origin`). Default `eventgrid.azure.net`, so receivers written for Event Grid accept us.
    #[serde(default = "default_webhook_origin")]
    pub webhook_origin: String,
    /// Custom headers on every delivery, at most 10.
    #[serde(default)]
    pub delivery_attribute_mappings: Vec<DeliveryProperty>,
}

fn default_max_events_per_batch() -> u32 {
    1
}

fn default_preferred_batch_size_in_kilobytes() -> u32 {
    64
}

fn default_timeout_seconds() -> u64 {
    30
}

fn default_max_concurrency() -> usize {
    16
}

fn default_webhook_origin() -> String {
    "eventgrid.azure.net".into()
}

impl WebhookConfig {
    /// A configuration with defaults for everything but the URL.
    pub fn new(endpoint_url: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            endpoint_url: endpoint_url.into(),
            content_mode: ContentMode::default(),
            max_events_per_batch: default_max_events_per_batch(),
            preferred_batch_size_in_kilobytes: default_preferred_batch_size_in_kilobytes(),
            timeout_seconds: default_timeout_seconds(),
            max_concurrency: default_max_concurrency(),
            webhook_origin: default_webhook_origin(),
            delivery_attribute_mappings: Vec::new(),
        }
    }

    /// Checks every field, naming the first one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        self.endpoint()?;
        check_range("maxEventsPerBatch", self.max_events_per_batch, 1..=5000)?;
        check_range(
            "preferredBatchSizeInKilobytes",
            self.preferred_batch_size_in_kilobytes,
            1..=1024,
        )?;
        check_range("timeoutSeconds", self.timeout_seconds, 1..=300)?;
        check_range("maxConcurrency", self.max_concurrency, 1..=1024)?;
        if self.webhook_origin.is_empty()
            || reqwest::header::HeaderValue::from_str(&self.webhook_origin).is_err()
        {
            return Err(ConfigProblem::new("webhookOrigin", "must be a host name"));
        }
        delivery_property::validate_all(&self.delivery_attribute_mappings)
    }

    /// The endpoint as a URL.
    pub(crate) fn endpoint(&self) -> Result<reqwest::Url, ConfigProblem> {
        let url = reqwest::Url::parse(&self.endpoint_url)
            .map_err(|e| ConfigProblem::new("endpointUrl", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(ConfigProblem::new(
                "endpointUrl",
                format!("must be an https:// URL, found {}://", url.scheme()),
            ));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway's shape: the destination is an internally tagged enum.
    #[derive(Debug, Deserialize)]
    #[serde(tag = "endpointType")]
    enum Destination {
        WebHook(WebhookConfig),
        #[allow(dead_code)]
        Other {
            x: u32,
        },
    }

    #[test]
    fn defaults_inside_a_tagged_enum() {
        let destination: Destination = toml::from_str(
            "endpointType = \"WebHook\"\nendpointUrl = \"https://example.com/hook\"\n",
        )
        .unwrap();
        let Destination::WebHook(config) = destination else { panic!("{destination:?}") };
        assert_eq!(config, WebhookConfig::new("https://example.com/hook"));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn every_field_in_camel_case() {
        let destination: Destination = toml::from_str(
            r#"
            endpointType = "WebHook"
            endpointUrl = "http://127.0.0.1:9000/"
            contentMode = "Binary"
            maxEventsPerBatch = 50
            preferredBatchSizeInKilobytes = 128
            timeoutSeconds = 5
            maxConcurrency = 4
            webhookOrigin = "gridmq.example"
            [[deliveryAttributeMappings]]
            name = "x-key"
            type = "Static"
            value = "k"
            "#,
        )
        .unwrap();
        let Destination::WebHook(config) = destination else { panic!("{destination:?}") };
        assert_eq!(config.content_mode, ContentMode::Binary);
        assert_eq!(config.max_events_per_batch, 50);
        assert_eq!(config.preferred_batch_size_in_kilobytes, 128);
        assert_eq!(config.timeout_seconds, 5);
        assert_eq!(config.max_concurrency, 4);
        assert_eq!(config.webhook_origin, "gridmq.example");
        assert_eq!(config.delivery_attribute_mappings.len(), 1);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn unknown_fields_are_refused_inside_a_tagged_enum() {
        let error = toml::from_str::<Destination>(
            "endpointType = \"WebHook\"\nendpointUrl = \"https://example.com\"\nmaxEventPerBatch = 3\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("maxEventPerBatch"), "{error}");
        assert!(toml::from_str::<Destination>("endpointType = \"WebHook\"\n").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let check = |edit: fn(&mut WebhookConfig), expected: &str| {
            let mut config = WebhookConfig::new("https://example.com/hook");
            edit(&mut config);
            assert_eq!(config.validate().unwrap_err().to_string(), expected);
        };
        check(|c| c.max_events_per_batch = 0, "maxEventsPerBatch: must be 1 to 5000, found 0");
        check(
            |c| c.preferred_batch_size_in_kilobytes = 2048,
            "preferredBatchSizeInKilobytes: must be 1 to 1024, found 2048",
        );
        check(|c| c.timeout_seconds = 0, "timeoutSeconds: must be 1 to 300, found 0");
        check(|c| c.max_concurrency = 0, "maxConcurrency: must be 1 to 1024, found 0");
        check(
            |c| c.endpoint_url = "ftp://x/".into(),
            "endpointUrl: must be an https:// URL, found ftp://",
        );
        check(|c| c.webhook_origin = String::new(), "webhookOrigin: must be a host name");
        let mut config = WebhookConfig::new("not a url");
        assert_eq!(config.validate().unwrap_err().field, "endpointUrl");
        config.endpoint_url = "https://example.com".into();
        config.delivery_attribute_mappings = vec![DeliveryProperty::Static {
            name: "aeg-x".into(),
            value: "1".into(),
            is_secret: false,
        }];
        assert_eq!(config.validate().unwrap_err().field, "deliveryAttributeMappings[0].name");
    }
}
