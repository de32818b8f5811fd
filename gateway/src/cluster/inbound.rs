//! What the other nodes publish, fanned out to this node's subscribers.
//!
//! Three supervised tasks: an ordered consumer on the message stream (QoS 1/2, in stream order,
//! so per-topic order holds across nodes), a core-NATS subscription (QoS 0), and a watch of the
//! retained-message bucket that keeps this node's retained index equal to the cluster's. Each
//! restarts after an error, from where it stopped (a KV watch is known to need that after a
//! server restart: nats.rs#1596), and each stops on shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::kv::Operation;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::link::Link;
use super::store::key_name;
use super::watch::{self, Watched};
use crate::broker::Broker;
use crate::broker::persist;

/// The header naming the node a message was published on; a node skips its own, which it
/// fanned out when they were published.
pub const ORIGIN: &str = "Gm-Origin";

/// The header carrying the publishing session's number on its origin node, for No Local.
pub const PUBLISHER: &str = "Gm-Pub";

/// The header carrying a QoS 0 message's key for shared subscriptions (QoS 1/2 messages are
/// keyed by their stream sequence): see `shared.rs`.
pub const SHARE_KEY: &str = "Gm-Key";

/// How long a failed task waits before it starts again.
const RESTART: Duration = Duration::from_millis(500);

/// How long the message reader waits for a message before it asks the stream whether it is
/// behind. An ordered consumer lives on one NATS server: when that server goes away while this
/// node stays connected to another, the client notices only after two missed idle heartbeats
/// (30 s with async-nats' defaults), and meanwhile this node's subscribers get nothing.
const BEHIND_CHECK: Duration = Duration::from_secs(2);

fn from_self(headers: Option<&async_nats::HeaderMap>, node: &str) -> bool {
    headers.and_then(|h| h.get(ORIGIN)).is_some_and(|origin| origin.as_str() == node)
}

fn publisher(headers: Option<&async_nats::HeaderMap>) -> u64 {
    let value = headers.and_then(|h| h.get(PUBLISHER));
    value.and_then(|v| v.as_str().parse().ok()).unwrap_or(0)
}

/// Reads the message stream from after `applied` (its end at start-up) and fans out every
/// message in it. `applied` is the stream sequence of the last message
/// handled, so a restarted consumer neither skips nor repeats.
pub async fn messages(
    link: Arc<Link>,
    broker: Arc<Broker>,
    node: Arc<str>,
    applied: Arc<AtomicU64>,
    gate: Arc<tokio::sync::Mutex<()>>,
    stop: CancellationToken,
) {
    // The stream's last sequence a stalled reader was restarted for: once per new message at
    // most, should the stream ever hold messages the reader's filter leaves out.
    let mut restarted_for = 0;
    loop {
        let from = applied.load(Ordering::SeqCst);
        let deliver_policy = DeliverPolicy::ByStartSequence { start_sequence: from + 1 };
        let config = pull::OrderedConfig {
            filter_subject: link.names.messages_subjects(),
            deliver_policy,
            ..Default::default()
        };
        let consumer = stop.run_until_cancelled(link.messages.create_consumer(config)).await;
        let mut stream = match consumer {
            None => return,
            Some(Ok(consumer)) => match consumer.messages().await {
                Ok(stream) => stream,
                Err(error) => {
                    warn!(%error, "Cannot read the cluster's message stream; retrying.");
                    tokio::time::sleep(RESTART).await;
                    continue;
                }
            },
            Some(Err(error)) => {
                warn!(%error, "Cannot read the cluster's message stream; retrying.");
                tokio::time::sleep(RESTART).await;
                continue;
            }
        };
        // Set once the NATS connection was seen lost while this consumer read.
        let mut lost = false;
        loop {
            lost |= !link.is_connected();
            let changed = link.changes.notified();
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = stream.next() => next,
                // An ordered consumer lives in one server's memory: after the connection
                // comes back it may be gone, which the client notices only after missed
                // heartbeats (seconds). Reading again from `applied` at once skips nothing.
                () = changed => {
                    if link.is_connected() && lost {
                        debug!("NATS reconnected: reading the message stream again.");
                        break;
                    }
                    continue;
                }
                () = tokio::time::sleep(BEHIND_CHECK) => {
                    let last = match link.messages.get_info().await {
                        Ok(info) => info.state.last_sequence,
                        Err(_) => continue,
                    };
                    if last > applied.load(Ordering::SeqCst) && last != restarted_for {
                        debug!(last, "The message stream is ahead of its reader; reading it again.");
                        restarted_for = last;
                        break;
                    }
                    continue;
                }
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    warn!(%error, "The cluster's message stream failed; resuming.");
                    break;
                }
                None => break,
            };
            let seq = message.info().map(|info| info.stream_sequence).unwrap_or(0);
            // Held while the message is fanned out and `applied` moves past it: a session
            // being loaded holds it too, so no message lands between its replay and its
            // first live delivery.
            let gate = gate.lock().await;
            // This node's own messages come back too: QoS 1/2 reach every subscriber through
            // this one ordered path.
            let congested = match persist::decode_message(&message.payload) {
                Ok(mut decoded) => {
                    if from_self(message.headers.as_ref(), &node) {
                        decoded.publisher = publisher(message.headers.as_ref());
                    }
                    broker.fan_out_keyed(&Arc::new(decoded), seq).congested
                }
                Err(error) => {
                    warn!(seq, %error, "Skipped an undecodable cluster message.");
                    Vec::new()
                }
            };
            if seq != 0 {
                applied.store(seq, Ordering::SeqCst);
            }
            drop(gate);
            if stop.run_until_cancelled(pause(&broker, congested)).await.is_none() {
                return;
            }
        }
        tokio::time::sleep(RESTART).await;
    }
}

