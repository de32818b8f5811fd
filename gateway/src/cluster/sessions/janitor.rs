//! Adopting the sessions of dead nodes: each node, every few seconds, looks for owner entries
//! naming a node run that is no longer alive and takes each over (a compare-and-set, so one
//! node wins), loading it offline: its expiry timer and its will then run on the adopter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Owner, Sessions, SessionsError, nats, owner_client};
use crate::cluster::store::key_name;

/// How often the janitor looks.
const EVERY: Duration = Duration::from_secs(2);

impl Sessions {
    /// Adopts dead nodes' sessions until `stop`. An owner must look dead on two looks in a row
    /// (with the same entry revision) before it is adopted, so that a node that has just
    /// started, and not yet said it is alive, is not mistaken for a dead one.
    pub(super) async fn janitor(self: Arc<Self>, stop: CancellationToken) {
        let mut suspects: HashSet<(String, u64)> = HashSet::new();
        loop {
            if stop.run_until_cancelled(tokio::time::sleep(EVERY)).await.is_none() {
                return;
            }
            match self.look(&suspects).await {
                Ok(dead) => suspects = dead,
                Err(error) => debug!(%error, "The session janitor could not look; next time."),
            }
        }
    }

    /// One look: adopts what was suspect last time and still is; returns the new suspects.
    async fn look(
        self: &Arc<Self>,
        suspects: &HashSet<(String, u64)>,
    ) -> Result<HashSet<(String, u64)>, SessionsError> {
        let live = self.live_nodes().await?;
        let mut dead = HashSet::new();
        let mut keys = match self.link.owners.keys().await {
            Ok(keys) => keys,
            Err(error) => return Err(nats(error)),
        };
        let mut found = Vec::new();
        while let Some(key) = keys.next().await {
            found.push(key.map_err(nats)?);
        }
        for key in found {
            let Some((owner, revision)) = self.owner(&key).await? else { continue };
            if self.is_me(&owner) || live.get(&owner.node) == Some(&owner.incarnation) {
                continue;
            }
            if suspects.contains(&(key.clone(), revision)) {
                if let Err(error) = self.adopt(&key, revision).await {
                    warn!(%error, key, "Could not adopt a dead node's session.");
                }
            } else {
                dead.insert((key, revision));
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
        let from = self.floor(&owner).await?;
        if !self.take(key, &owner, revision, from).await? {
            return Ok(());
        }
        let dead: &Owner = &owner;
        info!(client_id = %client_id, node = %dead.node, "Adopted a session of a dead node.");
        let broker = self.broker()?;
        if let Some(stale) = broker.session(&client_id) {
            broker.evict(&stale);
        }
        self.load(&broker, &client_id, from).await?;
        if broker.session(&client_id).is_none() {
            // Nothing to keep (a session that ended with its connection; its will, if any,
            // went out while loading): the entry goes.
            if let Some((owner, revision)) = self.owner(key).await?
                && self.is_me(&owner)
            {
                let deleted = self.link.owners.delete_expect_revision(key, Some(revision)).await;
                deleted.map_err(nats)?;
            }
        }
        Ok(())
    }
}
