//! What is read at scrape time rather than counted as it happens: sessions, parked
//! connections and queue depths, retained messages, the journal's backlog, each namespace
//! topic's backlog, and the process's memory and file descriptors.

use std::collections::BTreeMap;
use std::sync::Arc;

use metrics::{gauge, histogram};
use metrics_exporter_prometheus::PrometheusHandle;

use super::catalogue as c;
use super::process;
use crate::broker::Broker;
use crate::routing::Router;

/// The recorder's handle and the parts of the gateway whose state is read at each scrape.
pub struct Scrape {
    handle: PrometheusHandle,
    broker: Arc<Broker>,
    router: Option<Arc<Router>>,
}

impl Scrape {
    pub fn new(handle: PrometheusHandle, broker: Arc<Broker>, router: Option<Arc<Router>>) -> Self {
        Scrape { handle, broker, router }
    }

    /// Reads the scrape-time gauges, then renders every metric in the text format.
    pub fn render(&self) -> String {
        let depths = histogram!(c::SESSION_QUEUE_DEPTH);
        let census = self.broker.census(|depth| depths.record(depth as f64));
        gauge!(c::SESSIONS).set(census.sessions as f64);
        gauge!(c::CONNECTIONS_PARKED).set(census.parked as f64);
        gauge!(c::RETAINED_MESSAGES).set(census.retained as f64);
        gauge!(c::RETAINED_BYTES).set(census.retained_bytes as f64);
        if let Some(journal) = self.broker.journal() {
            gauge!(c::JOURNAL_BACKLOG).set(journal.backlog() as f64);
        }
        if let Some(router) = &self.router {
            let mut topics: BTreeMap<String, (usize, Option<f64>)> = BTreeMap::new();
            for subscription in router.subscriptions() {
                let entry = topics.entry(subscription.topic).or_default();
                entry.0 += subscription.waiting + subscription.locked;
            }
            for (topic, age) in router.oldest_pending() {
                let entry = topics.entry(topic).or_default();
                entry.1 = Some(entry.1.map_or(age, |a: f64| a.max(age)));
            }
            for (topic, (backlog, age)) in topics {
                gauge!(c::TOPIC_BACKLOG, "topic" => topic.clone()).set(backlog as f64);
                gauge!(c::TOPIC_OLDEST_AGE, "topic" => topic).set(age.unwrap_or(0.0));
            }
        }
        if let Some(bytes) = process::resident_bytes() {
            gauge!(c::PROCESS_RSS).set(bytes as f64);
        }
        if let Some(fds) = process::open_fds() {
            gauge!(c::PROCESS_FDS).set(fds as f64);
        }
        self.handle.render()
    }
}
