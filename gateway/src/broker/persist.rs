//! Building store ops from broker state: one place that knows how sessions and deliveries are
//! written, so the broker and connections only decide *when*.

use std::sync::Arc;

use super::message::Delivery;
use super::session::{SessionState, Stage};
use crate::store::Op;
use crate::store::record::{self, EntryRecord, EntryStage, SessionRecord};

/// The op storing `delivery` at `stage` (`None`: still queued).
pub fn entry_op(client_id: &Arc<str>, delivery: &Delivery, stage: Option<(Stage, u16)>) -> Op {
    let (stage, packet_id) = match stage {
        None => (EntryStage::Queued, 0),
        Some((Stage::AwaitingPubAck, id)) => (EntryStage::AwaitingPubAck, id),
        Some((Stage::AwaitingPubRec, id)) => (EntryStage::AwaitingPubRec, id),
        Some((Stage::AwaitingPubComp, id)) => (EntryStage::AwaitingPubComp, id),
    };
    let header = EntryRecord {
        stage,
        packet_id,
        qos: delivery.qos as u8,
        retain: delivery.retain,
        subscription_ids: delivery.subscription_ids.to_vec(),
        shared: delivery.shared.as_ref().map(|key| (key.group.clone(), key.filter.clone())),
    };
    let bytes = record::encode_with_message(&header, delivery.message.record());
    Op::PutEntry(client_id.clone(), delivery.seq, bytes)
}

/// The op storing a session's record; `disconnected_at_ms` is `None` while it is attached.
pub fn session_op(
    client_id: &Arc<str>,
    state: &SessionState,
    disconnected_at_ms: Option<u64>,
) -> Op {
    let mut subscriptions: Vec<(String, u8, Option<u32>)> = state
        .subscriptions
        .iter()
        .map(|(filter, s)| (filter.clone(), record::options_byte(&s.options), s.identifier))
        .collect();
    // A stable order keeps records comparable and recovery deterministic.
    subscriptions.sort();
    let session =
        SessionRecord { expiry_interval: state.expiry_interval, disconnected_at_ms, subscriptions };
    Op::PutSession(client_id.clone(), session.encode())
}
