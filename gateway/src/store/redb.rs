//! The embedded store: one redb database file.
//!
//! Tables (keys → values, values are `store/record.rs` encodings):
//! - `sessions`: client id → session record
//! - `entries`: (client id, sequence number) → delivery record
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

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

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
}

impl RedbStore {
    /// Opens (or creates) the database `gridmq.redb` in `dir`, creating the directory.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("create {}: {e}", dir.display())))?;
        let path = dir.join("gridmq.redb");
        let db = Database::create(&path)
            .map_err(|e| StoreError::Backend(format!("open {}: {e}", path.display())))?;
        let store = RedbStore { db };
        // Create the tables up front so that reads of a fresh database find them.
        store.commit(&[])?;
        Ok(store)
    }
}

impl Store for RedbStore {
    fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
            let mut entries = txn.open_table(ENTRIES).map_err(backend)?;
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
                        let id: &str = id;
                        entries
                            .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                            .map_err(backend)?;
                        inbound
                            .retain_in((id, 0)..=(id, u16::MAX), |_, _| false)
                            .map_err(backend)?;
                    }
                    Op::PutEntry(id, seq, record) => {
                        entries.insert((&**id, *seq), &**record).map_err(backend)?;
                    }
                    Op::DeleteEntry(id, seq) => {
                        entries.remove((&**id, *seq)).map_err(backend)?;
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
                    Op::Nop => {}
                }
            }
        }
        txn.commit().map_err(backend)
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let mut snapshot = Snapshot::default();
        for row in txn.open_table(SESSIONS).map_err(backend)?.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            snapshot.sessions.push((key.value().to_string(), value.value().to_vec()));
        }
        for row in txn.open_table(ENTRIES).map_err(backend)?.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            let (id, seq) = key.value();
            snapshot.entries.push((id.to_string(), seq, value.value().to_vec()));
        }
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

fn backend(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(error.to_string())
}
