//! Handling each packet a connected client sends.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{Connection, Ending};
use crate::broker::config::MqttConfig;
use crate::broker::message::{Delivery, Message};
use crate::broker::persist;
use crate::broker::session::{Stage, Subscription};
use crate::hooks::{AuthDecision, AuthRequest, AuthStep, DisconnectReason, RoutedMessage};
use crate::mqtt::{
    Ack, Auth, Disconnect, Packet, Properties, Protocol, Publish, QoS, ReasonCode, RetainHandling,
    SubAck, Subscribe, UnsubAck, Unsubscribe, topic,
};
use crate::store::{Op, Ticket};

/// Payloads up to this size are copied out of the read buffer (see `admit`).
const COPY_PAYLOAD_MAX: usize = 1024;

/// Most messages fanned out as one run (see `Broker::publish_run`).
const RUN_MAX: usize = 64;

/// QoS 0 and QoS 1 publishes waiting to be fanned out together, and their size as queues
/// count it.
#[derive(Debug, Default)]
pub(super) struct Run {
    messages: Vec<Arc<Message>>,
    /// The packet id of each message in `messages` that is owed a PUBACK once it is fanned
    /// out (QoS 1), or 0 (QoS 0; MQTT never uses packet id 0).
    packet_ids: Vec<u16>,
    bytes: usize,
}

