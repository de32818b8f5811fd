//! The `api-version` query parameter: the versions of Event Grid's namespace data plane that
//! gridmq serves, or none at all, are accepted; anything else gets Event Grid's 400.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The data-plane versions accepted: the GA namespace versions (2023-11-01, and 2024-06-01,
/// which `azure-eventgrid` 4.2x sends), the namespace previews the SDKs shipped with, and the
/// previews of the MQTT HTTP publish and retained-message APIs.
pub const SUPPORTED: [&str; 7] = [
    "2023-11-01",
    "2024-06-01",
    "2023-06-01-preview",
    "2023-10-01-preview",
    "2025-02-15-preview",
    "2025-08-01-preview",
    "2025-11-16-preview",
];

/// Refuses a request whose `api-version` is not one of [`SUPPORTED`].
pub(super) async fn check(request: Request, next: Next) -> Response {
    let params = match super::query_params(request.uri()) {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    match super::param(&params, "api-version") {
        Some(version) if !SUPPORTED.contains(&version) => unsupported(version).into_response(),
        _ => next.run(request).await,
    }
}

fn unsupported(version: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "UnsupportedApiVersion",
        format!(
            "The HTTP resource that matches the request URI does not support the API version \
             '{version}'. Supported api-versions are: {}.",
            SUPPORTED.join(", ")
        ),
    )
}
