//! The routed scenario: N publishers on one topic, as in fan-in, but the receiving end is the
//! broker's routing pipeline: every message becomes a CloudEvent POSTed to the tool's own
//! webhook receiver (`webhook`), which accounts for it as a subscriber would.
//!
//! The broker must be configured to route the run's topic (`bench/RUN/routed`; a route with
//! the default filter `#` does) to an event subscription whose `endpointUrl` is
//! `http://WEBHOOK-LISTEN/...`. The tool does not configure the broker.
//!
//! Order of a run: the receiver listens; the tool waits (up to `--handshake-timeout`) for the
//! broker to accept TCP connections (on every port of `--ports`: the nodes of a cluster) and
//! for its validation handshake (OPTIONS), which a broker sends when it starts and after a
//! refused attempt, so the broker may be started before or after the tool. Then the
//! publishers connect (spread over the ports) and publish for the duration, wait for their
//! acknowledgements, and the receiver drains until every expected event arrived or `--drain`
//! passed. The receiver's count is also read when the publishing window closes, so the report
//! has both what routing kept up with while publishing and what arrived in the end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::messages::{self, Publishing};
use crate::report::Report;
use crate::settings::Settings;
use crate::webhook::{Receiver, Server};

/// How often the waits look again.
const POLL: Duration = Duration::from_millis(20);

/// Runs the routed scenario and reports on it.
pub async fn run(settings: Arc<Settings>) -> anyhow::Result<Report> {
    let server = Server::start(settings.webhook_listen).await?;
    let result = drive(&settings, &server.receiver).await;
    server.stop().await;
    result
}

async fn drive(settings: &Arc<Settings>, receiver: &Receiver) -> anyhow::Result<Report> {
    let ready_by = Instant::now() + settings.handshake_timeout;
    for &addr in &settings.addrs {
        wait_for_broker(addr, ready_by).await?;
    }
    if receiver.handshakes() == 0 {
        eprintln!(
            "gridmq-bench: waiting for the broker's webhook handshake on {}",
            settings.webhook_listen
        );
    }
    while receiver.handshakes() == 0 {
        if Instant::now() >= ready_by {
            bail!(
                "no webhook validation handshake (OPTIONS) reached {} within {:?}: does the \
                 broker route every topic to an event subscription with endpointUrl \
                 http://{}/hook?",
                settings.webhook_listen,
                settings.handshake_timeout,
                settings.webhook_listen,
            );
        }
        tokio::time::sleep(POLL).await;
    }

    let run_id = messages::run_id();
    let topic: Arc<str> = Arc::from(format!("bench/{run_id}/routed"));
    let topics = vec![topic; settings.clients];
    let publishers = messages::connect_publishers(settings, &run_id, settings.clients).await?;
    let publishing = Publishing::start(publishers, &topics, settings);
    let start_ns = publishing.start_ns;
    let window_end = Instant::now() + settings.duration;
    let mut report = Report::new(settings);
    // The publishers finish after the window (their acknowledgements come later), so the
    // window's count is taken on the way; with a message bound they may finish first.
    let at_window_end = {
        let finish = publishing.finish(settings, &mut report, |_| 1);
        tokio::pin!(finish);
        tokio::select! {
            result = &mut finish => {
                result?;
                None
            }
            () = tokio::time::sleep_until(window_end) => {
                let count = receiver.received();
                finish.await?;
                Some(count)
            }
        }
    };
    let window_received = at_window_end.unwrap_or_else(|| receiver.received());
    let window = settings.duration.as_secs_f64();
    if window > 0.0 {
        report.published_per_sec = Some((report.published as f64 / window).round());
        report.window_events_per_sec = Some((window_received as f64 / window).round());
    }
    report.window_received = Some(window_received);

    // Every event the broker accepted is owed to the webhook; wait for them, within the drain.
    let drain_end = Instant::now() + settings.drain;
    while receiver.received() < report.expected && Instant::now() < drain_end {
        tokio::time::sleep(POLL).await;
    }
    let tally = receiver.take();
    report.received = tally.received;
    report.duplicates = tally.duplicates;
    report.reordered = tally.reordered;
    report.requests = Some(tally.requests);
    report.handshakes = Some(receiver.handshakes());
    if tally.requests > 0 {
        let per = tally.events as f64 / tally.requests as f64;
        report.events_per_request = Some((per * 100.0).round() / 100.0);
    }
    if let Some(why) = tally.first_unreadable {
        report.add_error(format!(
            "webhook: {} unreadable events or bodies, first: {why}",
            tally.unreadable
        ));
    }
    report.finish(start_ns, tally.last_ns.max(start_ns), &tally.latency);
    Ok(report)
}

/// Waits until `addr` accepts a TCP connection (the connection is dropped at once).
pub async fn wait_for_broker(addr: SocketAddr, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let attempt = tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await;
        match attempt {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(_)) if Instant::now() < deadline => tokio::time::sleep(POLL * 5).await,
            Ok(Err(error)) => {
                return Err(error).with_context(|| format!("the broker at {addr} never answered"));
            }
            Err(_) => bail!("the broker at {addr} never answered"),
        }
    }
}
