//! The CloudEvents webhook abuse-protection handshake, as Event Grid performs it.
//!
//! `OPTIONS <endpointUrl>` with `WebHook-Request-Origin: <origin>`; the endpoint agrees by
//! answering 2xx with `WebHook-Allowed-Origin` equal to the origin or `*`. Like Event Grid we
//! send neither `WebHook-Request-Callback` (no asynchronous approval) nor
//! `WebHook-Request-Rate`, and ignore a `WebHook-Allowed-Rate` answer.

use std::time::Duration;

use reqwest::header::HeaderValue;

use crate::error::{DeliveryError, FailureKind};

pub(crate) const REQUEST_ORIGIN: &str = "webhook-request-origin";
pub(crate) const ALLOWED_ORIGIN: &str = "webhook-allowed-origin";

/// Asks `url` whether it accepts deliveries from `origin`.
pub(super) async fn validate(
    http: &reqwest::Client,
    url: &reqwest::Url,
    origin: &HeaderValue,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let response = http
        .request(reqwest::Method::OPTIONS, url.clone())
        .header(REQUEST_ORIGIN, origin.clone())
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| with_context(DeliveryError::from_reqwest(&e)))?;
    let status = response.status();
    let allowed = response.headers().get(ALLOWED_ORIGIN).cloned();
    // The body is not needed; reading it lets the connection be reused.
    let _ = crate::http::read_body(response).await;
    if !status.is_success() {
        let detail = if status == reqwest::StatusCode::METHOD_NOT_ALLOWED {
            "the endpoint does not answer the abuse-protection handshake (OPTIONS)".to_string()
        } else {
            format!(
                "the abuse-protection handshake (OPTIONS) was answered {}",
                status.canonical_reason().unwrap_or("with a failure")
            )
        };
        return Err(DeliveryError::from_status(status.as_u16(), detail));
    }
    let refused = |detail: String| DeliveryError {
        kind: FailureKind::ValidationFailed,
        status: Some(status.as_u16()),
        detail,
    };
    let Some(allowed) = allowed else {
        return Err(refused(format!(
            "the abuse-protection handshake answer has no WebHook-Allowed-Origin header \
             (expected {:?} or \"*\")",
            origin.to_str().unwrap_or_default()
        )));
    };
    let allowed_text = allowed.to_str().unwrap_or_default().trim();
    let expected = origin.to_str().unwrap_or_default();
    if allowed_text == "*" || allowed_text.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(refused(format!(
            "the endpoint allows origin {allowed_text:?}, not {expected:?} (WebHook-Allowed-Origin)"
        )))
    }
}

fn with_context(mut error: DeliveryError) -> DeliveryError {
    error.detail = format!("abuse-protection handshake (OPTIONS): {}", error.detail);
    error
}
