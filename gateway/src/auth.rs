//! Authentication: who a connecting client is.
//!
//! (Placeholder: the authentication methods land with the access-control issue.)

use serde::Deserialize;

/// The `[auth]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {}
