//! A minimal HTTP/1.1 client for the data-plane API: arbitrary headers, raw bodies both ways,
//! one request per connection. (`http.rs` sends JSON with a bearer token through it, for the
//! management API.)

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A response: status, headers (names lowercase, in order) and the body as sent.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; `null` when it is empty.
    pub fn json(&self) -> Result<Value> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).context("a JSON body")
    }

    /// The message of an Event Grid error body, or "" when there is none.
    pub fn error_message(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// How long [`request`] waits for the whole response.
const RESPONSE: Duration = Duration::from_secs(20);

/// Sends `method target` (path and query, as sent) with `headers` and `body`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response> {
    request_within(addr, method, target, headers, body, RESPONSE).await
}

/// [`request`], waiting up to `within` for the response (a long poll).
pub async fn request_within(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    within: Duration,
) -> Result<Response> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    request_on(stream, addr, method, target, headers, body, within).await
}

/// [`request`] over HTTPS, trusting what `tls` trusts (see [`crate::certs::client_config`]).
pub async fn request_tls(
    addr: SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response> {
    let stream = crate::certs::tls_connect(addr, tls).await?;
    request_on(stream, addr, method, target, headers, body, RESPONSE).await
}

/// Sends one request on `stream` (already connected to `addr`) and reads the response until
/// the server closes the connection, for up to `within`.
async fn request_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    within: Duration,
) -> Result<Response> {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut raw))
        .await
        .context("response timed out")?;
    // A TLS peer that closes without close_notify still sent a whole response; HTTP/1.1 with
    // `connection: close` ends at the close.
    if let Err(error) = read
        && (error.kind() != std::io::ErrorKind::UnexpectedEof || raw.is_empty())
    {
        return Err(error.into());
    }
    parse(&raw)
}

/// Parses a whole response as read until the server closed the connection.
fn parse(raw: &[u8]) -> Result<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status = status_line.split(' ').nth(1).context("no status")?.parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let body = &raw[end + 4..];
    let chunked =
        headers.iter().any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Ok(Response { status, headers, body })
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").context("no chunk size")?;
        let size_text = std::str::from_utf8(&body[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}
