//! Prometheus metrics: the recorder behind the `metrics` facade, the `/metrics` route and the
//! gauges read at scrape time.
//!
//! Every count in the gateway goes through the `metrics` facade. [`install`] puts
//! `metrics-exporter-prometheus`'s recorder behind it once per process (the first gateway
//! started installs it; later ones in the same process share it), with histogram buckets set
//! per metric family ([`catalogue::BUCKETS`]). The recorder is rendered on an axum route: on the
//! management listener behind the admin token, and, when `[metrics]` gives `listen`, on a
//! listener of its own that serves only `GET /metrics` without a credential.
//!
//! Hot paths count through handles registered once ([`catalogue`]), never a `counter!` lookup
//! with labels per message. What is cheaper to read than to keep (retained messages, backlogs,
//! parked connections, the process's memory and file descriptors) is read at scrape time
//! ([`scrape`]).
//!
//! With `[metrics] enabled = false` no recorder is installed: the facade drops every count and
//! `/metrics` answers 404.

pub mod catalogue;
mod config;
mod process;
mod scrape;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

pub use self::config::MetricsConfig;
pub use self::scrape::{ReadGauges, Scrape};

/// How often histograms are drained into their buckets when nobody scrapes, so that their
/// pending samples stay bounded.
const UPKEEP: Duration = Duration::from_secs(5);

/// The content type of the Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// A recorder that could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: cannot configure the Prometheus recorder: {0}")]
    Build(#[from] metrics_exporter_prometheus::BuildError),
}

/// Installs the Prometheus recorder behind the `metrics` facade, once per process, and returns
/// its handle. `None` when another recorder was installed first (an embedding application's
/// own); the gateway's counts then go to that recorder and `/metrics` answers 404.
pub fn install() -> Result<Option<PrometheusHandle>, MetricsError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let mut builder = PrometheusBuilder::new();
    for (family, buckets) in catalogue::BUCKETS {
        builder = builder.set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full((*family).to_string()),
            buckets,
        )?;
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    let installed = metrics::set_global_recorder(recorder).is_ok();
    catalogue::describe();
    Ok(HANDLE.get_or_init(|| installed.then_some(handle)).clone())
}

/// Drains histogram samples every few seconds until `shutdown`.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(UPKEEP);
    while shutdown.run_until_cancelled(interval.tick()).await.is_some() {
        handle.run_upkeep();
    }
}

/// The `GET /metrics` route over `scrape` (for either listener; the caller adds the token
/// check where one applies).
pub fn routes<S: Clone + Send + Sync + 'static>(scrape: Option<Arc<Scrape>>) -> Router<S> {
    Router::new().route("/metrics", get(move || render(scrape.clone())))
}

async fn render(scrape: Option<Arc<Scrape>>) -> Response {
    match scrape {
        Some(scrape) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], scrape.render()).into_response(),
        None => {
            (StatusCode::NOT_FOUND, "metrics are off ([metrics] enabled = false)\n").into_response()
        }
    }
}
