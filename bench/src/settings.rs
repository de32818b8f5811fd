//! What one run does, after the command line has been checked: shared read-only by every task.

use std::net::SocketAddr;
use std::time::Duration;

use gateway::mqtt::{Protocol, QoS};

/// The scenarios the tool knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// N publishers on one topic, 1 subscriber.
    FanIn,
    /// 1 publisher, N subscribers of its topic.
    FanOut,
    /// N publisher/subscriber pairs, each pair on its own topic.
    Pairs,
    /// N pairs publishing at a fixed total `--rate`; read the percentiles.
    Latency,
    /// N idle connections opened as fast as possible, then held.
    Idle,
    /// A connection storm: N connections opened as fast as possible, `--connect-concurrency`
    /// handshakes in flight; reports connects/s and each handshake's latency (TCP connect to
    /// CONNACK) in the latency fields. Held `--hold` seconds (default 0 here), then closed.
    Storm,
    /// N publishers on one topic; the broker routes every message as a CloudEvent to a webhook
    /// the tool serves itself (`--webhook-listen`).
    Routed,
    /// `--events` CloudEvents preloaded over HTTP into a queue event subscription, then N
    /// receivers receive and acknowledge them over the data-plane API until it is empty.
    Pull,
}

impl Scenario {
    /// `--drain` when the command line does not say: routed events take a hop more (a buffer
    /// and an HTTP request), so they get longer.
    pub fn default_drain(self) -> Duration {
        match self {
            Scenario::Routed => Duration::from_secs(10),
            _ => Duration::from_secs(5),
        }
    }

    /// `--clients` when the command line does not say.
    pub fn default_clients(self) -> usize {
        match self {
            Scenario::FanIn | Scenario::Pairs => 100,
            Scenario::FanOut => 1000,
            Scenario::Routed => 10,
            Scenario::Latency | Scenario::Pull => 1,
            Scenario::Idle | Scenario::Storm => 5000,
        }
    }
}

/// A checked run description.
#[derive(Debug, Clone)]
pub struct Settings {
    pub scenario: Scenario,
    pub label: String,
    /// Every MQTT address the message, idle and routed scenarios spread their connections
    /// over (`--ports`; just `--port` without it).
    pub addrs: Vec<SocketAddr>,
    pub protocol: Protocol,
    pub qos: QoS,
    pub payload: usize,
    /// JSON payloads with payload format indicator 1 (`--json`).
    pub json: bool,
    pub clients: usize,
    pub duration: Duration,
    /// Per-publisher bound on messages sent.
    pub messages: Option<u64>,
    /// Total messages per second over all publishers; `None` means as fast as possible.
    pub rate: Option<f64>,
    /// Unacknowledged QoS 1/2 publishes each publisher keeps at most.
    pub inflight: usize,
    /// Longest wait, after publishing stops, for acknowledgements and deliveries.
    pub drain: Duration,
    /// How long the idle scenario holds its connections open.
    pub hold: Duration,
    /// Connection handshakes in progress at once.
    pub connect_concurrency: usize,
    /// Session expiry of subscribers (0: clean sessions). Persistent subscribers make a
    /// broker with a store write every QoS 1/2 delivery to disk.
    pub session_expiry: u32,
    /// Routed: where the tool's webhook receiver listens (the broker's config must point its
    /// event subscription at it).
    pub webhook_listen: SocketAddr,
    /// Routed: longest wait for the broker to accept connections and for its webhook
    /// validation handshake, before publishing starts.
    pub handshake_timeout: Duration,
    /// Pull: what the receivers talk to.
    pub pull: PullSettings,
}

/// The pull scenario's part of a run.
#[derive(Debug, Clone)]
pub struct PullSettings {
    /// The broker's data-plane API (`[http] listen`).
    pub api: SocketAddr,
    /// Sent as `aeg-sas-key` when set.
    pub access_key: Option<String>,
    /// Namespace topic the events are published to.
    pub topic: String,
    /// Its queue event subscription the receivers drain.
    pub subscription: String,
    /// Events preloaded before the receivers start.
    pub events: u64,
    /// `maxEvents` of each receive (1 to 100).
    pub max_events: usize,
    /// `maxWaitTime` of each receive, seconds (1 to 120): how long the last, empty receive of
    /// each receiver waits before the receiver stops.
    pub max_wait: u64,
    /// Preload requests in flight at once.
    pub preload_concurrency: usize,
    /// The broker's pid, to read its CPU time over the receive phase from `/proc`.
    pub broker_pid: Option<u32>,
}

impl Settings {
    /// Where subscriber (or idle connection) `i` connects: round-robin over `addrs`.
    pub fn subscriber_addr(&self, i: usize) -> SocketAddr {
        self.addrs[i % self.addrs.len()]
    }

    /// Where publisher `i` connects: round-robin over `addrs`, one port on from the subscriber
    /// with the same index, so that with several ports a pair's two ends are on different nodes.
    pub fn publisher_addr(&self, i: usize) -> SocketAddr {
        self.addrs[(i + 1) % self.addrs.len()]
    }

    /// "3.1.1" or "5", as the report spells it.
    pub fn mqtt_version(&self) -> &'static str {
        match self.protocol {
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5",
        }
    }
}
