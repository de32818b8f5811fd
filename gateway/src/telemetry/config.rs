//! The `[metrics]` table: whether the gateway keeps metrics, and where a scraper without the
//! admin token reads them.

use std::net::SocketAddr;

use serde::Deserialize;

/// The `[metrics]` table. Without it metrics are on and served only on the management
/// listener, at `GET /metrics` behind the admin token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Whether the Prometheus recorder is installed. Default `true`; `false` drops every count
    /// (for measuring what they cost) and `/metrics` answers 404.
    pub enabled: bool,
    /// A listener of its own, plain HTTP, serving only `GET /metrics` without a credential, for
    /// a scraper that must not hold the admin token. None by default. It carries no secrets but
    /// does reveal load and configuration names: bind it to loopback or a monitoring network
    /// (e.g. `"127.0.0.1:9464"`, Prometheus' customary exporter port range).
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        MetricsConfig { enabled: true, listen: None }
    }
}
