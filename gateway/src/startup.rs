//! Bringing the broker up from durable state: open the store, read back what it holds, build
//! the broker over its journal, replay the rest.
//!
//! Opening and recovering are two steps because the namespace's resources, which the store also
//! holds, must be read before the broker's hooks are built ([`crate::namespace`]).

use std::sync::Arc;

use tracing::info;

use crate::broker::Broker;
use crate::broker::config::MqttConfig;
use crate::broker::recovery;
use crate::hooks::Hooks;
use crate::store::{Snapshot, Storage, StoreConfig, StoreError};

/// The store could not be opened or recovered; the message names the data directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreStartError {
    #[error("store.data_dir: {location}: {source}")]
    Open { location: String, source: StoreError },
    #[error("store.data_dir: {location}: recovery failed: {source}")]
    Recovery { location: String, source: StoreError },
}

/// Opens the store `config` names and reads it back (`None` in in-memory mode). The error
/// names the data directory and what went wrong.
pub fn open_store(config: &StoreConfig) -> Result<(Storage, Option<Snapshot>), StoreStartError> {
    let mut storage = Storage::open(config).map_err(|source| StoreStartError::Open {
        location: config.data_dir.display().to_string(),
        source,
    })?;
    let snapshot = storage.take_snapshot();
    Ok((storage, snapshot))
}

/// Builds the broker with `mqtt` and `hooks` over `storage`'s journal and recovers it from
/// `snapshot`, read from `store`.
pub fn recover_broker(
    mqtt: &MqttConfig,
    store: &StoreConfig,
    hooks: Hooks,
    storage: &Storage,
    snapshot: Option<Snapshot>,
) -> Result<Arc<Broker>, StoreStartError> {
    let location = store.data_dir.display().to_string();
    let broker = Broker::new(mqtt.clone(), hooks, storage.journal());
    match snapshot {
        Some(snapshot) => {
            let found = recovery::recover(&broker, snapshot).map_err(|source| {
                StoreStartError::Recovery { location: location.clone(), source }
            })?;
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

/// Opens the store and recovers the broker from it, with exactly `hooks` (no namespace). The
/// error names the data directory and what went wrong.
pub fn open_broker(
    mqtt: &MqttConfig,
    store: &StoreConfig,
    hooks: Hooks,
) -> Result<(Arc<Broker>, Storage), StoreStartError> {
    let (storage, snapshot) = open_store(store)?;
    let broker = recover_broker(mqtt, store, hooks, &storage, snapshot)?;
    Ok((broker, storage))
}
