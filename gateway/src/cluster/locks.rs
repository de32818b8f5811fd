//! This node's lock service for pull delivery: the other nodes send it the lock operations
//! (acknowledge, release, reject, renew) on tokens whose locks this node holds, on the core-NATS
//! subject `<prefix>.lock.<base64url(node)>`, and it answers each request with Event Grid's
//! per-token outcome (`routing::queue::LockRequest`, `TokenOutcome`, JSON).
//!
//! It also sweeps the lock table of every queue subscription, so that an expired lock's event
//! goes back to the routing log at once, even when nobody calls this node; and at shutdown it
//! hands back every event it still holds, so other nodes can receive them without waiting out
//! the log's ack wait. Every 3 s it counts each queue's events in the log, for the API and the
//! gauges.
//!
//! Requests are served one at a time, each settling its tokens concurrently: a node holds few
//! requests in flight, and the requesting node gives up after its timeout.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::link::Link;
use crate::routing::Router;
use crate::routing::queue::{LockRequest, TokenOutcome};

/// How long a stopping node spends handing its held locks back.
const HAND_BACK_WITHIN: Duration = Duration::from_secs(2);

/// How often expired locks are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Every how many sweeps each queue's backlog is counted for the API and the gauges (3 s): two
/// requests to the log per queue subscription, as push subscriptions' claim loops make.
const COUNT_EVERY: u32 = 12;

/// Serves lock operations for node `node` and sweeps its locks until `stop`.
pub async fn serve(link: Arc<Link>, node: Arc<str>, router: Arc<Router>, stop: CancellationToken) {
    let subject = link.names.lock_subject(&node);
    let mut requests = loop {
        match link.client.subscribe(subject.clone()).await {
            Ok(requests) => break requests,
            Err(error) => {
                warn!(%subject, %error, "Cannot serve lock operations yet; retrying in 1 s.");
                let pause = tokio::time::sleep(Duration::from_secs(1));
                if stop.run_until_cancelled(pause).await.is_none() {
                    return;
                }
            }
        }
    };
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut sweeps: u32 = 0;
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = sweep.tick() => {
                sweeps = sweeps.wrapping_add(1);
                let count = sweeps.is_multiple_of(COUNT_EVERY);
                for queue in router.queues() {
                    queue.expire_leases().await;
                    if count {
                        queue.count_backlog(SWEEP_EVERY).await;
                    }
                }
            }
            request = requests.next() => {
                // The client resubscribes after a reconnect; the stream ends only with the client.
                let Some(request) = request else { break };
                let Some(reply) = request.reply else { continue };
                let answer = answer(&router, &request.payload).await;
                let body = serde_json::to_vec(&answer).unwrap_or_default();
                if let Err(error) = link.client.publish(reply, body.into()).await {
                    debug!(%error, "Cannot answer a lock operation.");
                }
            }
        }
    }
    // Bounded: with NATS unreachable, every hand-back would wait out its request timeout and
    // hold up the shutdown; the log's ack wait brings those events back anyway.
    let hand_back = async {
        if let Err(error) = requests.unsubscribe().await {
            debug!(%error, "Unsubscribing from lock operations.");
        }
        for queue in router.queues() {
            queue.release_leases().await;
        }
        // The hand-backs are confirmed; the flush sends whatever else is pending.
        if let Err(error) = link.client.flush().await {
            debug!(%error, "Flushing the hand-back of held locks.");
        }
    };
    if tokio::time::timeout(HAND_BACK_WITHIN, hand_back).await.is_err() {
        warn!(
            "Not every held lock was handed back at shutdown; the routing log redelivers the rest after its ack wait."
        );
    }
}

/// The outcome of one request. A subscription this node does not have (deleted, or not yet
/// known here) holds none of the locks, so they are lost.
async fn answer(router: &Router, payload: &[u8]) -> TokenOutcome {
    let request: LockRequest = match serde_json::from_slice(payload) {
        Ok(request) => request,
        Err(error) => {
            warn!(%error, "An unreadable lock operation from another node.");
            return TokenOutcome::default();
        }
    };
    match router.queue(&request.topic, &request.subscription) {
        Some(queue) => queue.settle_held(request.op, &request.tokens).await,
        None => TokenOutcome {
            succeeded_lock_tokens: Vec::new(),
            failed_lock_tokens: request
                .tokens
                .iter()
                .map(|token| crate::routing::queue::FailedToken {
                    lock_token: token.clone(),
                    error: crate::routing::queue::TokenError {
                        code: "TokenLost".into(),
                        message: "The subscription is not on the lock's node.".into(),
                    },
                })
                .collect(),
        },
    }
}
