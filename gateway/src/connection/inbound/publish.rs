//! An inbound PUBLISH: topic aliases, QoS 2 duplicates, admission (payload format,
//! authorization, routing), then a run or a fan-out on its own, and the acknowledgement.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::run::Run;
use crate::broker::message::Message;
use crate::connection::{Connection, Ending, Park};
use crate::hooks::RoutedMessage;
use crate::mqtt::{Ack, Packet, Protocol, Publish, QoS, ReasonCode};
use crate::store::{Op, Ticket};

/// Payloads up to this size are copied out of the read buffer (see `admit`).
const COPY_PAYLOAD_MAX: usize = 1024;

/// Why a publish is not fanned out.
enum Refused {
    /// Negative acknowledgement (5.0) with a reason string.
    Nack(ReasonCode, Option<String>),
    /// The connection ends with this reason.
    Close(ReasonCode),
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
{
    /// Not async, and called straight from `process_input`: a `Publish` is a few hundred
    /// bytes (mostly its `Properties`), and every async frame it passed through copied it.
    pub(in crate::connection) fn on_publish(
        &mut self,
        mut publish: Publish,
        run: &mut Run,
    ) -> Option<Ending> {
        if !publish.properties.subscription_identifiers.is_empty() {
            // Only the server sends subscription identifiers (MQTT 5 3.3.4).
            return Some(Ending::violation(ReasonCode::ProtocolError));
        }
        // The topic alias first: every later step needs the topic.
        if let Err(code) = self.resolve_alias(&mut publish) {
            return Some(Ending::violation(code));
        }
        if publish.qos == QoS::ExactlyOnce {
            match self.qos2_is_new(publish.packet_id.unwrap_or(0)) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(code) => return Some(Ending::violation(code)),
            }
        }
        let (message, routed) = match self.admit(&mut publish) {
            Ok(admitted) => admitted,
            Err(refused) => return self.refuse(&publish, refused, run),
        };
        crate::telemetry::catalogue::PUBLISHED_OK.get(publish.qos).increment(1);
        if publish.qos != QoS::ExactlyOnce && !message.retain {
            // The message joins the run; a QoS 1 one is acknowledged once the run is fanned
            // out, after what routing holds it on is durable.
            if !run.fits(&message, &self.core.broker.config) {
                self.flush_run(run, false);
            }
            if publish.qos == QoS::AtLeastOnce {
                self.hold(routed);
            }
            run.push(message, publish.packet_id.unwrap_or(0));
            return None;
        }
        self.flush_run(run, false);
        let code = self.publish_alone(&publish, &message, routed);
        self.acknowledge(&publish, code, None);
        None
    }

