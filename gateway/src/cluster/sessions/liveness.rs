//! Saying this node is alive, storing its log position, and starting over after it was cut
//! off long enough to be taken for dead.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{DETACH_WAIT, HEARTBEAT, PRESUMED_DEAD, Sessions, SessionsError, nats};
use crate::cluster::store::name_key;
use crate::mqtt::ReasonCode;

/// How long the connection must have been down, since the last heartbeat stored, before this
/// node believes other nodes may have taken it for dead.
const CUT_OFF: std::time::Duration = std::time::Duration::from_secs(1);

impl Sessions {
    /// Says this node is alive and stores its log position, each second until `stop`.
    pub(super) async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let mut alive_at = tokio::time::Instant::now();
        let mut downtime = self.link.downtime();
        loop {
            // Other nodes adopt a node's sessions only once its heartbeat lapsed and it did not
            // answer a probe, which takes its connection being down. A heartbeat that merely
            // could not be stored (its bucket electing a leader, seconds after a NATS server
            // died) while the connection was up, or down for a moment, answers probes, and
            // starting over then would disconnect every client for nothing.
            let cut_off = self.link.downtime().saturating_sub(downtime) >= CUT_OFF;
            if alive_at.elapsed() >= PRESUMED_DEAD && cut_off && self.link.is_connected() {
                self.start_over().await;
                downtime = self.link.downtime();
            }
            match self.beat().await {
                Ok(()) => {
                    alive_at = tokio::time::Instant::now();
                    downtime = self.link.downtime();
                }
                Err(error) => warn!(%error, "Cannot tell the cluster this node is alive."),
            }
            if stop.run_until_cancelled(tokio::time::sleep(HEARTBEAT)).await.is_none() {
                // The log reader stops with the broker: a last marker spares the nodes that
                // adopt this one's sessions a longer replay.
                let _ = tokio::time::timeout(HEARTBEAT * 2, self.mark()).await;
                return;
            }
        }
    }

    /// After this node could not say it was alive for long enough that other nodes may have
    /// adopted its sessions: every local session goes (their clients were fenced off already)
    /// without touching what is stored, and the node goes on as a new run, so that its
    /// sessions' owner entries name a dead run and are adopted, with their timers, by one
    /// node, maybe this one. Otherwise a stale copy's expiry could delete what its adopter
    /// stores, and its will go out twice.
    async fn start_over(self: &Arc<Self>) {
        let Ok(broker) = self.broker() else { return };
        let sessions = broker.sessions_snapshot();
        warn!(
            sessions = sessions.len(),
            "This node was cut off from the cluster long enough to be taken for dead; its \
             sessions go back to the cluster."
        );
        for session in sessions {
            let _lock = self.lock(&session.client_id).await;
            // 0x89 Server busy: 0x88 (Server unavailable) is a CONNACK code only.
            session.kick(ReasonCode::ServerBusy);
            let detached =
                tokio::time::timeout(DETACH_WAIT, session.attach.clone().lock_owned()).await;
            if detached.is_err() {
                warn!(client_id = %session.client_id, "A session's connection did not let go; evicting it anyway.");
            }
            broker.evict(&session);
        }
        self.incarnation.store(crate::cluster::random_u64(), Ordering::SeqCst);
    }

    async fn beat(&self) -> Result<(), SessionsError> {
        let key = name_key(&self.node);
        self.link.nodes.put(key, self.incarnation().to_string().into()).await.map_err(nats)?;
        self.mark().await
    }

    /// Stores the log position this node's journal has stored everything up to.
    async fn mark(&self) -> Result<(), SessionsError> {
        // Everything this node fanned out up to `applied` was appended before it is read; once
        // the journal has stored it, the marker may say so.
        let applied = self.applied.load(Ordering::SeqCst);
        let broker = self.broker()?;
        self.flush(&broker).await;
        let marker = Sessions::marker_key(&self.node, self.incarnation());
        self.link.owners.put(marker, applied.to_string().into()).await.map_err(nats)?;
        Ok(())
    }
}
