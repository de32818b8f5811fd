//! Custom webhook authentication, with Event Grid's request and response bodies.
//!
//! Per CONNECT the broker POSTs JSON to the configured endpoint:
//!
//! ```json
//! {"clientId": "dev1", "userName": "dev1", "password": "<base64>",
//!  "authenticationMethod": "...", "authenticationData": "<base64>",
//!  "clientCertificate": "<PEM>", "clientCertificateChain": "<PEM certificates>"}
//! ```
//!
//! (only `clientId` is always there), with `Authorization: Bearer <token>` when a token is
//! configured. The endpoint answers
//! `{"decision": "allow", "clientAuthenticationName": "...", "attributes": {...},
//! "expiration": "<unix time>"}` or `{"decision": "deny", "errorReason": "..."}`.
//!
//! An allow needs a 2xx status and a `clientAuthenticationName`; attributes of type integer,
//! string or string array become the client's attributes (others are ignored); `expiration`
//! ends the session then. A deny (any status) refuses with CONNACK 0x87 and the endpoint's
//! reason. Anything else (a timeout, a connection error, a non-2xx status without a deny body,
//! a body that is not the JSON above) refuses with 0x87 and a reason naming the failure, within
//! the configured timeout: a slow webhook never hangs a client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    AuthConfigError, allow_vouched, attribute_value, deny, is_attribute_key, now_unix, rfc3339,
};
use crate::access::model::Resources;
use crate::hooks::{AuthDecision, AuthRequest};
use crate::mqtt::ReasonCode;

/// The largest webhook answer we read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// `[auth.webhook]`: the endpoint that decides for clients no other method authenticates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint URL (`https://...`; `http://` for local endpoints). Required.
    pub endpoint: String,
    /// How long one call may take, connection included, in milliseconds; past it the client is
    /// refused. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A bearer token sent as `Authorization: Bearer <token>`. Default: none.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// The name of an environment variable holding the bearer token, read at start-up (keeps
    /// the secret out of the file). Default: none.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
}

/// The configured webhook, with its HTTP client.
pub(crate) struct Webhook {
    endpoint: reqwest::Url,
    timeout: Duration,
    bearer_token: Option<Arc<str>>,
    http: reqwest::Client,
}

/// Event Grid's request body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookRequest<'a> {
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authentication_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authentication_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate_chain: Option<String>,
}

/// Event Grid's response body (allow and deny in one shape).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookResponse {
    decision: String,
    #[serde(default)]
    client_authentication_name: Option<String>,
    #[serde(default)]
    attributes: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    expiration: Option<Value>,
    #[serde(default)]
    error_reason: Option<String>,
}

fn default_timeout_ms() -> u64 {
    5000
}

/// An HTTP/1.1 client on rustls with ring, verifying servers against the platform's roots,
/// with `timeout` on every request.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, sinks::ClientError> {
    sinks::http_client_builder()?
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(sinks::ClientError::Build)
}

/// A response body that could not be read whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("reading the body: {0}")]
    Read(reqwest::Error),
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
}

/// Why the webhook gave no answer to decide on.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("{0}")]
    Encode(serde_json::Error),
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("request failed: {0}")]
    Request(reqwest::Error),
    #[error(transparent)]
    Body(#[from] BodyError),
}

/// An answer that is not a webhook decision.
#[derive(Debug, thiserror::Error)]
#[error("the answer is not a webhook decision: {0}")]
struct NotADecision(serde_json::Error);

/// Reads a response body of at most `limit` bytes.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

// === impl WebhookConfig ===

