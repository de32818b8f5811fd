//! The live trace: messages published to topics matching a viewer's filter, with where routing
//! takes them, streamed to the console as server-sent events.
//!
//! # It never slows the broker
//! The hook is [`TraceTap`], a [`RoutingTap`] wrapped around the router's: with no viewer, a
//! publish costs one relaxed atomic load more than before ([`Trace::watching`]). With viewers,
//! an accepted message is offered to them:
//! - at most [`SAMPLES_PER_SECOND`] messages a second are sampled, for all viewers together;
//!   the rest are counted as sampled out;
//! - each viewer has a bounded queue of [`VIEWER_QUEUE`] samples, filled with `try_send`: a
//!   viewer that does not keep up loses samples (counted, and reported to it), and a publisher
//!   never waits;
//! - the routing preview (the CloudEvent and the subscriptions that take it) is computed on
//!   the viewer's own task, from the sample, not on the publish path, by the router's own
//!   mapping and filters ([`crate::routing::Router::preview`]). It is the event as routing
//!   builds it, but for a plain MQTT message routing draws a fresh event id each time, so the
//!   preview's id is not the delivered event's.
//!
//! At most [`MAX_VIEWERS`] viewers watch at once; each stream ends when its HTTP connection
//! goes or when the broker shuts down.
//!
//! # Events
//! Each SSE event is `data: <json>`: a `message` (`{"kind": "message", "topic", "qos",
//! "retain", "clientId", "authenticationName", "payloadBytes", "payloadPreview", "at",
//! "routed": [{"topic", "subscriptions", "event"}]}`) or a `lost` (`{"kind": "lost",
//! "dropped": n, "sampledOut": n}`: totals since the stream began, sent when they change).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Console;
use crate::hooks::{RoutedMessage, RoutingTap, TapRefused};
use crate::mgmt::ApiError;
use crate::mqtt::topic::{matches, valid_topic_filter};
use crate::store::Ticket;

/// Messages sampled a second, for all viewers together.
pub const SAMPLES_PER_SECOND: u64 = 50;
/// Samples waiting for one viewer.
pub const VIEWER_QUEUE: usize = 128;
/// Viewers at once.
pub const MAX_VIEWERS: usize = 8;
/// The most payload bytes a sample shows.
pub const PREVIEW_BYTES: usize = 256;

/// The viewers, and the sampling budget they share.
pub struct Trace {
    /// True while a viewer is attached: the one check a publish makes when none is.
    watching: AtomicBool,
    viewers: RwLock<Vec<Arc<Viewer>>>,
    /// When the current one-second sampling window began (ms since `epoch`), and how many
    /// messages it sampled.
    window: AtomicU64,
    sampled: AtomicU64,
    epoch: Instant,
    next_id: AtomicU64,
    router: Option<Arc<crate::routing::Router>>,
}

struct Viewer {
    id: u64,
    filter: String,
    sender: mpsc::Sender<Sample>,
    dropped: AtomicU64,
    sampled_out: AtomicU64,
}

/// One sampled message.
struct Sample {
    message: RoutedMessage,
    at: SystemTime,
}

/// The [`RoutingTap`] the broker calls: the router's, when there is one, plus the trace.
pub struct TraceTap {
    inner: Option<Arc<dyn RoutingTap>>,
    trace: Arc<Trace>,
}

// === impl Trace ===

impl Trace {
    /// A trace with no viewers; `router` previews where sampled messages are routed.
    pub fn new(router: Option<Arc<crate::routing::Router>>) -> Trace {
        Trace {
            watching: AtomicBool::new(false),
            viewers: RwLock::new(Vec::new()),
            window: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            router,
        }
    }

    /// The broker's tap: `inner` (the router's), with the trace looking on.
    pub fn tap(self: &Arc<Self>, inner: Option<Arc<dyn RoutingTap>>) -> Arc<dyn RoutingTap> {
        Arc::new(TraceTap { inner, trace: self.clone() })
    }

