//! A webhook endpoint for trying gridmq: it accepts every delivery and prints one line per
//! CloudEvent it receives.
//!
//! ```text
//! cargo run -p gridmq-examples --bin webhook_receiver -- --listen 127.0.0.1:8000
//! ```
//!
//! Point a subscription at `http://127.0.0.1:8000/hook` (any path works). The receiver answers
//! the CloudEvents abuse-protection handshake (an `OPTIONS` request carrying
//! `WebHook-Request-Origin`) by allowing that origin, and every `POST` with 200. It reads all
//! three shapes a delivery can take: a structured event (`application/cloudevents+json`), a
//! batch (`application/cloudevents-batch+json`, or any JSON array), and binary mode, where the
//! attributes are `ce-` headers and the body is the data.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use clap::Parser;
use serde_json::Value;

/// Prints the CloudEvents gridmq delivers to a webhook.
#[derive(Debug, Parser)]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
}

/// The attributes printed for each event, in this order; extensions follow.
const SHOWN: [&str; 6] = ["type", "id", "source", "subject", "time", "datacontenttype"];

/// Longest data excerpt printed, in characters: a line per event stays readable.
const MAX_DATA_CHARS: usize = 200;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("webhook receiver listening on http://{}/hook", listener.local_addr()?);
    axum::serve(listener, app())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

/// The receiver: every path, `OPTIONS` for validation and `POST` for deliveries.
fn app() -> Router {
    Router::new().fallback(receive)
}

async fn receive(method: Method, headers: HeaderMap, body: Bytes) -> Response {
    match method {
        Method::OPTIONS => handshake(&headers),
        Method::POST => {
            for line in describe(&headers, &body) {
                println!("{line}");
            }
            StatusCode::OK.into_response()
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST, OPTIONS")]).into_response(),
    }
}

/// Answers the CloudEvents webhook validation handshake: the requesting origin is allowed.
fn handshake(headers: &HeaderMap) -> Response {
    let origin = headers
        .get("webhook-request-origin")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("*"));
    println!(
        "validation request from origin {}: allowed",
        String::from_utf8_lossy(origin.as_bytes())
    );
    let mut response = StatusCode::OK.into_response();
    let response_headers = response.headers_mut();
    response_headers.insert("webhook-allowed-origin", origin);
    response_headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// One line per event in the delivery.
fn describe(headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    let attempt = header_text(headers, "aeg-delivery-count").unwrap_or("-").to_string();
    let prefix = format!("[delivery {attempt}]");
    if headers.contains_key("ce-id") {
        return vec![format!("{prefix} binary {}", binary_event(headers, body))];
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(events)) => {
            let count = events.len();
            events
                .iter()
                .enumerate()
                .map(|(index, event)| {
                    format!("{prefix} batch {}/{count} {}", index + 1, structured_event(event))
                })
                .collect()
        }
        Ok(event @ Value::Object(_)) => {
            vec![format!("{prefix} structured {}", structured_event(&event))]
        }
        Ok(other) => vec![format!("{prefix} not a CloudEvent: {}", excerpt(&other.to_string()))],
        Err(error) => vec![format!("{prefix} body is not JSON ({error}), {} bytes", body.len())],
    }
}

/// An event in the JSON format, as one line.
fn structured_event(event: &Value) -> String {
    let Value::Object(map) = event else {
        return format!("not a CloudEvent: {}", excerpt(&event.to_string()));
    };
    let mut fields = Vec::new();
    for name in SHOWN {
        if let Some(value) = map.get(name) {
            fields.push(format!("{name}={}", plain(value)));
        }
    }
    let skipped = SHOWN.iter().chain(&["specversion", "data", "data_base64"]).copied();
    let skipped: Vec<&str> = skipped.collect();
    for (name, value) in map.iter().filter(|(name, _)| !skipped.contains(&name.as_str())) {
        fields.push(format!("{name}={}", plain(value)));
    }
    if let Some(data) = map.get("data") {
        fields.push(format!("data={}", excerpt(&data.to_string())));
    } else if let Some(Value::String(encoded)) = map.get("data_base64") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded);
        fields.push(match decoded {
            Ok(bytes) => format!("data_base64={} bytes", bytes.len()),
            Err(_) => format!("data_base64=invalid:{}", excerpt(encoded)),
        });
    }
    fields.join(" ")
}

/// A binary-mode event: attributes from `ce-` headers, data from the body.
fn binary_event(headers: &HeaderMap, body: &[u8]) -> String {
    let mut fields = Vec::new();
    for name in SHOWN {
        let header = if name == "datacontenttype" {
            "content-type".to_string()
        } else {
            format!("ce-{name}")
        };
        if let Some(value) = header_text(headers, &header) {
            fields.push(format!("{name}={value}"));
        }
    }
    let mut extensions: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(name, value)| {
            let attribute = name.as_str().strip_prefix("ce-")?;
            let shown = SHOWN.contains(&attribute) || attribute == "specversion";
            (!shown).then_some((attribute, value.to_str().unwrap_or("<not text>")))
        })
        .collect();
    extensions.sort_unstable();
    for (name, value) in extensions {
        fields.push(format!("{name}={value}"));
    }
    fields.push(match std::str::from_utf8(body) {
        Ok(text) => format!("data={}", excerpt(text)),
        Err(_) => format!("data={} bytes", body.len()),
    });
    fields.join(" ")
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// A JSON value without quotes when it is a string.
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `text`, cut to `MAX_DATA_CHARS` characters.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(MAX_DATA_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

// A binary's root resolves modules beside it (src/bin/), so the sibling folder is named.
#[cfg(test)]
#[path = "webhook_receiver/tests.rs"]
mod tests;
