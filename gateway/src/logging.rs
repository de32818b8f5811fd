//! The process's log: the `[log]` table and the `tracing` subscriber it asks for.
//!
//! `text` (the default) writes tracing-subscriber's human-readable lines; `json` writes one
//! JSON object per line (`timestamp`, `level`, `target`, `fields`), which log shippers read
//! without parsing prose. Either way the log goes to stderr and `RUST_LOG` filters it, the
//! diagnostic categories by target ([`crate::diagnostics`]).

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A `--log-format` that is neither `text` nor `json`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a log format (text or json)")]
pub struct UnknownLogFormat(String);

impl std::str::FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(text: &str) -> Result<LogFormat, UnknownLogFormat> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownLogFormat(other.into())),
        }
    }
}

/// The `[log]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json` (one object per line); `--log-format` overrides it.
    pub format: LogFormat,
    /// Diagnostic events per second and category before the rest are suppressed and counted
    /// (also the burst); 0 logs every one.
    pub diagnostic_events_per_second: u32,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            format: LogFormat::Text,
            diagnostic_events_per_second: crate::diagnostics::limiter::DEFAULT_RATE,
        }
    }
}

/// Installs the process's subscriber: `format` on stderr, filtered by `RUST_LOG` (`info` when
/// it is unset or invalid).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
