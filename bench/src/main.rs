//! `gridmq-bench`: an MQTT load generator for comparing brokers.
//!
//! Scenarios: fan-in, fan-out, pairs, latency (message scenarios, see `messages`), idle and
//! storm (many connections at once, see `idle`), routed (publishes the broker routes to the tool's own webhook
//! receiver, see `routed`), pull (events preloaded into a queue event subscription, then
//! received and acknowledged over the data-plane API, see `pull`). Every MQTT payload carries a
//! send timestamp, a publisher id and a sequence number (`stamp`), so the receivers measure
//! throughput, latency, loss, duplicates and reordering themselves. A run prints exactly one
//! JSON line on stdout (`report`); diagnostics go to stderr.
//!
//! Layout: `settings` (the checked run), `client` (handshake and packet reading with gridmq's
//! codec), `connect` (many handshakes at once), `publisher`, `subscriber`, `webhook` (the
//! routed scenario's HTTP receiver), `pull` (the pull scenario's preload and receivers),
//! `sequence` (duplicates and reordering), `histogram` (latency percentiles).

mod client;
mod connect;
mod histogram;
mod idle;
mod messages;
mod publisher;
mod pull;
mod report;
mod routed;
mod sequence;
mod settings;
mod stamp;
mod subscriber;
mod webhook;

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use gateway::mqtt::{Protocol, QoS};

use crate::report::Report;
use crate::settings::{PullSettings, Scenario, Settings};

