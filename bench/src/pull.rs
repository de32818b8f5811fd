//! The pull scenario: throughput of pull delivery (receive + acknowledge) from a queue event
//! subscription over gridmq's data-plane API.
//!
//! The broker must have the data-plane API on (`[http]`, at `--api`) and a namespace topic
//! (`--topic`, default `orders`) with a queue event subscription (`--subscription`, default
//! `worker`, `deliveryMode = "Queue"`); `routing.max_buffered_events` must hold `--events`.
//! The tool does not configure the broker.
//!
//! Order of a run:
//! 1. Preload: `--events` CloudEvents are published with `POST /topics/TOPIC:publish` in batches
//!    (`application/cloudevents-batch+json`, up to 1,000 events and under 1 MB per request,
//!    `--preload-concurrency` requests in flight). Event `id`s are `RUN-SEQ`, `data` is the
//!    sequence number zero-padded to `--payload` characters. A 503 (routing buffer full) is
//!    retried after a pause.
//! 2. Receive: once every publish was answered 200, `--receivers` tasks start at one instant,
//!    each with its own HTTP/1.1 keep-alive connection, and loop: `:receive?maxEvents=M
//!    &maxWaitTime=W`, then `:acknowledge` with every lock token of that receive. A receiver
//!    stops at its first empty receive (which takes `--max-wait` seconds: the queue stayed
//!    empty that long).
//!
//! The report: `received` is distinct events acknowledged (the broker listed the token in
//! `succeededLockTokens`), `msgs_per_sec` that over `elapsed` (from the receivers' start to the
//! last acknowledge answered; the final empty receives are not in it), `loss` the preloaded
//! events never acknowledged (missing), `duplicates` events acknowledged more than once.
//! `p50_us`/`p99_us`/`max_us` are round trips of the non-empty receives, `ack_p50_us`/
//! `ack_p99_us` of the acknowledges.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::histogram::Histogram;
use crate::messages;
use crate::report::{Report, micros};
use crate::routed::wait_for_broker;
use crate::settings::{PullSettings, Settings};
use crate::stamp::now_ns;

/// Most events in one publish request (Event Grid's and gridmq's default bound).
const MAX_BATCH_EVENTS: usize = 1000;
/// Bytes a publish request body stays under (the bound is 1 MB).
const MAX_BATCH_BYTES: usize = 900_000;
/// JSON an event takes besides its data and id: `{"specversion":"1.0",...}`, generously.
const EVENT_OVERHEAD: usize = 160;
/// Pause before a publish answered 503 is sent again.
const BUSY_PAUSE: Duration = Duration::from_millis(50);
/// How long a preload request keeps being refused with 503 before the run gives up.
const BUSY_LIMIT: Duration = Duration::from_secs(60);
/// Timeout of publish and acknowledge requests (receives get `--max-wait` more).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, 100 per second on Linux.
const USER_HZ: f64 = 100.0;

/// Runs the pull scenario and reports on it.
pub async fn run(settings: Arc<Settings>) -> anyhow::Result<Report> {
    let pull = &settings.pull;
    wait_for_broker(pull.api, Instant::now() + settings.handshake_timeout).await?;
    let run_id = messages::run_id();
    let mut report = Report::new(&settings);
    report.duration = 0.0; // the run lasts as long as the queue takes to drain

    let preload = preload(&settings, &run_id).await?;
    report.preload_s = Some(round(preload.seconds, 3));
    if preload.seconds > 0.0 {
        report.preload_per_sec = Some((preload.events as f64 / preload.seconds).round());
    }
    report.preload_retries = Some(preload.retries);
    eprintln!(
        "gridmq-bench: preloaded {} events in {:.2} s ({} retries after 503); {} receivers \
         start",
        preload.events, preload.seconds, preload.retries, settings.clients
    );

    let prefix: Arc<str> = Arc::from(format!("{run_id}-"));
    let cpu_before = pull.broker_pid.map(broker_cpu_seconds).transpose()?;
    let mut apis = Vec::with_capacity(settings.clients);
    for _ in 0..settings.clients {
        apis.push(Api::new(pull)?);
    }
    let start_ns = now_ns();
    let mut receivers = JoinSet::new();
    for api in apis {
        let prefix = prefix.clone();
        let max_events = pull.max_events;
        receivers.spawn(async move { receive_loop(api, prefix, max_events).await });
    }
    let mut tallies = Vec::with_capacity(settings.clients);
    while let Some(joined) = receivers.join_next().await {
        tallies.push(joined.context("a receiver task failed")?);
    }
    if let (Some(before), Some(pid)) = (cpu_before, pull.broker_pid) {
        let after = broker_cpu_seconds(pid)?;
        report.broker_receive_cpu_s = Some(round(after - before, 2));
    }

    account(&mut report, tallies, preload.events, start_ns);
    Ok(report)
}

