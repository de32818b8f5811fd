//! The embedded store: one redb database file.
//!
//! Tables (keys → values, values are `store/record.rs` encodings):
//! - `sessions`: client id → session record
//! - `entry_runs`, `entry_run_acks`: queued deliveries, a run per client per commit, and the
//!   sequence numbers of each run that are done (`redb/runs.rs`)
//! - `entries`: (client id, sequence number) → delivery record, for versions of a delivery
//!   that override its run's copy (and the queues of databases written before runs)
//! - `inbound`: (client id, packet id) → ()
//! - `retained`: topic → message record
//! - `wills`: client id → will record
//! - `resources`: (kind, name) → JSON body of a namespace resource (clients, client groups, ...)
//! - `routing_events`, `routing_deliveries`, `routing_dead_letters`, `routing_counters`: the
//!   routing pipeline's tables (see `RoutingTable`), (name, sequence number) → record
//!
//! Each `commit` is one redb write transaction with `Durability::Immediate`: it returns after
//! the data and redb's commit slot are fsynced, so a crash after it returns loses nothing.

use std::path::Path;

mod runs;

use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use self::runs::{Batch, RUN_ACKS, RUNS, RunIndex, RunTables};
use super::{Op, RoutingTable, Snapshot, Store, StoreError};

const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");
const ENTRIES: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("entries");
const INBOUND: TableDefinition<'_, (&str, u16), ()> = TableDefinition::new("inbound");
const RETAINED: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("retained");
const WILLS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("wills");
const RESOURCES: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("resources");
type RoutingDefinition = TableDefinition<'static, (&'static str, u64), &'static [u8]>;

fn routing_table(table: RoutingTable) -> RoutingDefinition {
    TableDefinition::new(match table {
        RoutingTable::Events => "routing_events",
        RoutingTable::Deliveries => "routing_deliveries",
        RoutingTable::DeadLetters => "routing_dead_letters",
        RoutingTable::Counters => "routing_counters",
    })
}

/// A store in one redb file.
pub struct RedbStore {
    db: Database,
    /// The committed runs, as the writer needs them; `None` after a failed commit, until the
    /// next commit reads it again (see `redb/runs.rs`).
    runs: Mutex<Option<RunIndex>>,
}

impl RedbStore {
    /// Opens (or creates) the database `gridmq.redb` in `dir`, creating the directory.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("create {}: {e}", dir.display())))?;
        let path = dir.join("gridmq.redb");
        let db = Database::create(&path)
            .map_err(|e| StoreError::Backend(format!("open {}: {e}", path.display())))?;
        let store = RedbStore { db, runs: Mutex::new(None) };
        // Create the tables up front so that reads of a fresh database find them.
        store.apply(&[], &mut RunIndex::default())?;
        *store.runs.lock() = Some(store.read_runs()?);
        Ok(store)
    }
}

impl Store for RedbStore {
    fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut guard = self.runs.lock();
        let index = match &mut *guard {
            Some(index) => index,
            None => guard.insert(self.read_runs()?),
        };
        let applied = self.apply(ops, index);
        if applied.is_err() {
            *guard = None;
        }
        applied
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let mut snapshot = Snapshot::default();
        for row in txn.open_table(SESSIONS).map_err(backend)?.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            snapshot.sessions.push((key.value().to_string(), value.value().to_vec()));
        }
        snapshot.entries = runs::read_entries(&txn)?
            .into_iter()
            .map(|((id, seq), record)| (id, seq, record))
            .collect();
        for row in txn.open_table(INBOUND).map_err(backend)?.iter().map_err(backend)? {
            let (key, _) = row.map_err(backend)?;
            let (id, packet_id) = key.value();
            snapshot.inbound.push((id.to_string(), packet_id));
        }
        for row in txn.open_table(RETAINED).map_err(backend)?.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            snapshot.retained.push((key.value().to_string(), value.value().to_vec()));
        }
        for row in txn.open_table(WILLS).map_err(backend)?.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            snapshot.wills.push((key.value().to_string(), value.value().to_vec()));
        }
        for row in txn.open_table(RESOURCES).map_err(backend)?.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            let (kind, name) = key.value();
            snapshot.resources.push((kind.to_string(), name.to_string(), value.value().to_vec()));
        }
        for table in RoutingTable::ALL {
            let rows = snapshot.routing.entry(table).or_default();
            for row in
                txn.open_table(routing_table(table)).map_err(backend)?.iter().map_err(backend)?
            {
                let (key, value) = row.map_err(backend)?;
                let (name, seq) = key.value();
                rows.push((name.to_string(), seq, value.value().to_vec()));
            }
        }
        Ok(snapshot)
    }
}

