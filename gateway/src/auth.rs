//! Authentication: who a connecting client is.
//!
//! [`Authentication`] is the broker's [`Authenticator`]. It picks a method by what the client
//! presents, in this order:
//! 1. MQTT 5 Authentication Method `CUSTOM-JWT` or `OAUTH2-JWT`: the token in Authentication
//!    Data, at CONNECT and in re-authentication (AUTH 0x19) → [`jwt`].
//! 2. A 3.1.1 client whose password parses as a JWT, when `[auth.jwt]` is configured → [`jwt`].
//! 3. A TLS client certificate, when the authentication name (Username, or the namespace's
//!    alternative sources) names a registered client with `clientCertificateAuthentication`
//!    → [`x509`].
//! 4. A Username naming a registered client with a `passwordHash` → [`password`].
//! 5. Otherwise the webhook, when `[auth.webhook]` is configured → [`webhook`].
//! 6. Otherwise anonymous access, when `allow_anonymous` is set.
//! 7. Otherwise the client is refused, with the reason the last applicable step gave.
//!
//! Once a step decides (3 and 4 decide once the client is found), later steps are not tried: a
//! registered client with credentials never falls through to the webhook or to anonymous
//! access with the wrong credentials.
//!
//! # Refusals
//! CONNACK 0x86 (bad username or password) for wrong credentials, 0x87 (not authorized) for a
//! refused identity (disabled client, certificate or token checks failed, webhook denial or
//! failure), 0x8C (bad authentication method) for a method we do not support. The reason string
//! says what failed, e.g. `certificate thumbprint does not match client "dev1"` or
//! `token expired at 2026-11-25T10:00:00Z`.
//!
//! Invariants:
//! - Registered clients are looked up in the live [`Registry`] snapshot at every
//!   authentication, so a client disabled or deleted a moment ago is refused at once.
//! - Nothing blocks the runtime: Argon2 runs on the blocking pool, HTTP calls are bounded by
//!   their timeout.
//! - Every `Allow` names the authentication name the authorizer will judge the client by; for a
//!   registered client that is its registered name (in its registered case) and attributes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::access::model::{ClientProperties, ClientState, Resources};
use crate::access::registry::Registry;
use crate::hooks::{
    AttributeValue, AuthDecision, AuthRequest, AuthStep, Authenticator, BoxFuture, ClientIdentity,
};
use crate::mqtt::{Protocol, ReasonCode};

pub mod jwt;
pub mod password;
pub mod webhook;
pub mod x509;

pub use jwt::JwtConfig;
pub use password::hash_password;
pub use webhook::WebhookConfig;

/// The MQTT 5 authentication methods that carry a JWT.
pub const JWT_METHODS: [&str; 2] = ["CUSTOM-JWT", "OAUTH2-JWT"];

/// The `[auth]` table. Password and X.509 authentication need no settings here: they are
/// enabled by registered clients that have a `passwordHash` or `clientCertificateAuthentication`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Let clients that no method authenticates connect under their Username (or client id),
    /// with no attributes. Default `false`. Even then, a Username naming a registered client
    /// that has credentials must present them.
    pub allow_anonymous: bool,
    /// `[auth.jwt]`: JWT authentication against an issuer's keys. Default: off.
    pub jwt: Option<JwtConfig>,
    /// `[auth.webhook]`: custom webhook authentication. Default: off.
    pub webhook: Option<WebhookConfig>,
}

/// An `[auth]` table that cannot be used; the message names the field and the problem.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("invalid config: auth.{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("cannot read auth.{field} file {path}: {source}")]
    Read { field: &'static str, path: String, source: std::io::Error },
}

/// The [`Authenticator`] built from the `[auth]` table and the live resources.
pub struct Authentication {
    registry: Arc<Registry>,
    allow_anonymous: bool,
    jwt: Option<jwt::JwtVerifier>,
    webhook: Option<webhook::Webhook>,
}

/// What one method says about a request it was asked about.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The method applies and has decided.
    Decided(AuthDecision),
    /// The method does not apply to this client; why, for the final refusal.
    NotApplicable(String),
}

