//! Rebuilding the broker from the store at start-up.
//!
//! Every recovered session is disconnected (its connection died with the old process), so it
//! gets an expiry timer from the moment it disconnected, or from now if it was still connected
//! when the broker stopped. A session whose expiry passed while the broker was down is deleted,
//! with its queue. Expired retained messages and queued messages are deleted too. Delayed wills
//! whose time came while the broker was down are published once recovery is complete.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::message::{Delivery, SharedKey};
use super::session::{Inflight, Session, Stage, Subscription};
use super::{Broker, persist};
use crate::mqtt::{Protocol, QoS, SubscriptionOptions};
use crate::store::record::{self, EntryRecord, EntryStage, SessionRecord, WillRecord};
use crate::store::{Op, Snapshot, StoreError};

/// Set in a stored will's `publish_at_ms` while its client is still connected (cluster mode):
/// the rest is the will's delay in milliseconds, counted from when the session is recovered
/// (another node adopting it after its node died).
pub const CONNECTED_WILL: u64 = 1 << 63;

/// What recovery found, for the start-up log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovered {
    pub sessions: usize,
    pub expired_sessions: usize,
    pub deliveries: usize,
    pub retained: usize,
    pub wills: usize,
    pub elapsed: Duration,
}

/// Loads `snapshot` into `broker`.
pub fn recover(broker: &Arc<Broker>, snapshot: Snapshot) -> Result<Recovered, StoreError> {
    let started = Instant::now();
    let mut found = Recovered::default();
    let now_ms = record::now_ms();
    let tokio_now = tokio::time::Instant::now();
    let append = |op: Op| {
        broker.journal_append(|| op);
    };

    for (topic, bytes) in snapshot.retained {
        let message = persist::decode_message(&bytes)?;
        if message.is_expired(tokio_now) {
            append(Op::DeleteRetained(topic.into()));
            continue;
        }
        broker.restore_retained(Arc::new(message));
        found.retained += 1;
    }

    let mut sessions: HashMap<String, Arc<Session>> = HashMap::new();
    for (client_id, bytes) in snapshot.sessions {
        let stored = SessionRecord::decode(&bytes)?;
        let since = stored.disconnected_at_ms.unwrap_or(now_ms);
        let left_ms = if stored.expiry_interval == u32::MAX {
            u64::MAX
        } else {
            (since + u64::from(stored.expiry_interval) * 1000).saturating_sub(now_ms)
        };
        let client_id: Arc<str> = client_id.into();
        if left_ms == 0 {
            append(Op::DeleteSession(client_id));
            found.expired_sessions += 1;
            continue;
        }
        let session = Arc::new(Session::new(client_id.clone(), broker.next_id(), Protocol::V5));
        {
            let mut state = session.lock();
            state.expiry_interval = stored.expiry_interval;
            state.stored = true;
        }
        for (filter, options, identifier) in stored.subscriptions {
            let options = SubscriptionOptions::from_byte(options).map_err(|error| {
                StoreError::Corrupt { table: "sessions", problem: error.to_string() }
            })?;
            broker.subscribe(&session, &filter, Subscription { options, identifier });
        }
        broker.register(&session);
        if left_ms != u64::MAX {
            broker.schedule_expiry(session.clone(), 0, Duration::from_millis(left_ms));
        }
        sessions.insert(client_id.to_string(), session);
        found.sessions += 1;
    }

    for (client_id, seq, bytes) in snapshot.entries {
        broker.seq_at_least(seq);
        let Some(session) = sessions.get(&client_id) else {
            // Left over from a session that ended; the DeleteSession above covers it.
            continue;
        };
        let (entry, message): (EntryRecord, _) = persist::decode_with_message("entries", &bytes)?;
        let message = Arc::new(message);
        if entry.stage == EntryStage::Queued && message.is_expired(tokio_now) {
            append(Op::DeleteEntry(session.client_id.clone(), seq));
            continue;
        }
        let delivery = Delivery {
            message,
            qos: QoS::from_u8(entry.qos).unwrap_or(QoS::AtLeastOnce),
            retain: entry.retain,
            subscription_ids: entry.subscription_ids.into(),
            shared: entry.shared.map(|(group, filter)| Arc::new(SharedKey { group, filter })),
            seq,
            elidable: None,
        };
        let mut state = session.lock();
        let stage = match entry.stage {
            EntryStage::Queued => None,
            EntryStage::AwaitingPubAck => Some(Stage::AwaitingPubAck),
            EntryStage::AwaitingPubRec => Some(Stage::AwaitingPubRec),
            EntryStage::AwaitingPubComp => Some(Stage::AwaitingPubComp),
        };
        match stage {
            None => {
                state.queue.push_back(delivery);
            }
            Some(stage) => {
                state.reserve_packet_id(entry.packet_id);
                state.inflight.push_back(Inflight { packet_id: entry.packet_id, stage, delivery });
            }
        }
        found.deliveries += 1;
    }

    for (client_id, packet_id) in snapshot.inbound {
        if let Some(session) = sessions.get(&client_id) {
            session.lock().inbound_qos2.insert(packet_id);
        }
    }

    for (client_id, bytes) in snapshot.wills {
        let (will, message): (WillRecord, _) = persist::decode_with_message("wills", &bytes)?;
        let message = Arc::new(message);
        let delay = match will.publish_at_ms & CONNECTED_WILL {
            0 => Duration::from_millis(will.publish_at_ms.saturating_sub(now_ms)),
            _ => Duration::from_millis(will.publish_at_ms & !CONNECTED_WILL),
        };
        match sessions.get(&client_id) {
            // Scheduling stores the will again, so a second crash keeps it too.
            Some(session) if !delay.is_zero() => {
                broker.schedule_will(message, session.clone(), 0, delay);
            }
            _ => {
                broker.publish_will_now(&message);
                append(Op::DeleteWill(client_id.as_str().into()));
            }
        }
        found.wills += 1;
    }

    found.elapsed = started.elapsed();
    Ok(found)
}