    /// Puts the topic in place of an alias, or learns the alias the publish sets up (5.0).
    fn resolve_alias(&mut self, publish: &mut Publish) -> Result<(), ReasonCode> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            // An empty topic name without an alias is a Protocol Error (MQTT 5 3.3.2.1).
            return if publish.topic.is_empty() { Err(ReasonCode::ProtocolError) } else { Ok(()) };
        };
        if alias == 0 || alias > self.core.broker.config.topic_alias_maximum {
            return Err(ReasonCode::TopicAliasInvalid);
        }
        if publish.topic.is_empty() {
            let aliases = self.core.inbound_aliases.as_ref();
            let topic = aliases.and_then(|aliases| aliases.get(&alias));
            publish.topic = topic.ok_or(ReasonCode::ProtocolError)?.to_string();
        } else {
            let aliases = self.core.inbound_aliases.get_or_insert_default();
            aliases.insert(alias, publish.topic.as_str().into());
        }
        Ok(())
    }

    /// Whether a QoS 2 publish is new: false for one re-sent while we still hold its packet
    /// id (it is acknowledged again and delivers nothing), an error when the client has more
    /// in flight than our Receive Maximum.
    fn qos2_is_new(&mut self, packet_id: u16) -> Result<bool, ReasonCode> {
        let state = self.core.session.lock();
        if state.inbound_qos2.contains(&packet_id) {
            drop(state);
            self.send(Packet::PubRec(Ack::new(packet_id)));
            return Ok(false);
        }
        if state.inbound_qos2.len() >= usize::from(self.core.broker.config.receive_maximum) {
            return Err(ReasonCode::ReceiveMaximumExceeded);
        }
        Ok(true)
    }

    /// Reports a refused publish, and answers it: the connection ends, or the client gets a
    /// negative acknowledgement (5.0) or, in 3.1.1, which has none, a positive one for a
    /// dropped message, so that its flow continues.
    fn refuse(&mut self, publish: &Publish, refused: Refused, run: &mut Run) -> Option<Ending> {
        let (code, description) = match &refused {
            Refused::Close(code) => (*code, None),
            Refused::Nack(code, reason) => (*code, reason.as_deref()),
        };
        crate::diagnostics::MqttPublishFailed {
            client_identity: &self.core.identity.authentication_name,
            session_name: &self.core.session.client_id,
            protocol: self.core.protocol,
            websocket: self.core.stream.websocket(),
            topic_name: &publish.topic,
            qos: publish.qos,
            code,
            description,
        }
        .emit();
        crate::telemetry::catalogue::publish_failed(publish.qos, code);
        let reason = match refused {
            Refused::Close(code) => return Some(Ending::violation(code)),
            Refused::Nack(_, reason) => reason,
        };
        if publish.qos == QoS::AtMostOnce {
            tracing::debug!(topic = %publish.topic, ?code, "Publish refused.");
            return None;
        }
        // Acknowledgements go in the order the publishes came (MQTT-4.6.0-2): the run's
        // first, even past a pause.
        self.flush_run(run, true);
        if self.core.protocol == Protocol::V311 {
            tracing::debug!(topic = %publish.topic, ?code, "Publish refused.");
            self.acknowledge(publish, ReasonCode::Success, None);
        } else {
            self.acknowledge(publish, code, reason);
        }
        None
    }

    /// Fans out a publish that cannot join a run (QoS 2, or retained) on its own, and gives
    /// the reason code for its acknowledgement. A QoS 2 packet id and the deliveries it
    /// caused reach the disk together (see `store/journal.rs`, atomic groups).
    fn publish_alone(
        &mut self,
        publish: &Publish,
        message: &Arc<Message>,
        routed: Option<Ticket>,
    ) -> ReasonCode {
        let acknowledged = publish.qos != QoS::AtMostOnce;
        if acknowledged {
            self.hold(routed);
        }
        let exactly_once = publish.qos == QoS::ExactlyOnce;
        let group = exactly_once
            .then(|| self.core.broker.journal().map(|journal| journal.begin_group()))
            .flatten();
        if exactly_once {
            self.remember_qos2(publish.packet_id.unwrap_or(0));
        }
        if message.retain {
            let ticket = self.core.broker.retain(message);
            if acknowledged {
                self.hold(ticket);
            }
        }
        let fanout = self.core.broker.publish(message);
        if acknowledged {
            self.hold(fanout.ticket);
        }
        self.running.pause.start(fanout.congested, &self.core.broker.config);
        if let (Some(group), Some(journal)) = (group, self.core.broker.journal()) {
            journal.end_group(group);
        }
        if fanout.matched == 0 { ReasonCode::NoMatchingSubscribers } else { ReasonCode::Success }
    }

    /// Holds a QoS 2 packet id until its PUBREL, on disk too when the session is stored.
    fn remember_qos2(&mut self, packet_id: u16) {
        let stored = {
            let mut state = self.core.session.lock();
            state.inbound_qos2.insert(packet_id);
            state.stored
        };
        if stored {
            let ticket = self
                .core
                .broker
                .journal_append(|| Op::PutInbound(self.core.session.client_id.clone(), packet_id));
            self.hold(ticket);
        }
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
            self.core.broker.hooks.authorizer.authorize_publish(&self.core.identity, &publish.topic)
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
            publisher: self.core.session.id,
            record: std::sync::OnceLock::new(),
        });
        if let Some(tap) = &self.core.broker.hooks.tap
            && tap.active()
        {
            let routed = RoutedMessage {
                publisher: self.core.identity.clone(),
                protocol: self.core.protocol,
                topic: message.topic.clone(),
                qos: message.qos,
                retain: message.retain,
                payload: message.payload.clone(),
                properties: message.properties.clone(),
            };
            match tap.accept(&routed) {
                Ok(ticket) => return Ok((message, ticket)),
                Err(refused) => {
                    if self.core.protocol == Protocol::V311 && publish.qos != QoS::AtMostOnce {
                        // Closing without PUBACK makes a 3.1.1 client send the message again.
                        return Err(Refused::Close(refused.code));
                    }
                    return Err(Refused::Nack(refused.code, Some(refused.reason)));
                }
            }
        }
        Ok((message, None))
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
}
