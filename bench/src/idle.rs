//! The idle scenario: open `--clients` connections as fast as the broker takes them, report the
//! handshake rate, then hold them all open for `--hold` so the broker's memory can be read
//! while every connection exists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::client::Client;
use crate::connect;
use crate::report::Report;
use crate::settings::Settings;

/// Opens, holds and closes the idle connections.
pub async fn run(settings: Arc<Settings>) -> anyhow::Result<Report> {
    let run_id = format!("{}-{}", std::process::id(), crate::stamp::now_ns() % 1_000_000);
    let (addr, protocol) = (settings.addr, settings.protocol);
    let start = Instant::now();
    let clients = connect::many(settings.clients, settings.connect_concurrency, move |i| {
        Client::connect(addr, format!("gmqb-{run_id}-i{i}"), protocol, 0)
    })
    .await
    .context("open idle connections")?;
    let elapsed = start.elapsed().as_secs_f64();
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
    // A connection the broker closed during the hold has its end of stream waiting; one poll
    // (a zero timeout still polls once) finds it without blocking on the live ones.
    for (i, mut client) in clients.into_iter().enumerate() {
        if let Ok(Err(error)) = tokio::time::timeout(Duration::ZERO, client.reader.fill()).await {
            report.add_error(format!("idle connection {i}: {error:#}"));
        }
    }
    Ok(report)
}
