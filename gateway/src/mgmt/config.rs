//! The `[management]` table: where the management API listens and the admin token it requires.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::config::ConfigError;

/// The shortest admin token accepted: a guessable token is no credential.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// The `[management]` table. The API always requires a bearer token; there is no anonymous
/// mode, on loopback or elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagementConfig {
    /// Where the API listens (plain HTTP). Loopback by default; anywhere else, put it behind a
    /// TLS-terminating proxy.
    pub listen: SocketAddr,
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
            admin_token: None,
            admin_token_env: None,
        }
    }
}

impl ManagementConfig {
    /// Checks that exactly one token source is set and that a literal token is long enough.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
