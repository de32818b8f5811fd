//! What this node's clients publish, sent on to the other nodes.
//!
//! QoS 1/2 messages become `Op::Forward` in the journal, so the cluster's store publishes them
//! to the message stream in the order they were published, and the publisher's PUBACK waits
//! for JetStream to hold them with every replica. They are not fanned out here: they come back
//! through the stream to every node, this one included, so every subscriber gets them by one
//! ordered path, and a session that moves between nodes can replay that path exactly. QoS 0 messages go on core NATS, at most once,
//! through a bounded queue: when it is full they are dropped and counted, as a QoS 0 message
//! to a slow subscriber is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::warn;

use super::subject::{Space, topic_subject};
use crate::broker::message::Message;
use crate::broker::{Forwarded as Outcome, Forwarder};
use crate::mqtt::QoS;
use crate::store::{Forwarded, Journal, Op};

/// QoS 0 messages waiting for the NATS connection; past this they are dropped.
pub const QOS0_QUEUE: usize = 8_192;

/// A QoS 0 message on its way to core NATS: subject, shared-subscription key and store record.
pub type Qos0 = (String, u64, Bytes);

pub struct ClusterForwarder {
    journal: Arc<Journal>,
    prefix: String,
    next_id: AtomicU64,
    /// The next QoS 0 message's key ([`crate::broker::ShareSelector`]).
    next_key: AtomicU64,
    qos0: mpsc::Sender<Qos0>,
    /// QoS 0 messages dropped because the queue was full; topics too long for a subject.
    pub dropped_qos0: AtomicU64,
    pub unforwardable: AtomicU64,
}

impl ClusterForwarder {
    pub fn new(journal: Arc<Journal>, prefix: &str) -> (ClusterForwarder, mpsc::Receiver<Qos0>) {
        let (tx, rx) = mpsc::channel(QOS0_QUEUE);
        let forwarder = ClusterForwarder {
            journal,
            prefix: prefix.to_string(),
            next_id: AtomicU64::new(1),
            next_key: AtomicU64::new(0),
            qos0: tx,
            dropped_qos0: AtomicU64::new(0),
            unforwardable: AtomicU64::new(0),
        };
        (forwarder, rx)
    }
}

impl Forwarder for ClusterForwarder {
    fn forward(&self, message: &Arc<Message>) -> Outcome {
        let space = if message.qos == QoS::AtMostOnce { Space::Qos0 } else { Space::Qos12 };
        let subject = match topic_subject(&self.prefix, space, &message.topic) {
            Ok(subject) => subject,
            Err(error) => {
                // Delivered on this node only; the counter and the log say so.
                crate::telemetry::catalogue::CLUSTER_TOPIC_TOO_LONG.increment(1);
                if self.unforwardable.fetch_add(1, Ordering::Relaxed) == 0 {
                    warn!(topic = %message.topic, %error, "Topic cannot be forwarded to the other nodes.");
                }
                return Outcome { ticket: None, comes_back: false, share_key: None };
            }
        };
        let body = Bytes::copy_from_slice(message.record());
        if message.qos == QoS::AtMostOnce {
            // QoS 0 messages have no stream sequence: this counter keys them for the choice of
            // a shared subscription's serving node, here and on every node they reach.
            let key = self.next_key.fetch_add(1, Ordering::Relaxed);
            if self.qos0.try_send((subject, key, body)).is_err() {
                crate::telemetry::catalogue::CLUSTER_QOS0_DROPPED.increment(1);
                self.dropped_qos0.fetch_add(1, Ordering::Relaxed);
            }
            return Outcome { ticket: None, comes_back: false, share_key: Some(key) };
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let publisher = message.publisher;
        let op = Op::Forward(Arc::new(Forwarded { subject, id, publisher, body }));
        Outcome { ticket: Some(self.journal.append(op)), comes_back: true, share_key: None }
    }
}

/// Publishes queued QoS 0 messages on core NATS until `stop`.
pub async fn send_qos0(
    client: async_nats::Client,
    node: Arc<str>,
    mut queue: mpsc::Receiver<Qos0>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = queue.recv() => next,
        };
        let Some((subject, key, body)) = next else { return };
        // At most once: a publish the client cannot buffer is lost, like any QoS 0 message.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(super::inbound::ORIGIN, &*node);
        headers.insert(super::inbound::SHARE_KEY, key.to_string().as_str());
        if let Err(error) = client.publish_with_headers(subject, headers, body).await {
            tracing::debug!(%error, "QoS 0 message not forwarded.");
        }
    }
}
