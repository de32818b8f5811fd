//! `$share` across nodes: each message goes to one member of a shared subscription group
//! cluster-wide, and members on different nodes each get their part.
//!
//! Every node fans out every message (QoS 1/2 from the message stream, QoS 0 from core NATS),
//! so every node with members of a group would deliver it once. Instead, every node keeps the
//! same list of the nodes that have members of each (group, filter), sorted by node id, and only
//! the node at `key % n` in that list delivers to the group; the others skip it. The key is the
//! message's stream sequence for QoS 1/2 and a per-origin counter for QoS 0 (header `Gm-Key`),
//! the same number on every node.
//!
//! The list lives in the `shares` bucket: key `<group>.<filter>.<node>` (each part base64url)
//! while the node has at least one member, put again every [`REFRESH`] with the stream
//! sequence the node has fanned out up to, and deleted when its last member leaves. Every node
//! watches the bucket (supervised: the watch restarts after an error).
//!
//! A node whose entry has not been refreshed for [`EXPIRY`] (it died, or lost NATS) is taken
//! out of the list by each node's refresh, under `Cluster.gate`, so the stream messages before
//! that point were judged by the old list and those after by the new one. Its QoS 1/2
//! messages since its last refresh, which nobody delivered, are then read again from the stream
//! and each goes to the group's member on the node the new list names: at least once, since the
//! dead node may have delivered some of them in its last second.
//!
//! While the nodes' lists differ otherwise, a message may reach two members or none: for a
//! moment after a member joins or the last one on a node leaves (until the bucket change reaches
//! every node, milliseconds on a healthy cluster). A node that is not in the list yet serves
//! nothing, so a new member gets messages once every node knows it. QoS 0 messages keyed to a
//! node that died are not read again: at most once.
//!
//! A message delivered to a member that leaves before acknowledging it goes to another member
//! of the group on the same node (`Broker::redistribute`), not to another node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::kv::Operation;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::link::Link;
use super::store::{key_name, name_key};
use super::subject::{Space, filter_subjects};
use super::watch::{self, Watched};
use crate::broker::{Broker, ShareSelector, persist};

/// How often a node puts its entries again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// How long an entry counts after it was last put.
pub const EXPIRY: Duration = Duration::from_secs(4);

/// The bucket drops entries older than this, so a dead node's do not stay in it.
pub const BUCKET_MAX_AGE: Duration = Duration::from_secs(10);

/// How long a stopping node may take to withdraw its entries.
const WITHDRAW: Duration = Duration::from_secs(1);

/// How long a read of the stream for a dead node's messages waits for the next one.
const REPLAY_IDLE: Duration = Duration::from_secs(2);

/// One node's entry for a group, as this node saw it.
#[derive(Debug, Clone, Copy)]
struct Member {
    /// When it was last put.
    at: Instant,
    /// The stream sequence that node had fanned out up to then.
    applied: u64,
    /// The stream sequence this node had fanned out up to when it first saw the entry: the
    /// messages before that were not judged with that node in the list.
    since: u64,
}

/// For each group and filter, the nodes with members.
type View = HashMap<String, HashMap<String, BTreeMap<String, Member>>>;

/// The messages a dead node should have delivered to a group: in the stream after `from` and
/// up to `until`, keyed to `node` by the list `before`; each goes to the node `after` names.
#[derive(Debug)]
struct Orphaned {
    group: String,
    filter: String,
    node: String,
    from: u64,
    until: u64,
    before: Vec<String>,
    after: Vec<String>,
}

/// The node at `key % n` of `nodes`.
fn pick(nodes: &[String], key: u64) -> Option<&str> {
    let count = u64::try_from(nodes.len()).ok().filter(|n| *n > 0)?;
    nodes.get(usize::try_from(key % count).ok()?).map(String::as_str)
}

/// This node's view of which nodes serve which shared subscriptions: the broker's
/// [`ShareSelector`].
pub struct Shares {
    node: Arc<str>,
    /// `Cluster.applied` and `Cluster.gate`: where the stream reader is, and the lock that
    /// holds it still.
    applied: Arc<AtomicU64>,
    gate: Arc<tokio::sync::Mutex<()>>,
    view: RwLock<View>,
    /// Groups whose local members changed since the announcer last looked. Bounded by the
    /// shared subscriptions of this node.
    dirty: Mutex<HashSet<(String, String)>>,
    wake: tokio::sync::Notify,
}

