//! The cluster's `Store`: the journal's ops written to JetStream instead of a local file.
//!
//! The journal stays each node's ordering and durability point: its writer thread hands every
//! batch to `commit`, which publishes each op to the stream or bucket that keeps it, pipelined
//! on one connection (so ops on one key land in order), and returns once JetStream has
//! acknowledged every one with the configured replicas. Tickets, group commit and ack elision
//! therefore work as in single-node mode, and a PUBACK still means "stored".
//!
//! A failed commit is retried whole by the journal: bucket writes are idempotent, and a
//! forwarded message carries a `Nats-Msg-Id` that makes its second copy a duplicate the stream
//! drops.
//!
//! Layout (`<ck>` is the client id in base64url, which bucket keys allow):
//! - bucket `sessions`: `s.<ck>` session record, `q.<ck>.<seq>` a queued or in-flight
//!   delivery, `i.<ck>.<packet id>` an inbound QoS 2 id, `w.<ck>` a will;
//! - bucket `retained`: base64url(topic) → the message record;
//! - bucket `resources`: `<kind>.<base64url(name)>` → the resource's JSON;
//! - stream `MSGS`: forwarded QoS 1/2 messages;
//! - stream `EVENTS`: routed events, one message per event subscription that takes one
//!   (`events.rs`);
//! - the other routing tables (dead letters, lifecycle counters) stay in the local redb file.

use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use base64::Engine;
use bytes::Bytes;

use super::link::Link;
use crate::store::redb::RedbStore;
use crate::store::{Op, Snapshot, Store, StoreError};

/// The key of a client id in the buckets.
pub fn client_key(client_id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(client_id.as_bytes())
}

/// The key of a name (topic, resource name) in a bucket.
pub fn name_key(name: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name.as_bytes())
}

/// The name a [`name_key`] was made from.
pub fn key_name(key: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key).ok()?;
    String::from_utf8(bytes).ok()
}

/// Where this node's journal commits.
pub struct ClusterStore {
    link: Arc<Link>,
    node: Arc<str>,
    /// Random per process, so message ids of a restarted node never repeat its old ones.
    incarnation: u64,
    runtime: tokio::runtime::Handle,
    /// The routing tables; `None` in in-memory mode.
    local: Option<RedbStore>,
    /// What `load` returns once: the resources read from the cluster at start-up and the
    /// local routing rows.
    initial: parking_lot::Mutex<Option<Snapshot>>,
}

impl ClusterStore {
    pub fn new(
        link: Arc<Link>,
        node: Arc<str>,
        incarnation: u64,
        local: Option<RedbStore>,
        resources: Vec<(String, String, Vec<u8>)>,
    ) -> Result<ClusterStore, StoreError> {
        let mut initial = match &local {
            Some(local) => {
                let mut snapshot = local.load()?;
                // Only the routing tables are local; whatever else an old single-node file
                // holds is not this cluster's state.
                Snapshot { routing: std::mem::take(&mut snapshot.routing), ..Snapshot::default() }
            }
            None => Snapshot::default(),
        };
        initial.resources = resources;
        Ok(ClusterStore {
            link,
            node,
            incarnation,
            runtime: tokio::runtime::Handle::current(),
            local,
            initial: parking_lot::Mutex::new(Some(initial)),
        })
    }

    /// The subject of a key in a bucket.
    fn kv(&self, bucket: &str, key: &str) -> String {
        format!("$KV.{bucket}.{key}")
    }

