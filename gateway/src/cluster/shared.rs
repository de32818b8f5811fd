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
//! while the node has at least one member, put again every [`REFRESH`] and deleted when its
//! last member leaves. Every node watches the bucket (supervised: the watch restarts after an
//! error). A node whose entry has not been refreshed for [`EXPIRY`] (it died, or lost NATS)
//! leaves every node's list without a delete, since a KV entry that ages out sends none.
//!
//! While the nodes' lists differ, a message may reach two members or none:
//! - for a moment after a member joins or the last one on a node leaves (until the bucket
//!   change reaches every node, milliseconds on a healthy cluster); a node that is not in the
//!   list yet serves nothing, so a new member gets messages only once every node knows it;
//! - for up to [`EXPIRY`] after a node dies: the messages keyed to it reach no member.
//!
//! A message delivered to a member that leaves before acknowledging it goes to another member
//! of the group on the same node (`Broker::redistribute`), not to another node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Operation;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::link::Link;
use super::store::{key_name, name_key};
use crate::broker::{Broker, ShareSelector};

/// How often a node puts its entries again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// How long an entry counts after it was last put.
pub const EXPIRY: Duration = Duration::from_secs(4);

/// The bucket drops entries older than this, so a dead node's do not stay in it.
pub const BUCKET_MAX_AGE: Duration = Duration::from_secs(10);

/// How long a failed watch waits before it starts again.
const RESTART: Duration = Duration::from_millis(500);

/// How long a stopping node may take to withdraw its entries.
const WITHDRAW: Duration = Duration::from_secs(1);

/// For each group and filter, the nodes with members and when each was last put.
type View = HashMap<String, HashMap<String, BTreeMap<String, Instant>>>;

/// This node's view of which nodes serve which shared subscriptions: the broker's
/// [`ShareSelector`].
pub struct Shares {
    node: Arc<str>,
    view: RwLock<View>,
    /// Groups whose local members changed since the announcer last looked. Bounded by the
    /// shared subscriptions of this node.
    dirty: Mutex<HashSet<(String, String)>>,
    wake: tokio::sync::Notify,
}

impl Shares {
    pub fn new(node: Arc<str>) -> Shares {
        Shares {
            node,
            view: RwLock::new(View::new()),
            dirty: Mutex::new(HashSet::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn key(&self, group: &str, filter: &str) -> String {
        format!("{}.{}.{}", name_key(group), name_key(filter), name_key(&self.node))
    }

    fn seen(&self, group: String, filter: String, node: String, at: Instant) {
        let mut view = self.view.write();
        view.entry(group).or_default().entry(filter).or_default().insert(node, at);
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

    /// Drops the entries that expired, so the view does not grow with dead nodes.
    fn prune(&self) {
        let now = Instant::now();
        let mut view = self.view.write();
        view.retain(|_, filters| {
            filters.retain(|_, nodes| {
                nodes.retain(|_, at| now.duration_since(*at) < EXPIRY);
                !nodes.is_empty()
            });
            !filters.is_empty()
        });
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
        let now = Instant::now();
        let live = || nodes.iter().filter(|(_, at)| now.duration_since(**at) < EXPIRY);
        let count = live().count() as u64;
        if count == 0 {
            return true;
        }
        let index = usize::try_from(key % count).unwrap_or(0);
        live().nth(index).is_some_and(|(node, _)| node.as_str() == &*self.node)
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
    let value = Bytes::copy_from_slice(shares.node.as_bytes());
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = shares.wake.notified() => {
                let dirty = std::mem::take(&mut *shares.dirty.lock());
                for (group, filter) in dirty {
                    let key = shares.key(&group, &filter);
                    if broker.has_shared_group(&group, &filter) {
                        if local.insert((group, filter)) {
                            put(&link, key, value.clone()).await;
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
                    put(&link, shares.key(group, filter), value.clone()).await;
                }
                shares.prune();
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

async fn put(link: &Link, key: String, value: Bytes) {
    if let Err(error) = link.shares.put(&key, value).await {
        // Tried again at the next refresh.
        debug!(%error, "Cannot announce a shared subscription's members.");
    }
}

/// Keeps the view equal to the bucket: every entry at start, then every change.
pub async fn watch(shares: Arc<Shares>, link: Arc<Link>, stop: CancellationToken) {
    loop {
        let watch = stop.run_until_cancelled(link.shares.watch_with_history(">")).await;
        let mut watch = match watch {
            None => return,
            Some(Ok(watch)) => watch,
            Some(Err(error)) => {
                warn!(%error, "Cannot watch the cluster's shared subscriptions; retrying.");
                if stop.run_until_cancelled(tokio::time::sleep(RESTART)).await.is_none() {
                    return;
                }
                continue;
            }
        };
        while let Some(next) = stop.run_until_cancelled(watch.next()).await {
            let entry = match next {
                Some(Ok(entry)) => entry,
                Some(Err(error)) => {
                    warn!(%error, "The shared subscriptions watch failed; restarting it.");
                    break;
                }
                None => break,
            };
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
                    shares.seen(group, filter, node, at);
                }
                Operation::Delete | Operation::Purge => shares.forget(&group, &filter, &node),
            }
        }
        if stop.is_cancelled() {
            return;
        }
        if stop.run_until_cancelled(tokio::time::sleep(RESTART)).await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
