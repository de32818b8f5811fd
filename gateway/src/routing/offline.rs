//! Dead letters of a stopped gateway, read and re-driven straight from its data directory
//! (`gridmq deadletters list|redrive --data-dir DIR`). The store allows one process at a time,
//! so this fails with a clear error while the gateway runs; use the management API then.
//!
//! A cluster node's dead letters are not in its data directory but in the cluster's dead-letter
//! stream. The node leaves a marker file, [`CLUSTER_MARKER`], naming its cluster's subject
//! prefix, and both commands refuse such a directory, saying where the dead letters are,
//! rather than list none or re-drive into a file the cluster does not deliver from.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::value::RawValue;
use sinks::DeadLetterRecord;

use super::buffer::{encode_delivery, encode_event};
use crate::store::redb::RedbStore;
use crate::store::{Op, RoutingTable, Store, StoreError};

/// The file in a cluster node's data directory that says so; it holds the cluster's subject
/// prefix.
pub const CLUSTER_MARKER: &str = "cluster-node";

/// Why dead letters could not be listed or re-driven offline.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{}: no gridmq store here", .0.display())]
    NoStore(PathBuf),
    #[error("{0} (is gridmq running on this data directory?)")]
    Busy(StoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{}: the data directory of a cluster node (subject prefix {prefix:?}): its dead letters \
         are in the cluster's stream {stream}, not here; list, delete and re-drive them with any \
         node's management API (GET, DELETE /routing/topics/TOPIC/eventSubscriptions/SUB/\
         deadLetters, POST .../deadLetters/redrive)",
        .dir.display()
    )]
    ClusterNode { dir: PathBuf, prefix: String, stream: String },
    #[error("{0:?} is not a subscription key TOPIC/SUBSCRIPTION")]
    NotAKey(String),
    #[error("dead letter {key} #{seq}: unreadable: {source}")]
    UnreadableRecord { key: String, seq: u64, source: serde_json::Error },
    #[error("dead letter {key} #{seq}: unreadable: {source}")]
    UnreadableEvent { key: String, seq: u64, source: sinks::dead_letter::DeadLetterError },
}

/// One dead-letter record: subscription key (`topic/subscription`), id, record.
/// The record is its stored JSON text, so that listing shows the data as it was published.
pub type DeadLetterRow = (String, u64, Box<RawValue>);

/// The dead letters stored in `dir`, optionally of one subscription key (`topic/subscription`).
pub fn list(dir: &Path, key: Option<&str>) -> Result<Vec<DeadLetterRow>, OfflineError> {
    let store = open(dir)?;
    let snapshot = store.load()?;
    let rows = snapshot.routing.get(&RoutingTable::DeadLetters).cloned().unwrap_or_default();
    rows.into_iter()
        .filter(|(k, _, _)| key.is_none_or(|key| k == key))
        .map(|(k, seq, record)| {
            let record = serde_json::from_slice(&record)
                .map_err(|source| OfflineError::UnreadableRecord { key: k.clone(), seq, source })?;
            Ok((k, seq, record))
        })
        .collect()
}

/// Moves the dead letters of subscription `key` (`ids`, or all) back into the routing buffer
/// as new deliveries; the gateway sends them at its next start. Returns how many.
pub fn redrive(dir: &Path, key: &str, ids: Option<&[u64]>) -> Result<usize, OfflineError> {
    let store = open(dir)?;
    let snapshot = store.load()?;
    let (topic, _) = key.rsplit_once('/').ok_or_else(|| OfflineError::NotAKey(key.to_owned()))?;
    let topic = if topic == "systemTopic" { super::router::SYSTEM_TOPIC } else { topic };
    let key = format!("{topic}/{}", key.rsplit_once('/').map_or("", |(_, s)| s));
    let mut next = snapshot
        .routing
        .get(&RoutingTable::Events)
        .and_then(|rows| rows.iter().map(|(_, seq, _)| *seq).max())
        .unwrap_or(0)
        + 1;
    let now = SystemTime::now();
    let mut ops = Vec::new();
    let mut count = 0;
    let rows = snapshot.routing.get(&RoutingTable::DeadLetters).cloned().unwrap_or_default();
    for (k, seq, record) in rows {
        if k != key || ids.is_some_and(|ids| !ids.contains(&seq)) {
            continue;
        }
        let event = DeadLetterRecord::event_of(&record)
            .map_err(|source| OfflineError::UnreadableEvent { key: k.clone(), seq, source })?;
        ops.push(Op::PutRouting(
            RoutingTable::Events,
            topic.into(),
            next,
            encode_event(now, &event).into(),
        ));
        ops.push(Op::PutRouting(
            RoutingTable::Deliveries,
            key.as_str().into(),
            next,
            encode_delivery(0, now).into(),
        ));
        ops.push(Op::DeleteRouting(RoutingTable::DeadLetters, k.as_str().into(), seq));
        next += 1;
        count += 1;
    }
    store.commit(&ops)?;
    Ok(count)
}

/// Marks `dir` as the data directory of a node of the cluster with subject prefix `prefix`,
/// whose dead letters are in stream `stream`.
pub fn mark_cluster(dir: &Path, prefix: &str, stream: &str) -> Result<(), StoreError> {
    let path = dir.join(CLUSTER_MARKER);
    std::fs::write(&path, format!("{prefix}\n{stream}\n")).map_err(|error| file_error(&path, error))
}

/// Takes the cluster marker out of `dir`, which now serves a single node: the dead letters it
/// has from now on are in its own store again. Returns the stream the marker named, if there
/// was one.
pub fn unmark_cluster(dir: &Path) -> Result<Option<String>, StoreError> {
    let path = dir.join(CLUSTER_MARKER);
    let Some((_, stream)) = read_marker(&path).map_err(|error| file_error(&path, error))? else {
        return Ok(None);
    };
    std::fs::remove_file(&path).map_err(|error| file_error(&path, error))?;
    Ok(Some(stream))
}

/// The (subject prefix, dead-letter stream) a cluster marker names, if there is one. The
/// cluster names its own streams; this module only repeats what it wrote.
fn read_marker(path: &Path) -> std::io::Result<Option<(String, String)>> {
    let marker = match std::fs::read_to_string(path) {
        Ok(marker) => marker,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut lines = marker.lines().map(str::trim);
    let prefix = lines.next().unwrap_or_default().to_string();
    let stream = lines.next().unwrap_or_default().to_string();
    Ok(Some((prefix, stream)))
}

fn file_error(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{}: {error}", path.display()))
}

fn open(dir: &Path) -> Result<RedbStore, OfflineError> {
    if let Ok(Some((prefix, stream))) = read_marker(&dir.join(CLUSTER_MARKER)) {
        return Err(OfflineError::ClusterNode { dir: dir.to_path_buf(), prefix, stream });
    }
    if !dir.join("gridmq.redb").exists() {
        return Err(OfflineError::NoStore(dir.to_path_buf()));
    }
    RedbStore::open(dir).map_err(OfflineError::Busy)
}

#[cfg(test)]
mod tests;
