//! The management API: Event Grid's namespace resources over REST, on its own listener.
//!
//! # Routes
//! For each kind (`clients`, `clientGroups`, `topicSpaces`, `permissionBindings`,
//! `caCertificates`): `GET /{kind}` lists (`{"value": [...]}`), `GET /{kind}/{name}` reads,
//! `PUT /{kind}/{name}` creates (201) or replaces (200), `DELETE /{kind}/{name}` deletes (200,
//! or 204 when there was nothing to delete). `GET /healthz` and `GET /readyz` (served in front
//! of this router, see [`crate::readiness::Deferred`]) answer without a credential; everything
//! else requires `Authorization: Bearer <admin token>` (401 otherwise).
//!
//! # Bodies
//! A PUT body is Event Grid's resource shape, `{"properties": {...}}`; `id`, `name`, `type` and
//! `systemData` (which Event Grid's GET responses carry) and `properties.provisioningState` are
//! ignored, so a GET response can be sent back as a PUT. Responses carry `id`, `name`, `type`
//! and `properties` with `provisioningState: "Succeeded"`; a client's `passwordHash` is never
//! returned. Errors are `{"error": {"code": "...", "message": "<field path>: <problem>"}}`:
//! 400 `InvalidRequest` for a bad body or a change that would make the namespace invalid, 404
//! `NotFound`, 409 `Conflict` for a resource the config file declares.
//!
//! # Routing
//! With routing configured: `GET /routing/subscriptions` (each event subscription with its
//! backlog, dead-letter count and endpoint validation state), and for one subscription
//! (`{topic}` is `systemTopic` for the system topic)
//! `GET /routing/topics/{topic}/eventSubscriptions/{sub}/deadLetters` (`{"value": [{"id",
//! "record"}]}`), `POST .../deadLetters/redrive` and `DELETE .../deadLetters`, both with an
//! optional body `{"ids": [..]}` (all records without it), answering `{"redriven": n}` or
//! `{"deleted": n}`. In cluster mode these are the cluster's dead letters, the same on every
//! node, and 503 `ServiceUnavailable` answers when its stream cannot be reached. See
//! `mgmt/routing.rs`.
//!
//! # Access explainer
//! `POST /access:check` with `{"client", "action": "publish" | "subscribe", "topic"}` answers
//! whether the client may, and why (`mgmt/access_check.rs`, [`crate::access::explain`]).
//!
//! # Config reload
//! `POST /config:reload` reads the config file again and applies what changed (see
//! [`crate::reload`]): 200 with `{"applied": [...], "restartRequired": [...]}` (section
//! names), or 400 `InvalidConfig` naming the field, with the config in force unchanged.
//!
//! # Namespace topics and event subscriptions
//! `topics` and `topics/{topic}/eventSubscriptions` take the same list, GET, PUT and DELETE,
//! and PATCH (a JSON merge patch), with Event Grid's ARM bodies (`mgmt/topics.rs`); the changes
//! apply at once and are durable.
//!
//! # ARM paths
//! Every route above (but `/healthz` and `/routing/...`) is also served under the namespace's
//! resource id, `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.EventGrid/
//! namespaces/{ns}/...?api-version=...`, as Azure Resource Manager serves it, so the Azure SDKs
//! and tools work unchanged (`mgmt/arm.rs`). Another subscription, resource group or namespace
//! is 404. Response ids are always the full ARM ids. A PUT answers as a finished operation (no
//! `Azure-AsyncOperation` or `Location` header, `provisioningState: Succeeded`), so the SDKs'
//! pollers complete on the first response.
//!
//! Handlers are tested in process with `app(..).oneshot(request)` (`mgmt/tests.rs`).

mod access_check;
mod arm;
mod config;
mod reload;
mod routing;
mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
// The admin token is compared in constant time, so response timing does not reveal how much
// of a guess was right.
use subtle::ConstantTimeEq as _;
use tokio_util::sync::CancellationToken;

