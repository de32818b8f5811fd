//! Building store ops from broker state: one place that knows how sessions, deliveries and
//! messages are written, so the broker and connections only decide *when*, and the store deals
//! in bytes.

use std::sync::Arc;

use bytes::BytesMut;
use serde::Deserialize;

use super::message::{Delivery, Message};
use super::session::{SessionState, Stage};
use crate::mqtt::codec::OutboundPublish;
use crate::mqtt::{Codec, Packet, Protocol, QoS};
use crate::store::record::{self, EntryRecord, EntryStage, SessionRecord};
use crate::store::{Op, StoreError};

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
        .map(|(filter, s)| (filter.clone(), s.options.to_byte(), s.identifier))
        .collect();
    // A stable order keeps records comparable and recovery deterministic.
    subscriptions.sort();
    let session =
        SessionRecord { expiry_interval: state.expiry_interval, disconnected_at_ms, subscriptions };
    Op::PutSession(client_id.clone(), session.encode())
}

/// Encodes a message's store record: its absolute expiry (wall-clock milliseconds, 0 for
/// never), then its MQTT 5 PUBLISH encoding (our own codec, so the format is the
/// specification's and needs no second schema).
pub fn encode_message(message: &Message) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(64 + message.payload.len() + message.topic.len());
    buf.extend_from_slice(&message.expires_at.map_or(0, record::instant_to_ms).to_le_bytes());
    let publish = OutboundPublish {
        dup: false,
        qos: message.qos,
        retain: message.retain,
        topic: &message.topic,
        packet_id: (message.qos != QoS::AtMostOnce).then_some(1),
        properties: &message.properties,
        payload: &message.payload,
        topic_alias: None,
        subscription_identifiers: &[],
        message_expiry_interval: None,
    };
    Codec::encode_publish(&publish, Protocol::V5, &mut buf);
    buf.to_vec()
}

/// Decodes a message record; `publisher` is 0 because No Local was applied before storing.
pub fn decode_message(bytes: &[u8]) -> Result<Message, StoreError> {
    let corrupt = |problem: &str| StoreError::Corrupt { table: "message", problem: problem.into() };
    let (expiry, packet) = bytes.split_first_chunk::<8>().ok_or_else(|| corrupt("too short"))?;
    let expires_at_ms = u64::from_le_bytes(*expiry);
    let mut buf = BytesMut::from(packet);
    let codec = Codec::new(usize::MAX);
    let publish = match codec.decode(&mut buf, Some(Protocol::V5)) {
        Ok(Some(Packet::Publish(publish))) => publish,
        Ok(_) => return Err(corrupt("not a whole PUBLISH")),
        Err(error) => return Err(corrupt(&error.to_string())),
    };
    Ok(Message {
        topic: publish.topic.as_str().into(),
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties: publish.properties.into_shared(),
        expires_at: (expires_at_ms != 0).then(|| record::ms_to_instant(expires_at_ms)),
        publisher: 0,
        record: std::sync::OnceLock::new(),
    })
}

/// Decodes a header record of `table` and the message after it.
pub fn decode_with_message<H: for<'de> Deserialize<'de>>(
    table: &'static str,
    bytes: &[u8],
) -> Result<(H, Message), StoreError> {
    let (header, message) = record::split_header(table, bytes)?;
    Ok((header, decode_message(message)?))
}

#[cfg(test)]
mod tests;
