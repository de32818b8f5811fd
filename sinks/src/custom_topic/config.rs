//! An Event Grid custom topic destination's configuration.
//!
//! ```toml
//! [subscriptions.destination]
//! endpointType = "CustomTopic"
//! endpoint = "https://mytopic.westus2-1.eventgrid.azure.net"
//! sasKey = "<access key>"
//! ```

use serde::Deserialize;

use crate::config::{ConfigProblem, check_range};

/// The API version of the publish endpoint we post to.
pub const API_VERSION: &str = "2018-01-01";

/// A custom topic destination. Exactly one of `sasKey` and `sasTokenKey` authenticates.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CustomTopicConfig {
    /// The topic endpoint, e.g. `https://mytopic.westus2-1.eventgrid.azure.net`; events are
    /// POSTed to `<endpoint>/api/events?api-version=2018-01-01`. An endpoint that already ends
    /// in `/api/events` (with or without the query) is used as given. Required.
    pub endpoint: String,
    /// A topic access key, sent as is in `aeg-sas-key`.
    #[serde(default)]
    pub sas_key: Option<String>,
    /// A topic access key (base64, as the portal shows it) to sign a short-lived SAS token
    /// with, sent in `aeg-sas-token`, so the key itself never travels.
    #[serde(default)]
    pub sas_token_key: Option<String>,
    /// How long each signed token is valid, 60 to 86400 seconds. Default 3600. A token is
    /// signed per request, so this only bounds the damage of a token that leaks.
    #[serde(default = "default_sas_token_ttl_seconds")]
    pub sas_token_ttl_seconds: u64,
    /// Most events per request, 1 to 5000. Default 100. Requests are always a JSON array
    /// (`application/cloudevents-batch+json`), even of one event.
    #[serde(default = "default_max_events_per_batch")]
    pub max_events_per_batch: u32,
    /// The size a request's body should stay within, 1 to 1024 KiB. Default 512, half of
    /// Event Grid's 1 MB limit per publish request, leaving room for a large event. A larger
    /// single event is still sent, alone.
    #[serde(default = "default_preferred_batch_size_in_kilobytes")]
    pub preferred_batch_size_in_kilobytes: u32,
    /// How long one request may take, connecting included, 1 to 300 seconds. Default 30.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Most requests in flight at once to this topic, 1 to 1024. Default 16.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
}

fn default_sas_token_ttl_seconds() -> u64 {
    3600
}

fn default_max_events_per_batch() -> u32 {
    100
}

fn default_preferred_batch_size_in_kilobytes() -> u32 {
    512
}

fn default_timeout_seconds() -> u64 {
    30
}

fn default_max_concurrency() -> usize {
    16
}

impl CustomTopicConfig {
    /// A configuration with defaults and no credentials.
    pub fn new(endpoint: impl Into<String>) -> CustomTopicConfig {
        CustomTopicConfig {
            endpoint: endpoint.into(),
            sas_key: None,
            sas_token_key: None,
            sas_token_ttl_seconds: default_sas_token_ttl_seconds(),
            max_events_per_batch: default_max_events_per_batch(),
            preferred_batch_size_in_kilobytes: default_preferred_batch_size_in_kilobytes(),
            timeout_seconds: default_timeout_seconds(),
            max_concurrency: default_max_concurrency(),
        }
    }

    /// Checks every field, naming the first one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        self.events_url()?;
        match (&self.sas_key, &self.sas_token_key) {
            (Some(_), Some(_)) => {
                return Err(ConfigProblem::new("sasKey", "give sasKey or sasTokenKey, not both"));
            }
            (None, None) => {
                return Err(ConfigProblem::new(
                    "sasKey",
                    "one of sasKey and sasTokenKey is required",
                ));
            }
            (Some(key), None) => {
                if key.is_empty() || reqwest::header::HeaderValue::from_str(key).is_err() {
                    return Err(ConfigProblem::new("sasKey", "must be a topic access key"));
                }
            }
            (None, Some(_)) => {
                self.signing_key()?;
            }
        }
        check_range("sasTokenTtlSeconds", self.sas_token_ttl_seconds, 60..=86_400)?;
        check_range("maxEventsPerBatch", self.max_events_per_batch, 1..=5000)?;
        check_range(
            "preferredBatchSizeInKilobytes",
            self.preferred_batch_size_in_kilobytes,
            1..=1024,
        )?;
        check_range("timeoutSeconds", self.timeout_seconds, 1..=300)?;
        check_range("maxConcurrency", self.max_concurrency, 1..=1024)
    }

    /// The URL events are POSTed to.
    pub fn events_url(&self) -> Result<reqwest::Url, ConfigProblem> {
        let problem = |text: String| ConfigProblem::new("endpoint", text);
        let mut url =
            reqwest::Url::parse(&self.endpoint).map_err(|e| problem(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(problem(format!("must be an https:// URL, found {}://", url.scheme())));
        }
        let path = url.path().trim_end_matches('/').to_string();
        if !path.ends_with("/api/events") {
            url.set_path(&format!("{path}/api/events"));
        }
        if !url.query_pairs().any(|(name, _)| name == "api-version") {
            url.query_pairs_mut().append_pair("api-version", API_VERSION);
        }
        Ok(url)
    }

    /// The decoded `sasTokenKey`, if one is set.
    pub(crate) fn signing_key(&self) -> Result<Option<Vec<u8>>, ConfigProblem> {
        use base64::Engine as _;
        let Some(key) = &self.sas_token_key else { return Ok(None) };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| ConfigProblem::new("sasTokenKey", "must be a base64 access key"))?;
        if decoded.is_empty() {
            return Err(ConfigProblem::new("sasTokenKey", "must be a base64 access key"));
        }
        Ok(Some(decoded))
    }
}