    /// Whether any viewer is attached.
    #[inline]
    pub fn watching(&self) -> bool {
        self.watching.load(Ordering::Relaxed)
    }

    /// The number of viewers attached.
    pub fn viewers(&self) -> usize {
        self.viewers.read().len()
    }

    /// Offers a published message to the viewers whose filters match it. Never waits.
    fn offer(&self, message: &RoutedMessage) {
        let viewers = self.viewers.read();
        let mut interested = viewers.iter().filter(|v| matches(&v.filter, &message.topic));
        let Some(first) = interested.next() else { return };
        if !self.take_budget() {
            first.sampled_out.fetch_add(1, Ordering::Relaxed);
            for viewer in interested {
                viewer.sampled_out.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let at = SystemTime::now();
        for viewer in std::iter::once(first).chain(interested) {
            let sample = Sample { message: message.clone(), at };
            if viewer.sender.try_send(sample).is_err() {
                viewer.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes one sample from this second's budget; false when it is spent.
    fn take_budget(&self) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        let window = self.window.load(Ordering::Relaxed);
        if now.saturating_sub(window) >= 1000
            && self
                .window
                .compare_exchange(window, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sampled.store(0, Ordering::Relaxed);
        }
        self.sampled.fetch_add(1, Ordering::Relaxed) < SAMPLES_PER_SECOND
    }

    /// Attaches a viewer of `filter`; `None` when [`MAX_VIEWERS`] watch already.
    fn attach(self: &Arc<Self>, filter: String) -> Option<(Watch, mpsc::Receiver<Sample>)> {
        self.attach_bounded(filter, VIEWER_QUEUE)
    }

    /// [`Trace::attach`] with a queue of `capacity` samples.
    fn attach_bounded(
        self: &Arc<Self>,
        filter: String,
        capacity: usize,
    ) -> Option<(Watch, mpsc::Receiver<Sample>)> {
        let (sender, receiver) = mpsc::channel(capacity);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let viewer = Arc::new(Viewer {
            id,
            filter,
            sender,
            dropped: AtomicU64::new(0),
            sampled_out: AtomicU64::new(0),
        });
        let mut viewers = self.viewers.write();
        if viewers.len() >= MAX_VIEWERS {
            return None;
        }
        viewers.push(viewer.clone());
        self.watching.store(true, Ordering::Relaxed);
        Some((Watch { trace: self.clone(), viewer }, receiver))
    }

    fn detach(&self, id: u64) {
        let mut viewers = self.viewers.write();
        viewers.retain(|v| v.id != id);
        self.watching.store(!viewers.is_empty(), Ordering::Relaxed);
    }
}

/// A viewer's registration; dropping it (the stream ended) detaches the viewer.
struct Watch {
    trace: Arc<Trace>,
    viewer: Arc<Viewer>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.trace.detach(self.viewer.id);
    }
}

// === impl TraceTap ===

impl RoutingTap for TraceTap {
    fn accept(&self, message: &RoutedMessage) -> Result<Option<Ticket>, TapRefused> {
        let accepted = match &self.inner {
            Some(inner) => inner.accept(message),
            None => Ok(None),
        };
        // A message the router refused is not published, so it is not traced.
        if accepted.is_ok() && self.trace.watching() {
            self.trace.offer(message);
        }
        accepted
    }

    fn active(&self) -> bool {
        self.trace.watching() || self.inner.as_ref().is_some_and(|inner| inner.active())
    }
}

// === the stream ===

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageEvent<'a> {
    kind: &'static str,
    topic: &'a str,
    qos: u8,
    retain: bool,
    client_id: &'a str,
    authentication_name: &'a str,
    payload_bytes: usize,
    /// The payload's first [`PREVIEW_BYTES`] bytes as text (invalid UTF-8 replaced).
    payload_preview: String,
    /// Milliseconds since the Unix epoch.
    at: u64,
    routed: Vec<RoutedEvent>,
}

#[derive(Serialize)]
struct RoutedEvent {
    topic: String,
    subscriptions: Vec<String>,
    /// The CloudEvent in the JSON event format, as it would be delivered.
    event: Box<RawValue>,
}

/// How often a quiet stream wakes: to report samples it lost meanwhile, and to send a comment
/// that keeps proxies and the browser from closing it.
const TICK: Duration = Duration::from_secs(1);

pub async fn stream(State(console): State<Arc<Console>>, RawQuery(query): RawQuery) -> Response {
    let filter = super::query_value(query.as_deref(), "filter").unwrap_or_default();
    if filter.starts_with("$share/") || !valid_topic_filter(&filter) {
        let message = format!("filter: {filter:?} is not a valid topic filter");
        let status = StatusCode::BAD_REQUEST;
        return ApiError { status, code: "InvalidRequest", message }.into_response();
    }
    let trace = console.trace.clone();
    let Some((watch, receiver)) = trace.attach(filter) else {
        let message = format!("at most {MAX_VIEWERS} live traces run at once");
        let status = StatusCode::TOO_MANY_REQUESTS;
        return ApiError { status, code: "TooManyRequests", message }.into_response();
    };
    let shutdown = console.shutdown.clone();
    let state = StreamState { watch, receiver, shutdown, reported: (0, 0), greeted: false };
    let body = futures_util::stream::unfold(state, next_chunk);
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

struct StreamState {
    watch: Watch,
    receiver: mpsc::Receiver<Sample>,
    /// Ends the stream (the broker shuts down).
    shutdown: CancellationToken,
    /// The dropped and sampled-out totals last reported.
    reported: (u64, u64),
    greeted: bool,
}

/// The stream's next chunk; `None` ends it (shutdown).
async fn next_chunk(
    mut state: StreamState,
) -> Option<(Result<String, std::io::Error>, StreamState)> {
    if !state.greeted {
        // Tells the page at once that the trace runs.
        state.greeted = true;
        return Some((Ok(": watching\n\n".to_string()), state));
    }
    let viewer = state.watch.viewer.clone();
    let lost = (viewer.dropped.load(Ordering::Relaxed), viewer.sampled_out.load(Ordering::Relaxed));
    if lost != state.reported {
        state.reported = lost;
        let event = json!({ "kind": "lost", "dropped": lost.0, "sampledOut": lost.1 });
        return Some((Ok(format!("data: {event}\n\n")), state));
    }
    let shutdown = state.shutdown.clone();
    tokio::select! {
        () = shutdown.cancelled() => None,
        sample = state.receiver.recv() => {
            let sample = sample?;
            let chunk = format!("data: {}\n\n", render(&state.watch.trace, &sample));
            Some((Ok(chunk), state))
        }
        () = tokio::time::sleep(TICK) => Some((Ok(": tick\n\n".to_string()), state)),
    }
}

/// A sample as the JSON of one SSE event, with where routing takes it.
fn render(trace: &Trace, sample: &Sample) -> String {
    let message = &sample.message;
    let preview = &message.payload[..message.payload.len().min(PREVIEW_BYTES)];
    let routed = trace
        .router
        .as_ref()
        .map(|router| router.preview(message, sample.at))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|preview| {
            let text = String::from_utf8(preview.event.to_json_bytes()).ok()?;
            Some(RoutedEvent {
                topic: preview.topic,
                subscriptions: preview.subscriptions,
                event: RawValue::from_string(text).ok()?,
            })
        })
        .collect();
    let event = MessageEvent {
        kind: "message",
        topic: &message.topic,
        qos: message.qos as u8,
        retain: message.retain,
        client_id: &message.publisher.client_id,
        authentication_name: &message.publisher.authentication_name,
        payload_bytes: message.payload.len(),
        payload_preview: String::from_utf8_lossy(preview).into_owned(),
        at: sample.at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        routed,
    };
    serde_json::to_string(&event).unwrap_or_default()
}

#[cfg(test)]
mod tests;
