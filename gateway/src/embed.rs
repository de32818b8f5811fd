//! A whole gateway in-process, for tests of routing: from a config string, on ephemeral
//! loopback ports, with nothing on disk unless asked.
//!
//! ```no_run
//! # async fn example() -> Result<(), gateway::StartError> {
//! let gateway = gateway::embed::Builder::from_toml(r#"
//!     [[routing.routes]]
//!     topic = "telemetry"
//!     [topics.telemetry.eventSubscriptions.hook.destination]
//!     endpointType = "WebHook"
//!     endpointUrl = "http://127.0.0.1:8000/hook"
//! "#).expect("valid config").start().await?;
//! let mqtt = gateway.mqtt_addr(); // connect an MQTT client here
//! gateway.shutdown().await;
//! # Ok(()) }
//! ```

use std::path::PathBuf;

use crate::config::{Config, ConfigError};
use crate::gateway::{Gateway, StartError};
use crate::hooks::Hooks;

/// Prepares an embedded gateway.
#[derive(Debug, Clone)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// Parses `text` as a gridmq config file (the same format as `gridmq serve --config`).
    /// Every listener, and the management API, is moved to `127.0.0.1` on a port the system
    /// picks; state is kept in memory.
    pub fn from_toml(text: &str) -> Result<Builder, ConfigError> {
        Ok(Builder::from_config(Config::parse(text)?))
    }

    /// As [`Builder::from_toml`], from a config value.
    pub fn from_config(mut config: Config) -> Builder {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        for listener in &mut config.server.listeners {
            listener.address = loopback;
        }
        if let Some(management) = &mut config.management {
            management.listen = loopback;
        }
        if let Some(listen) = &mut config.metrics.listen {
            *listen = loopback;
        }
        config.store.in_memory = true;
        Builder { config }
    }

    /// Keeps state in `dir` instead of memory, so a test can restart the gateway over it.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.config.store.in_memory = false;
        self.config.store.data_dir = dir.into();
        self
    }

    /// Starts the gateway; its addresses are on the returned [`Gateway`]
    /// ([`Gateway::mqtt_addr`], [`Gateway::management_addr`]), and
    /// [`Gateway::shutdown`] stops it.
    pub async fn start(self) -> Result<Gateway, StartError> {
        Gateway::start(self.config, Hooks::allow_all()).await
    }
}
