//! The data-plane HTTP API: what Event Grid serves on a namespace's HTTP hostname, on its own
//! listener (`[http]`, [`DataPlaneConfig`]).
//!
//! # Routes
//! - `POST /topics/{topic}:publish`: CloudEvents into a namespace topic, in structured, batch or
//!   binary mode ([`publish`]); 200 `{}` once they are durable.
//! - `POST /mqtt/messages?topic=...`: an MQTT message from HTTP, with the MQTT 5 properties in
//!   `mqtt-*` headers ([`mqtt_publish`]); routed, retained and fanned out like an MQTT PUBLISH.
//! - `GET /mqtt/retainedMessages/message?topic=...` and
//!   `GET /mqtt/retainedMessages?topicFilter=...|continuationToken=...` ([`retained`]).
//! - the pull delivery operations of queue subscriptions (`queue.rs`).
//! - `GET /healthz` and `GET /readyz` ([`crate::readiness`]), the only routes without a
//!   credential.
//!
//! The `api-version` query parameter may be left out; when present it must be a version of
//! Event Grid's namespace data plane ([`api_version::SUPPORTED`]), or the answer is Event
//! Grid's 400 `UnsupportedApiVersion`.
//!
//! # Credentials
//! Everything else needs an access key, a SAS token signed with one, or the management API's
//! admin token ([`auth`]); these are namespace-wide credentials, trusted like an administrator:
//! an HTTP publish is not checked against permission bindings (Event Grid checks it against
//! the caller's namespace role, which a key holder has). Every 4xx and 5xx answer uses Event
//! Grid's body, `{"error": {"code": "...", "message": "..."}}`, whose message names what is
//! wrong; axum's own answers (unknown path, wrong method, rejected body) are rewritten to it
//! ([`error_body`]).
//!
//! # Query strings
//! Parameters are percent-decoded as RFC 3986 says, so `+` stays `+` (topic filters need it);
//! a space is `%20`.
//!
//! Handlers are tested in process with `app(..).oneshot(request)` (`dataplane/tests.rs`).

mod api_version;
mod auth;
mod config;
mod error_body;
mod mqtt_publish;
mod publish;
mod queue;
mod retained;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use self::config::{
    DataPlaneConfig, DataPlaneConfigError, EVENT_GRID_MAX_BYTES, EVENT_GRID_MAX_EVENTS,
};
use crate::broker::Broker;
use crate::server::https::{HttpBindError, HttpListener};

/// The data plane's shared state.
pub struct DataPlane {
    /// The routing pipeline, which holds the namespace topics; `None` when nothing is routed.
    pub router: Option<Arc<crate::routing::Router>>,
    pub broker: Arc<Broker>,
    pub config: DataPlaneConfig,
    credentials: auth::Credentials,
}

/// An error answer: status, Event Grid-style code and a message naming what is wrong.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl DataPlane {
    /// The data plane over `broker` and `router`, accepting `config`'s access keys and, when
    /// the management API has one, `admin_token` as a bearer token. Fails, naming the field,
    /// when an access key is not base64.
    pub fn new(
        config: DataPlaneConfig,
        admin_token: Option<String>,
        broker: Arc<Broker>,
        router: Option<Arc<crate::routing::Router>>,
    ) -> Result<DataPlane, DataPlaneConfigError> {
        let keys =
            config.decoded_keys().map_err(|index| DataPlaneConfigError::AccessKey { index })?;
        let credentials = auth::Credentials::new(keys, admin_token);
        Ok(DataPlane { router, broker, config, credentials })
    }
}

/// The data plane's router.
pub fn app(state: Arc<DataPlane>) -> Router {
    Router::new()
        .merge(publish::routes())
        .merge(mqtt_publish::routes())
        .merge(retained::routes())
        .merge(queue::routes())
        .route_layer(middleware::from_fn(api_version::check))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_credential))
        .route_layer(middleware::from_fn(diagnose))
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .fallback(error_body::not_found)
        .layer(middleware::map_response(error_body::rewrite))
        .with_state(state)
}