impl Run {
    pub(super) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// Whether `message` may join `run`: runs are bounded by count and by bytes (half of a
/// session's byte bound, the room between its soft limit and its bound), so that what a
/// publisher holds while paused stays small.
fn run_fits(run: &Run, message: &Message, config: &MqttConfig) -> bool {
    run.messages.len() < RUN_MAX
        && (run.messages.is_empty()
            || run.bytes + message.queued_size() <= config.max_queued_bytes / 2)
}

/// Whether the packet at the head of `buf` may be read while a run waits: a QoS 0 or QoS 1
/// PUBLISH without RETAIN (it joins the run; DUP does not matter) or a PUBACK
/// (acknowledgements of our deliveries, in no order with what the client publishes).
/// Anything else must not overtake the run.
pub(super) fn joins_run(buf: &[u8]) -> bool {
    buf.first().is_some_and(|&byte| {
        byte >> 4 == 4 || (byte >> 4 == 3 && (byte & 0x07 == 0 || byte & 0x07 == 0x02))
    })
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + super::Park + Unpin + Send + 'static,
{
    /// Acts on one packet; `Some` when the connection must end. QoS 0 and 1 publishes may be
    /// left in `run`, to be fanned out together; any other packet fans out the run first, so
    /// that what the client sent takes effect in order.
    pub(super) async fn handle(&mut self, packet: Packet, run: &mut Run) -> Option<Ending> {
        if !matches!(packet, Packet::Publish(_)) {
            self.flush_run(run, false);
        }
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, run),
            Packet::PubAck(ack) => {
                self.finish_delivery(ack.packet_id, Stage::AwaitingPubAck);
                None
            }
            Packet::PubRec(ack) => {
                if ack.reason.is_error() {
                    // The client refused the message: it is finished, no PUBREL follows.
                    self.finish_delivery(ack.packet_id, Stage::AwaitingPubRec);
                    return None;
                }
                let (known, ticket) = {
                    let mut state = self.session.lock();
                    let known = state.mark_released(ack.packet_id);
                    // The released stage must be durable before PUBREL goes out: after a
                    // restart the broker then re-sends PUBREL, never the message again.
                    let entry = state.inflight.iter_mut().find(|e| e.packet_id == ack.packet_id);
                    let ticket = match (entry, self.broker.journal()) {
                        (Some(entry), Some(journal)) if entry.delivery.seq != 0 => {
                            // A later version is appended: the delivery is no longer elidable.
                            entry.delivery.elidable = None;
                            Some(journal.append(persist::entry_op(
                                &self.session.client_id,
                                &entry.delivery,
                                Some((entry.stage, entry.packet_id)),
                            )))
                        }
                        _ => None,
                    };
                    (known, ticket)
                };
                self.hold(ticket);
                let mut rel = Ack::new(ack.packet_id);
                if !known {
                    rel.reason = ReasonCode::PacketIdentifierNotFound;
                }
                self.send(Packet::PubRel(rel));
                None
            }
            Packet::PubRel(ack) => {
                let (known, stored) = {
                    let mut state = self.session.lock();
                    (state.inbound_qos2.remove(&ack.packet_id), state.stored)
                };
                if known && stored {
                    // Forgetting the id must be durable before PUBCOMP: the client may reuse
                    // it at once, and a restart must not mistake the new message for a copy.
                    let ticket = self.broker.journal_append(|| {
                        Op::DeleteInbound(self.session.client_id.clone(), ack.packet_id)
                    });
                    self.hold(ticket);
                }
                let mut comp = Ack::new(ack.packet_id);
                if !known {
                    comp.reason = ReasonCode::PacketIdentifierNotFound;
                }
                self.send(Packet::PubComp(comp));
                None
            }
            Packet::PubComp(ack) => {
                self.finish_delivery(ack.packet_id, Stage::AwaitingPubComp);
                None
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe),
            Packet::Unsubscribe(unsubscribe) => {
                self.on_unsubscribe(unsubscribe);
                None
            }
            Packet::PingReq => {
                self.send(Packet::PingResp);
                None
            }
            Packet::Disconnect(disconnect) => self.on_disconnect(disconnect),
            Packet::Auth(auth) => self.on_auth(auth).await,
            Packet::Connect(_) => Some(Ending::violation(ReasonCode::ProtocolError)),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Some(Ending::violation(ReasonCode::ProtocolError))
            }
        }
    }

    /// Not async, and called straight from `process_input`: a `Publish` is a few hundred
    /// bytes (mostly its `Properties`), and every async frame it passed through copied it.
    pub(super) fn on_publish(&mut self, mut publish: Publish, run: &mut Run) -> Option<Ending> {
        if !publish.properties.subscription_identifiers.is_empty() {
            // Only the server sends subscription identifiers (MQTT 5 3.3.4).
            return Some(Ending::violation(ReasonCode::ProtocolError));
        }
        // Resolve the topic alias first: every later step needs the topic.
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > self.broker.config.topic_alias_maximum {
                return Some(Ending::violation(ReasonCode::TopicAliasInvalid));
            }
            if publish.topic.is_empty() {
                match self.inbound_aliases.as_ref().and_then(|aliases| aliases.get(&alias)) {
                    Some(topic) => publish.topic = topic.to_string(),
                    None => return Some(Ending::violation(ReasonCode::ProtocolError)),
                }
            } else {
                self.inbound_aliases
                    .get_or_insert_default()
                    .insert(alias, publish.topic.as_str().into());
            }
        } else if publish.topic.is_empty() {
            // An empty topic name without an alias is a Protocol Error (MQTT 5 3.3.2.1).
            return Some(Ending::violation(ReasonCode::ProtocolError));
        }

        let packet_id = publish.packet_id.unwrap_or(0);
        if publish.qos == QoS::ExactlyOnce {
            let state = self.session.lock();
            if state.inbound_qos2.contains(&packet_id) {
                // A re-sent PUBLISH we already have: acknowledge again, deliver nothing.
                drop(state);
                self.send(Packet::PubRec(Ack::new(packet_id)));
                return None;
            }
            if state.inbound_qos2.len() >= usize::from(self.broker.config.receive_maximum) {
                return Some(Ending::violation(ReasonCode::ReceiveMaximumExceeded));
            }
        }

        let verdict = self.admit(&mut publish);
        if let Err(Refused::Close(code) | Refused::Nack(code, _)) = &verdict {
            let description = match &verdict {
                Err(Refused::Nack(_, reason)) => reason.as_deref(),
                _ => None,
            };
            crate::diagnostics::MqttPublishFailed {
                client_identity: &self.identity.authentication_name,
                session_name: &self.session.client_id,
                protocol: self.protocol,
                websocket: self.stream.websocket(),
                topic_name: &publish.topic,
                qos: publish.qos,
                code: *code,
                description,
            }
            .emit();
        }
        let code = match verdict {
            Err(Refused::Close(code)) => {
                crate::telemetry::catalogue::publish_failed(publish.qos, code);
                return Some(Ending::violation(code));
            }
            Err(Refused::Nack(code, reason)) => {
                crate::telemetry::catalogue::publish_failed(publish.qos, code);
                if publish.qos != QoS::AtMostOnce {
                    // Acknowledgements go in the order the publishes came (MQTT-4.6.0-2):
                    // the run's first, even past a pause.
                    self.flush_run(run, true);
                }
                if publish.qos == QoS::AtMostOnce || self.protocol == Protocol::V311 {
                    // 3.1.1 has no negative acknowledgement: the message is dropped and, so the
                    // client's flow continues, acknowledged as usual.
                    tracing::debug!(topic = %publish.topic, ?code, "Publish refused.");
                    if publish.qos == QoS::AtMostOnce {
                        return None;
                    }
                    self.acknowledge(&publish, ReasonCode::Success, None);
                    return None;
                }
                self.acknowledge(&publish, code, reason);
                return None;
            }
            Ok((message, routed)) => {
                crate::telemetry::catalogue::PUBLISHED_OK.get(publish.qos).increment(1);
                if publish.qos != QoS::ExactlyOnce && !message.retain {
                    // The message joins the run; a QoS 1 one is acknowledged once the run is
                    // fanned out, after what routing holds it on is durable.
                    if !run_fits(run, &message, &self.broker.config) {
                        self.flush_run(run, false);
                    }
                    if publish.qos == QoS::AtLeastOnce {
                        self.hold(routed);
                    }
                    run.bytes += message.queued_size();
                    run.messages.push(message);
                    run.packet_ids.push(packet_id);
                    return None;
                }
                self.flush_run(run, false);
                if publish.qos != QoS::AtMostOnce {
                    self.hold(routed);
                }
                // A QoS 2 packet id and the deliveries it caused reach the disk together
                // (see `store/journal.rs`, atomic groups).
                let group = (publish.qos == QoS::ExactlyOnce)
                    .then(|| self.broker.journal().map(|journal| journal.begin_group()))
                    .flatten();
                if publish.qos == QoS::ExactlyOnce {
                    let stored = {
                        let mut state = self.session.lock();
                        state.inbound_qos2.insert(packet_id);
                        state.stored
                    };
                    if stored {
                        let ticket = self.broker.journal_append(|| {
                            Op::PutInbound(self.session.client_id.clone(), packet_id)
                        });
                        self.hold(ticket);
                    }
                }
                if message.retain {
                    let ticket = self.broker.retain(&message);
                    if publish.qos != QoS::AtMostOnce {
                        self.hold(ticket);
                    }
                }
                let fanout = self.broker.publish(&message);
                if publish.qos != QoS::AtMostOnce {
                    self.hold(fanout.ticket);
                }
                let pause = self.broker.config.max_publisher_pause_ms;
                if !fanout.congested.is_empty() && pause > 0 {
                    self.congested = fanout.congested;
                    self.pause_until = Instant::now() + Duration::from_millis(pause);
                }
                let matched = fanout.matched;
                if let (Some(group), Some(journal)) = (group, self.broker.journal()) {
                    journal.end_group(group);
                }
                if matched == 0 { ReasonCode::NoMatchingSubscribers } else { ReasonCode::Success }
            }
        };
        self.acknowledge(&publish, code, None);
        None
    }

    /// Checks, authorizes and routes a publish: the message to fan out and the routing
    /// buffer's ticket to hold the acknowledgement on, or why not.
    /// The publish's properties are taken into the message (what is left in `publish` is what
    /// the acknowledgement needs).
    fn admit(&self, publish: &mut Publish) -> Result<(Arc<Message>, Option<Ticket>), Refused> {
        if publish.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            if publish.qos == QoS::AtMostOnce {
                return Err(Refused::Close(ReasonCode::PayloadFormatInvalid));
            }
            return Err(Refused::Nack(
                ReasonCode::PayloadFormatInvalid,
                Some("payload format indicator says UTF-8 but the payload is not".into()),
            ));
        }
        if let Err(denied) =
            self.broker.hooks.authorizer.authorize_publish(&self.identity, &publish.topic)
        {
            return Err(Refused::Nack(denied.code, Some(denied.reason)));
        }
        let expiry = publish.properties.message_expiry_interval;
        let mut properties = std::mem::take(&mut publish.properties);
        properties.message_expiry_interval = None;
        properties.subscription_identifiers.clear();
        // A small payload is copied out of the read buffer: as a slice it would keep the whole
        // buffer (up to `BUSY_READ` bytes) allocated for as long as the message is queued for
        // any subscriber, and the connection would need a fresh buffer for its next read.
        let payload = if publish.payload.len() <= COPY_PAYLOAD_MAX {
            bytes::Bytes::copy_from_slice(&publish.payload)
        } else {
            publish.payload.clone()
        };
        let message = Arc::new(Message {
            topic: publish.topic.as_str().into(),
            payload,
            qos: publish.qos,
            retain: publish.retain,
            properties: properties.into_shared(),
            expires_at: expiry.map(|secs| Instant::now() + Duration::from_secs(u64::from(secs))),
            publisher: self.session.id,
            record: std::sync::OnceLock::new(),
        });
        if let Some(tap) = &self.broker.hooks.tap
            && tap.active()
        {
            let routed = RoutedMessage {
                publisher: self.identity.clone(),
                protocol: self.protocol,
                topic: message.topic.clone(),
                qos: message.qos,
                retain: message.retain,
                payload: message.payload.clone(),
                properties: message.properties.clone(),
            };
            match tap.accept(&routed) {
                Ok(ticket) => return Ok((message, ticket)),
                Err(refused) => {
                    if self.protocol == Protocol::V311 && publish.qos != QoS::AtMostOnce {
                        // Closing without PUBACK makes a 3.1.1 client send the message again.
                        return Err(Refused::Close(refused.code));
                    }
                    return Err(Refused::Nack(refused.code, Some(refused.reason)));
                }
            }
        }
        Ok((message, None))
    }

    /// Fans out the messages waiting in `run`, a run at a time, and acknowledges the QoS 1
    /// ones, until it is empty or a subscriber is congested: then this publisher pauses, as
    /// after any publish, and what is left waits in `run` until the pause is over. With
    /// `force` (the connection is ending, or an acknowledgement must not overtake the run)
    /// everything goes, congested or not, as the queues' bounds allow.
    pub(super) fn flush_run(&mut self, run: &mut Run, force: bool) {
        let pause = self.broker.config.max_publisher_pause_ms;
        while !run.messages.is_empty() && (force || self.congested.is_empty()) {
            let (taken, fanout) = self.broker.publish_run(&run.messages);
            let bytes: usize = run.messages.drain(..taken).map(|m| m.queued_size()).sum();
            run.bytes -= bytes;
            self.hold(fanout.ticket);
            let reason = if fanout.matched == 0 {
                ReasonCode::NoMatchingSubscribers
            } else {
                ReasonCode::Success
            };
            for packet_id in run.packet_ids.drain(..taken).filter(|&id| id != 0) {
                let properties = Properties::default();
                self.send(Packet::PubAck(Ack { packet_id, reason, properties }));
            }
            if !fanout.congested.is_empty() && pause > 0 && !force {
                self.congested = fanout.congested;
                self.pause_until = Instant::now() + Duration::from_millis(pause);
            }
        }
    }

    fn acknowledge(&mut self, publish: &Publish, code: ReasonCode, reason: Option<String>) {
        let Some(packet_id) = publish.packet_id else { return };
        let ack = Ack { packet_id, reason: code, properties: self.reason_properties(reason) };
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Packet::PubAck(ack)),
            QoS::ExactlyOnce => self.send(Packet::PubRec(ack)),
        }
    }

    fn on_subscribe(&mut self, subscribe: Subscribe) -> Option<Ending> {
        let identifier = subscribe.properties.subscription_identifiers.first().copied();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut denial = None;
        for (filter, options) in &subscribe.filters {
            let shared = match topic::split_shared(filter) {
                Ok(shared) => shared,
                Err(()) => {
                    crate::diagnostics::MqttSubscribeFailed {
                        client_identity: &self.identity.authentication_name,
                        session_name: &self.session.client_id,
                        protocol: self.protocol,
                        websocket: self.stream.websocket(),
                        topic_filter: filter,
                        code: ReasonCode::TopicFilterInvalid,
                        description: None,
                    }
                    .emit();
                    reasons.push(ReasonCode::TopicFilterInvalid);
                    continue;
                }
            };
            if shared.is_some() && options.no_local {
                return Some(Ending::violation(ReasonCode::ProtocolError));
            }
            if let Err(denied) =
                self.broker.hooks.authorizer.authorize_subscribe(&self.identity, filter)
            {
                crate::diagnostics::MqttSubscribeFailed {
                    client_identity: &self.identity.authentication_name,
                    session_name: &self.session.client_id,
                    protocol: self.protocol,
                    websocket: self.stream.websocket(),
                    topic_filter: filter,
                    code: denied.code,
                    description: Some(&denied.reason),
                }
                .emit();
                reasons.push(match self.protocol {
                    Protocol::V5 => denied.code,
                    Protocol::V311 => ReasonCode::UnspecifiedError,
                });
                denial.get_or_insert(denied.reason);
                continue;
            }
            let subscription = Subscription { options: *options, identifier };
            let existed = self.broker.subscribe(&self.session, filter, subscription);
            reasons.push(match options.qos {
                QoS::AtMostOnce => ReasonCode::GRANTED_QOS0,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
            let send_retained = shared.is_none()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                for message in self.broker.retained_matching(filter) {
                    retained.push(Delivery {
                        qos: options.qos.min(message.qos),
                        message,
                        retain: true,
                        subscription_ids: identifier.into_iter().collect(),
                        shared: None,
                        seq: 0,
                        elidable: None,
                    });
                }
            }
        }
        let failed = reasons.iter().filter(|r| r.is_error()).count() as u64;
        let catalogue = crate::telemetry::catalogue::subscription_operations;
        catalogue("subscribe", true, reasons.len() as u64 - failed);
        catalogue("subscribe", false, failed);
        let ticket = self.broker.persist_session(&self.session, None);
        self.hold(ticket);
        let properties = self.reason_properties(denial);
        self.send(Packet::SubAck(SubAck { packet_id: subscribe.packet_id, reasons, properties }));
        // Retained messages go out after the SUBACK, through the session queue, so they obey
        // the in-flight window like any other delivery.
        for delivery in retained {
            self.broker.offer(&self.session, delivery);
        }
        None
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let count = unsubscribe.filters.len() as u64;
        crate::telemetry::catalogue::subscription_operations("unsubscribe", true, count);
        let reasons = unsubscribe
            .filters
            .iter()
            .map(|filter| {
                if self.broker.unsubscribe(&self.session, filter) {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect();
        let ticket = self.broker.persist_session(&self.session, None);
        self.hold(ticket);
        self.send(Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            reasons,
            properties: Properties::default(),
        }));
    }

    fn on_disconnect(&mut self, disconnect: Disconnect) -> Option<Ending> {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            if self.expiry_was_zero && expiry != 0 {
                return Some(Ending::violation(ReasonCode::ProtocolError));
            }
            self.session.lock().expiry_interval = expiry.min(self.broker.config.max_session_expiry);
        }
        let with_will = disconnect.reason == ReasonCode::DisconnectWithWill;
        Some(Ending {
            reason: DisconnectReason::ClientDisconnect(disconnect.reason),
            notify: None,
            publish_will: with_will,
        })
    }

    /// Re-authentication (5.0): AUTH 0x19 starts it, AUTH 0x18 continues it.
    async fn on_auth(&mut self, auth: Auth) -> Option<Ending> {
        let step = match auth.reason {
            ReasonCode::ReAuthenticate => AuthStep::ReAuthenticate,
            ReasonCode::ContinueAuthentication => AuthStep::Continue,
            _ => return Some(Ending::violation(ReasonCode::ProtocolError)),
        };
        if self.auth_method.is_none()
            || auth.properties.authentication_method.as_deref() != self.auth_method.as_deref()
        {
            return Some(Ending::violation(ReasonCode::ProtocolError));
        }
        let request = AuthRequest {
            step,
            protocol: self.protocol,
            client_id: &self.session.client_id,
            username: None,
            password: None,
            method: self.auth_method.as_deref(),
            data: auth.properties.authentication_data.as_ref(),
            peer_addr: self.peer.addr,
            peer_certificates: &self.peer.certificates,
        };
        let decision = self.broker.hooks.authenticator.authenticate(request).await;
        let (reason, data) = match decision {
            AuthDecision::Allow { mut identity, expires_in } => {
                self.credentials_expire = expires_in.map(|left| Instant::now() + left);
                identity.client_id = self.session.client_id.clone();
                self.identity = identity;
                (ReasonCode::Success, None)
            }
            AuthDecision::Continue { data } => (ReasonCode::ContinueAuthentication, Some(data)),
            AuthDecision::Deny { code, .. } => {
                return Some(Ending {
                    reason: DisconnectReason::Administrative(code),
                    notify: Some(Box::new(Disconnect::new(code))),
                    publish_will: true,
                });
            }
        };
        let properties = Properties {
            authentication_method: self.auth_method.as_deref().map(String::from),
            authentication_data: data,
            ..Properties::default()
        };
        self.send(Packet::Auth(Auth { reason, properties }));
        None
    }
}

