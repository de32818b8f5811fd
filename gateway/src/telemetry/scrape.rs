//! What is read at scrape time rather than counted as it happens: the process's memory and
//! file descriptors here, and the gateway's parts (sessions, parked connections and queue
//! depths, retained messages, the journal's backlog, each namespace topic's backlog) through
//! the reader the composition root gives (`gateway/gauges.rs`).

use metrics::gauge;
use metrics_exporter_prometheus::PrometheusHandle;

use super::catalogue as c;
use super::process;

/// Reads the gauges of the parts of the gateway (sessions, queues, backlogs) at a scrape. The
/// composition root supplies it, so that the metrics know no broker or router.
pub type ReadGauges = Box<dyn Fn() + Send + Sync>;

/// The recorder's handle and what is read at each scrape.
pub struct Scrape {
    handle: PrometheusHandle,
    read_gauges: ReadGauges,
}

impl Scrape {
    pub fn new(handle: PrometheusHandle, read_gauges: ReadGauges) -> Self {
        Scrape { handle, read_gauges }
    }

    /// Reads the scrape-time gauges, then renders every metric in the text format.
    pub fn render(&self) -> String {
        (self.read_gauges)();
        if let Some(bytes) = process::resident_bytes() {
            gauge!(c::PROCESS_RSS).set(bytes as f64);
        }
        if let Some(fds) = process::open_fds() {
            gauge!(c::PROCESS_FDS).set(fds as f64);
        }
        self.handle.render()
    }
}
