use redb::{ReadableDatabase, ReadableTableMetadata};

use super::{RUN_ACKS, RUNS};
use crate::store::redb::{ENTRIES, RedbStore};
use crate::store::{Op, Store};

fn put(client: &str, seq: u64, record: &str) -> Op {
    Op::PutEntry(client.into(), seq, record.as_bytes().into())
}

fn delete(client: &str, seq: u64) -> Op {
    Op::DeleteEntry(client.into(), seq)
}

/// What recovery would read: (client, seq, record).
fn entries(store: &RedbStore) -> Vec<(String, u64, String)> {
    let snapshot = store.load().expect("load");
    snapshot
        .entries
        .into_iter()
        .map(|(client, seq, record)| (client, seq, String::from_utf8(record).expect("utf-8")))
        .collect()
}

fn row(client: &str, seq: u64, record: &str) -> (String, u64, String) {
    (client.to_string(), seq, record.to_string())
}

/// Rows in `entry_runs`, `entry_run_acks` and `entries`.
fn rows(store: &RedbStore) -> (u64, u64, u64) {
    let txn = store.db.begin_read().expect("read");
    let count = |table| txn.open_table(table).expect("table").len().expect("len");
    (count(RUNS), count(RUN_ACKS), count(ENTRIES))
}

#[test]
fn a_commit_writes_one_run_per_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(dir.path()).expect("open");
    store
        .commit(&[put("a", 1, "a1"), put("b", 1, "b1"), put("a", 2, "a2"), put("a", 3, "a3")])
        .expect("commit");
    assert_eq!(rows(&store), (2, 0, 0));
    assert_eq!(
        entries(&store),
        [row("a", 1, "a1"), row("a", 2, "a2"), row("a", 3, "a3"), row("b", 1, "b1")]
    );
}

#[test]
fn acknowledged_entries_stay_gone_and_a_finished_run_is_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(dir.path()).expect("open");
    store
        .commit(&(1..=5).map(|seq| put("a", seq, &format!("m{seq}"))).collect::<Vec<_>>())
        .expect("commit");
    store.commit(&[delete("a", 2), delete("a", 4)]).expect("commit");
    assert_eq!(entries(&store), [row("a", 1, "m1"), row("a", 3, "m3"), row("a", 5, "m5")]);
    assert_eq!(rows(&store), (1, 1, 0));
    drop(store);

    // A restarted writer knows which deliveries of the run are still live.
    let store = RedbStore::open(dir.path()).expect("reopen");
    assert_eq!(entries(&store), [row("a", 1, "m1"), row("a", 3, "m3"), row("a", 5, "m5")]);
    store.commit(&[delete("a", 1), delete("a", 3)]).expect("commit");
    assert_eq!(entries(&store), [row("a", 5, "m5")]);
    store.commit(&[delete("a", 5)]).expect("commit");
    assert_eq!(entries(&store), []);
    assert_eq!(rows(&store), (0, 0, 0));
}

#[test]
fn a_later_version_of_an_entry_overrides_its_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(dir.path()).expect("open");
    store.commit(&[put("a", 1, "queued"), put("a", 2, "other")]).expect("commit");
    store.commit(&[put("a", 1, "released")]).expect("commit");
    assert_eq!(entries(&store), [row("a", 1, "released"), row("a", 2, "other")]);
    drop(store);

    let store = RedbStore::open(dir.path()).expect("reopen");
    assert_eq!(entries(&store), [row("a", 1, "released"), row("a", 2, "other")]);
    store.commit(&[delete("a", 1)]).expect("commit");
    assert_eq!(entries(&store), [row("a", 2, "other")]);
    assert_eq!(rows(&store), (1, 1, 0));
}

#[test]
fn puts_and_deletes_within_one_commit_are_applied_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(dir.path()).expect("open");
    store
        .commit(&[put("a", 1, "first"), put("a", 1, "second"), put("a", 2, "x"), delete("a", 2)])
        .expect("commit");
    assert_eq!(entries(&store), [row("a", 1, "second")]);
    store.commit(&[delete("a", 1), put("a", 3, "y")]).expect("commit");
    assert_eq!(entries(&store), [row("a", 3, "y")]);
    assert_eq!(rows(&store), (1, 0, 0));
}

#[test]
fn deleting_a_session_removes_its_runs_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(dir.path()).expect("open");
    store.commit(&[put("a", 1, "a1"), put("a", 2, "a2"), put("b", 1, "b1")]).expect("commit");
    store.commit(&[delete("a", 1), put("a", 2, "a2 again")]).expect("commit");
    store.commit(&[Op::DeleteSession("a".into()), put("a", 7, "new session")]).expect("commit");
    assert_eq!(entries(&store), [row("a", 7, "new session"), row("b", 1, "b1")]);
    assert_eq!(rows(&store), (2, 0, 0));
    drop(store);
    let store = RedbStore::open(dir.path()).expect("reopen");
    assert_eq!(entries(&store), [row("a", 7, "new session"), row("b", 1, "b1")]);
}

#[test]
fn entries_of_a_database_written_before_runs_are_read_and_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(dir.path()).expect("open");
    // What an older gridmq wrote: one `entries` row per delivery.
    let txn = store.db.begin_write().expect("write");
    {
        let mut table = txn.open_table(ENTRIES).expect("entries");
        table.insert(("a", 1), b"old 1".as_slice()).expect("insert");
        table.insert(("a", 2), b"old 2".as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
    drop(store);

    let store = RedbStore::open(dir.path()).expect("reopen");
    store
        .commit(&[put("a", 3, "new 3"), put("a", 2, "old 2 released"), delete("a", 1)])
        .expect("commit");
    assert_eq!(entries(&store), [row("a", 2, "old 2 released"), row("a", 3, "new 3")]);
    store.commit(&[delete("a", 2), delete("a", 3)]).expect("commit");
    assert_eq!(entries(&store), []);
    assert_eq!(rows(&store), (0, 0, 0));
}

#[test]
fn a_cut_run_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(dir.path()).expect("open");
    let txn = store.db.begin_write().expect("write");
    {
        let mut table = txn.open_table(RUNS).expect("runs");
        table.insert(("a", 0), [1u8, 0, 0].as_slice()).expect("insert");
    }
    txn.commit().expect("commit");
    let error = store.load().expect_err("a cut run must not load");
    assert!(error.to_string().contains("entry_runs"), "{error}");
}

#[test]
fn done_lists_are_ranges() {
    let mut done = vec![7, 3, 4, 5, 9];
    let bytes = super::encode_done(&mut done);
    assert_eq!(bytes.len(), 3 * 16);
    let decoded = super::decode_done(&bytes).expect("decode");
    assert_eq!(decoded, [3, 4, 5, 7, 9].into_iter().collect());
}