/// Why a publish is not fanned out.
enum Refused {
    /// Negative acknowledgement (5.0) with a reason string.
    Nack(ReasonCode, Option<String>),
    /// The connection ends with this reason.
    Close(ReasonCode),
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + super::Park + Unpin + Send + 'static,
{
    /// Completes an outbound delivery (PUBACK, PUBCOMP, or a refusing PUBREC) and forgets its
    /// stored entry. The deletion need not be durable before anything: if a crash loses it, a
    /// QoS 1 message is re-sent with DUP, which QoS 1 allows, and a QoS 2 entry (already at the
    /// released stage) only makes the broker re-send PUBREL, which the client answers again.
    fn finish_delivery(&mut self, packet_id: u16, stage: Stage) {
        self.finish_deliveries(&[packet_id], stage);
    }

    /// `finish_delivery` for several packet ids, under one lock of the session.
    pub(super) fn finish_deliveries(&mut self, packet_ids: &[u16], stage: Stage) {
        if packet_ids.is_empty() {
            return;
        }
        let mut state = self.session.lock();
        for &packet_id in packet_ids {
            if let Some(entry) = state.finish_inflight(packet_id, stage)
                && entry.delivery.seq != 0
                && let Some(journal) = self.broker.journal()
            {
                let delivery = &entry.delivery;
                journal.delete_entry(&self.session.client_id, delivery.seq, delivery.elidable);
            }
        }
    }
}