/// The stream reader's flow control, as a publisher's connection has it (`connection::pause`):
/// in cluster mode every QoS 1/2 message reaches this node's subscribers through the reader,
/// so a subscriber past its soft limit holds the reader back, up to
/// `mqtt.max_publisher_pause_ms`, instead of its bounded queue dropping what a burst (the
/// backlog after a NATS election, say) brings. One still congested at the end is marked
/// stalled, so that the reader waits for it only once.
async fn pause(broker: &Broker, congested: Vec<Arc<crate::broker::session::Session>>) {
    let config = &broker.config;
    if congested.is_empty() || config.max_publisher_pause_ms == 0 {
        return;
    }
    let until = tokio::time::Instant::now() + Duration::from_millis(config.max_publisher_pause_ms);
    for session in congested {
        loop {
            // Registered before the session is looked at, so a drain in between is not missed.
            let space = session.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            if !session.is_congested(config) {
                break;
            }
            if tokio::time::timeout_at(until, space).await.is_err() {
                if session.is_congested(config) {
                    session.mark_stalled();
                }
                break;
            }
        }
    }
}

/// Fans out the QoS 0 messages other nodes publish on core NATS.
pub async fn qos0(link: Arc<Link>, broker: Arc<Broker>, node: Arc<str>, stop: CancellationToken) {
    loop {
        let mut subscription = match link.client.subscribe(link.names.qos0_subjects()).await {
            Ok(subscription) => subscription,
            Err(error) => {
                warn!(%error, "Cannot subscribe to the cluster's QoS 0 messages; retrying.");
                if stop.run_until_cancelled(tokio::time::sleep(RESTART)).await.is_none() {
                    return;
                }
                continue;
            }
        };
        while let Some(Some(message)) = stop.run_until_cancelled(subscription.next()).await {
            if from_self(message.headers.as_ref(), &node) {
                continue;
            }
            match persist::decode_message(&message.payload) {
                Ok(decoded) => {
                    let key = message.headers.as_ref().and_then(|h| h.get(SHARE_KEY));
                    match key.and_then(|key| key.as_str().parse().ok()) {
                        Some(key) => broker.fan_out_keyed(&Arc::new(decoded), key),
                        None => broker.fan_out(&Arc::new(decoded)),
                    };
                }
                Err(error) => debug!(%error, "Skipped an undecodable QoS 0 cluster message."),
            }
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

/// Keeps this node's retained index equal to the cluster's bucket: the bucket's content at
/// start, then every change, this node's own included (they are idempotent).
pub async fn retained(link: Arc<Link>, broker: Arc<Broker>, stop: CancellationToken) {
    let mut watched = Watched::new(link.retained.clone(), "retained", watch::Start::History);
    while let Some(entry) = watched.next(&stop).await {
        let Some(topic) = key_name(&entry.key) else { continue };
        match entry.operation {
            Operation::Put => match persist::decode_message(&entry.value) {
                Ok(message) => broker.apply_retained(&topic, Some(Arc::new(message))),
                Err(error) => warn!(%topic, %error, "Skipped an undecodable retained message."),
            },
            Operation::Delete | Operation::Purge => broker.apply_retained(&topic, None),
        }
    }
}
