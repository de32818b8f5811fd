//! An Event Hubs destination's configuration, in Event Grid's field names where it has them.
//!
//! The gateway embeds it as the destination of an event subscription, e.g.
//!
//! ```toml
//! [subscriptions.destination]
//! endpointType = "EventHub"
//! connectionString = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=...;EntityPath=telemetry"
//!
//! [[subscriptions.destination.deliveryAttributeMappings]]
//! name = "PartitionKey"
//! type = "Dynamic"
//! sourceField = "subject"
//! ```
//!
//! The hub is named either by a SAS connection string (with `EntityPath`, or with
//! `eventHubName` beside a namespace-level string), or by `fullyQualifiedNamespace` +
//! `eventHubName` + `sharedAccessKeyName` + `sharedAccessKey`. Microsoft Entra ID sign-in
//! (managed identity, service principal) is not supported: the SDK takes any `TokenCredential`,
//! but the implementations live in `azure_identity`, which this crate does not pull in.

use azure_messaging_eventhubs::ConnectionString;
use serde::Deserialize;

use crate::config::{ConfigProblem, check_range};
use crate::delivery_property::{self, DeliveryProperty};

/// The delivery property that sets each batch's partition key instead of becoming an
/// application property, as Event Grid's Event Hubs handler does.
pub const PARTITION_KEY: &str = "PartitionKey";

/// Event Hubs' largest message (Premium and Dedicated tiers; Standard allows 1 MB too).
pub const MAX_BATCH_BYTES: u64 = 1024 * 1024;

/// An Event Hubs destination.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventHubsConfig {
    /// A SAS connection string: `Endpoint=sb://NS.servicebus.windows.net/;
    /// SharedAccessKeyName=..;SharedAccessKey=..;EntityPath=hub` (or a
    /// `SharedAccessSignature=..` instead of the key, which cannot be renewed). Secret.
    #[serde(default)]
    pub connection_string: Option<String>,
    /// The namespace's host name, `NS.servicebus.windows.net`, when no connection string is
    /// given.
    #[serde(default)]
    pub fully_qualified_namespace: Option<String>,
    /// The event hub; required with `fullyQualifiedNamespace`, and with a connection string
    /// that has no `EntityPath` (when both name it, they must agree).
    #[serde(default)]
    pub event_hub_name: Option<String>,
    /// The SAS policy's name, with `fullyQualifiedNamespace`.
    #[serde(default)]
    pub shared_access_key_name: Option<String>,
    /// The SAS policy's key, with `fullyQualifiedNamespace`. Secret.
    #[serde(default)]
    pub shared_access_key: Option<String>,
    /// Where to open the AMQP connection instead of the namespace (`amqp://host:port` or
    /// `amqps://host:port`): a proxy, or a local fake in tests. The namespace stays the AMQP
    /// host name and the tokens' audience.
    #[serde(default)]
    pub custom_endpoint: Option<String>,
    /// The most bytes one batch message may take, 1024 to 1048576; the hub's own limit (the
    /// sending link's `max-message-size`) applies when it is lower, and alone when this is
    /// unset.
    #[serde(default)]
    pub max_batch_size_in_bytes: Option<u64>,
    /// How long one send may take, connecting and signing in included, 1 to 300 seconds; past
    /// it the attempt failed as `TimedOut`. Default 30, Event Grid's.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// Most batches in flight at once to this hub, 1 to 1024. Default 16. They share one AMQP
    /// connection and link; this bounds how much of the queue one hub can have in the air.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Application properties on every event, at most 10; one named `PartitionKey` sets the
    /// partition key of the event's batch instead.
    #[serde(default)]
    pub delivery_attribute_mappings: Vec<DeliveryProperty>,
}

/// Where the sink connects and how it signs in, from the configuration.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// A connection string the SDK opens (built from the key fields when none was given).
    pub connection_string: String,
    pub namespace: String,
    pub event_hub: String,
}

fn default_timeout_seconds() -> u64 {
    30
}

fn default_max_concurrency() -> usize {
    16
}

impl EventHubsConfig {
    /// A configuration with defaults for everything but the connection string.
    pub fn with_connection_string(connection_string: impl Into<String>) -> EventHubsConfig {
        EventHubsConfig {
            connection_string: Some(connection_string.into()),
            fully_qualified_namespace: None,
            event_hub_name: None,
            shared_access_key_name: None,
            shared_access_key: None,
            custom_endpoint: None,
            max_batch_size_in_bytes: None,
            timeout_seconds: default_timeout_seconds(),
            max_concurrency: default_max_concurrency(),
            delivery_attribute_mappings: Vec::new(),
        }
    }

