//! Loading a session that another node (or an earlier run of this one) had: its stored state,
//! then every message of the log after the position its state is complete up to.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::StreamExt;
use tracing::{debug, warn};

use super::{Previous, Sessions, SessionsError, nats};
use crate::broker::Broker;
use crate::broker::persist;
use crate::broker::session::Session;
use crate::cluster::inbound::{ORIGIN, PUBLISHER};
use crate::cluster::store::client_key;
use crate::cluster::subject::{Space, filter_subjects};
use crate::mqtt::topic;
use crate::store::Snapshot;

/// How long a load waits for this node's log reader to reach the releasing node's position,
/// so that what the old owner queued is not queued again by this node's own fan-out.
const CATCH_UP: Duration = Duration::from_secs(2);

/// How long a load waits for the next stored record or logged message.
const READ_WAIT: Duration = Duration::from_secs(5);

/// Past this many subjects a replay reads the whole log and filters here.
const MAX_FILTER_SUBJECTS: usize = 64;

impl Sessions {
    /// Loads `client_id`'s session into `broker`, complete up to log position `from`, and
    /// replays into it what the log holds after `from` for its subscriptions. The log reader
    /// stands still meanwhile, so the replay ends where live fan-out begins.
    pub(super) async fn load(
        &self,
        broker: &Arc<Broker>,
        client_id: &Arc<str>,
        from: u64,
        previous: Option<Previous>,
    ) -> Result<(), SessionsError> {
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        while self.applied.load(Ordering::SeqCst) < from && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // What is stored no longer changes: the old owner let go of the session and stored all
        // of it, or died. Read before the log reader is stopped, which stalls every delivery
        // on this node.
        let snapshot = self.read_session(client_id).await?;
        let _gate = self.gate.lock().await;
        let upto = self.applied.load(Ordering::SeqCst);
        crate::broker::recovery::recover(broker, snapshot)?;
        let Some(session) = broker.session(client_id) else {
            return Ok(());
        };
        let replayed = match upto > from {
            true => self.replay(broker, &session, from, upto, previous.as_ref()).await?,
            false => 0,
        };
        debug!(client_id = %client_id, from, upto, replayed, "Loaded a session.");
        Ok(())
    }

    /// The stored state of one session, as a snapshot recovery can load.
    async fn read_session(&self, client_id: &str) -> Result<Snapshot, SessionsError> {
        let key = client_key(client_id);
        let bucket = &self.link.names.sessions;
        let subject = |rest: String| format!("$KV.{bucket}.{rest}");
        let config = pull::OrderedConfig {
            filter_subjects: vec![
                subject(format!("s.{key}")),
                subject(format!("w.{key}")),
                subject(format!("q.{key}.>")),
                subject(format!("i.{key}.>")),
            ],
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        };
        let consumer = self.link.sessions.stream.create_consumer(config).await.map_err(nats)?;
        let mut left = consumer.cached_info().num_pending;
        let mut snapshot = Snapshot::default();
        if left == 0 {
            return Ok(snapshot);
        }
        let mut messages = consumer.messages().await.map_err(nats)?;
        let prefix = format!("$KV.{bucket}.");
        while left > 0 {
            let message = match tokio::time::timeout(READ_WAIT, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(error))) => return Err(nats(error)),
                Ok(None) | Err(_) => return Err(nats("the session's stored state ended early")),
            };
            left = message.info().map_err(nats)?.pending;
            let deleted = message.headers.as_ref().and_then(|h| h.get("KV-Operation")).is_some();
            if deleted {
                continue;
            }
            let Some(stored) = message.subject.as_str().strip_prefix(prefix.as_str()) else {
                continue;
            };
            let value = message.payload.to_vec();
            let id = client_id.to_string();
            let mut parts = stored.splitn(3, '.');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("s"), _, None) => snapshot.sessions.push((id, value)),
                (Some("w"), _, None) => snapshot.wills.push((id, value)),
                (Some("q"), _, Some(seq)) => match seq.parse() {
                    Ok(seq) => snapshot.entries.push((id, seq, value)),
                    Err(_) => warn!(key = stored, "Skipped a stored delivery with a bad key."),
                },
                (Some("i"), _, Some(packet_id)) => match packet_id.parse() {
                    Ok(packet_id) => snapshot.inbound.push((id, packet_id)),
                    Err(_) => warn!(key = stored, "Skipped an inbound id with a bad key."),
                },
                _ => {}
            }
        }
        snapshot.entries.sort_by_key(|(_, seq, _)| *seq);
        Ok(snapshot)
    }

    /// Offers `session` every logged message in (`from`, `upto`] its filters match; returns
    /// how many it took.
    async fn replay(
        &self,
        broker: &Broker,
        session: &Arc<Session>,
        from: u64,
        upto: u64,
        previous: Option<&Previous>,
    ) -> Result<usize, SessionsError> {
        let filters: Vec<String> = {
            let state = session.lock();
            state.subscriptions.keys().filter(|f| !f.starts_with("$share/")).cloned().collect()
        };
        if filters.is_empty() {
            return Ok(0);
        }
        let prefix = &self.link.names.prefix;
        let mut subjects: Vec<String> = Vec::new();
        for filter in &filters {
            match filter_subjects(prefix, Space::Qos12, filter) {
                Ok(found) => subjects.extend(found),
                Err(_) => {
                    subjects.clear();
                    break;
                }
            }
        }
        subjects.sort();
        subjects.dedup();
        // NATS refuses overlapping filter subjects in one consumer: then the whole log is
        // read, and the match below is the only filter.
        let narrow = !subjects.is_empty() && subjects.len() <= MAX_FILTER_SUBJECTS;
        let consumer = match narrow {
            true => self.replay_consumer(from, subjects).await.ok(),
            false => None,
        };
        let consumer = match consumer {
            Some(consumer) => consumer,
            None => self.replay_consumer(from, vec![self.link.names.messages_subjects()]).await?,
        };
        if consumer.cached_info().num_pending == 0 {
            return Ok(0);
        }
        let mut messages = consumer.messages().await.map_err(nats)?;
        let mut taken = 0;
        loop {
            let message = match tokio::time::timeout(READ_WAIT, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(error))) => return Err(nats(error)),
                Ok(None) | Err(_) => return Err(nats("the replay ended early")),
            };
            let info = message.info().map_err(nats)?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if seq > upto {
                break;
            }
            match persist::decode_message(&message.payload) {
                Ok(mut decoded) if filters.iter().any(|f| topic::matches(f, &decoded.topic)) => {
                    // What the session itself published on its previous node is its own for
                    // No Local.
                    let headers = message.headers.as_ref();
                    let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
                    if let Some(previous) = previous
                        && header(ORIGIN) == Some(previous.node.as_str())
                        && header(PUBLISHER) == Some(previous.session.to_string().as_str())
                    {
                        decoded.publisher = session.id;
                    }
                    if broker.offer_replayed(session, &Arc::new(decoded)).is_some() {
                        taken += 1;
                    }
                }
                Ok(_) => {}
                Err(error) => warn!(seq, %error, "Skipped an undecodable cluster message."),
            }
            if pending == 0 || seq == upto {
                break;
            }
        }
        Ok(taken)
    }

    async fn replay_consumer(
        &self,
        from: u64,
        filter_subjects: Vec<String>,
    ) -> Result<async_nats::jetstream::consumer::Consumer<pull::OrderedConfig>, SessionsError> {
        let config = pull::OrderedConfig {
            filter_subjects,
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from + 1 },
            ..Default::default()
        };
        self.link.messages.create_consumer(config).await.map_err(nats)
    }
}
