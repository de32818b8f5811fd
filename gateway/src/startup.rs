//! Bringing the broker up from durable state: open the store, read back what it holds, build
//! the broker over its journal, replay the rest.
//!
//! Opening and recovering are two steps because the namespace's resources, which the store also
//! holds, must be read before the broker's hooks are built ([`crate::namespace`]).

use std::sync::Arc;

use tracing::info;

use crate::broker::Broker;
use crate::broker::recovery;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::store::{Snapshot, Storage};

/// Opens the store of `config` and reads it back (`None` in in-memory mode). The error names
/// the data directory and what went wrong.
pub fn open_store(config: &Config) -> Result<(Storage, Option<Snapshot>), String> {
    let location = config.store.data_dir.display().to_string();
    let mut storage = Storage::open(&config.store)
        .map_err(|error| format!("store.data_dir: {location}: {error}"))?;
    let snapshot = storage.take_snapshot();
    Ok((storage, snapshot))
}

/// Builds the broker with `hooks` over `storage`'s journal and recovers it from `snapshot`.
pub fn recover_broker(
    config: &Config,
    hooks: Hooks,
    storage: &Storage,
    snapshot: Option<Snapshot>,
) -> Result<Arc<Broker>, String> {
    let location = config.store.data_dir.display().to_string();
    let broker = Broker::new(config.mqtt.clone(), hooks, storage.journal());
    match snapshot {
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
    Ok(broker)
}

/// Opens the store of `config` and recovers the broker from it, with exactly `hooks` (no
/// namespace). The error names the data directory and what went wrong.
pub fn open_broker(config: &Config, hooks: Hooks) -> Result<(Arc<Broker>, Storage), String> {
    let (storage, snapshot) = open_store(config)?;
    let broker = recover_broker(config, hooks, &storage, snapshot)?;
    Ok((broker, storage))
}
