//! Queue entries written in runs: one row per client per commit instead of one per delivery.
//!
//! A persistent QoS 1 delivery used to cost two B-tree writes, an insert when it was queued and
//! a delete when it was acknowledged, and those row operations were what the store's writer
//! spent its time on (ARCHITECTURE.md, "Durable QoS 1"). Here the new deliveries a commit
//! brings for one client are written as one row of `entry_runs`, keyed by (client id, run id),
//! and an acknowledgement only marks its delivery done in memory. At the end of the commit,
//! each run that lost deliveries gets its list of done sequence numbers rewritten in
//! `entry_run_acks` (a few ranges, as acknowledgements come mostly in order), and a run whose
//! deliveries are all done is deleted with its list. A busy subscriber then costs about three
//! row writes per commit, whatever the number of deliveries.
//!
//! The `entries` table stays for what a run cannot say: a later version of an entry already in
//! a committed run (a QoS 2 delivery's stage), which overrides the run's copy, and the rows of
//! databases written before runs existed. Recovery reads runs minus their done lists, then the
//! `entries` rows over them.
//!
//! Invariant: the `RunIndex` is what the committed tables say. A commit that fails drops the
//! index, and the next attempt reads it again from the database, so a retried batch is applied
//! to what is on disk rather than to the half-applied memory of the failed one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use redb::{ReadableTable, Table, TableDefinition};

use super::ENTRIES;
use crate::store::StoreError;

/// (client id, run id) → the run's deliveries: (sequence number, entry record) pairs.
pub(super) const RUNS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("entry_runs");
/// (client id, run id) → the sequence numbers of the run that are done, as ranges.
pub(super) const RUN_ACKS: TableDefinition<'_, (&str, u64), &[u8]> =
    TableDefinition::new("entry_run_acks");

/// What the writer knows of the committed runs: enough to turn a delete into bookkeeping.
#[derive(Debug, Default)]
pub(super) struct RunIndex {
    /// The id the next run gets; ids are never reused.
    next_run: u64,
    clients: HashMap<Arc<str>, ClientRuns>,
}

/// One client's runs. Everything the writer does per op is one lookup of the client, then
/// lookups by number.
#[derive(Debug, Default)]
struct ClientRuns {
    /// Live deliveries held in a run (committed or being built): sequence number → run id.
    seqs: SeqMap<u64>,
    /// Committed runs with live deliveries.
    runs: SeqMap<Run>,
    /// Entries that have a row in `entries`.
    rows: HashSet<u64, BuildSeqHasher>,
    /// The run this commit builds: its id and its deliveries, as (sequence number, slot of
    /// the record in the batch).
    building: Option<(u64, Vec<(u64, usize)>)>,
    /// Committed runs whose done lists this commit changed.
    touched: Vec<u64>,
    /// Whether the client is in the batch's list of clients to finish.
    in_batch: bool,
}

#[derive(Debug)]
struct Run {
    live: usize,
    done: Vec<u64>,
}

impl ClientRuns {
    /// Puts the client on the batch's list of clients to finish, once.
    fn join(&mut self, batch: &mut Batch<'_>, client: &Arc<str>) {
        if !self.in_batch {
            self.in_batch = true;
            batch.clients.push(client.clone());
        }
    }

    /// Whether nothing of the client is left on disk: its maps can go, with their capacity.
    fn is_empty(&self) -> bool {
        self.seqs.is_empty() && self.runs.is_empty() && self.rows.is_empty()
    }
}

/// The clients one commit changed, to be finished at its end, and the records of the runs it
/// builds, borrowed from the ops.
#[derive(Default)]
pub(super) struct Batch<'a> {
    clients: Vec<Arc<str>>,
    records: Vec<&'a [u8]>,
}