/// Merges the receivers' tallies into the report.
fn account(report: &mut Report, tallies: Vec<Tally>, events: u64, start_ns: u64) {
    report.published = events;
    report.expected = events;
    let mut receive_latency = Histogram::default();
    let mut ack_latency = Histogram::default();
    let mut seen = vec![false; usize::try_from(events).unwrap_or(usize::MAX)];
    let (mut requests, mut received_events, mut redelivered, mut failed_tokens) = (0, 0, 0, 0);
    let (mut foreign, mut last_ns) = (0u64, start_ns);
    let mut first_failed: Option<String> = None;
    for tally in tallies {
        receive_latency.merge(&tally.receive_latency);
        ack_latency.merge(&tally.ack_latency);
        requests += tally.requests;
        received_events += tally.received;
        redelivered += tally.redelivered;
        failed_tokens += tally.failed_tokens;
        foreign += tally.foreign;
        last_ns = last_ns.max(tally.last_ns);
        if first_failed.is_none() {
            first_failed = tally.first_failed;
        }
        for seq in tally.acked {
            match usize::try_from(seq).ok().and_then(|i| seen.get_mut(i)) {
                Some(slot) if *slot => report.duplicates += 1,
                Some(slot) => {
                    *slot = true;
                    report.received += 1;
                }
                None => foreign += 1,
            }
        }
        if let Some(error) = tally.error {
            report.add_error(error);
        }
    }
    report.requests = Some(requests);
    if requests > 0 {
        report.events_per_request = Some(round(received_events as f64 / requests as f64, 2));
    }
    report.redelivered = Some(redelivered);
    report.failed_tokens = Some(failed_tokens);
    if let Some(first) = first_failed {
        report.add_error(format!(
            "{failed_tokens} lock tokens failed to acknowledge, first: {first}"
        ));
    }
    if foreign > 0 {
        report.add_error(format!("{foreign} received events were not this run's preload"));
    }
    report.ack_p50_us = Some(micros(ack_latency.quantile(0.50)));
    report.ack_p99_us = Some(micros(ack_latency.quantile(0.99)));
    report.finish(start_ns, last_ns, &receive_latency);
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// The broker's user + system CPU time so far, seconds.
fn broker_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // Fields after the command name's closing parenthesis: state is the first, utime the
    // 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("no ')' in /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        let field = fields.get(i).with_context(|| format!("{path} is too short"))?;
        Ok(field.parse::<u64>().with_context(|| format!("{path}: field {field:?}"))? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / USER_HZ)
}

// --- the HTTP side --------------------------------------------------------------------------

/// One HTTP/1.1 client (one keep-alive connection when used by one task at a time) and the
/// data-plane paths of the run.
struct Api {
    client: reqwest::Client,
    key: Option<String>,
    publish: String,
    receive: String,
    acknowledge: String,
    max_wait: u64,
}

impl Api {
    fn new(pull: &PullSettings) -> anyhow::Result<Api> {
        let base = base_url(pull.api);
        let subscription =
            format!("{base}/topics/{}/eventsubscriptions/{}", pull.topic, pull.subscription);
        Ok(Api {
            client: http_client()?,
            key: pull.access_key.clone(),
            publish: format!("{base}/topics/{}:publish", pull.topic),
            receive: format!(
                "{subscription}:receive?maxEvents={}&maxWaitTime={}",
                pull.max_events, pull.max_wait
            ),
            acknowledge: format!("{subscription}:acknowledge"),
            max_wait: pull.max_wait,
        })
    }

    /// POSTs `body` and returns the status and the answer's body.
    async fn post(
        &self,
        url: &str,
        content_type: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut request =
            self.client.post(url).header("content-type", content_type).body(body).timeout(timeout);
        if let Some(key) = &self.key {
            request = request.header("aeg-sas-key", key);
        }
        let response = request.send().await.with_context(|| format!("POST {url}"))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.with_context(|| format!("read the answer of {url}"))?;
        Ok((status, body))
    }