    async fn commit_shared(&self, ops: &[&Op]) -> Result<(), StoreError> {
        let names = &self.link.names;
        let mut pending: Vec<PublishAckFuture> = Vec::with_capacity(ops.len());
        for op in ops {
            let (subject, message) = match op {
                Op::Forward(forwarded) => {
                    let mut headers = HeaderMap::new();
                    headers.insert(super::inbound::ORIGIN, &*self.node);
                    headers.insert(
                        super::inbound::PUBLISHER,
                        forwarded.publisher.to_string().as_str(),
                    );
                    let id = format!("{}.{:x}.{}", self.node, self.incarnation, forwarded.id);
                    let message = PublishMessage::build()
                        .payload(forwarded.body.clone())
                        .headers(headers)
                        .message_id(id);
                    (forwarded.subject.clone(), message)
                }
                Op::PublishEvent(event) => {
                    let id = format!("{}.{:x}.ev.{}", self.node, self.incarnation, event.id);
                    let message =
                        PublishMessage::build().payload(event.body.clone()).message_id(id);
                    (names.event_subject(&event.topic, &event.subscription), message)
                }
                Op::PutSession(client, record) => {
                    put(self.kv(&names.sessions, &format!("s.{}", client_key(client))), record)
                }
                Op::DeleteSession(client) => {
                    // Everything of the session goes: the record, will, queue and inbound
                    // ids. The purges are requests, not publishes, so what this batch
                    // published before them must be in first.
                    wait_all(&mut pending).await?;
                    let key = client_key(client);
                    for pattern in [format!("q.{key}.>"), format!("i.{key}.>")] {
                        let subject = self.kv(&names.sessions, &pattern);
                        self.link
                            .sessions
                            .stream
                            .purge()
                            .filter(subject)
                            .await
                            .map_err(|e| StoreError::Backend(format!("purge a session: {e}")))?;
                    }
                    pending.push(
                        send(&self.link, self.kv(&names.sessions, &format!("w.{key}")), delete())
                            .await?,
                    );
                    (self.kv(&names.sessions, &format!("s.{key}")), delete())
                }
                Op::PutEntry(client, seq, record) => put(
                    self.kv(&names.sessions, &format!("q.{}.{seq}", client_key(client))),
                    &Bytes::copy_from_slice(record),
                ),
                Op::DeleteEntry(client, seq) => {
                    (self.kv(&names.sessions, &format!("q.{}.{seq}", client_key(client))), delete())
                }
                Op::PutInbound(client, id) => put(
                    self.kv(&names.sessions, &format!("i.{}.{id}", client_key(client))),
                    &Bytes::new(),
                ),
                Op::DeleteInbound(client, id) => {
                    (self.kv(&names.sessions, &format!("i.{}.{id}", client_key(client))), delete())
                }
                Op::PutWill(client, record) => {
                    put(self.kv(&names.sessions, &format!("w.{}", client_key(client))), record)
                }
                Op::DeleteWill(client) => {
                    (self.kv(&names.sessions, &format!("w.{}", client_key(client))), delete())
                }
                Op::PutRetained(topic, record) => {
                    put(self.kv(&names.retained, &name_key(topic)), record)
                }
                Op::DeleteRetained(topic) => (self.kv(&names.retained, &name_key(topic)), delete()),
                Op::PutResource(kind, name, body) => {
                    put(self.kv(&names.resources, &format!("{kind}.{}", name_key(name))), body)
                }
                Op::DeleteResource(kind, name) => {
                    (self.kv(&names.resources, &format!("{kind}.{}", name_key(name))), delete())
                }
                Op::PutRouting(..) | Op::DeleteRouting(..) | Op::Nop => continue,
            };
            pending.push(send(&self.link, subject, message).await?);
        }
        wait_all(&mut pending).await
    }
}

fn put(subject: String, value: &(impl AsRef<[u8]> + ?Sized)) -> (String, PublishMessage) {
    (subject, PublishMessage::build().payload(Bytes::copy_from_slice(value.as_ref())))
}

/// A delete marker: the key reads as absent, and watchers see the delete.
fn delete() -> PublishMessage {
    let mut headers = HeaderMap::new();
    headers.insert("KV-Operation", "DEL");
    PublishMessage::build().headers(headers)
}

async fn send(
    link: &Link,
    subject: String,
    message: PublishMessage,
) -> Result<PublishAckFuture, StoreError> {
    link.js
        .send_publish(subject, message)
        .await
        .map_err(|e| StoreError::Backend(format!("publish to NATS: {e}")))
}

async fn wait_all(pending: &mut Vec<PublishAckFuture>) -> Result<(), StoreError> {
    let acks = futures_util::future::join_all(pending.drain(..).map(|ack| ack.into_future())).await;
    for ack in acks {
        ack.map_err(|e| StoreError::Backend(format!("JetStream did not store a write: {e}")))?;
    }
    Ok(())
}

impl Store for ClusterStore {
    fn commit(&self, ops: &[Op]) -> Result<(), StoreError> {
        // The cluster's part first: a batch that also deletes local routing rows (events handed
        // over to the cluster's routing log) must not lose them if this process dies between
        // the two. A retried batch publishes again, which the ids and keys make harmless.
        let shared: Vec<&Op> = ops
            .iter()
            .filter(|op| !matches!(op, Op::PutRouting(..) | Op::DeleteRouting(..) | Op::Nop))
            .collect();
        if !shared.is_empty() {
            // The journal's writer is a plain thread, so it may block on the runtime.
            self.runtime.block_on(self.commit_shared(&shared))?;
        }
        if let Some(local) = &self.local {
            let routing: Vec<Op> = ops
                .iter()
                .filter(|op| matches!(op, Op::PutRouting(..) | Op::DeleteRouting(..)))
                .cloned()
                .collect();
            if !routing.is_empty() {
                local.commit(&routing)?;
            }
        }
        Ok(())
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(self.initial.lock().take().unwrap_or_default())
    }
}
