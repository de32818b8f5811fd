//! The gateway's configuration: composed of each module's own config struct, loaded once from
//! TOML, validated once, and passed down explicitly.
//!
//! Every field has a default, so an empty file (or no file) is a working configuration: MQTT on
//! 127.0.0.1:1883 with anonymous clients allowed and everything authorized.
//!
//! The namespace's resources sit at the top level, in the TOML shape of
//! [`crate::access::model`] (`[namespace]`, `[clients.NAME]`, `[clientGroups.NAME]`,
//! `[topicSpaces.NAME]`, `[permissionBindings.NAME]`, `[caCertificates.NAME]`), beside
//! `[access.limits]`, `[auth]` and `[management]`. Declaring any client, group, topic space,
//! binding or CA certificate, or an `[auth]` or `[management]` table, turns access control on
//! (see [`crate::namespace`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::access::model::{
    CaCertificateProperties, ClientGroupProperties, ClientProperties, Limits, NamespaceSettings,
    PermissionBindingProperties, Resources, TopicSpaceProperties, ValidationError,
};
pub use crate::auth::AuthConfig;

pub use crate::broker::config::MqttConfig;
pub use crate::dataplane::DataPlaneConfig;
pub use crate::logging::{LogConfig, LogFormat};
pub use crate::mgmt::ManagementConfig;
pub use crate::routing::config::{RoutingConfig, SystemTopicConfig, TopicConfig};
pub use crate::server::config::{
    ClientAuth, ListenerConfig, ListenerKind, ServerConfig, TlsVersion,
};
pub use crate::store::StoreConfig;
pub use crate::telemetry::MetricsConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners and process-wide settings.
    pub server: ServerConfig,
    /// MQTT protocol limits and session policy.
    pub mqtt: MqttConfig,
    /// Where durable state lives.
    pub store: StoreConfig,
    /// `[log]`: the log's format and the diagnostic events' rate limit.
    pub log: LogConfig,
    /// `[access]`: limits on the namespace's resources.
    pub access: AccessConfig,
    /// `[auth]`: the authentication methods. Its presence turns access control on.
    pub auth: Option<AuthConfig>,
    /// `[management]`: the REST management API; off unless the table is present, and its
    /// presence turns access control on.
    pub management: Option<ManagementConfig>,
    /// `[http]`: the data-plane HTTP API (namespace topic publish, HTTP publish into MQTT,
    /// retained messages); off unless the table is present.
    pub http: Option<DataPlaneConfig>,
    /// `[metrics]`: Prometheus metrics; on by default, served on the management listener and,
    /// with `listen`, on a listener of their own.
    pub metrics: MetricsConfig,
    /// `[namespace]`: namespace-wide settings.
    pub namespace: NamespaceSettings,
    /// `[clients.NAME]`: registered clients.
    pub clients: BTreeMap<String, ClientProperties>,
    /// `[clientGroups.NAME]`: client groups.
    #[serde(rename = "clientGroups")]
    pub client_groups: BTreeMap<String, ClientGroupProperties>,
    /// `[topicSpaces.NAME]`: topic spaces.
    #[serde(rename = "topicSpaces")]
    pub topic_spaces: BTreeMap<String, TopicSpaceProperties>,
    /// `[permissionBindings.NAME]`: permission bindings.
    #[serde(rename = "permissionBindings")]
    pub permission_bindings: BTreeMap<String, PermissionBindingProperties>,
    /// `[caCertificates.NAME]`: CA certificates client certificates may chain to.
    #[serde(rename = "caCertificates")]
    pub ca_certificates: BTreeMap<String, CaCertificateProperties>,
    /// `[routing]`: which messages become events for which namespace topic, and enrichments.
    pub routing: RoutingConfig,
    /// `[topics.NAME]`: namespace topics and their event subscriptions.
    pub topics: BTreeMap<String, TopicConfig>,
    /// `[cluster]`: run as one node of a cluster that shares its state through NATS JetStream.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// `[systemTopic]`: subscriptions to lifecycle events.
    #[serde(rename = "systemTopic")]
    pub system_topic: Option<SystemTopicConfig>,
}