// === impl AuthConfig ===

impl AuthConfig {
    /// Whether the table configures nothing: no anonymous access, no JWT, no webhook. With no
    /// registered clients either, nobody could connect; the wiring decides what the no-config
    /// embedded default is (anonymous access).
    pub fn is_unconfigured(&self) -> bool {
        !self.allow_anonymous && self.jwt.is_none() && self.webhook.is_none()
    }

    /// Checks the fields without reading files or the network.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        if let Some(jwt) = &self.jwt {
            jwt.validate()?;
        }
        if let Some(webhook) = &self.webhook {
            webhook.validate()?;
        }
        Ok(())
    }
}

impl AuthConfigError {
    pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> AuthConfigError {
        AuthConfigError::Invalid { field, problem: problem.into() }
    }
}

// === impl Authentication ===

impl Authentication {
    /// Builds the authenticator: validates the table, reads key files and prepares the HTTP
    /// client. A JWKS URL is fetched on first use; call [`Authentication::fetch_remote_keys`]
    /// at start-up to fetch it (and fail) early.
    pub fn new(
        config: &AuthConfig,
        registry: Arc<Registry>,
    ) -> Result<Authentication, AuthConfigError> {
        config.validate()?;
        let jwt = config.jwt.as_ref().map(jwt::JwtVerifier::new).transpose()?;
        let webhook = config.webhook.as_ref().map(webhook::Webhook::new).transpose()?;
        Ok(Authentication { registry, allow_anonymous: config.allow_anonymous, jwt, webhook })
    }

    /// Fetches the configured JWKS URL now, if there is one.
    pub async fn fetch_remote_keys(&self) -> Result<(), AuthConfigError> {
        match &self.jwt {
            Some(jwt) => jwt.fetch_remote_keys().await,
            None => Ok(()),
        }
    }

    async fn decide(&self, request: AuthRequest<'_>) -> AuthDecision {
        let resources = self.registry.current();
        let method = request.method;
        let is_jwt_method = method.is_some_and(|m| JWT_METHODS.contains(&m));

        if request.step != AuthStep::Connect && !is_jwt_method {
            // We never send AUTH 0x18, and only JWT clients can re-authenticate.
            return deny(
                ReasonCode::BadAuthenticationMethod,
                match method {
                    Some(method) => {
                        format!("authentication method {method:?} cannot re-authenticate")
                    }
                    None => "re-authentication needs an authentication method".into(),
                },
            );
        }
        if let Some(method) = method {
            if is_jwt_method && let Some(jwt) = &self.jwt {
                let Some(token) = request.data else {
                    return deny(
                        ReasonCode::BadAuthenticationMethod,
                        format!(
                            "authentication method {method} needs the token in Authentication Data"
                        ),
                    );
                };
                return jwt.authenticate(&resources, request.client_id, token).await;
            }
            if let Some(webhook) = &self.webhook {
                return webhook.authenticate(&resources, &request).await;
            }
            let problem = if is_jwt_method {
                format!("authentication method {method} is not configured on this broker")
            } else {
                format!(
                    "authentication method {method:?} is not supported (supported: {})",
                    JWT_METHODS.join(", ")
                )
            };
            return deny(ReasonCode::BadAuthenticationMethod, problem);
        }

        if request.protocol == Protocol::V311
            && let (Some(jwt), Some(password)) = (&self.jwt, request.password)
            && jwt::looks_like_jwt(password)
        {
            return jwt.authenticate(&resources, request.client_id, password).await;
        }

        let mut why = String::from("no credentials");
        if !request.peer_certificates.is_empty() {
            match x509::authenticate(&resources, &request) {
                Outcome::Decided(decision) => return decision,
                Outcome::NotApplicable(reason) => why = reason,
            }
        }
        match password::authenticate(&resources, &request).await {
            Outcome::Decided(decision) => return decision,
            Outcome::NotApplicable(reason) if request.peer_certificates.is_empty() => why = reason,
            Outcome::NotApplicable(_) => {}
        }
        if let Some(webhook) = &self.webhook {
            return webhook.authenticate(&resources, &request).await;
        }
        if self.allow_anonymous {
            return anonymous(&resources, &request);
        }
        deny(ReasonCode::NotAuthorized, format!("not authenticated: {why}"))
    }
}

