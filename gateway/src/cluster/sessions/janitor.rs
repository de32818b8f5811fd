//! Adopting the sessions of dead nodes: each node, every second, looks for owner entries
//! naming a node run that is no longer alive and takes each over (a compare-and-set, so one
//! node wins), loading it offline: its expiry timer and its will then run on the adopter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::Operation;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Outcome, Owner, Sessions, SessionsError, nats, owner_client};
use crate::cluster::store::key_name;

/// How the keys of node runs' log-position markers start (`Sessions::marker_key`).
const MARKER: &str = "a.";

/// The node and run a marker key names.
fn marker_run(key: &str) -> Option<(String, u64)> {
    let mut parts = key.strip_prefix(MARKER)?.split('.');
    let node = key_name(parts.next()?)?;
    let incarnation = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((node, incarnation))
}

/// Keeps the janitor's copy of the owners bucket equal to it.
fn note(
    owners: &mut HashMap<String, (Owner, u64)>,
    markers: &mut HashSet<String>,
    entry: async_nats::jetstream::kv::Entry,
) {
    let put = entry.operation == Operation::Put;
    if entry.key.starts_with(MARKER) {
        match put {
            true => markers.insert(entry.key),
            false => markers.remove(&entry.key),
        };
        return;
    }
    match serde_json::from_slice::<Owner>(&entry.value) {
        // A vacant entry names no node to outlive.
        Ok(owner) if put && !owner.is_vacant() => {
            owners.insert(entry.key, (owner, entry.revision));
        }
        _ => {
            owners.remove(&entry.key);
        }
    }
}

/// How often the janitor looks.
const EVERY: Duration = Duration::from_secs(1);

impl Sessions {
    /// Adopts dead nodes' sessions until `stop`. The owners bucket is watched, so each look
    /// reads only the `nodes` bucket. An owner must look dead on two looks in a row (with the
    /// same entry revision), and not answer a probe, before it is adopted: a read of the
    /// `nodes` bucket may lag, and a live node must not lose its sessions to it.
    pub(super) async fn janitor(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let watch = stop.run_until_cancelled(self.link.owners.watch_with_history(">")).await;
            let mut watch = match watch {
                None => return,
                Some(Ok(watch)) => watch,
                Some(Err(error)) => {
                    warn!(%error, "Cannot watch the session owners; retrying.");
                    if stop.run_until_cancelled(tokio::time::sleep(EVERY)).await.is_none() {
                        return;
                    }
                    continue;
                }
            };
            let mut owners: HashMap<String, (Owner, u64)> = HashMap::new();
            let mut suspects: HashSet<(String, u64)> = HashSet::new();
            let mut markers: HashSet<String> = HashSet::new();
            // Markers are deleted only once the map holds every owner entry.
            let mut caught_up = false;
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    next = watch.next() => match next {
                        Some(Ok(entry)) => {
                            caught_up |= entry.seen_current;
                            note(&mut owners, &mut markers, entry);
                        }
                        Some(Err(error)) => {
                            warn!(%error, "The session owners watch failed; restarting it.");
                            break;
                        }
                        None => break,
                    },
                    _ = tick.tick() => {
                        let markers = caught_up.then_some(&markers);
                        match self.look(&owners, &suspects, markers).await {
                            Ok(dead) => suspects = dead,
                            Err(error) => debug!(%error, "The session janitor could not look."),
                        }
                    }
                }
            }
            if stop.run_until_cancelled(tokio::time::sleep(EVERY)).await.is_none() {
                return;
            }
        }
    }

    /// One look: adopts what was suspect last time and still is; returns the new suspects.
    async fn look(
        self: &Arc<Self>,
        owners: &HashMap<String, (Owner, u64)>,
        suspects: &HashSet<(String, u64)>,
        markers: Option<&HashSet<String>>,
    ) -> Result<HashSet<(String, u64)>, SessionsError> {
        let live = self.live_nodes().await?;
        let mut dead = HashSet::new();
        for (key, (owner, revision)) in owners {
            if self.is_me(owner) || live.get(&owner.node) == Some(&owner.incarnation) {
                continue;
            }
            let suspect = (key.clone(), *revision);
            if suspects.contains(&suspect) {
                if let Err(error) = self.adopt(key, *revision).await {
                    warn!(%error, key, "Could not adopt a dead node's session.");
                }
            } else {
                dead.insert(suspect);
            }
        }
        // A dead run's marker serves only as a floor for the sessions still naming that run.
        let named: HashSet<(&str, u64)> =
            owners.values().map(|(owner, _)| (owner.node.as_str(), owner.incarnation)).collect();
        for key in markers.into_iter().flatten() {
            let Some((node, incarnation)) = marker_run(key) else { continue };
            let alive = live.get(&node) == Some(&incarnation);
            if !alive
                && !named.contains(&(node.as_str(), incarnation))
                && let Err(error) = self.link.owners.delete(key).await
            {
                debug!(%error, key, "Could not delete a dead node run's marker.");
            }
        }
        Ok(dead)
    }

    /// The live run of each node.
    async fn live_nodes(&self) -> Result<HashMap<String, u64>, SessionsError> {
        let mut live = HashMap::new();
        let mut keys = self.link.nodes.keys().await.map_err(nats)?;
        let mut found = Vec::new();
        while let Some(key) = keys.next().await {
            found.push(key.map_err(nats)?);
        }
        for key in found {
            let Some(node) = key_name(&key) else { continue };
            let value = self.link.nodes.get(&key).await.map_err(nats)?;
            let incarnation =
                value.and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()));
            if let Some(incarnation) = incarnation {
                live.insert(node, incarnation);
            }
        }
        Ok(live)
    }

    /// Takes over one session whose owner's entry is still at `revision`.
    async fn adopt(self: &Arc<Self>, key: &str, revision: u64) -> Result<(), SessionsError> {
        let Some(client_id) = owner_client(key) else { return Ok(()) };
        let _lock = self.lock(&client_id).await;
        let Some((owner, now)) = self.owner(key).await? else { return Ok(()) };
        if now != revision || self.is_me(&owner) || self.is_live(&owner).await? {
            return Ok(());
        }
        // A run that answers is alive, whatever its heartbeat looked like.
        if !matches!(self.ask(&owner, &client_id, true).await?, Outcome::Gone) {
            return Ok(());
        }
        let from = self.floor(&owner).await?;
        if !self.take(key, &owner, revision, from, owner.connections).await? {
            return Ok(());
        }
        let dead: &Owner = &owner;
        info!(client_id = %client_id, node = %dead.node, "Adopted a session of a dead node.");
        let broker = self.broker()?;
        if let Some(stale) = broker.session(&client_id) {
            broker.evict(&stale);
        }
        self.load(&broker, &client_id, from, None).await?;
        if broker.session(&client_id).is_none() {
            // Nothing to keep (a session that ended with its connection; its will, if any,
            // went out while loading): the entry is vacated, keeping its connection count.
            if let Some((owner, revision)) = self.owner(key).await?
                && self.is_me(&owner)
            {
                self.write(key, &owner.vacated(), revision).await?;
            }
        }
        Ok(())
    }
}