type RowTable<'t> = Table<'t, (&'static str, u64), &'static [u8]>;

/// Sequence numbers and run ids are counters: a multiplication spreads them well enough, at a
/// fraction of SipHash's cost, and nothing here comes from a client.
#[derive(Debug, Default, Clone, Copy)]
struct SeqHasher(u64);

impl std::hash::Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type BuildSeqHasher = std::hash::BuildHasherDefault<SeqHasher>;
type SeqMap<V> = HashMap<u64, V, BuildSeqHasher>;

impl RunIndex {
    /// Reads the index from the committed tables.
    pub(super) fn read(txn: &redb::ReadTransaction) -> Result<RunIndex, StoreError> {
        let mut index = RunIndex::default();
        let done = read_done(txn)?;
        for row in txn.open_table(RUNS).map_err(super::backend)?.iter().map_err(super::backend)? {
            let (key, value) = row.map_err(super::backend)?;
            let (client, run) = key.value();
            index.next_run = index.next_run.max(run + 1);
            let finished = done.get(&(client.to_string(), run));
            let client = index.client(client);
            let mut live = 0;
            for (seq, _) in decode_run(value.value())? {
                if !finished.is_some_and(|done| done.contains(&seq)) {
                    client.seqs.insert(seq, run);
                    live += 1;
                }
            }
            let done = finished.map(|done| done.iter().copied().collect()).unwrap_or_default();
            client.runs.insert(run, Run { live, done });
        }
        for row in
            txn.open_table(ENTRIES).map_err(super::backend)?.iter().map_err(super::backend)?
        {
            let (key, _) = row.map_err(super::backend)?;
            let (client, seq) = key.value();
            index.client(client).rows.insert(seq);
        }
        Ok(index)
    }

    /// The client's runs, made on first use (start-up only: it allocates the key).
    fn client(&mut self, client: &str) -> &mut ClientRuns {
        self.clients.entry(Arc::from(client)).or_default()
    }

    /// Applies a PutEntry: a new delivery joins the client's run of this commit; a delivery
    /// already in a committed run gets a row in `entries` that overrides the run's copy.
    pub(super) fn put<'a>(
        &mut self,
        batch: &mut Batch<'a>,
        tables: &mut RunTables<'_, '_>,
        client: &Arc<str>,
        seq: u64,
        record: &'a [u8],
    ) -> Result<(), StoreError> {
        let next_run = &mut self.next_run;
        let runs = match self.clients.get_mut(client) {
            Some(runs) => runs,
            None => self.clients.entry(client.clone()).or_default(),
        };
        let building = runs.building.as_ref().map(|(id, _)| *id);
        match runs.seqs.get(&seq) {
            Some(&run) if Some(run) == building => {
                if let Some((_, deliveries)) = &mut runs.building
                    && let Some(slot) = deliveries.iter_mut().rev().find(|(s, _)| *s == seq)
                {
                    slot.1 = batch.records.len();
                    batch.records.push(record);
                }
            }
            Some(_) => {
                tables.entries.insert((&**client, seq), record).map_err(super::backend)?;
                runs.rows.insert(seq);
            }
            None if runs.rows.contains(&seq) => {
                tables.entries.insert((&**client, seq), record).map_err(super::backend)?;
            }
            None => {
                let (run, deliveries) = runs.building.get_or_insert_with(|| {
                    *next_run += 1;
                    (*next_run - 1, Vec::new())
                });
                deliveries.push((seq, batch.records.len()));
                batch.records.push(record);
                runs.seqs.insert(seq, *run);
                runs.join(batch, client);
            }
        }
        Ok(())
    }

    /// Applies a DeleteEntry: the delivery's row in `entries` goes, and its run counts it done.
    pub(super) fn delete(
        &mut self,
        batch: &mut Batch<'_>,
        tables: &mut RunTables<'_, '_>,
        client: &Arc<str>,
        seq: u64,
    ) -> Result<(), StoreError> {
        let Some(runs) = self.clients.get_mut(client) else { return Ok(()) };
        if runs.rows.remove(&seq) {
            tables.entries.remove((&**client, seq)).map_err(super::backend)?;
        }
        let Some(run_id) = runs.seqs.remove(&seq) else { return Ok(()) };
        if let Some((building, deliveries)) = &mut runs.building
            && *building == run_id
        {
            deliveries.retain(|(s, _)| *s != seq);
            return Ok(());
        }
        let Some(run) = runs.runs.get_mut(&run_id) else { return Ok(()) };
        run.live -= 1;
        if run.live == 0 {
            runs.runs.remove(&run_id);
            runs.touched.retain(|touched| *touched != run_id);
            tables.runs.remove((&**client, run_id)).map_err(super::backend)?;
            tables.done.remove((&**client, run_id)).map_err(super::backend)?;
        } else {
            run.done.push(seq);
            if !runs.touched.contains(&run_id) {
                runs.touched.push(run_id);
            }
            runs.join(batch, client);
        }
        Ok(())
    }

    /// Applies a DeleteSession: every run of the client goes, built or committed.
    pub(super) fn delete_client(
        &mut self,
        tables: &mut RunTables<'_, '_>,
        client: &Arc<str>,
    ) -> Result<(), StoreError> {
        let id: &str = client;
        tables.runs.retain_in((id, 0)..=(id, u64::MAX), |_, _| false).map_err(super::backend)?;
        tables.done.retain_in((id, 0)..=(id, u64::MAX), |_, _| false).map_err(super::backend)?;
        // The batch may still name the client; finishing a client that is gone does nothing.
        self.clients.remove(client);
        Ok(())
    }

    /// Writes what the batch built: the new runs and the changed done lists.
    pub(super) fn finish(
        &mut self,
        batch: Batch<'_>,
        tables: &mut RunTables<'_, '_>,
    ) -> Result<(), StoreError> {
        for client in batch.clients {
            let Some(runs) = self.clients.get_mut(&client) else { continue };
            runs.in_batch = false;
            for run_id in std::mem::take(&mut runs.touched) {
                if let Some(run) = runs.runs.get_mut(&run_id) {
                    tables
                        .done
                        .insert((&*client, run_id), &*encode_done(&mut run.done))
                        .map_err(super::backend)?;
                }
            }
            if let Some((run_id, deliveries)) = runs.building.take()
                && !deliveries.is_empty()
            {
                tables
                    .runs
                    .insert((&*client, run_id), &*encode_run(&deliveries, &batch.records))
                    .map_err(super::backend)?;
                runs.runs.insert(run_id, Run { live: deliveries.len(), done: Vec::new() });
            }
            if runs.is_empty() {
                // A client whose queue was large once would otherwise keep that capacity.
                self.clients.remove(&client);
            }
        }
        Ok(())
    }
}

