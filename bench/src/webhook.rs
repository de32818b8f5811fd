//! The routed scenario's webhook receiver: an HTTP/1 server on `--webhook-listen` that answers
//! the abuse-protection handshake and accounts for every CloudEvent POSTed to it, as a
//! subscriber accounts for deliveries.
//!
//! - `OPTIONS` (any path): 200 with `WebHook-Allowed-Origin` echoing `WebHook-Request-Origin`
//!   (`*` without one) and `WebHook-Allowed-Rate: *`.
//! - `POST` (any path): the body is one structured-mode CloudEvent (a JSON object) or a batch
//!   (a JSON array of them). Each event's payload is `data_base64` (bytes) or `data` (a JSON
//!   string: the UTF-8 text); its first 16 bytes are the bench stamp. Always 200, so that a
//!   body the tool cannot read shows up in the report (as an error) instead of in the broker's
//!   retries.
//!
//! Latency is measured against one clock reading taken when the request's body has been read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use base64::Engine;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::histogram::Histogram;
use crate::sequence::{Arrival, Sequences};
use crate::stamp::{Stamp, now_ns};

/// Largest request body taken (a batch may be up to 1024 KiB by the broker's own bound).
const MAX_BODY: usize = 16 << 20;

/// What the receiver has seen so far.
#[derive(Debug, Default)]
pub struct Tally {
    /// Distinct stamped events.
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// POST requests.
    pub requests: u64,
    /// Events in those requests, readable or not.
    pub events: u64,
    /// Publish-to-receipt latency of every stamped event, nanoseconds.
    pub latency: Histogram,
    /// When the last stamped event arrived (`stamp::now_ns` scale); 0 when none did.
    pub last_ns: u64,
    /// Requests or events the tool could not read.
    pub unreadable: u64,
    /// Why the first of those could not be read.
    pub first_unreadable: Option<String>,
    sequences: Sequences,
}

/// The receiver's shared state.
#[derive(Default)]
pub struct Receiver {
    tally: Mutex<Tally>,
    /// Validation handshakes answered.
    handshakes: AtomicU64,
    /// Distinct events received, readable without the lock (the run polls it while draining).
    received: AtomicU64,
}

impl Receiver {
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Acquire)
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    /// Takes the counts out (the server may still be answering).
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *self.tally.lock())
    }

    /// Accounts for one POST body received at `now`.
    fn record(&self, body: &[u8], now: u64) {
        let events = match parse(body) {
            Ok(events) => events,
            Err(why) => {
                let mut tally = self.tally.lock();
                tally.requests += 1;
                tally.unreadable(why);
                return;
            }
        };
        let mut tally = self.tally.lock();
        tally.requests += 1;
        tally.events += events.len() as u64;
        let mut new = 0;
        for event in events {
            let stamp = match event.payload() {
                Ok(payload) => Stamp::read(&payload),
                Err(why) => {
                    tally.unreadable(why);
                    continue;
                }
            };
            let Some(stamp) = stamp else {
                tally.unreadable("an event's payload is shorter than the bench stamp".into());
                continue;
            };
            tally.latency.record(now.saturating_sub(stamp.sent_ns));
            tally.last_ns = now;
            match tally.sequences.record(stamp.publisher, stamp.sequence) {
                Arrival::New => new += 1,
                Arrival::Reordered => {
                    new += 1;
                    tally.reordered += 1;
                }
                Arrival::Duplicate => tally.duplicates += 1,
            }
        }
        tally.received += new;
        self.received.fetch_add(new, Ordering::Release);
    }
}

impl Tally {
    fn unreadable(&mut self, why: String) {
        self.unreadable += 1;
        if self.first_unreadable.is_none() {
            self.first_unreadable = Some(why);
        }
    }
}

/// The parts of a structured-mode CloudEvent the tool reads; the rest is skipped.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(default)]
    data_base64: Option<String>,
    /// As text: a JSON payload (`--json`) is read back as the broker wrote it.
    #[serde(default)]
    data: Option<Box<serde_json::value::RawValue>>,
}

