//! The gateway's configuration: composed of each module's own config struct, loaded once from
//! TOML, validated once, and passed down explicitly.
//!
//! Every field has a default, so an empty file (or no file) is a working configuration: MQTT on
//! 127.0.0.1:1883 with anonymous clients allowed.

use std::path::Path;

use serde::Deserialize;

pub use crate::broker::config::MqttConfig;
pub use crate::server::config::{
    ClientAuth, ListenerConfig, ListenerKind, ServerConfig, TlsVersion,
};
pub use crate::store::StoreConfig;

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
    /// A field of one `[[server.listeners]]` entry, shown as `server.listeners[INDEX].FIELD`.
    #[error("invalid config: server.listeners[{index}].{field}: {problem}")]
    Listener { index: usize, field: &'static str, problem: String },
}

impl ConfigError {
    /// An invalid field of the listener at `index`.
    pub fn listener(index: usize, field: &'static str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Listener { index, field, problem: problem.into() }
    }
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
        self.mqtt.validate()
    }
}

#[cfg(test)]
mod tests;