/// The three tables a run change writes.
pub(super) struct RunTables<'a, 't> {
    pub entries: &'a mut RowTable<'t>,
    pub runs: &'a mut RowTable<'t>,
    pub done: &'a mut RowTable<'t>,
}

/// The live entries of every run, with `entries` rows over them: (client, seq) → record.
pub(super) fn read_entries(
    txn: &redb::ReadTransaction,
) -> Result<BTreeMap<(String, u64), Vec<u8>>, StoreError> {
    let done = read_done(txn)?;
    let mut live = BTreeMap::new();
    for row in txn.open_table(RUNS).map_err(super::backend)?.iter().map_err(super::backend)? {
        let (key, value) = row.map_err(super::backend)?;
        let (client, run) = key.value();
        let finished = done.get(&(client.to_string(), run));
        for (seq, record) in decode_run(value.value())? {
            if !finished.is_some_and(|done| done.contains(&seq)) {
                live.insert((client.to_string(), seq), record.to_vec());
            }
        }
    }
    for row in txn.open_table(ENTRIES).map_err(super::backend)?.iter().map_err(super::backend)? {
        let (key, value) = row.map_err(super::backend)?;
        let (client, seq) = key.value();
        live.insert((client.to_string(), seq), value.value().to_vec());
    }
    Ok(live)
}

