use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::store::redb::RedbStore;

fn open() -> (tempfile::TempDir, Arc<RedbStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(RedbStore::open(dir.path()).expect("open store"));
    (dir, store)
}

fn put(topic: &str) -> Op {
    Op::PutRetained(topic.into(), Arc::from(&b"x"[..]))
}

#[tokio::test]
async fn appended_ops_are_on_disk_once_their_ticket_is_durable() {
    let (_dir, store) = open();
    let (journal, writer) =
        Journal::start(store.clone(), 10_000, Duration::ZERO).expect("writer thread");
    journal.append(put("a"));
    let ticket = journal.append(put("b"));
    journal.durable(ticket).await;
    let topics: Vec<String> =
        store.load().expect("load").retained.into_iter().map(|(t, _)| t).collect();
    assert_eq!(topics, ["a", "b"]);
    journal.close();
    writer.join().expect("writer stops");
}

#[tokio::test]
async fn an_open_group_holds_back_what_follows_it() {
    let (_dir, store) = open();
    let (journal, writer) =
        Journal::start(store.clone(), 10_000, Duration::ZERO).expect("writer thread");
    let before = journal.append(put("before"));
    journal.durable(before).await;
    let group = journal.begin_group();
    let inside = journal.append(put("inside"));
    let waited = tokio::time::timeout(Duration::from_millis(200), journal.durable(inside)).await;
    assert!(waited.is_err(), "an op inside an open group must not be committed");
    assert_eq!(store.load().expect("load").retained.len(), 1);
    journal.end_group(group);
    journal.durable(inside).await;
    assert_eq!(store.load().expect("load").retained.len(), 2);
    journal.close();
    writer.join().expect("writer stops");
}

#[tokio::test]
async fn close_commits_what_is_pending() {
    let (_dir, store) = open();
    let (journal, writer) =
        Journal::start(store.clone(), 1, Duration::ZERO).expect("writer thread");
    for i in 0..50 {
        journal.append(put(&format!("t{i}")));
    }
    journal.close();
    writer.join().expect("writer stops");
    assert_eq!(store.load().expect("load").retained.len(), 50);
}

#[tokio::test]
async fn delete_session_removes_its_queue_only() {
    let (_dir, store) = open();
    let (journal, writer) =
        Journal::start(store.clone(), 10_000, Duration::ZERO).expect("writer thread");
    let record: Box<[u8]> = b"r"[..].into();
    journal.append(Op::PutSession("a".into(), record.clone().into()));
    journal.append(Op::PutSession("ab".into(), record.clone().into()));
    journal.append(Op::PutEntry("a".into(), 1, record.clone()));
    journal.append(Op::PutEntry("ab".into(), 2, record.clone()));
    journal.append(Op::PutInbound("a".into(), 7));
    let ticket = journal.append(Op::DeleteSession("a".into()));
    journal.durable(ticket).await;
    let snapshot = store.load().expect("load");
    assert_eq!(snapshot.sessions.len(), 1);
    assert_eq!(snapshot.entries.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["ab"]);
    assert!(snapshot.inbound.is_empty());
    journal.close();
    writer.join().expect("writer stops");
}

#[tokio::test]
async fn a_delivery_acknowledged_before_its_commit_never_reaches_the_disk() {
    let (_dir, store) = open();
    let (journal, writer) =
        Journal::start(store.clone(), 10_000, Duration::ZERO).expect("writer thread");
    let record: Box<[u8]> = b"r"[..].into();
    let client: Arc<str> = "s".into();
    // Hold the writer back with an open group so the put is still pending when the ack comes.
    let group = journal.begin_group();
    let queued = journal.append(Op::PutEntry(client.clone(), 1, record.clone()));
    journal.delete_entry(&client, 1, Some(queued));
    journal.end_group(group);
    journal.durable(queued).await;
    assert!(store.load().expect("load").entries.is_empty());

    // Once the put is committed, the delete must be written.
    let committed = journal.append(Op::PutEntry(client.clone(), 2, record.clone()));
    journal.durable(committed).await;
    assert_eq!(store.load().expect("load").entries.len(), 1);
    let deleted = journal.delete_entry(&client, 2, Some(committed));
    journal.durable(deleted).await;
    assert!(store.load().expect("load").entries.is_empty());
    journal.close();
    writer.join().expect("writer stops");
}

#[tokio::test]
async fn a_ticket_that_names_another_op_cancels_nothing() {
    let (_dir, store) = open();
    let (journal, writer) =
        Journal::start(store.clone(), 10_000, Duration::ZERO).expect("writer thread");
    let client: Arc<str> = "s".into();
    let group = journal.begin_group();
    let other = journal.append(put("other"));
    journal.append(Op::PutEntry(client.clone(), 3, b"r"[..].into()));
    // A stale ticket (naming a retained message) and a wrong sequence number.
    journal.delete_entry(&client, 3, Some(other));
    let put4 = journal.append(Op::PutEntry(client.clone(), 4, b"r"[..].into()));
    journal.delete_entry(&client, 5, Some(put4));
    journal.end_group(group);
    let done = journal.append(put("sync"));
    journal.durable(done).await;
    let snapshot = store.load().expect("load");
    assert_eq!(snapshot.entries.iter().map(|e| e.1).collect::<Vec<_>>(), [4]);
    assert!(snapshot.retained.iter().any(|(topic, _)| topic == "other"));
    journal.close();
    writer.join().expect("writer stops");
}

#[tokio::test]
async fn a_lone_op_after_a_small_batch_does_not_linger() {
    let (_dir, store) = open();
    // An hour's linger: were it applied, the second op would not be committed within the bound.
    let (journal, writer) =
        Journal::start(store.clone(), 10_000, Duration::from_secs(3600)).expect("writer thread");
    let first = journal.append(put("first"));
    journal.durable(first).await;
    let second = journal.append(put("second"));
    tokio::time::timeout(Duration::from_secs(30), journal.durable(second))
        .await
        .expect("a small batch must not make the next commit linger");
    journal.close();
    writer.join().expect("writer stops");
}

#[tokio::test]
async fn close_ends_a_linger_and_commits_what_is_pending() {
    let (_dir, store) = open();
    let (journal, writer) =
        Journal::start(store.clone(), 10_000, Duration::from_secs(3600)).expect("writer thread");
    // A busy batch: the group makes the writer take all of it in one commit.
    let group = journal.begin_group();
    let mut last = None;
    for i in 0..LINGER_MIN_OPS {
        last = Some(journal.append(put(&format!("busy{i}"))));
    }
    journal.end_group(group);
    if let Some(last) = last {
        journal.durable(last).await;
    }
    // The next op waits out the linger, until close.
    journal.append(put("after"));
    journal.close();
    tokio::task::spawn_blocking(move || writer.join()).await.expect("join").expect("writer stops");
    let retained = store.load().expect("load").retained;
    assert_eq!(retained.len(), LINGER_MIN_OPS + 1);
    assert!(retained.iter().any(|(topic, _)| topic == "after"));
}