impl WebhookConfig {
    pub(crate) fn validate(&self) -> Result<(), AuthConfigError> {
        let url = reqwest::Url::parse(&self.endpoint)
            .map_err(|e| AuthConfigError::invalid("webhook.endpoint", e.to_string()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(AuthConfigError::invalid("webhook.endpoint", "must be an http(s) URL"));
        }
        if self.timeout_ms == 0 {
            return Err(AuthConfigError::invalid("webhook.timeout_ms", "must be positive"));
        }
        if self.bearer_token.is_some() && self.bearer_token_env.is_some() {
            return Err(AuthConfigError::invalid(
                "webhook",
                "set bearer_token or bearer_token_env, not both",
            ));
        }
        Ok(())
    }
}

// === impl Webhook ===

impl Webhook {
    pub(crate) fn new(config: &WebhookConfig) -> Result<Webhook, AuthConfigError> {
        let endpoint = reqwest::Url::parse(&config.endpoint)
            .map_err(|e| AuthConfigError::invalid("webhook.endpoint", e.to_string()))?;
        let bearer_token = match (&config.bearer_token, &config.bearer_token_env) {
            (Some(token), _) => Some(token.as_str().into()),
            (None, Some(variable)) => Some(
                std::env::var(variable)
                    .map_err(|e| {
                        AuthConfigError::invalid(
                            "webhook.bearer_token_env",
                            format!("environment variable {variable}: {e}"),
                        )
                    })?
                    .into(),
            ),
            (None, None) => None,
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let http =
            http_client(timeout).map_err(|e| AuthConfigError::invalid("webhook", e.to_string()))?;
        Ok(Webhook { endpoint, timeout, bearer_token, http })
    }

    /// Asks the webhook about `request` and decides.
    pub(crate) async fn authenticate(
        &self,
        resources: &Resources,
        request: &AuthRequest<'_>,
    ) -> AuthDecision {
        let body = WebhookRequest {
            client_id: request.client_id,
            user_name: request.username,
            password: request.password.map(|p| STANDARD.encode(p)),
            authentication_method: request.method,
            authentication_data: request.data.map(|d| STANDARD.encode(d)),
            client_certificate: request.peer_certificates.first().map(|der| pem(der)),
            client_certificate_chain: (request.peer_certificates.len() > 1).then(|| {
                request.peer_certificates[1..].iter().map(|der| pem(der)).collect::<String>()
            }),
        };
        let answer = tokio::time::timeout(self.timeout, self.call(&body)).await;
        let (status, response) = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(problem)) => return failed(problem.to_string()),
            Err(_) => {
                return failed(format!("no answer within {} ms", self.timeout.as_millis()));
            }
        };
        let decision = match response {
            Ok(response) => response,
            Err(problem) if !status.is_success() => {
                return failed(format!("HTTP {status} ({problem})"));
            }
            Err(problem) => return failed(problem.to_string()),
        };
        match decision.decision.to_ascii_lowercase().as_str() {
            "deny" => deny(
                ReasonCode::NotAuthorized,
                match decision.error_reason {
                    Some(reason) => format!("denied by the authentication webhook: {reason}"),
                    None => "denied by the authentication webhook".into(),
                },
            ),
            "allow" if status.is_success() => allow(resources, request, decision),
            "allow" => failed(format!("HTTP {status} with an allow decision")),
            other => failed(format!("unknown decision {other:?}")),
        }
    }

    /// POSTs `body`; the status and the parsed answer (or why it does not parse).
    async fn call(
        &self,
        body: &WebhookRequest<'_>,
    ) -> Result<(reqwest::StatusCode, Result<WebhookResponse, NotADecision>), CallError> {
        let json = serde_json::to_vec(body).map_err(CallError::Encode)?;
        let mut post = self
            .http
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json);
        if let Some(token) = &self.bearer_token {
            post = post.bearer_auth(token);
        }
        let response = post.send().await.map_err(|e| {
            if e.is_timeout() {
                CallError::Timeout(self.timeout.as_millis())
            } else {
                CallError::Request(e)
            }
        })?;
        let status = response.status();
        let body = read_body(response, MAX_RESPONSE_BYTES).await?;
        let parsed = serde_json::from_slice::<WebhookResponse>(&body).map_err(NotADecision);
        Ok((status, parsed))
    }
}

/// The identity an allow decision vouches for; a registered client it names must be enabled.
fn allow(
    resources: &Resources,
    request: &AuthRequest<'_>,
    decision: WebhookResponse,
) -> AuthDecision {
    let Some(name) = decision.client_authentication_name.filter(|n| !n.is_empty()) else {
        return failed("an allow decision without clientAuthenticationName".into());
    };
    let attributes: BTreeMap<_, _> = decision
        .attributes
        .unwrap_or_default()
        .iter()
        .filter(|(key, _)| is_attribute_key(key))
        .filter_map(|(key, value)| attribute_value(value).map(|v| (key.clone(), v)))
        .collect();
    let expires_in = match decision.expiration.as_ref().map(unix_time) {
        None => None,
        Some(None) => return failed("expiration is not a Unix time".into()),
        Some(Some(at)) => {
            let now = now_unix();
            if at <= now {
                return failed(format!("the allow expired at {}", rfc3339(at)));
            }
            Some(Duration::from_secs(u64::try_from(at - now).unwrap_or(0)))
        }
    };
    allow_vouched(resources, request.client_id, &name, attributes, expires_in)
}

/// A refusal for a webhook that did not give a usable answer.
fn failed(problem: String) -> AuthDecision {
    deny(ReasonCode::NotAuthorized, format!("authentication webhook failed: {problem}"))
}

/// A Unix time as a string (`"1764064800"`) or a number.
fn unix_time(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A DER certificate as PEM.
fn pem(der: &[u8]) -> String {
    let base64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in base64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
