//! The `[management]` table: where the management API listens and the admin token it requires.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::server::config::{ServerConfigError, TlsVersion};
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

/// An invalid `[management]` table, or an admin token that cannot be had at start-up; the
/// message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ManagementConfigError {
    #[error("management.admin_token: {0}")]
    Token(&'static str),
    #[error("management.admin_token: {0}")]
    WeakToken(WeakToken),
    /// `certificate` without `private_key`, or the other way round.
    #[error(transparent)]
    Tls(#[from] ServerConfigError),
    /// `admin_token_env` names a variable that is not set (or not Unicode).
    #[error("management.admin_token_env: environment variable {variable}: {source}")]
    TokenVariable { variable: String, source: std::env::VarError },
    /// The variable `admin_token_env` names holds a token too weak to be a credential.
    #[error("management.admin_token_env: {variable}: {source}")]
    WeakTokenVariable { variable: String, source: WeakToken },
}

/// An admin token too short or with whitespace: a guessable token is no credential.
#[derive(Debug, thiserror::Error)]
#[error("the admin token must be at least {MIN_TOKEN_LENGTH} characters, without whitespace")]
pub struct WeakToken;

impl ManagementConfig {
    /// Checks that exactly one token source is set, that a literal token is long enough, and
    /// that `certificate` and `private_key` are set together.
    pub fn validate(&self) -> Result<(), ManagementConfigError> {
        check_pair("management", self.certificate.as_deref(), self.private_key.as_deref())?;
        match (&self.admin_token, &self.admin_token_env) {
            (Some(_), Some(_)) => {
                Err(ManagementConfigError::Token("set admin_token or admin_token_env, not both"))
            }
            (None, None) => Err(ManagementConfigError::Token(
                "the management API requires a credential: set admin_token or admin_token_env",
            )),
            (Some(token), None) => check_token(token).map_err(ManagementConfigError::WeakToken),
            (None, Some(_)) => Ok(()),
        }
    }

    /// The admin token, reading `admin_token_env` from the environment. The error names the
    /// field.
    pub fn token(&self) -> Result<String, ManagementConfigError> {
        if let Some(token) = &self.admin_token {
            return Ok(token.clone());
        }
        let Some(variable) = &self.admin_token_env else {
            return Err(ManagementConfigError::Token("the management API requires a credential"));
        };
        let token = std::env::var(variable).map_err(|source| {
            ManagementConfigError::TokenVariable { variable: variable.clone(), source }
        })?;
        check_token(&token).map_err(|source| ManagementConfigError::WeakTokenVariable {
            variable: variable.clone(),
            source,
        })?;
        Ok(token)
    }
}

fn check_token(token: &str) -> Result<(), WeakToken> {
    if token.chars().count() < MIN_TOKEN_LENGTH || token.chars().any(char::is_whitespace) {
        return Err(WeakToken);
    }
    Ok(())
}
