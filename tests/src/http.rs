//! JSON requests to the management API with a bearer token, on [`crate::http_raw`].

use std::net::SocketAddr;

use anyhow::Result;
use serde_json::Value;

/// One exchange with a bearer `token`: status and body (JSON, or `null` when empty).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    send(addr, method, path, Some(token), body).await
}

/// [`request`] with or without a bearer token.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value)> {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    let response = crate::http_raw::request(addr, method, path, &headers, body.as_bytes()).await?;
    Ok((response.status, response.json()?))
}