impl Shares {
    pub fn new(
        node: Arc<str>,
        applied: Arc<AtomicU64>,
        gate: Arc<tokio::sync::Mutex<()>>,
    ) -> Shares {
        Shares {
            node,
            applied,
            gate,
            view: RwLock::new(View::new()),
            dirty: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn key(&self, group: &str, filter: &str) -> String {
        format!("{}.{}.{}", name_key(group), name_key(filter), name_key(&self.node))
    }

    fn seen(&self, group: String, filter: String, node: String, at: Instant, applied: u64) {
        let since = self.applied.load(Ordering::SeqCst);
        let mut view = self.view.write();
        let nodes = view.entry(group).or_default().entry(filter).or_default();
        let member = nodes.entry(node).or_insert(Member { at, applied, since });
        member.at = at;
        member.applied = applied;
    }

    fn forget(&self, group: &str, filter: &str, node: &str) {
        let mut view = self.view.write();
        if let Some(filters) = view.get_mut(group) {
            if let Some(nodes) = filters.get_mut(filter) {
                nodes.remove(node);
                if nodes.is_empty() {
                    filters.remove(filter);
                }
            }
            if filters.is_empty() {
                view.remove(group);
            }
        }
    }

    /// Takes the entries that expired out of the list, with the stream reader held still, and
    /// returns the messages their nodes did not deliver.
    async fn expire(&self) -> Vec<Orphaned> {
        let expired_at =
            |now: Instant| move |member: &Member| now.duration_since(member.at) >= EXPIRY;
        // The gate is taken only when something expired: a session being loaded may hold it
        // a while, and the refreshes must not wait for it.
        let any = {
            let expired = expired_at(Instant::now());
            let view = self.view.read();
            view.values()
                .flat_map(|filters| filters.values())
                .flat_map(|nodes| nodes.values())
                .any(expired)
        };
        if !any {
            return Vec::new();
        }
        let _gate = self.gate.lock().await;
        let until = self.applied.load(Ordering::SeqCst);
        let expired = expired_at(Instant::now());
        let mut orphaned = Vec::new();
        let mut view = self.view.write();
        for (group, filters) in view.iter_mut() {
            for (filter, nodes) in filters.iter_mut() {
                if !nodes.values().any(expired) {
                    continue;
                }
                let before: Vec<String> = nodes.keys().cloned().collect();
                let dead: Vec<(String, Member)> = nodes
                    .iter()
                    .filter(|(_, m)| expired(m))
                    .map(|(n, m)| (n.clone(), *m))
                    .collect();
                nodes.retain(|_, member| !expired(member));
                let after: Vec<String> = nodes.keys().cloned().collect();
                for (node, member) in dead {
                    orphaned.push(Orphaned {
                        group: group.clone(),
                        filter: filter.clone(),
                        node,
                        from: member.applied.max(member.since),
                        until,
                        before: before.clone(),
                        after: after.clone(),
                    });
                }
            }
        }
        view.retain(|_, filters| {
            filters.retain(|_, nodes| !nodes.is_empty());
            !filters.is_empty()
        });
        orphaned
    }
}

impl ShareSelector for Shares {
    fn serves(&self, group: &str, filter: &str, key: u64) -> bool {
        let view = self.view.read();
        let Some(nodes) = view.get(group).and_then(|filters| filters.get(filter)) else {
            // Nobody has announced members yet, this node included: its members are the
            // only ones.
            return true;
        };
        // The list changes only under the gate (`expire`) or with the bucket: every node
        // judges a message by the same list, expired entries included until then.
        let count = nodes.len() as u64;
        if count == 0 {
            return true;
        }
        let index = usize::try_from(key % count).unwrap_or(0);
        nodes.keys().nth(index).is_some_and(|node| node.as_str() == &*self.node)
    }

    fn changed(&self, group: &str, filter: &str) {
        self.dirty.lock().insert((group.to_string(), filter.to_string()));
        self.wake.notify_one();
    }
}

/// Keeps this node's entries in the bucket equal to the groups it has members of: puts one
/// when a group gets its first member here, deletes it when the last leaves, puts every one
/// again each [`REFRESH`]; withdraws them all when the node stops.
pub async fn announce(
    shares: Arc<Shares>,
    link: Arc<Link>,
    broker: Arc<Broker>,
    stop: CancellationToken,
) {
    let mut local: HashSet<(String, String)> = HashSet::new();
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let value = || Bytes::from(shares.applied.load(Ordering::SeqCst).to_string());
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = shares.wake.notified() => {
                let dirty = std::mem::take(&mut *shares.dirty.lock());
                for (group, filter) in dirty {
                    let key = shares.key(&group, &filter);
                    if broker.has_shared_group(&group, &filter) {
                        if local.insert((group, filter)) {
                            put(&link, key, value()).await;
                        }
                    } else if local.remove(&(group, filter))
                        && let Err(error) = link.shares.delete(&key).await
                    {
                        // The entry expires on every node after `EXPIRY`.
                        debug!(%error, "Cannot withdraw a shared subscription's entry.");
                    }
                }
            }
            _ = tick.tick() => {
                // A group whose members left without a `changed` call (a session another node
                // took over, taken out of this broker) is withdrawn here, a refresh later.
                let gone: Vec<(String, String)> = local
                    .iter()
                    .filter(|(group, filter)| !broker.has_shared_group(group, filter))
                    .cloned()
                    .collect();
                for (group, filter) in gone {
                    let _ = link.shares.delete(shares.key(&group, &filter)).await;
                    local.remove(&(group, filter));
                }
                for (group, filter) in &local {
                    put(&link, shares.key(group, filter), value()).await;
                }
                for orphaned in shares.expire().await {
                    let replay = replay(link.clone(), broker.clone(), shares.clone(), orphaned);
                    let stop = stop.clone();
                    broker.tasks.spawn(async move {
                        stop.run_until_cancelled(replay).await;
                    });
                }
            }
        }
    }
    // The other nodes stop keying messages to this one at once, not after `EXPIRY`.
    let withdraw = async {
        for (group, filter) in &local {
            let _ = link.shares.delete(shares.key(group, filter)).await;
        }
    };
    let _ = tokio::time::timeout(WITHDRAW, withdraw).await;
}

