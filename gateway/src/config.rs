//! The gateway's configuration: composed of each module's own config struct, loaded once from
//! TOML, validated once, and passed down explicitly.
//!
//! Every field has a default, so an empty file (or no file) is a working configuration: MQTT on
//! 127.0.0.1:1883 with anonymous clients allowed.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

pub use crate::broker::config::MqttConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners and process-wide settings.
    pub server: ServerConfig,
    /// MQTT protocol limits and session policy.
    pub mqtt: MqttConfig,
}

/// Where gridmq listens and how it shuts down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The plain-TCP MQTT listener. Default `127.0.0.1:1883`: loopback only, because the
    /// embedded default admits anonymous clients.
    pub listen: SocketAddr,
    /// Seconds that graceful shutdown may take before remaining connections are dropped.
    pub shutdown_grace_secs: u64,
    /// Most concurrent connections; further connections wait in the accept backlog.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            shutdown_grace_secs: 10,
            max_connections: 100_000,
        }
    }
}

/// A configuration that could not be loaded; the message names the file, the field and the
/// problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config: {field}: {problem}")]
    Invalid { field: &'static str, problem: String },
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
        if self.server.max_connections == 0 {
            return Err(ConfigError::Invalid {
                field: "server.max_connections",
                problem: "must be at least 1".into(),
            });
        }
        self.mqtt.validate()
    }
}

#[cfg(test)]
mod tests;