/// The `[access]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// `[access.limits]`: how many resources the namespace may hold (Event Grid's numbers by
    /// default). The management API refuses a change past them.
    pub limits: Limits,
}

/// A configuration that could not be loaded; the message names the file, the field and the
/// problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    /// An invalid `[auth]` table.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthConfigError),
    /// A namespace resource declared in the file, e.g. `clientGroups[edge].query: ...`.
    #[error("invalid config: {0}")]
    Resources(#[from] ValidationError),
    /// A routing field, e.g. `topics.telemetry.eventSubscriptions.hook.maxDeliveryCount: ...`.
    #[error("invalid config: {0}")]
    Routing(#[from] crate::routing::config::RoutingConfigError),
    /// A field of `[server]`, e.g. `server.listeners[1].path: ...`.
    #[error("invalid config: {0}")]
    Server(#[from] crate::server::config::ServerConfigError),
    /// A field of `[store]`.
    #[error("invalid config: {0}")]
    Store(#[from] crate::store::StoreConfigError),
    /// A field of `[mqtt]`.
    #[error("invalid config: {0}")]
    Mqtt(#[from] crate::broker::config::MqttConfigError),
    /// A field of `[management]`.
    #[error("invalid config: {0}")]
    Management(#[from] crate::mgmt::ManagementConfigError),
    /// A field of `[http]`.
    #[error("invalid config: {0}")]
    DataPlane(#[from] crate::dataplane::DataPlaneConfigError),
    /// A field of `[cluster]`.
    #[error("invalid config: {0}")]
    Cluster(#[from] crate::cluster::ClusterConfigError),
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Config::parse(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => {
                ConfigError::Parse { path: path.display().to_string(), message }
            }
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: "<string>".into(),
            message: error.to_string().trim_end().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that serde's types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.store.validate()?;
        self.mqtt.validate()?;
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        if let Some(management) = &self.management {
            management.validate()?;
        }
        if let Some(http) = &self.http {
            http.validate()?;
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        self.resources().validate(&self.access.limits)?;
        // Checking the routing section is planning it; the router builds from the plan that
        // `routing_section().plan()` gives again at start-up and on a reload.
        self.routing_section().plan()?;
        Ok(())
    }

    /// The routing part of the file: `[routing]`, `[topics.NAME]` and `[systemTopic]`.
    pub fn routing_section(&self) -> crate::routing::config::RoutingSection<'_> {
        crate::routing::config::RoutingSection {
            routing: &self.routing,
            topics: &self.topics,
            system_topic: self.system_topic.as_ref(),
            runtime_topics: self.management.is_some(),
        }
    }

    /// The namespace resources the file declares.
    pub fn resources(&self) -> Resources {
        Resources {
            namespace: self.namespace.clone(),
            clients: self.clients.clone(),
            client_groups: self.client_groups.clone(),
            topic_spaces: self.topic_spaces.clone(),
            permission_bindings: self.permission_bindings.clone(),
            ca_certificates: self.ca_certificates.clone(),
        }
    }

    /// What the namespace is built from: the declared resources, `[access.limits]`, `[auth]`,
    /// and whether access control applies.
    pub fn namespace_section(&self) -> crate::namespace::NamespaceSection {
        crate::namespace::NamespaceSection {
            resources: self.resources(),
            limits: self.access.limits.clone(),
            auth: self.auth.clone(),
            access_control: self.access_control_applies(),
        }
    }

    /// Whether the file turns access control on: it declares a registry resource, or has an
    /// `[auth]` or `[management]` table. (Resources stored by the management API turn it on
    /// too; see [`crate::namespace`].)
    pub fn access_control_applies(&self) -> bool {
        self.auth.is_some()
            || self.management.is_some()
            || !self.clients.is_empty()
            || !self.client_groups.is_empty()
            || !self.topic_spaces.is_empty()
            || !self.permission_bindings.is_empty()
            || !self.ca_certificates.is_empty()
    }
}

#[cfg(test)]
mod tests;
