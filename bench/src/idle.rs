//! The idle and storm scenarios: open `--clients` connections as fast as the broker takes them,
//! `--connect-concurrency` handshakes in flight, report the handshake rate and each handshake's
//! latency (TCP connect to CONNACK), then hold them all open for `--hold` (idle: so the broker's
//! memory can be read while every connection exists; storm: not at all by default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::client::Client;
use crate::connect;
use crate::histogram::Histogram;
use crate::report::Report;
use crate::settings::Settings;

/// Opens, holds and closes the idle connections.
pub async fn run(settings: Arc<Settings>) -> anyhow::Result<Report> {
    let run_id = format!("{}-{}", std::process::id(), crate::stamp::now_ns() % 1_000_000);
    let protocol = settings.protocol;
    let spread = settings.clone();
    // The tool is a multi-threaded process too: without this, its own descriptor table's
    // growths (10-16 ms each, see `gateway::server::fd_table`) land in the handshakes'
    // latency, whichever broker it measures.
    match std::fs::File::open("/dev/null") {
        Ok(file) => gateway::server::fd_table::reserve(&file, settings.clients),
        Err(error) => eprintln!("gridmq-bench: cannot grow the descriptor table ahead: {error}"),
    }
    let start = Instant::now();
    let opened = connect::many(settings.clients, settings.connect_concurrency, move |i| {
        let client_id = format!("gmqb-{run_id}-i{i}");
        let addr = spread.subscriber_addr(i);
        async move {
            let began = Instant::now();
            let client = Client::connect(addr, client_id, protocol, 0).await?;
            Ok((client, began.elapsed()))
        }
    })
    .await
    .context("open idle connections")?;
    let elapsed = start.elapsed().as_secs_f64();
    let mut handshakes = Histogram::default();
    let mut clients = Vec::with_capacity(opened.len());
    for (client, took) in opened {
        handshakes.record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        clients.push(client);
    }
    // The script reads the broker's memory while this sleeps; stderr tells a person watching.
    eprintln!(
        "gridmq-bench: {} idle connections open in {elapsed:.2} s; holding {:.0} s",
        clients.len(),
        settings.hold.as_secs_f64()
    );
    tokio::time::sleep(settings.hold).await;
    let mut report = Report::new(&settings);
    report.elapsed = elapsed;
    report.connects_per_sec = Some((clients.len() as f64 / elapsed).round());
    report.set_latency(&handshakes);
    // A connection the broker closed during the hold has its end of stream waiting; one poll
    // (a zero timeout still polls once) finds it without blocking on the live ones.
    for (i, mut client) in clients.into_iter().enumerate() {
        if let Ok(Err(error)) = tokio::time::timeout(Duration::ZERO, client.reader.fill()).await {
            report.add_error(format!("idle connection {i}: {error:#}"));
        }
    }
    Ok(report)
}