fn read_done(
    txn: &redb::ReadTransaction,
) -> Result<HashMap<(String, u64), HashSet<u64>>, StoreError> {
    let mut done = HashMap::new();
    for row in txn.open_table(RUN_ACKS).map_err(super::backend)?.iter().map_err(super::backend)? {
        let (key, value) = row.map_err(super::backend)?;
        let (client, run) = key.value();
        done.insert((client.to_string(), run), decode_done(value.value())?);
    }
    Ok(done)
}

/// A run: for each delivery, its sequence number (u64), its record's length (u32) and the
/// record, little-endian.
fn encode_run(deliveries: &[(u64, usize)], records: &[&[u8]]) -> Vec<u8> {
    // Slots are positions `put` pushed to in this batch's records, so indexing cannot miss.
    let record = |slot: usize| records[slot];
    let size = deliveries.iter().map(|(_, slot)| 12 + record(*slot).len()).sum();
    let mut bytes = Vec::with_capacity(size);
    for (seq, slot) in deliveries {
        let record = record(*slot);
        bytes.extend_from_slice(&seq.to_le_bytes());
        bytes.extend_from_slice(&(record.len() as u32).to_le_bytes());
        bytes.extend_from_slice(record);
    }
    bytes
}

fn decode_run(mut bytes: &[u8]) -> Result<Vec<(u64, &[u8])>, StoreError> {
    let corrupt =
        |problem: &str| StoreError::Corrupt { table: "entry_runs", problem: problem.into() };
    let mut deliveries = Vec::new();
    while !bytes.is_empty() {
        let (header, rest) = bytes.split_at_checked(12).ok_or_else(|| corrupt("cut header"))?;
        let seq = u64::from_le_bytes(header[..8].try_into().map_err(|_| corrupt("seq"))?);
        let len = u32::from_le_bytes(header[8..].try_into().map_err(|_| corrupt("length"))?);
        let (record, rest) =
            rest.split_at_checked(len as usize).ok_or_else(|| corrupt("cut record"))?;
        deliveries.push((seq, record));
        bytes = rest;
    }
    Ok(deliveries)
}

/// A done list: sorted ranges, each its first sequence number and its length (u64 each,
/// little-endian). Sorts `done` in place, which keeps the next encoding cheap.
fn encode_done(done: &mut [u64]) -> Vec<u8> {
    done.sort_unstable();
    let mut bytes = Vec::new();
    let mut ranges = done.iter().copied().peekable();
    while let Some(first) = ranges.next() {
        let mut last = first;
        while ranges.peek() == Some(&(last + 1)) {
            last += 1;
            ranges.next();
        }
        bytes.extend_from_slice(&first.to_le_bytes());
        bytes.extend_from_slice(&(last - first + 1).to_le_bytes());
    }
    bytes
}

fn decode_done(bytes: &[u8]) -> Result<HashSet<u64>, StoreError> {
    let corrupt =
        |problem: &str| StoreError::Corrupt { table: "entry_run_acks", problem: problem.into() };
    if !bytes.len().is_multiple_of(16) {
        return Err(corrupt("not a whole number of ranges"));
    }
    let mut done = HashSet::new();
    for range in bytes.chunks_exact(16) {
        let first = u64::from_le_bytes(range[..8].try_into().map_err(|_| corrupt("first"))?);
        let len = u64::from_le_bytes(range[8..].try_into().map_err(|_| corrupt("length"))?);
        if len > 1 << 32 {
            return Err(corrupt("range longer than a run can be"));
        }
        done.extend((0..len).map(|i| first.wrapping_add(i)));
    }
    Ok(done)
}

#[cfg(test)]
mod tests;