    /// Checks every field, naming the first one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        self.target()?;
        if let Some(endpoint) = &self.custom_endpoint {
            check_endpoint(endpoint)?;
        }
        if let Some(bytes) = self.max_batch_size_in_bytes {
            check_range("maxBatchSizeInBytes", bytes, 1024..=MAX_BATCH_BYTES)?;
        }
        check_range("timeoutSeconds", self.timeout_seconds, 1..=300)?;
        check_range("maxConcurrency", self.max_concurrency, 1..=1024)?;
        delivery_property::validate_all(&self.delivery_attribute_mappings)
    }

    /// The hub and how to reach it.
    pub(crate) fn target(&self) -> Result<Target, ConfigProblem> {
        match (&self.connection_string, &self.fully_qualified_namespace) {
            (Some(_), Some(_)) => Err(ConfigProblem::new(
                "fullyQualifiedNamespace",
                "give either connectionString or fullyQualifiedNamespace, not both",
            )),
            (Some(text), None) => self.connection_string_target(text),
            (None, Some(namespace)) => self.key_target(namespace),
            (None, None) => Err(ConfigProblem::new(
                "connectionString",
                "one of connectionString and fullyQualifiedNamespace is required",
            )),
        }
    }

    fn connection_string_target(&self, text: &str) -> Result<Target, ConfigProblem> {
        const FIELD: &str = "connectionString";
        for (field, value) in [
            ("sharedAccessKeyName", &self.shared_access_key_name),
            ("sharedAccessKey", &self.shared_access_key),
        ] {
            if value.is_some() {
                return Err(ConfigProblem::new(
                    field,
                    "belongs with fullyQualifiedNamespace; a connection string carries its key",
                ));
            }
        }
        // The SDK's parser; its messages never repeat the key.
        let parsed: ConnectionString = text.parse().map_err(|error| {
            ConfigProblem::new(FIELD, format!("not an Event Hubs connection string: {error}"))
        })?;
        if parsed.shared_access_key.is_none() && parsed.shared_access_signature.is_none() {
            return Err(ConfigProblem::new(
                FIELD,
                "needs SharedAccessKeyName and SharedAccessKey, or SharedAccessSignature",
            ));
        }
        let event_hub = match (&parsed.entity_path, &self.event_hub_name) {
            (Some(path), Some(name)) if path != name => {
                return Err(ConfigProblem::new(
                    "eventHubName",
                    format!("{name:?} differs from the connection string's EntityPath {path:?}"),
                ));
            }
            (Some(path), _) => path.clone(),
            (None, Some(name)) => name.clone(),
            (None, None) => {
                return Err(ConfigProblem::new(
                    "eventHubName",
                    "required when the connection string has no EntityPath",
                ));
            }
        };
        check_name("eventHubName", &event_hub)?;
        Ok(Target {
            connection_string: text.to_owned(),
            namespace: parsed.fully_qualified_namespace,
            event_hub,
        })
    }

    fn key_target(&self, namespace: &str) -> Result<Target, ConfigProblem> {
        check_host("fullyQualifiedNamespace", namespace)?;
        let Some(event_hub) = &self.event_hub_name else {
            return Err(ConfigProblem::new(
                "eventHubName",
                "required with fullyQualifiedNamespace",
            ));
        };
        check_name("eventHubName", event_hub)?;
        let (Some(key_name), Some(key)) = (&self.shared_access_key_name, &self.shared_access_key)
        else {
            let field = if self.shared_access_key_name.is_none() {
                "sharedAccessKeyName"
            } else {
                "sharedAccessKey"
            };
            return Err(ConfigProblem::new(
                field,
                "required with fullyQualifiedNamespace (Entra ID sign-in is not supported)",
            ));
        };
        for (field, value) in [("sharedAccessKeyName", key_name), ("sharedAccessKey", key)] {
            if value.is_empty() || value.contains(';') {
                return Err(ConfigProblem::new(field, "must be non-empty and without ';'"));
            }
        }
        Ok(Target {
            connection_string: format!(
                "Endpoint=sb://{namespace}/;SharedAccessKeyName={key_name};\
                 SharedAccessKey={key};EntityPath={event_hub}"
            ),
            namespace: namespace.to_owned(),
            event_hub: event_hub.clone(),
        })
    }

    /// The `PartitionKey` delivery property, if any.
    pub(crate) fn partition_key(&self) -> Option<&DeliveryProperty> {
        self.delivery_attribute_mappings
            .iter()
            .find(|property| property.name().eq_ignore_ascii_case(PARTITION_KEY))
    }

    /// The delivery properties that become application properties.
    pub(crate) fn application_properties(&self) -> impl Iterator<Item = &DeliveryProperty> {
        self.delivery_attribute_mappings
            .iter()
            .filter(|property| !property.name().eq_ignore_ascii_case(PARTITION_KEY))
    }
}

