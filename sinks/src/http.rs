//! The HTTP client every sink shares, and reading a destination's answer into an outcome.

use std::sync::Arc;

use serde_json::Value;

use crate::error::DeliveryError;

/// The most of an answer's body we read: enough for an error message, bounded so a
/// destination cannot make us buffer without limit.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// The structured mode's content type: one event as JSON.
pub(crate) const STRUCTURED: &str = "application/cloudevents+json; charset=utf-8";

/// The batch mode's content type: a JSON array of events.
pub(crate) const BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";

/// How much of an error body a `DeliveryError` detail quotes.
const MAX_DETAIL_CHARS: usize = 300;

/// An HTTP/1.1 client on rustls with ring, verifying servers against the platform's roots.
///
/// It follows no redirects: a destination that moved answers with a 3xx, which is a failed
/// delivery (as with Event Grid) rather than events posted somewhere nobody configured. It
/// sets no timeout of its own; each sink sets its configured timeout on every request, so
/// sinks with different timeouts share one connection pool.
pub fn http_client() -> Result<reqwest::Client, ClientError> {
    http_client_builder()?
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(ClientError::Build)
}

/// An HTTP client that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot set up certificate verification: {0}")]
    Verifier(rustls::Error),
    #[error("cannot set up TLS: {0}")]
    Tls(rustls::Error),
    #[error("cannot build the HTTP client: {0}")]
    Build(reqwest::Error),
}

/// The TLS set-up of [`http_client`] (rustls on ring, the platform's roots) on a builder, for
/// the gateway's other HTTP clients (authentication webhook, JWKS) to add their own settings.
pub fn http_client_builder() -> Result<reqwest::ClientBuilder, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new(provider.clone()).map_err(ClientError::Verifier)?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(reqwest::Client::builder().tls_backend_preconfigured(tls))
}

/// Sends `request` and sorts the answer: Ok for 200..=204, otherwise the failure with the
/// answer's error message (Event Grid's `{"error":{"code","message"}}` when it has that shape,
/// else the start of the body) in its detail.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<(), DeliveryError> {
    let response = request.send().await.map_err(|e| DeliveryError::from_reqwest(&e))?;
    let status = response.status().as_u16();
    // Reading the body, even on success, lets the connection go back to the pool.
    let body = read_body(response).await;
    if (200..=204).contains(&status) {
        return Ok(());
    }
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected status");
    let detail = match body.as_deref().map(error_message) {
        Ok(Some(message)) => format!("{reason}: {message}"),
        _ => reason.to_string(),
    };
    Err(DeliveryError::from_status(status, detail))
}

/// Reads up to [`MAX_ANSWER_BYTES`] of a body; a longer body is cut there.
pub(crate) async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, DeliveryError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| DeliveryError::from_reqwest(&e))? {
        let room = MAX_ANSWER_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(body)
}

/// The message an error body carries: Event Grid's `error.code` and `error.message`, or the
/// start of the body as text.
fn error_message(body: &[u8]) -> Option<String> {
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        let error = &value["error"];
        let code = error["code"].as_str();
        let message = error["message"].as_str();
        match (code, message) {
            (Some(code), Some(message)) => return Some(format!("{code}: {message}")),
            (Some(text), None) | (None, Some(text)) => return Some(text.to_string()),
            (None, None) => {}
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut quoted: String = text.chars().take(MAX_DETAIL_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    Some(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_prefer_event_grid_shape() {
        let body = br#"{"error":{"code":"Unauthorized","message":"bad key","details":[]}}"#;
        assert_eq!(error_message(body).unwrap(), "Unauthorized: bad key");
        assert_eq!(error_message(b"  nope \n").unwrap(), "nope");
        assert_eq!(error_message(b""), None);
        let long = "x".repeat(1000);
        assert_eq!(error_message(long.as_bytes()).unwrap().chars().count(), MAX_DETAIL_CHARS + 1);
    }
}
