//! Handling each packet a connected client sends.

mod publish;
mod run;

pub(super) use self::run::{Run, joins_run};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{Connection, Ending};
use crate::broker::message::Delivery;
use crate::broker::persist;
use crate::broker::session::{Stage, Subscription};
use crate::hooks::{AuthDecision, AuthRequest, AuthStep, DisconnectReason};
use crate::mqtt::{
    Ack, Auth, Disconnect, Packet, Properties, Protocol, QoS, ReasonCode, RetainHandling, SubAck,
    Subscribe, UnsubAck, Unsubscribe, topic,
};
use crate::store::Op;

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
                    let mut state = self.core.session.lock();
                    let known = state.mark_released(ack.packet_id);
                    // The released stage must be durable before PUBREL goes out: after a
                    // restart the broker then re-sends PUBREL, never the message again.
                    let entry = state.inflight.iter_mut().find(|e| e.packet_id == ack.packet_id);
                    let ticket = match (entry, self.core.broker.journal()) {
                        (Some(entry), Some(journal)) if entry.delivery.seq != 0 => {
                            // A later version is appended: the delivery is no longer elidable.
                            entry.delivery.elidable = None;
                            Some(journal.append(persist::entry_op(
                                &self.core.session.client_id,
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
                    let mut state = self.core.session.lock();
                    (state.inbound_qos2.remove(&ack.packet_id), state.stored)
                };
                if known && stored {
                    // Forgetting the id must be durable before PUBCOMP: the client may reuse
                    // it at once, and a restart must not mistake the new message for a copy.
                    let ticket = self.core.broker.journal_append(|| {
                        Op::DeleteInbound(self.core.session.client_id.clone(), ack.packet_id)
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
                        client_identity: &self.core.identity.authentication_name,
                        session_name: &self.core.session.client_id,
                        protocol: self.core.protocol,
                        websocket: self.core.stream.websocket(),
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
                self.core.broker.hooks.authorizer.authorize_subscribe(&self.core.identity, filter)
            {
                crate::diagnostics::MqttSubscribeFailed {
                    client_identity: &self.core.identity.authentication_name,
                    session_name: &self.core.session.client_id,
                    protocol: self.core.protocol,
                    websocket: self.core.stream.websocket(),
                    topic_filter: filter,
                    code: denied.code,
                    description: Some(&denied.reason),
                }
                .emit();
                reasons.push(match self.core.protocol {
                    Protocol::V5 => denied.code,
                    Protocol::V311 => ReasonCode::UnspecifiedError,
                });
                denial.get_or_insert(denied.reason);
                continue;
            }
            let subscription = Subscription { options: *options, identifier };
            let existed = self.core.broker.subscribe(&self.core.session, filter, subscription);
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
                for message in self.core.broker.retained_matching(filter) {
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
        let ticket = self.core.broker.persist_session(&self.core.session, None);
        self.hold(ticket);
        let properties = self.reason_properties(denial);
        self.send(Packet::SubAck(SubAck { packet_id: subscribe.packet_id, reasons, properties }));
        // Retained messages go out after the SUBACK, through the session queue, so they obey
        // the in-flight window like any other delivery.
        for delivery in retained {
            self.core.broker.offer(&self.core.session, delivery);
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
                if self.core.broker.unsubscribe(&self.core.session, filter) {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect();
        let ticket = self.core.broker.persist_session(&self.core.session, None);
        self.hold(ticket);
        self.send(Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            reasons,
            properties: Properties::default(),
        }));
    }

    fn on_disconnect(&mut self, disconnect: Disconnect) -> Option<Ending> {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            if self.core.expiry_was_zero && expiry != 0 {
                return Some(Ending::violation(ReasonCode::ProtocolError));
            }
            self.core.session.lock().expiry_interval =
                expiry.min(self.core.broker.config.max_session_expiry);
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
        if self.core.auth_method.is_none()
            || auth.properties.authentication_method.as_deref() != self.core.auth_method.as_deref()
        {
            return Some(Ending::violation(ReasonCode::ProtocolError));
        }
        let request = AuthRequest {
            step,
            protocol: self.core.protocol,
            client_id: &self.core.session.client_id,
            username: None,
            password: None,
            method: self.core.auth_method.as_deref(),
            data: auth.properties.authentication_data.as_ref(),
            peer_addr: self.core.peer.addr,
            peer_certificates: &self.core.peer.certificates,
        };
        let decision = self.core.broker.hooks.authenticator.authenticate(request).await;
        let (reason, data) = match decision {
            AuthDecision::Allow { mut identity, expires_in } => {
                self.core.credentials_expire = expires_in.map(|left| Instant::now() + left);
                identity.client_id = self.core.session.client_id.clone();
                self.core.identity = identity;
                (ReasonCode::Success, None)
            }
            AuthDecision::Continue { data } => (ReasonCode::ContinueAuthentication, Some(data)),
            AuthDecision::Deny { code, .. } => return Some(Ending::administrative(code)),
        };
        let properties = Properties {
            authentication_method: self.core.auth_method.as_deref().map(String::from),
            authentication_data: data,
            ..Properties::default()
        };
        self.send(Packet::Auth(Auth { reason, properties }));
        None
    }
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
        let mut state = self.core.session.lock();
        for &packet_id in packet_ids {
            if let Some(entry) = state.finish_inflight(packet_id, stage)
                && entry.delivery.seq != 0
                && let Some(journal) = self.core.broker.journal()
            {
                let delivery = &entry.delivery;
                journal.delete_entry(&self.core.session.client_id, delivery.seq, delivery.elidable);
            }
        }
    }
}
