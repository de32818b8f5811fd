//! The message scenarios (fan-in, fan-out, pairs, latency): who publishes where, who
//! subscribes to what, and the run itself. The publishing half is shared with `routed`.
//!
//! Order of a run: every subscriber connects and has its SUBACK; every publisher connects; then
//! publishing starts for all at one instant. When the publishers are done (duration or message
//! bound, then their acknowledgements), the subscribers drain and the counts are added up.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::histogram::Histogram;
use crate::report::{Report, micros};
use crate::settings::{Scenario, Settings};
use crate::{connect, publisher, subscriber};

/// Who publishes to which topic and who subscribes to which.
#[derive(Debug)]
struct Plan {
    publishers: Vec<Arc<str>>,
    subscribers: Vec<String>,
}

impl Plan {
    fn of(settings: &Settings, run_id: &str) -> Plan {
        let n = settings.clients;
        let topic = |name: &str| format!("bench/{run_id}/{name}");
        match settings.scenario {
            Scenario::FanIn => Plan {
                publishers: vec![Arc::from(topic("fan-in")); n],
                subscribers: vec![topic("fan-in")],
            },
            Scenario::FanOut => Plan {
                publishers: vec![Arc::from(topic("fan-out"))],
                subscribers: vec![topic("fan-out"); n],
            },
            _ => Plan {
                publishers: (0..n).map(|i| Arc::from(topic(&format!("pair/{i}")))).collect(),
                subscribers: (0..n).map(|i| topic(&format!("pair/{i}"))).collect(),
            },
        }
    }

    /// Subscribers of the topic publisher `i` uses (filters here are exact topics).
    fn audience(&self, i: usize) -> u64 {
        self.subscribers.iter().filter(|s| **s == *self.publishers[i]).count() as u64
    }
}

/// A run id distinct per process, so a broker that kept state from an earlier run stays out of
/// this one (it goes into topics and client ids).
pub fn run_id() -> String {
    format!("{}-{}", std::process::id(), crate::stamp::now_ns() % 1_000_000)
}

/// Runs one message scenario and reports on it.
pub async fn run(settings: Arc<Settings>) -> anyhow::Result<Report> {
    let run_id = run_id();
    let plan = Plan::of(&settings, &run_id);
    let (protocol, qos) = (settings.protocol, settings.qos);

    let filters = plan.subscribers.clone();
    let id = run_id.clone();
    let session_expiry = settings.session_expiry;
    let spread = settings.clone();
    let subscribers = connect::many(filters.len(), settings.connect_concurrency, move |i| {
        let filter = filters[i].clone();
        let addr = spread.subscriber_addr(i);
        let client_id = format!("gmqb-{id}-s{i}");
        async move {
            let mut client = Client::connect(addr, client_id, protocol, session_expiry).await?;
            client.subscribe(&filter, qos).await?;
            Ok(client)
        }
    })
    .await
    .context("connect subscribers")?;
    let publishers = connect_publishers(&settings, &run_id, plan.publishers.len()).await?;

    let (over_tx, over_rx) = watch::channel(false);
    let sub_tasks: Vec<_> = subscribers
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(subscriber::run(client, i, over_rx.clone(), settings.drain))
        })
        .collect();
    let publishing = Publishing::start(publishers, &plan.publishers, &settings);
    let start_ns = publishing.start_ns;

    let mut report = Report::new(&settings);
    publishing.finish(&settings, &mut report, |i| plan.audience(i)).await?;
    let _ = over_tx.send(true);

    let mut latency = Histogram::default();
    let mut last_ns = start_ns;
    for task in sub_tasks {
        let outcome = task.await.context("subscriber task")?;
        report.received += outcome.received;
        report.duplicates += outcome.duplicates;
        report.reordered += outcome.reordered;
        latency.merge(&outcome.latency);
        last_ns = last_ns.max(outcome.last_ns);
        if let Some(error) = outcome.error {
            report.add_error(error);
        }
    }
    report.finish(start_ns, last_ns, &latency);
    Ok(report)
}

/// Connects `count` publishers (client ids `gmqb-RUN-pI`).
pub async fn connect_publishers(
    settings: &Settings,
    run_id: &str,
    count: usize,
) -> anyhow::Result<Vec<Client>> {
    let protocol = settings.protocol;
    let addrs: Vec<_> = (0..count).map(|i| settings.publisher_addr(i)).collect();
    let id = run_id.to_owned();
    connect::many(count, settings.connect_concurrency, move |i| {
        Client::connect(addrs[i], format!("gmqb-{id}-p{i}"), protocol, 0)
    })
    .await
    .context("connect publishers")
}

/// Publishers at work, all started at one instant.
pub struct Publishing {
    tasks: Vec<JoinHandle<publisher::Outcome>>,
    /// When publishing started (`stamp::now_ns` scale).
    pub start_ns: u64,
}

impl Publishing {
    /// Starts publisher `i` on `topics[i]`.
    pub fn start(clients: Vec<Client>, topics: &[Arc<str>], settings: &Arc<Settings>) -> Self {
        let start = Instant::now();
        let start_ns = crate::stamp::now_ns();
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let topic = topics[i].clone();
                tokio::spawn(publisher::run(client, i as u32, topic, settings.clone(), start))
            })
            .collect();
        Publishing { tasks, start_ns }
    }

    /// Waits for every publisher (duration, then acknowledgements) and adds what they did to
    /// `report`: each message a publisher got through counts `audience(i)` times in
    /// `expected`; at QoS 1/2 the acknowledgements' round trips are the `puback_*` fields.
    pub async fn finish(
        self,
        settings: &Settings,
        report: &mut Report,
        audience: impl Fn(usize) -> u64,
    ) -> anyhow::Result<()> {
        let mut ack_latency = Histogram::default();
        for (i, task) in self.tasks.into_iter().enumerate() {
            let outcome = task.await.context("publisher task")?;
            report.published += outcome.published;
            report.acked += outcome.acked;
            report.refused += outcome.refused;
            let counted = match settings.qos {
                gateway::mqtt::QoS::AtMostOnce => outcome.published,
                _ => outcome.acked - outcome.refused,
            };
            report.expected += counted * audience(i);
            ack_latency.merge(&outcome.ack_latency);
            if let Some(error) = outcome.error {
                report.add_error(error);
            }
        }
        if settings.qos != gateway::mqtt::QoS::AtMostOnce {
            report.puback_p50_us = Some(micros(ack_latency.quantile(0.50)));
            report.puback_p99_us = Some(micros(ack_latency.quantile(0.99)));
        }
        Ok(())
    }
}
