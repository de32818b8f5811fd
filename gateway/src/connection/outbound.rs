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
    /// The client's Maximum Packet Size (5.0); larger messages are skipped for this client.
    pub max_packet_size: usize,
    /// The client's Topic Alias Maximum (5.0); 0 means no outbound aliases.
    pub alias_maximum: u16,
    aliases: HashMap<Arc<str>, u16>,
}

impl Outbound {
    pub fn new(protocol: Protocol, max_packet_size: usize, alias_maximum: u16) -> Outbound {
        Outbound { protocol, max_packet_size, alias_maximum, aliases: HashMap::new() }
    }

    /// Moves queued deliveries into the in-flight window and encodes them into `buf`, until
    /// the queue is empty or the window is full. Stored deliveries get their packet id
    /// journaled; the ticket returned covers QoS 2 ones, whose packet id must be on disk before
    /// the PUBLISH leaves, or a restart could deliver them twice under two ids.
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
        while let Some(delivery) = state.next_delivery() {
            let stored = delivery.seq != 0;
            if delivery.message.is_expired(now) || !self.fits(&delivery, now) {
                if delivery.message.is_expired(now) {
                    metrics::counter!("gridmq_messages_expired_total").increment(1);
                } else {
                    metrics::counter!("gridmq_messages_too_large_total").increment(1);
                }
                if let (true, Some(journal)) = (stored, journal) {
                    journal.append(crate::store::Op::DeleteEntry(
                        session.client_id.clone(),
                        delivery.seq,
                    ));
                }
                continue;
            }
            let packet_id = match delivery.qos {
                QoS::AtMostOnce => None,
                _ => {
                    let id = state.start_inflight(delivery.clone());
                    if let (true, Some(journal)) = (stored, journal) {
                        let stage = state.inflight.back().map(|entry| (entry.stage, id));
                        let ticket =
                            journal.append(persist::entry_op(&session.client_id, &delivery, stage));
                        if delivery.qos == QoS::ExactlyOnce {
                            barrier = Some(ticket);
                        }
                    }
                    Some(id)
                }
            };
            self.write(&delivery, packet_id, false, now, buf);
        }
        let relieved = !state.over_soft_limit(config);
        drop(state);
        if relieved {
            session.mark_draining();
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
        Codec::publish_len(&publish, self.protocol) <= self.max_packet_size
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
        if let Some(&alias) = self.aliases.get(topic) {
            return ("", Some(alias));
        }
        let next = self.aliases.len() + 1;
        if next <= usize::from(self.alias_maximum) {
            let alias = next as u16;
            self.aliases.insert(topic.clone(), alias);
            return (topic, Some(alias));
        }
        (topic, None)
    }
}