/// Reads the stream's QoS 1/2 messages on `orphaned.filter` after `from` and up to `until`, and
/// gives each that the dead node should have delivered, and that this node serves now, to this
/// node's member of the group.
async fn replay(link: Arc<Link>, broker: Arc<Broker>, shares: Arc<Shares>, orphaned: Orphaned) {
    let Orphaned { group, filter, node, from, until, before, after } = orphaned;
    if from >= until || !after.iter().any(|n| n.as_str() == &*shares.node) {
        return;
    }
    let subjects = match filter_subjects(&link.names.prefix, Space::Qos12, &filter) {
        Ok(subjects) => subjects,
        Err(error) => {
            warn!(%filter, %error, "Cannot read a dead node's shared messages again.");
            return;
        }
    };
    let config = pull::OrderedConfig {
        filter_subjects: subjects,
        deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from + 1 },
        ..Default::default()
    };
    let messages = match link.messages.create_consumer(config).await {
        Ok(consumer) => consumer.messages().await,
        Err(error) => {
            warn!(%error, "Cannot read a dead node's shared messages again.");
            return;
        }
    };
    let mut messages = match messages {
        Ok(messages) => messages,
        Err(error) => {
            warn!(%error, "Cannot read a dead node's shared messages again.");
            return;
        }
    };
    let mut delivered = 0usize;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(REPLAY_IDLE, messages.next()).await {
        let Ok(info) = message.info() else { break };
        let (seq, pending) = (info.stream_sequence, info.pending);
        if seq > until {
            break;
        }
        if pick(&before, seq) == Some(node.as_str())
            && pick(&after, seq) == Some(&*shares.node)
            && let Ok(decoded) = persist::decode_message(&message.payload)
            && crate::mqtt::topic::matches(&filter, &decoded.topic)
            && broker.fan_out_shared(&Arc::new(decoded), &group, &filter)
        {
            delivered += 1;
        }
        if seq >= until || pending == 0 {
            break;
        }
    }
    info!(%group, %filter, dead = %node, from, until, delivered, "Delivered a dead node's shared messages here.");
}

async fn put(link: &Link, key: String, value: Bytes) {
    if let Err(error) = link.shares.put(&key, value).await {
        // Tried again at the next refresh.
        debug!(%error, "Cannot announce a shared subscription's members.");
    }
}

/// Keeps the view equal to the bucket: every entry at start, then every change.
pub async fn watch(shares: Arc<Shares>, link: Arc<Link>, stop: CancellationToken) {
    let mut watched = Watched::new(link.shares.clone(), "shares", watch::Start::History);
    while let Some(entry) = watched.next(&stop).await {
        let mut parts = entry.key.split('.').map(key_name);
        let (Some(Some(group)), Some(Some(filter)), Some(Some(node)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        match entry.operation {
            Operation::Put => {
                // An entry put a while ago (read at the start of the watch) counts from
                // when it was put.
                let age = time::OffsetDateTime::now_utc() - entry.created;
                let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
                let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                // An unreadable position is as good as none: nothing to read again.
                let applied = std::str::from_utf8(&entry.value).ok().and_then(|v| v.parse().ok());
                shares.seen(group, filter, node, at, applied.unwrap_or(u64::MAX));
            }
            Operation::Delete | Operation::Purge => shares.forget(&group, &filter, &node),
        }
    }
}

#[cfg(test)]
mod tests;
