//! The one JSON line a run prints.

use serde::Serialize;

use crate::histogram::Histogram;
use crate::settings::{Scenario, Settings};

/// Everything a run measured. Latencies are microseconds; counts are messages (deliveries, for
/// fan-out: one message reaching 1,000 subscribers counts 1,000).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub scenario: Option<Scenario>,
    pub label: String,
    pub qos: u8,
    pub mqtt: &'static str,
    pub clients: usize,
    pub payload: usize,
    /// Configured duration, seconds.
    pub duration: f64,
    /// From the start of publishing to the last delivery, seconds.
    pub elapsed: f64,
    /// PUBLISH packets sent by all publishers.
    pub published: u64,
    /// Of those, acknowledged (PUBACK at QoS 1, PUBCOMP at QoS 2); 0 at QoS 0.
    pub acked: u64,
    /// Of `acked`, acknowledgements with an error reason code (MQTT 5, e.g. 0x97 Quota
    /// exceeded): refused messages, not expected anywhere.
    pub refused: u64,
    /// Deliveries the subscribers should have seen: published (QoS 0) or acknowledged and not
    /// refused (QoS >= 1) messages times the subscribers of their topic (routed: the webhook).
    pub expected: u64,
    /// Distinct deliveries seen.
    pub received: u64,
    /// `received` per second of `elapsed`.
    pub msgs_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// `expected - received`, never negative.
    pub loss: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Idle and storm scenarios: completed handshakes per second (the latency fields are then
    /// the handshakes', TCP connect to CONNACK).
    pub connects_per_sec: Option<f64>,
    /// Routed: POST requests the webhook received (each one event, or a batch). Pull: receive
    /// requests that returned events.
    pub requests: Option<u64>,
    /// Routed: events (distinct or not) per POST request. Pull: events per non-empty receive.
    pub events_per_request: Option<f64>,
    /// Routed: validation handshakes (OPTIONS) the webhook answered.
    pub handshakes: Option<u64>,
    /// Routed: `published` per second of the configured duration (the publishing window).
    pub published_per_sec: Option<f64>,
    /// Routed: distinct events the webhook had received when the publishing window closed,
    /// before any drain: what routing kept up with while the publishers ran.
    pub window_received: Option<u64>,
    /// Routed: `window_received` per second of the configured duration.
    pub window_events_per_sec: Option<f64>,
    /// Pull: seconds the preload took (all events published and answered 200).
    pub preload_s: Option<f64>,
    /// Pull: preloaded events per second.
    pub preload_per_sec: Option<f64>,
    /// Pull: preload requests answered 503 (routing buffer full) and sent again.
    pub preload_retries: Option<u64>,
    /// Pull: acknowledge round trips, microseconds (`p50_us`/`p99_us`/`max_us` are the
    /// non-empty receives').
    pub ack_p50_us: Option<f64>,
    pub ack_p99_us: Option<f64>,
    /// Message and routed scenarios at QoS 1/2: the publishers' acknowledgement round trips
    /// (PUBLISH to PUBACK, or to PUBCOMP at QoS 2), microseconds.
    pub puback_p50_us: Option<f64>,
    pub puback_p99_us: Option<f64>,
    /// Pull: events received with `deliveryCount` above 1 (a lock that expired or was lost).
    pub redelivered: Option<u64>,
    /// Pull: lock tokens the broker listed in `failedLockTokens` of an acknowledge.
    pub failed_tokens: Option<u64>,
    /// Pull: the broker's CPU time (user + system) over the receive phase, seconds, when
    /// `--broker-pid` was given.
    pub broker_receive_cpu_s: Option<f64>,
    /// Connections that failed or were closed by the broker mid-run.
    pub errors: usize,
    /// The first of those failures, verbatim.
    pub first_error: Option<String>,
}

impl Report {
    /// A report naming the run, with every measurement zero.
    pub fn new(settings: &Settings) -> Report {
        Report {
            scenario: Some(settings.scenario),
            label: settings.label.clone(),
            qos: settings.qos as u8,
            mqtt: settings.mqtt_version(),
            clients: settings.clients,
            payload: settings.payload,
            duration: settings.duration.as_secs_f64(),
            ..Report::default()
        }
    }

    /// Fills the latency fields from nanosecond samples.
    pub fn set_latency(&mut self, latency: &Histogram) {
        self.p50_us = micros(latency.quantile(0.50));
        self.p99_us = micros(latency.quantile(0.99));
        self.max_us = micros(latency.max());
    }

    /// Fills the rate, loss and latency fields once the counts are in: `elapsed` runs from
    /// the start of publishing (`start_ns`) to the last delivery (`last_ns`).
    pub fn finish(&mut self, start_ns: u64, last_ns: u64, latency: &Histogram) {
        self.elapsed = last_ns.saturating_sub(start_ns) as f64 / 1e9;
        if self.elapsed > 0.0 {
            self.msgs_per_sec = (self.received as f64 / self.elapsed).round();
        }
        self.loss = self.expected.saturating_sub(self.received);
        self.set_latency(latency);
    }

    /// Records a failed connection; keeps the first message.
    pub fn add_error(&mut self, error: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error);
        }
    }
}

/// Nanoseconds as microseconds with one decimal.
pub fn micros(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}
