//! The operator console: a web page served by the management listener at `/console` that
//! shows and steers a running gridmq (overview charts, clients and sessions, access control
//! with the authorization explainer, routing and dead letters, live trace).
//!
//! # What is served
//! - `GET /console`, `/console/console.css`, `/console/console.js`: the page, plain HTML, CSS
//!   and JS embedded in the binary (`console/assets/`), so nothing is fetched from elsewhere
//!   and no Node toolchain is needed. They hold no data, so they need no token.
//! - `GET /console/api/info`: version, uptime, listeners and store.
//! - `GET /console/api/sessions`, `POST /console/api/sessions/{clientId}/disconnect`,
//!   `DELETE /console/api/sessions/{clientId}` ([`sessions`]).
//! - `GET /console/api/trace?filter=...`: the live trace as server-sent events ([`trace`]).
//!
//! Everything else the page shows comes from the management API itself (`/metrics`, the
//! resources, `/access:check`, `/routing/...`, `/topics`), so there is one source of truth.
//! Every `/console/api/` route requires the admin token, as the management API does (401
//! otherwise); the page keeps the token in `sessionStorage` and sends it with every call.

pub mod sessions;
pub mod trace;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Serialize;

pub use self::trace::Trace;
use crate::namespace::Namespace;

const INDEX_HTML: &str = include_str!("console/assets/index.html");
const CONSOLE_CSS: &str = include_str!("console/assets/console.css");
const CONSOLE_JS: &str = include_str!("console/assets/console.js");

/// What the console's API reads.
pub struct Console {
    pub namespace: Arc<Namespace>,
    pub token: String,
    pub trace: Arc<Trace>,
    /// The broker's: live traces end when it is cancelled, so they do not hold the listener's
    /// graceful shutdown open.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub info: Info,
}

/// The facts the overview shows next to its charts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    pub version: &'static str,
    /// `scheme address` of every listener, MQTT and HTTP.
    pub listeners: Vec<String>,
    /// Where the durable state is, or that there is none.
    pub store: String,
    #[serde(skip)]
    pub started: Instant,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InfoAnswer<'a> {
    #[serde(flatten)]
    info: &'a Info,
    uptime_seconds: u64,
    /// Whether routing runs: the routing page says so when it does not.
    routing: bool,
}

/// The console's routes, to merge into the management listener's router.
pub fn routes(console: Arc<Console>, routing: bool) -> Router {
    let api = Router::new()
        .route("/console/api/info", get(move |state| info(state, routing)))
        .route("/console/api/sessions", get(sessions::list))
        .route("/console/api/sessions/{client_id}/disconnect", post(sessions::disconnect))
        .route("/console/api/sessions/{client_id}", delete(sessions::delete))
        .route("/console/api/trace", get(trace::stream))
        .route_layer(middleware::from_fn_with_state(console.clone(), require_token))
        .with_state(console);
    Router::new()
        .route("/console", get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }))
        .route("/console/", get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }))
        .route(
            "/console/console.css",
            get(|| async { asset(CONSOLE_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset(CONSOLE_JS, "text/javascript; charset=utf-8") }),
        )
        .merge(api)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page runs only its own script and talks only to this origin.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

async fn require_token(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    match crate::mgmt::refusal(&console.token, &headers) {
        None => next.run(request).await,
        Some(response) => response,
    }
}

async fn info(State(console): State<Arc<Console>>, routing: bool) -> Response {
    let answer = InfoAnswer {
        info: &console.info,
        uptime_seconds: console.info.started.elapsed().as_secs(),
        routing,
    };
    axum::Json(answer).into_response()
}

/// The percent-decoded value of query parameter `name` in `query` (the first one); `None`
/// when it is absent or not UTF-8.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| crate::dataplane::percent_decode_utf8(value)).flatten()
    })
}

#[cfg(test)]
mod tests;