impl Event {
    /// The MQTT payload the event carries.
    fn payload(&self) -> Result<Vec<u8>, String> {
        match (&self.data_base64, &self.data) {
            (Some(encoded), _) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|error| format!("data_base64 is not base64: {error}")),
            (None, Some(raw)) if raw.get().starts_with('"') => {
                serde_json::from_str::<String>(raw.get())
                    .map(String::into_bytes)
                    .map_err(|error| format!("data is not a JSON string: {error}"))
            }
            (None, Some(raw)) if raw.get().starts_with('{') => Ok(raw.get().as_bytes().to_vec()),
            (None, Some(other)) => Err(format!("data is not a string or an object but {other}")),
            (None, None) => Err("an event has neither data nor data_base64".into()),
        }
    }
}

/// One event (a JSON object) or a batch (a JSON array of them).
fn parse(body: &[u8]) -> Result<Vec<Event>, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let parsed = if first == Some(&b'[') {
        serde_json::from_slice::<Vec<Event>>(body)
    } else {
        serde_json::from_slice::<Event>(body).map(|event| vec![event])
    };
    parsed.map_err(|error| format!("a request body is not a CloudEvent or a batch: {error}"))
}

async fn handle(
    State(receiver): State<Arc<Receiver>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::OPTIONS {
        receiver.handshakes.fetch_add(1, Ordering::AcqRel);
        let origin = headers
            .get("webhook-request-origin")
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("*"));
        return (
            StatusCode::OK,
            [
                ("webhook-allowed-origin", origin),
                ("webhook-allowed-rate", HeaderValue::from_static("*")),
            ],
        )
            .into_response();
    }
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    receiver.record(&body, now_ns());
    StatusCode::OK.into_response()
}

/// A running receiver.
pub struct Server {
    pub receiver: Arc<Receiver>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds `addr` and serves until `stop`.
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind the webhook receiver to {addr}"))?
            // Responses are small; Nagle would hold one back behind the previous one's ACK.
            .tap_io(|stream| {
                let _ = stream.set_nodelay(true);
            });
        let receiver = Arc::new(Receiver::default());
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(receiver.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async move {
                // A dropped sender stops the server as well.
                let _ = stopped.await;
            };
            axum::serve(listener, app).with_graceful_shutdown(stopped).await
        });
        Ok(Server { receiver, stop, task })
    }

    /// Stops accepting and waits (briefly) for requests in progress.
    pub async fn stop(self) {
        let Server { stop, mut task, .. } = self;
        let _ = stop.send(());
        // A request the broker has half sent would hold a graceful shutdown; the counts are
        // taken already, so a second is all it gets.
        if tokio::time::timeout(std::time::Duration::from_secs(1), &mut task).await.is_err() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped(publisher: u32, sequence: u32) -> Vec<u8> {
        let mut payload = vec![0u8; 32];
        Stamp { sent_ns: 5, publisher, sequence }.write(&mut payload);
        payload
    }

    #[test]
    fn reads_single_events_batches_and_text_data() {
        let receiver = Receiver::default();
        let b64 = |p: &[u8]| base64::engine::general_purpose::STANDARD.encode(p);
        let single = format!(r#"{{"id":"1","data_base64":"{}"}}"#, b64(&stamped(0, 0)));
        receiver.record(single.as_bytes(), 10);
        let batch = format!(
            r#" [{{"data_base64":"{}"}},{{"data_base64":"{}"}},{{"data_base64":"{}"}}]"#,
            b64(&stamped(0, 2)),
            b64(&stamped(0, 1)),
            b64(&stamped(0, 2)),
        );
        receiver.record(batch.as_bytes(), 20);
        let text = serde_json::json!({ "data": String::from_utf8(vec![b'a'; 16]).unwrap() });
        receiver.record(text.to_string().as_bytes(), 30);
        receiver.record(b"not json", 40);
        let tally = receiver.take();
        assert_eq!(tally.requests, 4);
        assert_eq!(tally.events, 5);
        assert_eq!(tally.received, 4);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.reordered, 1);
        assert_eq!(tally.unreadable, 1);
        assert_eq!(tally.last_ns, 30);
        assert_eq!(receiver.received(), 4);
    }
}
