//! Answering another node's request for a session this node holds.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{DETACH_WAIT, HEARTBEAT, MAX_RELEASES, Owner, Release, Released, Sessions};
use crate::cluster::store::client_key;
use crate::mqtt::ReasonCode;

impl Sessions {
    /// Answers release requests until `stop`.
    pub(super) async fn serve_releases(self: Arc<Self>, stop: CancellationToken) {
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_RELEASES));
        loop {
            let subject = self.release_subject(&self.node);
            let mut requests = match self.link.client.subscribe(subject).await {
                Ok(requests) => requests,
                Err(error) => {
                    warn!(%error, "Cannot take session release requests; retrying.");
                    if stop.run_until_cancelled(tokio::time::sleep(HEARTBEAT)).await.is_none() {
                        return;
                    }
                    continue;
                }
            };
            while let Some(Some(request)) = stop.run_until_cancelled(requests.next()).await {
                let Some(reply) = request.reply.clone() else { continue };
                let Ok(permit) = limit.clone().acquire_owned().await else { return };
                let this = self.clone();
                self.runtime.spawn(async move {
                    let answer = this.clone().answer(&request.payload).await;
                    let payload = serde_json::to_vec(&answer).unwrap_or_default();
                    if let Err(error) = this.link.client.publish(reply, payload.into()).await {
                        debug!(%error, "Could not answer a release request.");
                    }
                    drop(permit);
                });
            }
            if stop.is_cancelled() {
                return;
            }
        }
    }

    /// Releases the session a request names.
    async fn answer(self: Arc<Self>, payload: &[u8]) -> Released {
        let Ok(request) = serde_json::from_slice::<Release>(payload) else {
            return Released::Busy;
        };
        if request.incarnation != self.incarnation() {
            return Released::NotMe;
        }
        if request.probe {
            return Released::Busy;
        }
        let client_id: Arc<str> = request.client_id.into();
        let _lock = self.lock(&client_id).await;
        let Ok(broker) = self.broker() else { return Released::Busy };
        let key = client_key(&client_id);
        let Some(session) = broker.session(&client_id) else {
            // Not here: released before (the entry holds where its state is complete up
            // to), or ended, or never loaded.
            return match self.owner(&key).await {
                Ok(Some((owner, revision))) if self.is_me(&owner) => {
                    Released::Upto { applied: owner.from, revision: Some(revision), session: None }
                }
                Ok(_) => {
                    let applied = self.applied.load(Ordering::SeqCst);
                    Released::Upto { applied, revision: None, session: None }
                }
                Err(_) => Released::Busy,
            };
        };
        session.kick(ReasonCode::SessionTakenOver);
        let detached = tokio::time::timeout(DETACH_WAIT, session.attach.clone().lock_owned()).await;
        let Ok(_detached) = detached else { return Released::Busy };
        let upto = {
            // The log reader stands still: every message up to `upto` reached the session
            // before it left the subscription tree, none after.
            let _gate = self.gate.lock().await;
            broker.evict(&session);
            self.applied.load(Ordering::SeqCst)
        };
        self.flush(&broker).await;
        debug!(client_id = %client_id, upto, "Released a session to another node.");
        let revision = self.note_release(&key, upto).await;
        Released::Upto { applied: upto, revision, session: Some(session.id) }
    }

    /// Writes into the owner entry, while it names this node, the log position a released
    /// session's stored state is complete up to: should the requester not take the session
    /// after all, the next claim (this node's included) loads it from there. Returns the
    /// entry's new revision.
    async fn note_release(&self, key: &str, upto: u64) -> Option<u64> {
        let (owner, revision) = self.owner(key).await.ok()??;
        if !self.is_me(&owner) {
            return None;
        }
        let noted = Owner { from: upto, ..owner };
        let value = serde_json::to_vec(&noted).ok()?;
        self.link.owners.update(key, value.into(), revision).await.ok()
    }
}