/// Binds the data plane's listener, HTTPS when `certificate` and `private_key` are set; the
/// error names the field.
pub async fn bind(config: &DataPlaneConfig) -> Result<(HttpListener, SocketAddr), HttpBindError> {
    HttpListener::bind(
        "http",
        config.listen,
        config.certificate.as_deref(),
        config.private_key.as_deref(),
        config.min_tls_version,
    )
    .await
}

/// Serves `app` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: HttpListener, app: Router, shutdown: CancellationToken) {
    listener.serve(app, shutdown, "data plane").await;
}

// === middleware ===

/// Logs a failed request in the `failed_http_data_plane_operations` diagnostic category,
/// named by its route's pattern so no topic or lock token lands in the operation name.
async fn diagnose(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let operation = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_default();
    let headers = request.headers();
    let authentication_type = if headers.contains_key("aeg-sas-key") {
        "SasKey"
    } else if headers.contains_key("aeg-sas-token") {
        "SasToken"
    } else {
        match headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            Some(value) if value.starts_with("SharedAccessKey") => "SasKey",
            Some(value) if value.starts_with("SharedAccessSignature") => "SasToken",
            Some(value) if value.starts_with("Bearer") => "AccessToken",
            Some(_) => "Unknown",
            None => "None",
        }
    };
    let response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        crate::diagnostics::DataPlaneFailed {
            method: method.as_str(),
            operation_name: &operation,
            status: status.as_u16(),
            authentication_type,
        }
        .emit();
    }
    response
}

async fn require_credential(
    State(state): State<Arc<DataPlane>>,
    request: Request,
    next: Next,
) -> Response {
    let checked =
        state.credentials.check(request.headers(), request.uri(), std::time::SystemTime::now());
    match checked {
        Ok(()) => next.run(request).await,
        Err(problem) => {
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", problem.to_string())
                    .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("SharedAccessSignature"),
            );
            response
        }
    }
}

// === helpers shared by the handlers ===

/// Reads a request body of at most `limit` bytes; 413 naming the limit otherwise.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    field: &str,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("body: larger than {field} ({limit} bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large())
}

/// The query parameters of `uri`, percent-decoded (RFC 3986: `+` is not a space).
pub(crate) fn query_params(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    let Some(query) = uri.query() else { return Ok(Vec::new()) };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode_utf8(name)
                .ok_or_else(|| ApiError::bad_request("query", "a parameter name is not UTF-8"))?;
            let value = percent_decode_utf8(value)
                .ok_or_else(|| ApiError::bad_request(&name, "not UTF-8 once percent-decoded"))?;
            Ok((name, value))
        })
        .collect()
}

/// The value of query parameter `name`, if present (the first one).
pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
}

/// Percent-decodes `text`; a `%` not followed by two hex digits stays as it is.
pub(crate) fn percent_decode(text: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(text).collect()
}

/// Percent-decodes `text` into a string; `None` when the bytes are not UTF-8.
pub(crate) fn percent_decode_utf8(text: &str) -> Option<String> {
    String::from_utf8(percent_decode(text)).ok()
}

/// What [`percent_encode`] encodes: every byte but unreserved ones (RFC 3986: letters, digits,
/// `-._~`) and `/`.
const TOPIC_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes every byte but unreserved ones (RFC 3986: letters, digits, `-._~`) and `/`,
/// so that a topic stays readable in a header or a link.
pub fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, TOPIC_ENCODED).to_string()
}

// === impl ApiError ===

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    /// 400 naming `field`.
    pub(crate) fn bad_request(field: &str, problem: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", format!("{field}: {problem}"))
    }

    /// 413 naming `field`.
    pub(crate) fn too_large(field: &str, problem: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("{field}: {problem}"),
        )
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 503 with `Retry-After`: the caller should come back shortly.
    pub(crate) fn busy(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests;