#[derive(Parser, Debug)]
#[command(name = "gridmq-bench", version, about = "MQTT load generator: one JSON line per run")]
struct Args {
    /// What to run.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Several MQTT ports of `--host` (comma separated, e.g. `1883,1884,1885`: the nodes of a
    /// cluster) to spread the message, routed and idle/storm scenarios' connections over
    /// (routed waits for every port before publishing), round-robin:
    /// subscriber or connection `i` goes to port `i mod n`, publisher `i` to port `(i + 1) mod n`,
    /// so each pair of the pairs scenario crosses nodes. Replaces `--port`.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    ports: Vec<u16>,
    /// Name of the broker under test, copied into the report.
    #[arg(long, default_value = "")]
    label: String,
    /// QoS of publishes and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Protocol version: 3 (3.1.1) or 5.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=5))]
    mqtt: u8,
    /// Payload bytes (at least 16: the stamp; with --json at least 54).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Publish JSON payloads (`{"stamp":"<hex>","fill":"000…"}`) with payload format indicator
    /// 1 (MQTT 5), so that a routing broker carries them as inline JSON `data`.
    #[arg(long)]
    json: bool,
    /// Publishers (fan-in, routed), subscribers (fan-out), pairs (pairs, latency),
    /// connections (idle, storm) or receivers (pull; `--receivers` is the same flag). Defaults: fan-in
    /// 100, fan-out 1000, pairs 100, latency 1, idle and storm 5000, routed 10, pull 1.
    #[arg(long, visible_alias = "receivers")]
    clients: Option<usize>,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Per-publisher bound on messages; the run ends at this or the duration, whichever first.
    #[arg(long)]
    messages: Option<u64>,
    /// Total publishes per second over all publishers (latency default: 1000; otherwise
    /// unbounded).
    #[arg(long)]
    rate: Option<f64>,
    /// Unacknowledged QoS 1/2 publishes each publisher keeps at most (also capped by the
    /// broker's Receive Maximum under MQTT 5).
    #[arg(long, default_value_t = 100)]
    inflight: usize,
    /// Longest wait in seconds, after publishing, for acknowledgements and deliveries (default
    /// 5; routed 10, for the events still in the broker's routing buffer).
    #[arg(long)]
    drain: Option<f64>,
    /// Seconds the idle scenario (default 5) or the storm (default 0) holds its connections.
    #[arg(long)]
    hold: Option<f64>,
    /// Handshakes in progress at once while connecting.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Subscribers' session expiry in seconds; 0 (default) means clean sessions. Use it to
    /// measure a broker's persistent-session (on-disk) QoS 1/2 path.
    #[arg(long, default_value_t = 0)]
    session_expiry: u32,
    /// Routed: address of the tool's webhook receiver. Fixed rather than picked by the system,
    /// because the broker's config names it (`endpointUrl = "http://ADDR/hook"`; any path
    /// is accepted).
    #[arg(long, default_value = "127.0.0.1:28080")]
    webhook_listen: std::net::SocketAddr,
    /// Routed: longest wait in seconds for the broker to accept connections and to send its
    /// webhook validation handshake (OPTIONS), before publishing starts. Pull: longest wait for
    /// the data-plane API to accept connections.
    #[arg(long, default_value_t = 30.0)]
    handshake_timeout: f64,
    /// Pull: the broker's data-plane API address (`[http] listen`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    api: String,
    /// Pull: access key sent as `aeg-sas-key` (one of `[http] access_keys`).
    #[arg(long, env = "GRIDMQ_BENCH_ACCESS_KEY")]
    access_key: Option<String>,
    /// Pull: namespace topic the events are published to.
    #[arg(long, default_value = "orders")]
    topic: String,
    /// Pull: the topic's queue event subscription (`deliveryMode = "Queue"`) to drain.
    #[arg(long, default_value = "worker")]
    subscription: String,
    /// Pull: events preloaded (over HTTP batch publish) before the receivers start.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Pull: `maxEvents` of each receive, 1 to 100.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100))]
    max_events: u64,
    /// Pull: `maxWaitTime` of each receive in seconds, 1 to 120. A receiver stops at its first
    /// empty receive, which takes this long.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=120))]
    max_wait: u64,
    /// Pull: preload requests (up to 1,000 events each) in flight at once.
    #[arg(long, default_value_t = 4)]
    preload_concurrency: usize,
    /// Pull: the broker's pid; when given, the report has its CPU time over the receive phase
    /// (from `/proc/PID/stat`, Linux).
    #[arg(long)]
    broker_pid: Option<u32>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match settings(&args) {
        Ok(settings) => Arc::new(settings),
        Err(error) => {
            eprintln!("gridmq-bench: {error:#}");
            return ExitCode::from(2);
        }
    };
    crate::stamp::now_ns(); // fixes the clock origin before any task starts
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")
        .and_then(|runtime| runtime.block_on(run(settings.clone())));
    match result {
        Ok(report) => {
            print_report(&report);
            if report.errors > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS }
        }
        Err(error) => {
            // Still one JSON line, so a comparison script records the failure next to the
            // runs that worked.
            let mut report = Report::new(&settings);
            report.add_error(format!("{error:#}"));
            print_report(&report);
            eprintln!("gridmq-bench: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(settings: Arc<Settings>) -> anyhow::Result<Report> {
    match settings.scenario {
        Scenario::Idle | Scenario::Storm => idle::run(settings).await,
        Scenario::Routed => routed::run(settings).await,
        Scenario::Pull => pull::run(settings).await,
        _ => messages::run(settings).await,
    }
}

fn print_report(report: &Report) {
    match serde_json::to_string(report) {
        Ok(line) => println!("{line}"),
        Err(error) => eprintln!("gridmq-bench: cannot encode the report: {error}"),
    }
}

fn settings(args: &Args) -> anyhow::Result<Settings> {
    let ports = if args.ports.is_empty() { vec![args.port] } else { args.ports.clone() };
    let addrs = ports
        .iter()
        .map(|&port| {
            (args.host.as_str(), port)
                .to_socket_addrs()
                .with_context(|| format!("resolve {}", args.host))?
                .next()
                .with_context(|| format!("{} has no address", args.host))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let protocol = match args.mqtt {
        3 => Protocol::V311,
        5 => Protocol::V5,
        other => bail!("--mqtt must be 3 (3.1.1) or 5, not {other}"),
    };
    if args.payload < stamp::STAMP_LEN {
        bail!("--payload must be at least {} bytes (the stamp)", stamp::STAMP_LEN);
    }
    if args.json && args.payload < stamp::JSON_MIN_LEN {
        bail!("--payload must be at least {} bytes with --json", stamp::JSON_MIN_LEN);
    }
    if args.json && args.mqtt != 5 {
        bail!("--json needs --mqtt 5 (the payload format indicator)");
    }
    let seconds = |name: &str, value: f64| {
        if value.is_finite() && value >= 0.0 {
            Ok(Duration::from_secs_f64(value))
        } else {
            Err(anyhow::anyhow!("--{name} must be a non-negative number of seconds"))
        }
    };
    let rate = match (args.rate, args.scenario) {
        (Some(rate), _) if !(rate.is_finite() && rate > 0.0) => bail!("--rate must be positive"),
        (None, Scenario::Latency) => Some(1000.0),
        (rate, _) => rate,
    };
    let clients = args.clients.unwrap_or(args.scenario.default_clients());
    if clients == 0 {
        bail!("--clients must be at least 1");
    }
    if args.inflight == 0 {
        bail!("--inflight must be at least 1");
    }
    if args.events == 0 {
        bail!("--events must be at least 1");
    }
    if args.preload_concurrency == 0 {
        bail!("--preload-concurrency must be at least 1");
    }
    let api = args
        .api
        .to_socket_addrs()
        .with_context(|| format!("resolve --api {}", args.api))?
        .next()
        .with_context(|| format!("--api {} has no address", args.api))?;
    Ok(Settings {
        scenario: args.scenario,
        label: args.label.clone(),
        addrs,
        protocol,
        qos: QoS::from_u8(args.qos).context("--qos must be 0, 1 or 2")?,
        payload: args.payload,
        json: args.json,
        clients,
        duration: seconds("duration", args.duration)?,
        messages: args.messages,
        rate,
        // Ids cycle over 65,535 values; a window that large could reuse a live one.
        inflight: args.inflight.min(32_768),
        drain: match args.drain {
            Some(drain) => seconds("drain", drain)?,
            None => args.scenario.default_drain(),
        },
        hold: seconds(
            "hold",
            args.hold.unwrap_or(if args.scenario == Scenario::Storm { 0.0 } else { 5.0 }),
        )?,
        connect_concurrency: args.connect_concurrency,
        session_expiry: args.session_expiry,
        webhook_listen: args.webhook_listen,
        handshake_timeout: seconds("handshake-timeout", args.handshake_timeout)?,
        pull: PullSettings {
            api,
            access_key: args.access_key.clone(),
            topic: args.topic.clone(),
            subscription: args.subscription.clone(),
            events: args.events,
            // Both checked to be 1..=100 and 1..=120 by clap.
            max_events: usize::try_from(args.max_events).unwrap_or(100),
            max_wait: args.max_wait,
            preload_concurrency: args.preload_concurrency,
            broker_pid: args.broker_pid,
        },
    })
}
