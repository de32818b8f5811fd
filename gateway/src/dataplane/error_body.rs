//! Every 4xx and 5xx answer of the data plane carries Event Grid's body,
//! `{"error": {"code": "...", "message": "..."}}`: the handlers' own errors already do, and
//! this layer rewrites what axum answers by itself (unknown paths, wrong methods, extractor
//! rejections, body limits), whose bodies are plain text or empty.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The most of a non-JSON error body kept as the message.
const MAX_MESSAGE_BYTES: usize = 4096;

/// Rewrites a 4xx/5xx `response` without a JSON body into Event Grid's error body, keeping its
/// text as the message.
pub(super) async fn rewrite(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() { default_message(status) } else { text };
    // axum answers a JSON body that parses but does not fit with 422; Event Grid says 400.
    let status =
        if status == StatusCode::UNPROCESSABLE_ENTITY { StatusCode::BAD_REQUEST } else { status };
    let mut rewritten = ApiError::new(status, code(status), message).into_response();
    // Keep what the original answer told the client beyond its body, e.g. `Allow` on 405.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// The answer for a path no route serves.
pub(super) async fn not_found() -> Response {
    ApiError::not_found("no such resource on the data-plane API").into_response()
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value: &HeaderValue| value.to_str().ok())
        .is_some_and(sinks::media_type::is_json)
}

fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::REQUEST_TIMEOUT => "RequestTimeout",
        StatusCode::CONFLICT => "Conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLarge",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        status if status.is_server_error() => "InternalServerError",
        _ => "BadRequest",
    }
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => "the method is not allowed on this resource".into(),
        status => status.canonical_reason().unwrap_or("error").to_string(),
    }
}