impl RedbStore {
    /// The run index as committed.
    fn read_runs(&self) -> Result<RunIndex, StoreError> {
        RunIndex::read(&self.db.begin_read().map_err(backend)?)
    }

    fn apply(&self, ops: &[Op], index: &mut RunIndex) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
            let mut entries = txn.open_table(ENTRIES).map_err(backend)?;
            let mut runs = txn.open_table(RUNS).map_err(backend)?;
            let mut done = txn.open_table(RUN_ACKS).map_err(backend)?;
            let mut run_tables =
                RunTables { entries: &mut entries, runs: &mut runs, done: &mut done };
            let mut batch = Batch::default();
            let mut inbound = txn.open_table(INBOUND).map_err(backend)?;
            let mut retained = txn.open_table(RETAINED).map_err(backend)?;
            let mut wills = txn.open_table(WILLS).map_err(backend)?;
            let mut resources = txn.open_table(RESOURCES).map_err(backend)?;
            let mut routing = Vec::with_capacity(RoutingTable::ALL.len());
            for table in RoutingTable::ALL {
                routing.push(txn.open_table(routing_table(table)).map_err(backend)?);
            }
            for op in ops {
                match op {
                    Op::PutSession(id, record) => {
                        sessions.insert(&**id, &**record).map_err(backend)?;
                    }
                    Op::DeleteSession(id) => {
                        sessions.remove(&**id).map_err(backend)?;
                        wills.remove(&**id).map_err(backend)?;
                        index.delete_client(&mut run_tables, id)?;
                        let id: &str = id;
                        run_tables
                            .entries
                            .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                            .map_err(backend)?;
                        inbound
                            .retain_in((id, 0)..=(id, u16::MAX), |_, _| false)
                            .map_err(backend)?;
                    }
                    Op::PutEntry(id, seq, record) => {
                        index.put(&mut batch, &mut run_tables, id, *seq, record)?;
                    }
                    Op::DeleteEntry(id, seq) => {
                        index.delete(&mut batch, &mut run_tables, id, *seq)?;
                    }
                    Op::PutInbound(id, packet_id) => {
                        inbound.insert((&**id, *packet_id), ()).map_err(backend)?;
                    }
                    Op::DeleteInbound(id, packet_id) => {
                        inbound.remove((&**id, *packet_id)).map_err(backend)?;
                    }
                    Op::PutRetained(topic, record) => {
                        retained.insert(&**topic, &**record).map_err(backend)?;
                    }
                    Op::DeleteRetained(topic) => {
                        retained.remove(&**topic).map_err(backend)?;
                    }
                    Op::PutWill(id, record) => {
                        wills.insert(&**id, &**record).map_err(backend)?;
                    }
                    Op::DeleteWill(id) => {
                        wills.remove(&**id).map_err(backend)?;
                    }
                    Op::PutResource(kind, name, body) => {
                        resources.insert((&**kind, &**name), &**body).map_err(backend)?;
                    }
                    Op::DeleteResource(kind, name) => {
                        resources.remove((&**kind, &**name)).map_err(backend)?;
                    }
                    Op::PutRouting(table, key, seq, record) => {
                        routing[*table as usize]
                            .insert((&**key, *seq), &**record)
                            .map_err(backend)?;
                    }
                    Op::DeleteRouting(table, key, seq) => {
                        routing[*table as usize].remove((&**key, *seq)).map_err(backend)?;
                    }
                    Op::Nop | Op::Forward(_) | Op::PublishEvent(_) => {}
                }
            }
            index.finish(batch, &mut run_tables)?;
        }
        txn.commit().map_err(backend)
    }
}

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}
