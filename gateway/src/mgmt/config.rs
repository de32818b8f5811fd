//! The `[management]` table: where the management API listens and the admin token it requires.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::server::config::TlsVersion;
use crate::server::https::check_pair;

/// The shortest admin token accepted: a guessable token is no credential.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// The `[management]` table. The API always requires a bearer token; there is no anonymous
/// mode, on loopback or elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagementConfig {
    /// Where the API listens. Loopback by default. Plain HTTP unless `certificate` and
    /// `private_key` are set; beyond loopback, serve HTTPS (or put a TLS proxy in front).
    pub listen: SocketAddr,
    /// The server certificate chain, PEM, leaf first. With `private_key`, the listener speaks
    /// HTTPS only. Relative paths are relative to gridmq's working directory.
    pub certificate: Option<PathBuf>,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1); required with `certificate`.
    pub private_key: Option<PathBuf>,
    /// With HTTPS, the oldest TLS version accepted, `"1.2"` or `"1.3"`. Default `"1.2"`.
    pub min_tls_version: TlsVersion,
    /// The admin token requests present as `Authorization: Bearer <token>`; at least 16
    /// characters. Exactly one of `admin_token` and `admin_token_env` is required.
    pub admin_token: Option<String>,
    /// The name of an environment variable holding the admin token, read at start-up.
    pub admin_token_env: Option<String>,
}

impl Default for ManagementConfig {
    fn default() -> ManagementConfig {
        ManagementConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            certificate: None,
            private_key: None,
            min_tls_version: TlsVersion::default(),
            admin_token: None,
            admin_token_env: None,
        }
    }
}

impl ManagementConfig {
    /// Checks that exactly one token source is set, that a literal token is long enough, and
    /// that `certificate` and `private_key` are set together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_pair("management", self.certificate.as_deref(), self.private_key.as_deref())?;
        match (&self.admin_token, &self.admin_token_env) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                field: "management.admin_token",
                problem: "set admin_token or admin_token_env, not both".into(),
            }),
            (None, None) => Err(ConfigError::Invalid {
                field: "management.admin_token",
                problem: "the management API requires a credential: set admin_token or \
                          admin_token_env"
                    .into(),
            }),
            (Some(token), None) => check_token(token).map_err(|problem| ConfigError::Invalid {
                field: "management.admin_token",
                problem,
            }),
            (None, Some(_)) => Ok(()),
        }
    }

    /// The admin token, reading `admin_token_env` from the environment. The error names the
    /// field.
    pub fn token(&self) -> Result<String, String> {
        if let Some(token) = &self.admin_token {
            return Ok(token.clone());
        }
        let Some(variable) = &self.admin_token_env else {
            return Err("management.admin_token: the management API requires a credential".into());
        };
        let token = std::env::var(variable).map_err(|error| {
            format!("management.admin_token_env: environment variable {variable}: {error}")
        })?;
        check_token(&token)
            .map_err(|problem| format!("management.admin_token_env: {variable}: {problem}"))?;
        Ok(token)
    }
}

fn check_token(token: &str) -> Result<(), String> {
    if token.chars().count() < MIN_TOKEN_LENGTH || token.chars().any(char::is_whitespace) {
        return Err(format!(
            "the admin token must be at least {MIN_TOKEN_LENGTH} characters, without whitespace"
        ));
    }
    Ok(())
}
