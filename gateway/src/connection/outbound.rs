//! Writing deliveries to one client: the in-flight window, outbound topic aliases, the
//! client's maximum packet size, and expiry at the moment of sending.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::time::Instant;

use crate::broker::config::MqttConfig;
use crate::broker::message::Delivery;
use crate::broker::persist;
use crate::broker::session::{Session, Stage};
use crate::mqtt::codec::OutboundPublish;
use crate::mqtt::{Ack, Codec, Packet, Protocol, QoS};
use crate::store::{Journal, Ticket};

/// The per-connection state of the outbound direction.
#[derive(Debug)]
pub struct Outbound {
    pub protocol: Protocol,
    /// The client's Maximum Packet Size (5.0; `u32::MAX` when it set none); larger messages
    /// are skipped for this client. The protocol's field is 4 bytes, and so is this.
    pub max_packet_size: u32,
    /// The client's Topic Alias Maximum (5.0); 0 means no outbound aliases.
    pub alias_maximum: u16,
    /// Boxed and made on first use, like the inbound table (see `Connection`).
    #[allow(clippy::box_collection, reason = "8 bytes inline instead of 48 for every connection")]
    aliases: Option<Box<HashMap<Arc<str>, u16>>>,
}

impl Outbound {
    pub fn new(protocol: Protocol, max_packet_size: u32, alias_maximum: u16) -> Outbound {
        Outbound { protocol, max_packet_size, alias_maximum, aliases: None }
    }

    /// Moves queued deliveries into the in-flight window and encodes them into `buf`, until
    /// the queue is empty or the window is full. Stored QoS 2 deliveries get their packet id
    /// journaled, and the ticket returned covers them: it must be on disk before the PUBLISH
    /// leaves, or a restart could deliver them twice under two ids. A QoS 1 delivery's packet
    /// id is not journaled: its entry stays "queued" on disk until the PUBACK deletes it, so a
    /// restart re-sends it under a new id, a duplicate that QoS 1 allows. Journaling the id cost
    /// a third B-tree write per persistent delivery (see ARCHITECTURE.md, "Durable QoS 1").
    pub fn drain(
        &mut self,
        session: &Session,
        buf: &mut BytesMut,
        journal: Option<&Arc<Journal>>,
        config: &MqttConfig,
    ) -> Option<Ticket> {
        let now = Instant::now();
        let mut barrier = None;
        let mut state = session.lock();
        // Counted once per drain, not per message.
        let mut delivered = [0u64; 3];
        while let Some(delivery) = state.next_delivery() {
            let stored = delivery.seq != 0;
            if delivery.message.is_expired(now) || !self.fits(&delivery, now) {
                if delivery.message.is_expired(now) {
                    crate::telemetry::catalogue::DROPPED_EXPIRED.increment(1);
                } else {
                    crate::telemetry::catalogue::DROPPED_TOO_LARGE.increment(1);
                }
                if let (true, Some(journal)) = (stored, journal) {
                    journal.delete_entry(&session.client_id, delivery.seq, delivery.elidable);
                }
                continue;
            }
            delivered[delivery.qos as usize] += 1;
            if delivery.qos == QoS::AtMostOnce {
                self.write(&delivery, None, false, now, buf);
                continue;
            }
            // Moved into the in-flight window, then written from there: no copy of it.
            let id = state.start_inflight(delivery);
            let Some(entry) = state.inflight.back_mut() else { continue };
            if let (true, Some(journal), QoS::ExactlyOnce) = (stored, journal, entry.delivery.qos) {
                // A later version is appended: the delivery is no longer elidable.
                entry.delivery.elidable = None;
                let op =
                    persist::entry_op(&session.client_id, &entry.delivery, Some((entry.stage, id)));
                barrier = Some(journal.append(op));
            }
            self.write(&entry.delivery, Some(id), false, now, buf);
        }
        let counters = &*crate::telemetry::catalogue::DELIVERED_BY_QOS;
        for (qos, count) in
            [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().zip(delivered)
        {
            if count > 0 {
                counters.get(qos).increment(count);
            }
        }
        // Publishers that paused for this session are woken once, when the queue reaches
        // its low-water mark (`notify_waiters` takes a lock every time, so not on every drain).
        let wake_publishers = state.publishers_waiting && state.under_low_water(config);
        if wake_publishers {
            state.publishers_waiting = false;
        }
        let under = !state.over_soft_limit(config);
        drop(state);
        if under {
            session.mark_draining();
        }
        if wake_publishers {
            session.space.notify_waiters();
        }
        barrier
    }

    /// Re-sends everything in flight after a session is resumed: PUBLISH with DUP set for
    /// messages not yet acknowledged, PUBREL for those already received.
    pub fn resend(&mut self, session: &Session, buf: &mut BytesMut) {
        let now = Instant::now();
        let state = session.lock();
        for entry in &state.inflight {
            match entry.stage {
                Stage::AwaitingPubAck | Stage::AwaitingPubRec => {
                    self.write(&entry.delivery, Some(entry.packet_id), true, now, buf);
                }
                Stage::AwaitingPubComp => {
                    Codec::encode(&Packet::PubRel(Ack::new(entry.packet_id)), self.protocol, buf);
                }
            }
        }
    }

    /// Whether the delivery, written without an alias, fits the client's maximum packet size.
    fn fits(&self, delivery: &Delivery, now: Instant) -> bool {
        if self.max_packet_size == u32::MAX {
            // The client set no maximum (every 3.1.1 client): no need to size the packet.
            return true;
        }
        let message = &delivery.message;
        let publish = OutboundPublish {
            dup: false,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: &message.topic,
            packet_id: (delivery.qos != QoS::AtMostOnce).then_some(1),
            properties: &message.properties,
            payload: &message.payload,
            topic_alias: None,
            subscription_identifiers: &delivery.subscription_ids,
            message_expiry_interval: message.remaining_expiry(now),
        };
        Codec::publish_len(&publish, self.protocol) <= self.max_packet_size as usize
    }

    fn write(
        &mut self,
        delivery: &Delivery,
        packet_id: Option<u16>,
        dup: bool,
        now: Instant,
        buf: &mut BytesMut,
    ) {
        let message = &delivery.message;
        let (topic, topic_alias) = self.alias_for(&message.topic, dup);
        let publish = OutboundPublish {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic,
            packet_id,
            properties: &message.properties,
            payload: &message.payload,
            topic_alias,
            subscription_identifiers: &delivery.subscription_ids,
            message_expiry_interval: message.remaining_expiry(now),
        };
        Codec::encode_publish(&publish, self.protocol, buf);
    }

    /// Chooses the topic and alias to send: an alias the client already knows (topic sent
    /// empty), a new alias while there is room (topic sent with it), or the plain topic.
    /// Re-sent messages always carry their topic, because the client's alias table was lost
    /// with the previous connection.
    fn alias_for<'t>(&mut self, topic: &'t Arc<str>, dup: bool) -> (&'t str, Option<u16>) {
        if self.alias_maximum == 0 || self.protocol != Protocol::V5 || dup {
            return (topic, None);
        }
        let aliases = self.aliases.get_or_insert_default();
        if let Some(&alias) = aliases.get(topic) {
            return ("", Some(alias));
        }
        let next = aliases.len() + 1;
        if next <= usize::from(self.alias_maximum) {
            let alias = next as u16;
            aliases.insert(topic.clone(), alias);
            return (topic, Some(alias));
        }
        (topic, None)
    }
}