pub use self::config::{MIN_TOKEN_LENGTH, ManagementConfig, ManagementConfigError};
pub use self::reload::{ConfigReload, ReloadRefused};
use crate::access::model::ValidationError;
use crate::namespace::{Change, ChangeError, Namespace, ResourceKind};
use crate::server::https::{HttpBindError, HttpListener};

/// The API's shared state.
struct Api {
    namespace: Arc<Namespace>,
    token: String,
    router: Option<Arc<crate::routing::Router>>,
    reloader: Option<Arc<dyn ConfigReload>>,
}

/// An error answer: status, Event Grid-style code and a message naming the field.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// Keys of a PUT body that Event Grid's responses carry and a request may echo back.
const IGNORED_KEYS: [&str; 4] = ["id", "name", "type", "systemData"];

/// The API's router over `namespace`, requiring `token`.
pub fn app(
    namespace: Arc<Namespace>,
    token: impl Into<String>,
    router: Option<Arc<crate::routing::Router>>,
) -> Router {
    app_with_reload(namespace, token, router, None)
}

/// [`app`], with `POST /config:reload` served by `reloader`.
pub fn app_with_reload(
    namespace: Arc<Namespace>,
    token: impl Into<String>,
    router: Option<Arc<crate::routing::Router>>,
    reloader: Option<Arc<dyn ConfigReload>>,
) -> Router {
    let api = Arc::new(Api { namespace, token: token.into(), router, reloader });
    let mut resources = access_check::routes(reload::routes(routing::routes()));
    for kind in ResourceKind::ALL {
        resources = resources
            .route(&format!("/{}", kind.as_str()), get(move |state| list(state, kind)))
            .route(
                &format!("/{}/{{name}}", kind.as_str()),
                get(move |state, name| read(state, kind, name))
                    .put(move |state, name, body| put(state, kind, name, body))
                    .delete(move |state, name| delete(state, kind, name)),
            );
    }
    let inner = topics::routes(resources)
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token))
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .with_state(api.clone());
    // The rewriting wraps the whole router, so that it runs before routing.
    let arm = middleware::from_fn_with_state(api, arm::rewrite);
    Router::new().fallback_service(tower::Layer::layer(&arm, inner))
}

/// Serves `app` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: HttpListener, app: Router, shutdown: CancellationToken) {
    listener.serve(app, shutdown, "management").await;
}

/// Binds the API's listener, HTTPS when `certificate` and `private_key` are set; the error
/// names the field.
pub async fn bind(config: &ManagementConfig) -> Result<(HttpListener, SocketAddr), HttpBindError> {
    HttpListener::bind(
        "management",
        config.listen,
        config.certificate.as_deref(),
        config.private_key.as_deref(),
        config.min_tls_version,
    )
    .await
}

// === handlers ===

async fn require_token(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    match api.refusal(&headers) {
        None => next.run(request).await,
        Some(response) => response,
    }
}

/// `GET /metrics` behind the admin token, for the management listener (see
/// [`crate::telemetry`]).
pub fn metrics_routes(token: String, scrape: Option<Arc<crate::telemetry::Scrape>>) -> Router {
    let token = Arc::new(token);
    crate::telemetry::routes(scrape).route_layer(middleware::from_fn(
        move |headers: HeaderMap, request: Request, next: Next| {
            let refused = refusal(&token, &headers);
            async move {
                match refused {
                    None => next.run(request).await,
                    Some(response) => response,
                }
            }
        },
    ))
}

impl Api {
    /// The 401 answer when `headers` do not carry the admin token.
    fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        refusal(&self.token, headers)
    }

    /// The namespace's resource id, the prefix of every resource's id.
    fn resource_id(&self) -> String {
        self.namespace.resources().namespace.resource_id()
    }
}

/// The 401 answer when `headers` do not carry `token`.
pub(crate) fn refusal(token: &str, headers: &HeaderMap) -> Option<Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    if let Some(presented) = presented
        && bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
    {
        return None;
    }
    let mut response = ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "Unauthorized",
        message: "Authorization: Bearer <admin token> required".into(),
    }
    .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(response)
}

