//! The scrape-time gauges of the broker and the router: sessions, parked connections and queue
//! depths, retained messages, the journal's backlog, and each namespace topic's backlog. The
//! metrics endpoint ([`crate::telemetry::Scrape`]) calls the reader at each scrape.

use std::collections::BTreeMap;
use std::sync::Arc;

use metrics::{gauge, histogram};

use crate::broker::Broker;
use crate::routing::Router;
use crate::telemetry::ReadGauges;
use crate::telemetry::catalogue as c;

/// Reads the gauges of `broker` and `router`.
pub(super) fn reader(broker: Arc<Broker>, router: Option<Arc<Router>>) -> ReadGauges {
    Box::new(move || read(&broker, router.as_deref()))
}

fn read(broker: &Broker, router: Option<&Router>) {
    let depths = histogram!(c::SESSION_QUEUE_DEPTH);
    let census = broker.census(|depth| depths.record(depth as f64));
    gauge!(c::SESSIONS).set(census.sessions as f64);
    gauge!(c::CONNECTIONS_PARKED).set(census.parked as f64);
    gauge!(c::RETAINED_MESSAGES).set(census.retained as f64);
    gauge!(c::RETAINED_BYTES).set(census.retained_bytes as f64);
    if let Some(journal) = broker.journal() {
        gauge!(c::JOURNAL_BACKLOG).set(journal.backlog() as f64);
    }
    if let Some(router) = router {
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
}