    async fn receive(&self) -> anyhow::Result<Vec<Item>> {
        let timeout = REQUEST_TIMEOUT + Duration::from_secs(self.max_wait);
        let (status, body) =
            self.post(&self.receive, "application/json", Vec::new(), timeout).await?;
        if status != 200 {
            bail!("receive answered {status}: {}", snippet(&body));
        }
        let batch: ReceiveAnswer = serde_json::from_slice(&body)
            .with_context(|| format!("receive answer: {}", snippet(&body)))?;
        Ok(batch.value)
    }

    async fn acknowledge(&self, tokens: &[&str]) -> anyhow::Result<Outcome> {
        let body = serde_json::to_vec(&json!({ "lockTokens": tokens }))?;
        let (status, body) =
            self.post(&self.acknowledge, "application/json", body, REQUEST_TIMEOUT).await?;
        // Settle operations answer 200 with an outcome even when every token failed; anything
        // else is a bad request or a broken broker.
        if status != 200 {
            bail!("acknowledge answered {status}: {}", snippet(&body));
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("acknowledge answered {status}: {}", snippet(&body)))
    }
}

fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A reqwest client for plain http://. The workspace builds reqwest with rustls but no crypto
/// provider (`rustls-no-provider`), and building a client without one panics, so it gets a
/// ring-based TLS config with no roots: it is never used, since the tool only speaks http://
/// to the loopback address.
fn http_client() -> anyhow::Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("set up TLS")?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .context("build the HTTP client")
}

/// The start of an answer's body, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(300).collect()
}