impl std::fmt::Debug for CustomTopicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |value: &Option<String>| value.as_ref().map(|_| "<secret>");
        f.debug_struct("CustomTopicConfig")
            .field("endpoint", &self.endpoint)
            .field("sas_key", &secret(&self.sas_key))
            .field("sas_token_key", &secret(&self.sas_token_key))
            .field("sas_token_ttl_seconds", &self.sas_token_ttl_seconds)
            .field("max_events_per_batch", &self.max_events_per_batch)
            .field("preferred_batch_size_in_kilobytes", &self.preferred_batch_size_in_kilobytes)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("max_concurrency", &self.max_concurrency)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(tag = "endpointType")]
    enum Destination {
        CustomTopic(CustomTopicConfig),
    }

    fn with_key(endpoint: &str) -> CustomTopicConfig {
        CustomTopicConfig { sas_key: Some("k".into()), ..CustomTopicConfig::new(endpoint) }
    }

    #[test]
    fn deserializes_inside_a_tagged_enum_and_refuses_unknown_fields() {
        let Destination::CustomTopic(config) = toml::from_str(
            "endpointType = \"CustomTopic\"\nendpoint = \"https://t.westus2-1.eventgrid.azure.net\"\nsasKey = \"k\"\n",
        )
        .unwrap();
        assert_eq!(config, with_key("https://t.westus2-1.eventgrid.azure.net"));
        assert_eq!(config.validate(), Ok(()));
        assert!(!format!("{config:?}").contains("\"k\""));
        let error = toml::from_str::<Destination>(
            "endpointType = \"CustomTopic\"\nendpoint = \"https://t\"\nsasKeyName = \"k\"\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("sasKeyName"), "{error}");
    }

    #[test]
    fn events_url_accepts_either_form() {
        let url = |endpoint: &str| with_key(endpoint).events_url().unwrap().to_string();
        let expected = "https://t.westus2-1.eventgrid.azure.net/api/events?api-version=2018-01-01";
        assert_eq!(url("https://t.westus2-1.eventgrid.azure.net"), expected);
        assert_eq!(url("https://t.westus2-1.eventgrid.azure.net/"), expected);
        assert_eq!(url("https://t.westus2-1.eventgrid.azure.net/api/events"), expected);
        assert_eq!(url(expected), expected);
    }

    #[test]
    fn exactly_one_credential() {
        let mut config = CustomTopicConfig::new("https://t");
        assert_eq!(config.validate().unwrap_err().field, "sasKey");
        config.sas_key = Some("k".into());
        config.sas_token_key = Some("a2V5".into());
        assert_eq!(config.validate().unwrap_err().field, "sasKey");
        config.sas_key = None;
        assert_eq!(config.validate(), Ok(()));
        config.sas_token_key = Some("not base64!".into());
        assert_eq!(config.validate().unwrap_err().field, "sasTokenKey");
    }

    #[test]
    fn ranges() {
        let mut config = with_key("https://t");
        config.max_events_per_batch = 5001;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "maxEventsPerBatch: must be 1 to 5000, found 5001"
        );
        let mut config = with_key("https://t");
        config.sas_token_ttl_seconds = 10;
        assert_eq!(config.validate().unwrap_err().field, "sasTokenTtlSeconds");
        let mut config = with_key("ws://t");
        config.timeout_seconds = 0;
        assert_eq!(config.validate().unwrap_err().field, "endpoint");
    }
}