impl std::fmt::Debug for EventHubsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |value: &Option<String>| value.as_ref().map(|_| "<secret>");
        f.debug_struct("EventHubsConfig")
            .field("connection_string", &secret(&self.connection_string))
            .field("fully_qualified_namespace", &self.fully_qualified_namespace)
            .field("event_hub_name", &self.event_hub_name)
            .field("shared_access_key_name", &self.shared_access_key_name)
            .field("shared_access_key", &secret(&self.shared_access_key))
            .field("custom_endpoint", &self.custom_endpoint)
            .field("max_batch_size_in_bytes", &self.max_batch_size_in_bytes)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("max_concurrency", &self.max_concurrency)
            .field("delivery_attribute_mappings", &self.delivery_attribute_mappings)
            .finish()
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), ConfigProblem> {
    const FIELD: &str = "customEndpoint";
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| ConfigProblem::new(FIELD, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "amqp" | "amqps") {
        return Err(ConfigProblem::new(
            FIELD,
            format!("must be an amqp:// or amqps:// URL, found {}://", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigProblem::new(FIELD, "must name a host"));
    }
    Ok(())
}

fn check_host(field: &str, host: &str) -> Result<(), ConfigProblem> {
    let valid = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !host.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(ConfigProblem::new(field, "must be a host name such as NS.servicebus.windows.net"))
    }
}

/// Event hub names: letters, digits, `.`, `-`, `_`, 1 to 256 characters.
fn check_name(field: &str, name: &str) -> Result<(), ConfigProblem> {
    let valid = (1..=256).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if valid {
        Ok(())
    } else {
        Err(ConfigProblem::new(field, format!("{name:?} is not an event hub name")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECTION_STRING: &str = "Endpoint=sb://ns.servicebus.windows.net/;\
        SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0;EntityPath=telemetry";

    /// The gateway's shape: the destination is an internally tagged enum.
    #[derive(Debug, Deserialize)]
    #[serde(tag = "endpointType")]
    enum Destination {
        EventHub(EventHubsConfig),
        #[allow(dead_code)]
        Other {
            x: u32,
        },
    }

    fn parse(text: &str) -> EventHubsConfig {
        let destination: Destination = toml::from_str(text).unwrap();
        let Destination::EventHub(config) = destination else { panic!("{destination:?}") };
        config
    }

    #[test]
    fn defaults_inside_a_tagged_enum() {
        let config = parse(&format!(
            "endpointType = \"EventHub\"\nconnectionString = \"{CONNECTION_STRING}\"\n"
        ));
        assert_eq!(config, EventHubsConfig::with_connection_string(CONNECTION_STRING));
        assert_eq!(config.validate(), Ok(()));
        let target = config.target().unwrap();
        assert_eq!(target.namespace, "ns.servicebus.windows.net");
        assert_eq!(target.event_hub, "telemetry");
    }

    #[test]
    fn every_field_in_camel_case() {
        let config = parse(
            r#"
            endpointType = "EventHub"
            fullyQualifiedNamespace = "ns.servicebus.windows.net"
            eventHubName = "telemetry"
            sharedAccessKeyName = "send"
            sharedAccessKey = "c2VjcmV0"
            customEndpoint = "amqp://127.0.0.1:5672"
            maxBatchSizeInBytes = 262144
            timeoutSeconds = 5
            maxConcurrency = 4
            [[deliveryAttributeMappings]]
            name = "PartitionKey"
            type = "Dynamic"
            sourceField = "subject"
            [[deliveryAttributeMappings]]
            name = "site"
            type = "Static"
            value = "plant 7"
            "#,
        );
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.max_batch_size_in_bytes, Some(262144));
        assert_eq!(config.timeout_seconds, 5);
        assert_eq!(config.max_concurrency, 4);
        assert_eq!(config.partition_key().map(DeliveryProperty::name), Some("PartitionKey"));
        let names: Vec<&str> = config.application_properties().map(|p| p.name()).collect();
        assert_eq!(names, ["site"]);
        let target = config.target().unwrap();
        assert_eq!(target.event_hub, "telemetry");
        assert_eq!(
            target.connection_string,
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;\
             SharedAccessKey=c2VjcmV0;EntityPath=telemetry"
        );
        // Secrets stay out of debug output.
        let text = format!("{config:?}");
        assert!(!text.contains("c2VjcmV0"), "{text}");
    }

    #[test]
    fn unknown_fields_are_refused_inside_a_tagged_enum() {
        let error = toml::from_str::<Destination>(&format!(
            "endpointType = \"EventHub\"\nconnectionString = \"{CONNECTION_STRING}\"\nmaxBatchSize = 3\n"
        ))
        .unwrap_err();
        assert!(error.to_string().contains("maxBatchSize"), "{error}");
    }

    #[test]
    fn validation_names_the_field() {
        let check = |edit: &dyn Fn(&mut EventHubsConfig), expected: &str| {
            let mut config = EventHubsConfig::with_connection_string(CONNECTION_STRING);
            edit(&mut config);
            let problem = config.validate().unwrap_err();
            assert!(problem.to_string().starts_with(expected), "{problem} / {expected}");
        };
        check(&|c| c.connection_string = None, "connectionString: one of");
        check(&|c| c.connection_string = Some("nonsense".into()), "connectionString: not an");
        check(
            &|c| c.connection_string = Some("Endpoint=sb://ns.servicebus.windows.net/".into()),
            "connectionString: not an Event Hubs connection string: invalid connection string, \
             missing shared access key or signature",
        );
        check(&|c| c.event_hub_name = Some("other".into()), "eventHubName: \"other\" differs");
        check(
            &|c| c.fully_qualified_namespace = Some("ns.servicebus.windows.net".into()),
            "fullyQualifiedNamespace: give either",
        );
        check(&|c| c.shared_access_key = Some("k".into()), "sharedAccessKey: belongs with");
        check(
            &|c| c.custom_endpoint = Some("http://127.0.0.1:1".into()),
            "customEndpoint: must be an amqp:// or amqps:// URL, found http://",
        );
        check(&|c| c.custom_endpoint = Some("nope".into()), "customEndpoint: not a URL");
        check(
            &|c| c.max_batch_size_in_bytes = Some(2 * MAX_BATCH_BYTES),
            "maxBatchSizeInBytes: must be 1024 to 1048576, found 2097152",
        );
        check(&|c| c.timeout_seconds = 0, "timeoutSeconds: must be 1 to 300, found 0");
        check(&|c| c.max_concurrency = 0, "maxConcurrency: must be 1 to 1024, found 0");
        check(
            &|c| {
                c.delivery_attribute_mappings = vec![DeliveryProperty::Static {
                    name: "aeg-x".into(),
                    value: "1".into(),
                    is_secret: false,
                }]
            },
            "deliveryAttributeMappings[0].name",
        );
        // A namespace-level string names the hub through eventHubName.
        let mut config = EventHubsConfig::with_connection_string(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a;SharedAccessKey=b",
        );
        assert_eq!(config.validate().unwrap_err().field, "eventHubName");
        config.event_hub_name = Some("telemetry".into());
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn namespace_fields_need_a_key() {
        let mut config = EventHubsConfig::with_connection_string("");
        config.connection_string = None;
        config.fully_qualified_namespace = Some("ns.servicebus.windows.net".into());
        assert_eq!(config.validate().unwrap_err().field, "eventHubName");
        config.event_hub_name = Some("telemetry".into());
        let problem = config.validate().unwrap_err();
        assert_eq!(problem.field, "sharedAccessKeyName");
        assert!(problem.problem.contains("Entra ID"), "{problem}");
        config.shared_access_key_name = Some("send".into());
        assert_eq!(config.validate().unwrap_err().field, "sharedAccessKey");
        config.shared_access_key = Some("k".into());
        assert_eq!(config.validate(), Ok(()));
        config.fully_qualified_namespace = Some("sb://ns/".into());
        assert_eq!(config.validate().unwrap_err().field, "fullyQualifiedNamespace");
    }
}
