//! Bringing the broker up from durable state: open the store, build the broker over its
//! journal, replay what the store holds.

use std::sync::Arc;

use tracing::info;

use crate::broker::Broker;
use crate::broker::recovery;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::store::Storage;

/// Opens the store of `config` and recovers the broker from it. The error names the data
/// directory and what went wrong.
pub fn open_broker(config: &Config, hooks: Hooks) -> Result<(Arc<Broker>, Storage), String> {
    let location = config.store.data_dir.display().to_string();
    let mut storage = Storage::open(&config.store)
        .map_err(|error| format!("store.data_dir: {location}: {error}"))?;
    let broker = Broker::new(config.mqtt.clone(), hooks, storage.journal());
    match storage.take_snapshot() {
        Some(snapshot) => {
            let found = recovery::recover(&broker, snapshot)
                .map_err(|error| format!("store.data_dir: {location}: recovery failed: {error}"))?;
            info!(
                data_dir = %location,
                sessions = found.sessions,
                expired_sessions = found.expired_sessions,
                deliveries = found.deliveries,
                retained = found.retained,
                wills = found.wills,
                elapsed_ms = found.elapsed.as_millis() as u64,
                "Recovered durable state."
            );
        }
        None => info!("In-memory mode: nothing is kept on disk."),
    }
    Ok((broker, storage))
}
