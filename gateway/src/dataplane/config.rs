//! The `[http]` table: where the data-plane HTTP API listens, the namespace access keys it
//! accepts, and its request limits.

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;

use crate::server::config::{ServerConfigError, TlsVersion};
use crate::server::https::check_pair;

/// Event Grid's limit on one event and on one publish request: 1 MB.
pub const EVENT_GRID_MAX_BYTES: usize = 1024 * 1024;

/// Event Grid's limit on the events of one publish request.
pub const EVENT_GRID_MAX_EVENTS: usize = 1000;

/// An invalid field of the `[http]` table; the message names it, e.g. `http.max_event_bytes`.
#[derive(Debug, thiserror::Error)]
pub enum DataPlaneConfigError {
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    /// One access key, found when the data plane starts.
    #[error("http.access_keys[{index}]: must be non-empty base64")]
    AccessKey { index: usize },
    /// `certificate` without `private_key`, or the other way round.
    #[error(transparent)]
    Tls(#[from] ServerConfigError),
}

/// The `[http]` table. Its presence starts the data-plane API; every request but `/healthz`
/// needs a credential (an access key, a SAS token signed with one, or the management API's
/// admin token), so with no access keys and no `[management]` only `/healthz` answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataPlaneConfig {
    /// Where the API listens. Loopback by default. Plain HTTP unless `certificate` and
    /// `private_key` are set; beyond loopback, serve HTTPS (or put a TLS proxy in front), since
    /// keys and tokens travel in headers.
    pub listen: SocketAddr,
    /// The server certificate chain, PEM, leaf first. With `private_key`, the listener speaks
    /// HTTPS only. Relative paths are relative to gridmq's working directory.
    pub certificate: Option<PathBuf>,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1); required with `certificate`.
    pub private_key: Option<PathBuf>,
    /// With HTTPS, the oldest TLS version accepted, `"1.2"` or `"1.3"`. Default `"1.2"`.
    pub min_tls_version: TlsVersion,
    /// Namespace access keys, base64 as Event Grid shows them: sent as is in `aeg-sas-key`, or
    /// used (decoded) to sign SAS tokens. Two keys allow rotating one while the other is in use.
    pub access_keys: Vec<String>,
    /// The largest request body accepted, in bytes; a larger one gets 413.
    pub max_request_bytes: usize,
    /// The largest single event of a namespace topic publish, in bytes (its JSON encoding, or
    /// headers plus body in binary mode); a larger one gets 413.
    pub max_event_bytes: usize,
    /// The most events one namespace topic publish may carry; more get 400.
    pub max_events_per_request: usize,
}

impl Default for DataPlaneConfig {
    fn default() -> DataPlaneConfig {
        DataPlaneConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            certificate: None,
            private_key: None,
            min_tls_version: TlsVersion::default(),
            access_keys: Vec::new(),
            max_request_bytes: EVENT_GRID_MAX_BYTES,
            max_event_bytes: EVENT_GRID_MAX_BYTES,
            max_events_per_request: EVENT_GRID_MAX_EVENTS,
        }
    }
}

impl DataPlaneConfig {
    /// Checks that every key is non-empty base64, every limit at least 1, and `certificate` and
    /// `private_key` are set together.
    pub fn validate(&self) -> Result<(), DataPlaneConfigError> {
        check_pair("http", self.certificate.as_deref(), self.private_key.as_deref())?;
        let invalid =
            |field, problem: &str| DataPlaneConfigError::Invalid { field, problem: problem.into() };
        if self.decoded_keys().is_err() {
            return Err(invalid("http.access_keys", "each key must be non-empty base64"));
        }
        if self.max_request_bytes == 0 {
            return Err(invalid("http.max_request_bytes", "must be at least 1"));
        }
        if self.max_event_bytes == 0 {
            return Err(invalid("http.max_event_bytes", "must be at least 1"));
        }
        if self.max_events_per_request == 0 {
            return Err(invalid("http.max_events_per_request", "must be at least 1"));
        }
        Ok(())
    }

    /// Each access key as given and decoded (the HMAC key of SAS tokens).
    pub fn decoded_keys(&self) -> Result<Vec<(String, Vec<u8>)>, usize> {
        self.access_keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                let key = key.trim();
                match base64::engine::general_purpose::STANDARD.decode(key) {
                    Ok(decoded) if !decoded.is_empty() => Ok((key.to_string(), decoded)),
                    _ => Err(index),
                }
            })
            .collect()
    }
}