impl Authenticator for Authentication {
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> BoxFuture<'a, AuthDecision> {
        Box::pin(self.decide(request))
    }
}

impl std::fmt::Debug for Authentication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authentication")
            .field("allow_anonymous", &self.allow_anonymous)
            .field("jwt", &self.jwt.is_some())
            .field("webhook", &self.webhook.is_some())
            .finish()
    }
}

// === helpers shared by the methods ===

/// A refusal with a reason string.
pub(crate) fn deny(code: ReasonCode, reason: impl Into<String>) -> AuthDecision {
    AuthDecision::Deny { code, reason: Some(reason.into()) }
}

/// An `Allow` for a registered client: its registered authentication name and attributes.
pub(crate) fn allow_registered(
    request: &AuthRequest<'_>,
    name: &str,
    client: &ClientProperties,
    expires_in: Option<Duration>,
) -> AuthDecision {
    AuthDecision::Allow {
        identity: ClientIdentity {
            client_id: request.client_id.into(),
            authentication_name: client.authentication_name_or(name).into(),
            attributes: client.attributes.clone(),
        },
        expires_in,
    }
}

/// An `Allow` for an identity vouched for by a token or the webhook. When the name is that of a
/// registered client, the client must be enabled; the authorizer then judges it by its
/// registered name and attributes.
pub(crate) fn allow_vouched(
    resources: &Resources,
    client_id: &str,
    authentication_name: &str,
    attributes: BTreeMap<String, AttributeValue>,
    expires_in: Option<Duration>,
) -> AuthDecision {
    if let Some((name, client)) = resources.client_by_authentication_name(authentication_name)
        && client.state == ClientState::Disabled
    {
        return disabled(name);
    }
    AuthDecision::Allow {
        identity: ClientIdentity {
            client_id: client_id.into(),
            authentication_name: authentication_name.into(),
            attributes,
        },
        expires_in,
    }
}

/// The refusal of a disabled client.
pub(crate) fn disabled(name: &str) -> AuthDecision {
    deny(ReasonCode::NotAuthorized, format!("client {name:?} is disabled"))
}

/// Seconds since the Unix epoch as RFC 3339, for reason strings.
pub(crate) fn rfc3339(unix_secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{unix_secs} (Unix time)"))
}

/// Now, in seconds since the Unix epoch.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Turns a JSON claim or webhook attribute into an attribute value, when it has one of Event
/// Grid's three types: integer (as i64), string, or array of strings.
pub(crate) fn attribute_value(value: &serde_json::Value) -> Option<AttributeValue> {
    match value {
        serde_json::Value::String(s) => Some(AttributeValue::String(s.clone())),
        serde_json::Value::Number(n) => n.as_i64().map(AttributeValue::Integer),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(AttributeValue::StringArray),
        _ => None,
    }
}

/// Whether `key` is a valid attribute key (`[A-Za-z0-9_]+`).
pub(crate) fn is_attribute_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Anonymous access: the Username (or client id) as authentication name, unless it names a
/// registered client that has credentials, which must present them.
fn anonymous(resources: &Resources, request: &AuthRequest<'_>) -> AuthDecision {
    let name = request.username.unwrap_or(request.client_id);
    if let Some((registered, client)) = resources.client_by_authentication_name(name) {
        if client.state == ClientState::Disabled {
            return disabled(registered);
        }
        if client.password_hash.is_some() || client.client_certificate_authentication.is_some() {
            return deny(
                ReasonCode::BadUserNameOrPassword,
                format!("client {registered:?} must present its credentials"),
            );
        }
        return allow_registered(request, registered, client, None);
    }
    AuthDecision::Allow {
        identity: ClientIdentity {
            client_id: request.client_id.into(),
            authentication_name: name.into(),
            attributes: BTreeMap::new(),
        },
        expires_in: None,
    }
}