#[derive(Debug, Deserialize)]
struct ReceiveAnswer {
    value: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    broker_properties: BrokerProperties,
    event: EventId,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BrokerProperties {
    lock_token: String,
    delivery_count: u32,
}

/// The one attribute of a received event the tool reads.
#[derive(Debug, Deserialize)]
struct EventId {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    succeeded_lock_tokens: Vec<String>,
    #[serde(default)]
    failed_lock_tokens: Vec<FailedToken>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FailedToken {
    #[serde(default)]
    error: TokenError,
}

/// Event Grid's `{"code", "message"}` of a failed lock token.
#[derive(Debug, Default, Deserialize)]
struct TokenError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

// --- preload --------------------------------------------------------------------------------

struct Preloaded {
    events: u64,
    seconds: f64,
    retries: u64,
}

/// Publishes `--events` events in batches, `--preload-concurrency` requests at a time.
async fn preload(settings: &Settings, run_id: &str) -> anyhow::Result<Preloaded> {
    let pull = &settings.pull;
    let per_batch = (MAX_BATCH_BYTES / (settings.payload + run_id.len() + EVENT_OVERHEAD))
        .clamp(1, MAX_BATCH_EVENTS) as u64;
    let batches = pull.events.div_ceil(per_batch);
    let next = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..pull.preload_concurrency.min(usize::try_from(batches).unwrap_or(usize::MAX)) {
        let api = Api::new(pull)?;
        let (next, retries) = (next.clone(), retries.clone());
        let (run_id, payload, events) = (run_id.to_owned(), settings.payload, pull.events);
        tasks.spawn(async move {
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    return Ok(());
                }
                let first = batch * per_batch;
                let body = batch_body(&run_id, first..(first + per_batch).min(events), payload)?;
                publish(&api, body, &retries).await?;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let result: anyhow::Result<()> = joined.context("a preload task failed")?;
        result?;
    }
    Ok(Preloaded {
        events: pull.events,
        seconds: started.elapsed().as_secs_f64(),
        retries: retries.load(Ordering::Relaxed),
    })
}

/// Sends one batch until the broker takes it (200), waiting out 503s.
async fn publish(api: &Api, body: Vec<u8>, retries: &AtomicU64) -> anyhow::Result<()> {
    const BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";
    let busy_until = Instant::now() + BUSY_LIMIT;
    loop {
        let (status, answer) = api.post(&api.publish, BATCH, body.clone(), REQUEST_TIMEOUT).await?;
        match status {
            200 => return Ok(()),
            503 if Instant::now() < busy_until => {
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            _ => bail!("publish answered {status}: {}", snippet(&answer)),
        }
    }
}

/// The JSON array of the events numbered `seqs`.
fn batch_body(run_id: &str, seqs: std::ops::Range<u64>, payload: usize) -> anyhow::Result<Vec<u8>> {
    let events: Vec<_> = seqs
        .map(|seq| {
            json!({
                "specversion": "1.0",
                "id": format!("{run_id}-{seq}"),
                "source": "gridmq-bench",
                "type": "bench",
                "data": format!("{seq:0>payload$}"),
            })
        })
        .collect();
    Ok(serde_json::to_vec(&events)?)
}

// --- receivers ------------------------------------------------------------------------------

/// What one receiver saw.
#[derive(Debug, Default)]
struct Tally {
    /// Sequence numbers of the events whose acknowledge succeeded, as they came.
    acked: Vec<u64>,
    /// Non-empty receives.
    requests: u64,
    /// Events those returned.
    received: u64,
    /// Of those, with `deliveryCount` above 1.
    redelivered: u64,
    failed_tokens: u64,
    first_failed: Option<String>,
    /// Events whose id is not `RUN-SEQ` of this run.
    foreign: u64,
    receive_latency: Histogram,
    ack_latency: Histogram,
    /// When the last acknowledge was answered (`now_ns` scale).
    last_ns: u64,
    /// Why the receiver stopped early.
    error: Option<String>,
}

/// Receives and acknowledges until a receive comes back empty.
async fn receive_loop(api: Api, prefix: Arc<str>, max_events: usize) -> Tally {
    let mut tally = Tally::default();
    let mut tokens: HashMap<String, Option<u64>> = HashMap::with_capacity(max_events);
    loop {
        let sent = now_ns();
        let items = match api.receive().await {
            Ok(items) => items,
            Err(error) => {
                tally.error = Some(format!("{error:#}"));
                return tally;
            }
        };
        if items.is_empty() {
            // Nothing for `--max-wait` seconds: the queue is drained.
            return tally;
        }
        tally.receive_latency.record(now_ns().saturating_sub(sent));
        tally.requests += 1;
        tally.received += items.len() as u64;
        tokens.clear();
        for item in items {
            if item.broker_properties.delivery_count > 1 {
                tally.redelivered += 1;
            }
            let seq = item.event.id.strip_prefix(&*prefix).and_then(|s| s.parse::<u64>().ok());
            if seq.is_none() {
                tally.foreign += 1;
            }
            tokens.insert(item.broker_properties.lock_token, seq);
        }
        let list: Vec<&str> = tokens.keys().map(String::as_str).collect();
        let sent = now_ns();
        let outcome = match api.acknowledge(&list).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tally.error = Some(format!("{error:#}"));
                return tally;
            }
        };
        let answered = now_ns();
        tally.ack_latency.record(answered.saturating_sub(sent));
        tally.last_ns = answered;
        for token in &outcome.succeeded_lock_tokens {
            if let Some(Some(seq)) = tokens.get(token) {
                tally.acked.push(*seq);
            }
        }
        tally.failed_tokens += outcome.failed_lock_tokens.len() as u64;
        if let (None, Some(failed)) = (&tally.first_failed, outcome.failed_lock_tokens.first()) {
            tally.first_failed = Some(format!("{}: {}", failed.error.code, failed.error.message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_a_json_array_of_numbered_events() {
        let body = batch_body("7-42", 3..5, 8).expect("encode");
        let events: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("decode");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["id"], "7-42-3");
        assert_eq!(events[1]["data"], "00000004");
        assert_eq!(events[1]["specversion"], "1.0");
    }

    #[test]
    fn duplicates_and_missing_events_are_counted() {
        let mut report = Report::default();
        let first = Tally { acked: vec![0, 1, 2], requests: 1, received: 3, ..Tally::default() };
        let second = Tally { acked: vec![2, 4], requests: 1, received: 2, ..Tally::default() };
        account(&mut report, vec![first, second], 6, 0);
        assert_eq!(report.received, 4);
        assert_eq!(report.duplicates, 1);
        assert_eq!(report.loss, 2);
        assert_eq!(report.events_per_request, Some(2.5));
        assert_eq!(report.errors, 0);
    }

    #[test]
    fn an_http_client_builds_without_a_process_wide_crypto_provider() {
        assert!(http_client().is_ok());
    }
}