async fn list(State(api): State<Arc<Api>>, kind: ResourceKind) -> Response {
    let resources = api.namespace.resources();
    let value: Vec<Value> = kind
        .names(&resources)
        .iter()
        .filter_map(|name| {
            let properties = kind.get_public(&resources, name)?;
            Some(envelope(&resources.namespace.resource_id(), kind, name, properties))
        })
        .collect();
    axum::Json(json!({ "value": value })).into_response()
}

async fn read(
    State(api): State<Arc<Api>>,
    kind: ResourceKind,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let resources = api.namespace.resources();
    let properties = kind.get_public(&resources, &name).ok_or_else(|| not_found(kind, &name))?;
    let id = resources.namespace.resource_id();
    Ok(axum::Json(envelope(&id, kind, &name, properties)).into_response())
}

async fn put(
    State(api): State<Arc<Api>>,
    kind: ResourceKind,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let properties = properties_of(&body)?;
    let applied = api
        .namespace
        .apply(Change::Put { kind, name: name.clone(), properties })
        .await
        .map_err(ApiError::from)?;
    let resources = api.namespace.resources();
    let properties = kind.get_public(&resources, &name).unwrap_or(Value::Null);
    let status = if applied.existed { StatusCode::OK } else { StatusCode::CREATED };
    let body = envelope(&resources.namespace.resource_id(), kind, &name, properties);
    Ok((status, axum::Json(body)).into_response())
}

async fn delete(
    State(api): State<Arc<Api>>,
    kind: ResourceKind,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let applied = api.namespace.apply(Change::Delete { kind, name }).await?;
    Ok(if applied.existed { StatusCode::OK } else { StatusCode::NO_CONTENT })
}

// === helpers ===

/// The properties of a PUT body, with the keys Event Grid's responses add taken out.
fn properties_of(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid("body", format!("not JSON: {error}")))?;
    let Value::Object(mut object) = value else {
        return Err(ApiError::invalid("body", "must be a JSON object {\"properties\": {...}}"));
    };
    for key in IGNORED_KEYS {
        object.remove(key);
    }
    let mut properties =
        object.remove("properties").ok_or_else(|| ApiError::invalid("properties", "missing"))?;
    if let Some(key) = object.keys().next() {
        return Err(ApiError::invalid(key, "unknown field; a body is {\"properties\": {...}}"));
    }
    let Value::Object(fields) = &mut properties else {
        return Err(ApiError::invalid("properties", "must be a JSON object"));
    };
    fields.remove("provisioningState");
    Ok(properties)
}

/// A resource in Event Grid's response shape; `namespace_id` is the namespace's resource id.
fn envelope(namespace_id: &str, kind: ResourceKind, name: &str, properties: Value) -> Value {
    arm_resource(
        format!("{namespace_id}/{}/{name}", kind.as_str()),
        name,
        kind.arm_type(),
        properties,
    )
}

/// An ARM resource: `id`, `name`, `type` and `properties` with `provisioningState: Succeeded`.
fn arm_resource(id: String, name: &str, kind: &str, mut properties: Value) -> Value {
    if let Value::Object(fields) = &mut properties {
        fields.insert("provisioningState".into(), Value::from("Succeeded"));
    }
    json!({ "id": id, "name": name, "type": kind, "properties": properties })
}

fn not_found(kind: ResourceKind, name: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "NotFound",
        message: format!("{}/{name} not found", kind.as_str()),
    }
}

// === impl ApiError ===

impl ApiError {
    fn invalid(path: &str, problem: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidRequest",
            message: format!("{path}: {problem}"),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> ApiError {
        match error {
            ChangeError::Invalid(ValidationError { path, problem }) => {
                ApiError::invalid(&path, problem)
            }
            declared @ ChangeError::Declared { .. } => ApiError {
                status: StatusCode::CONFLICT,
                code: "Conflict",
                message: declared.to_string(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests;
