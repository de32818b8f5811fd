//! From a fresh socket to a connected session: CONNECT, authentication (with the MQTT 5 AUTH
//! exchange), session takeover or resumption, and CONNACK.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use tracing::debug;

use super::outbound::Outbound;
use super::running::Running;
use super::{Connection, Core, INITIAL_BUFFER, Peer, Will};
use crate::broker::Broker;
use crate::broker::message::Message;
use crate::broker::session::{Attachment, Session};
use crate::hooks::{AuthDecision, AuthRequest, AuthStep, ClientIdentity, LifecycleEvent};
use crate::mqtt::{
    Auth, Codec, ConnAck, Connect, DecodeError, Packet, Properties, Protocol, ReasonCode,
};
use crate::store::Op;

/// How long a takeover waits for the previous connection to let go of the session.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// Reads CONNECT and answers it. `None` when the client was refused or went away; a refusal
/// (CONNACK with a reason code) is then on its way, in a lingering close (`linger.rs`).
pub(super) async fn accept<S>(
    mut stream: S,
    peer: Peer,
    broker: Arc<Broker>,
) -> Option<Box<Connection<S>>>
where
    S: AsyncRead + AsyncWrite + super::Park + Unpin + Send + 'static,
{
    let websocket = stream.websocket();
    let codec = Codec::new(broker.config.max_packet_size as usize);
    let mut read_buf = BytesMut::with_capacity(INITIAL_BUFFER);
    let timeout = Duration::from_secs(broker.config.connect_timeout_secs);
    // Each step's future is boxed while it runs, so that this one stays small: a connection
    // storm holds one per handshake in flight, most of them waiting for their CONNECT.
    let reading = tokio::time::timeout(timeout, read_connect(&mut stream, &mut read_buf, &codec));
    let connect = match Box::pin(reading).await {
        Ok(Ok(connect)) => connect,
        Ok(Err(None)) => {
            debug!(peer = %peer.addr, "Closed before a whole CONNECT.");
            crate::telemetry::catalogue::connection_unanswered("closed");
            return None;
        }
        Ok(Err(Some(Refusal { protocol, code }))) => {
            crate::diagnostics::MqttConnectFailed {
                session_name: None,
                client_identity: None,
                protocol,
                websocket,
                peer: peer.addr,
                code,
                description: Some("malformed CONNECT"),
            }
            .emit();
            match protocol {
                Some(protocol) => {
                    let connack = refusal(protocol, code, None);
                    Box::pin(super::linger::close(&broker, stream, connack)).await;
                }
                None => crate::telemetry::catalogue::connection_unanswered("malformed"),
            }
            return None;
        }
        Err(_) => {
            debug!(peer = %peer.addr, "No CONNECT within the connect timeout.");
            crate::telemetry::catalogue::connection_unanswered("timeout");
            return None;
        }
    };
    let protocol = connect.protocol;
    let config = &broker.config;

    // Client identifier: 5.0 clients may leave it empty and get one assigned; a 3.1.1 client
    // may do so only with a clean session.
    let mut assigned = None;
    let client_id: Arc<str> = if connect.client_id.is_empty() {
        if protocol == Protocol::V311 && !connect.clean_start {
            crate::diagnostics::MqttConnectFailed {
                session_name: None,
                client_identity: connect.username.as_deref(),
                protocol: Some(protocol),
                websocket,
                peer: peer.addr,
                code: ReasonCode::ClientIdentifierNotValid,
                description: Some(
                    "a 3.1.1 client without a client id must ask for a clean session",
                ),
            }
            .emit();
            let connack = refusal(protocol, ReasonCode::ClientIdentifierNotValid, None);
            Box::pin(super::linger::close(&broker, stream, connack)).await;
            return None;
        }
        // A random id, not a counter: the counter starts again after a restart, and a counted
        // id could name a session stored by the previous run and take it over.
        let id: Arc<str> = format!("gridmq-{}", sinks::event::new_id()).into();
        assigned = Some(id.clone());
        id
    } else {
        connect.client_id.as_str().into()
    };

    let authenticated = Box::pin(authenticate(
        &mut stream,
        &mut read_buf,
        &codec,
        &broker,
        &connect,
        &client_id,
        &peer,
    ))
    .await;
    let (identity, auth_method, expires_in) = match authenticated {
        Ok(authenticated) => authenticated,
        Err(refused) => {
            if let Some((code, reason)) = refused {
                crate::diagnostics::MqttConnectFailed {
                    session_name: Some(&client_id),
                    client_identity: connect.username.as_deref(),
                    protocol: Some(protocol),
                    websocket,
                    peer: peer.addr,
                    code,
                    description: reason.as_deref(),
                }
                .emit();
                let connack = refusal(protocol, code, reason);
                Box::pin(super::linger::close(&broker, stream, connack)).await;
            } else {
                crate::telemetry::catalogue::connection_unanswered("closed");
            }
            return None;
        }
    };

    // Session expiry: 3.1.1 persistent sessions live as long as the configured maximum.
    let requested_expiry = match protocol {
        Protocol::V311 if connect.clean_start => 0,
        Protocol::V311 => config.max_session_expiry,
        Protocol::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
    };
    let expiry = requested_expiry.min(config.max_session_expiry);

    let keep_alive = match connect.keep_alive {
        0 => config.max_keep_alive,
        k => k.min(config.max_keep_alive),
    };

    let window = usize::from(
        connect.properties.receive_maximum.unwrap_or(u16::MAX).min(config.max_inflight),
    );
    let attachment = Attachment { kicked: None, window };
    // In cluster mode the session is claimed first: taken from the node that has it, with
    // what it missed, so the attach below finds it here.
    let claim = match broker.directory() {
        Some(directory) => match directory.claim(client_id.clone(), connect.clean_start).await {
            Ok(claim) => Some(claim),
            Err(error) => {
                tracing::warn!(client_id = %client_id, %error, "Refused a CONNECT.");
                crate::diagnostics::MqttConnectFailed {
                    session_name: Some(&client_id),
                    client_identity: Some(&identity.authentication_name),
                    protocol: Some(protocol),
                    websocket,
                    peer: peer.addr,
                    code: ReasonCode::ServerUnavailable,
                    description: Some("the cluster could not hand this node the session"),
                }
                .emit();
                let connack = refusal(protocol, ReasonCode::ServerUnavailable, None);
                Box::pin(super::linger::close(&broker, stream, connack)).await;
                return None;
            }
        },
        None => None,
    };
    let (session, session_present, guard) =
        Box::pin(attach(&broker, &client_id, connect.clean_start, protocol, attachment)).await?;
    let sequence = claim.map(|claim| claim.connection);
    let cancelled_will = {
        let mut state = session.lock();
        state.expiry_interval = expiry;
        std::mem::take(&mut state.will_pending) && state.stored
    };
    if cancelled_will {
        // The client came back within its will delay: the stored will must not fire after a
        // restart either.
        broker.journal_append(|| Op::DeleteWill(client_id.clone()));
    }
    // A session that outlives its connection is on disk before CONNACK says it exists.
    let stored = broker.persist_session(&session, None);
    broker.durable(stored).await;

    let mut properties = Properties::default();
    if protocol == Protocol::V5 {
        properties.assigned_client_identifier = assigned.map(|id| id.to_string());
        if keep_alive != connect.keep_alive {
            properties.server_keep_alive = Some(keep_alive);
        }
        if expiry != requested_expiry {
            properties.session_expiry_interval = Some(expiry);
        }
        properties.receive_maximum = Some(config.receive_maximum);
        properties.retain_available = Some(1);
        properties.maximum_packet_size = Some(config.max_packet_size);
        properties.topic_alias_maximum = Some(config.topic_alias_maximum);
        properties.wildcard_subscription_available = Some(1);
        properties.subscription_identifier_available = Some(1);
        properties.shared_subscription_available = Some(1);
        properties.authentication_method = auth_method.clone();
    }

    let will = connect.will.as_ref().map(|will| Will {
        message: Arc::new(Message {
            topic: will.topic.as_str().into(),
            payload: will.payload.clone(),
            qos: will.qos,
            retain: will.retain,
            expires_at: will
                .properties
                .message_expiry_interval
                .map(|secs| Instant::now() + Duration::from_secs(u64::from(secs))),
            properties: Properties {
                will_delay_interval: None,
                message_expiry_interval: None,
                ..will.properties.clone()
            }
            .into_shared(),
            publisher: session.id,
            record: std::sync::OnceLock::new(),
        }),
        delay: will.properties.will_delay_interval.unwrap_or(0),
    });

    if let Some(will) = &will {
        let stored = broker.store_connect_will(&client_id, &will.message, will.delay.min(expiry));
        broker.durable(stored).await;
    }

    let max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
    let alias_maximum = connect.properties.topic_alias_maximum.unwrap_or(0);
    let number = NEXT_CONNECTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let core = Core {
        broker: broker.clone(),
        stream,
        protocol,
        session: session.clone(),
        identity: identity.clone(),
        number,
        keep_alive,
        last_packet: Instant::now(),
        will,
        expiry_was_zero: expiry == 0,
        auth_method: auth_method.map(String::into_boxed_str),
        peer,
        problem_information: connect.properties.request_problem_information != Some(0),
        inbound_aliases: None,
        outbound: Outbound::new(protocol, max_packet_size, alias_maximum),
        credentials_expire: expires_in.map(|left| Instant::now() + left),
        _attached: guard,
        _slot: None,
    };
    let write_buf = BytesMut::with_capacity(INITIAL_BUFFER);
    let mut connection =
        Connection { core, running: Running::connected(codec, read_buf, write_buf) };
    crate::telemetry::catalogue::connection_attempt(ReasonCode::Success);
    crate::telemetry::catalogue::OPEN_CONNECTIONS.increment(1);
    connection.send(Packet::ConnAck(ConnAck {
        session_present,
        code: ReasonCode::Success,
        properties,
    }));
    if session_present {
        connection.core.outbound.resend(&session, &mut connection.running.write_buf);
    }
    debug!(client_id = %client_id, ?protocol, session_present, "Client connected.");
    crate::diagnostics::MqttConnected {
        client_identity: &identity.authentication_name,
        session_name: &client_id,
        protocol,
        websocket,
        authentication_type: connection.core.auth_method.as_deref(),
        session_present,
    }
    .emit();
    broker.hooks.emit(LifecycleEvent::Connected {
        identity,
        connection: number,
        session_present,
        sequence,
    });
    Some(Box::new(connection))
}

/// Numbers network connections for lifecycle events.
static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A CONNECT that cannot be answered with a session: the CONNACK to send, if any.
struct Refusal {
    /// The protocol to answer in; `None` means close without CONNACK.
    protocol: Option<Protocol>,
    code: ReasonCode,
}

/// Reads the CONNECT: `Err(None)` when the client closed (or the read failed) before a whole
/// one arrived, `Err(Some(..))` when what arrived is not a valid CONNECT.
async fn read_connect<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    codec: &Codec,
) -> Result<Box<Connect>, Option<Refusal>>
where
    S: AsyncRead + Unpin,
{
    loop {
        // Read the level before decoding: a failed decode may have consumed the bytes.
        let level = Codec::connect_level(buf);
        match codec.decode(buf, None) {
            Ok(Some(Packet::Connect(connect))) => return Ok(connect),
            Ok(Some(_)) => {
                return Err(Some(Refusal { protocol: None, code: ReasonCode::ProtocolError }));
            }
            Ok(None) => {}
            Err(error) => {
                debug!(%error, "Bad CONNECT.");
                return Err(Some(refusal_for(&error, level)));
            }
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(read) => crate::telemetry::catalogue::RECEIVED_BYTES.increment(read as u64),
        }
    }
}

/// What to answer a CONNECT that did not decode. The spec lets the server answer an unknown
/// protocol level with the 3.1.1 return code 0x01; a malformed 5.0 CONNECT gets a 5.0 CONNACK
/// with the reason; a malformed 3.1.1 CONNECT gets no answer, only a close.
fn refusal_for(error: &DecodeError, level: Option<u8>) -> Refusal {
    let code = error.reason_code();
    match error {
        DecodeError::ExpectedConnect(_) => Refusal { protocol: None, code },
        DecodeError::UnsupportedProtocol { .. } => {
            Refusal { protocol: Some(Protocol::V311), code: ReasonCode::UnsupportedProtocolVersion }
        }
        _ => match level {
            Some(5) => Refusal { protocol: Some(Protocol::V5), code },
            _ => Refusal { protocol: None, code },
        },
    }
}

/// What the client authenticated as, the 5.0 method, and when its credentials lapse.
type Authenticated = (ClientIdentity, Option<String>, Option<Duration>);

/// Runs the authenticator, including the 5.0 AUTH exchange. Fails with the refusing CONNACK's
/// reason code and string on denial, or with `None` when the client went away.
async fn authenticate<S>(
    stream: &mut S,
    buf: &mut BytesMut,
    codec: &Codec,
    broker: &Broker,
    connect: &Connect,
    client_id: &Arc<str>,
    peer: &Peer,
) -> Result<Authenticated, Option<(ReasonCode, Option<String>)>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let protocol = connect.protocol;
    let method = connect.properties.authentication_method.clone();
    let mut step = AuthStep::Connect;
    let mut data = connect.properties.authentication_data.clone();
    loop {
        let request = AuthRequest {
            step,
            protocol,
            client_id,
            username: connect.username.as_deref(),
            password: connect.password.as_ref(),
            method: method.as_deref(),
            data: data.as_ref(),
            peer_addr: peer.addr,
            peer_certificates: &peer.certificates,
        };
        match broker.hooks.authenticator.authenticate(request).await {
            AuthDecision::Allow { mut identity, expires_in } => {
                // The session's string serves the identity too, and the authentication name
                // when it is the same (anonymous clients): every idle connection keeps these.
                identity.client_id = client_id.clone();
                if *identity.authentication_name == **client_id {
                    identity.authentication_name = client_id.clone();
                }
                return Ok((identity, method, expires_in));
            }
            AuthDecision::Deny { code, reason } => {
                return Err(Some((code, reason)));
            }
            AuthDecision::Continue { data: challenge } => {
                if protocol != Protocol::V5 || method.is_none() {
                    return Err(Some((ReasonCode::BadAuthenticationMethod, None)));
                }
                let mut out = BytesMut::new();
                let auth = Auth {
                    reason: ReasonCode::ContinueAuthentication,
                    properties: Properties {
                        authentication_method: method.clone(),
                        authentication_data: Some(challenge),
                        ..Properties::default()
                    },
                };
                Codec::encode(&Packet::Auth(auth), protocol, &mut out);
                stream.write_all(&out).await.map_err(|_| None)?;
                crate::telemetry::catalogue::SENT_BYTES.increment(out.len() as u64);
                let reply = loop {
                    match codec.decode(buf, Some(protocol)) {
                        Ok(Some(packet)) => break packet,
                        Ok(None) => match stream.read_buf(buf).await {
                            Ok(0) | Err(_) => return Err(None),
                            Ok(read) => {
                                crate::telemetry::catalogue::RECEIVED_BYTES.increment(read as u64);
                            }
                        },
                        Err(error) => {
                            return Err(Some((error.reason_code(), None)));
                        }
                    }
                };
                match reply {
                    Packet::Auth(auth)
                        if auth.reason == ReasonCode::ContinueAuthentication
                            && auth.properties.authentication_method == method =>
                    {
                        step = AuthStep::Continue;
                        data = auth.properties.authentication_data;
                    }
                    _ => {
                        return Err(Some((ReasonCode::ProtocolError, None)));
                    }
                }
            }
        }
    }
}

/// Finds or creates the session for `client_id` and attaches to it, taking it over from a
/// connection that still holds it. Returns the session, whether it was resumed, and the
/// attach guard.
async fn attach(
    broker: &Arc<Broker>,
    client_id: &Arc<str>,
    clean_start: bool,
    protocol: Protocol,
    attachment: Attachment,
) -> Option<(Arc<Session>, bool, OwnedMutexGuard<()>)> {
    loop {
        if let Some(existing) = broker.session(client_id) {
            existing.kick(ReasonCode::SessionTakenOver);
            let guard = tokio::time::timeout(TAKEOVER_WAIT, existing.attach.clone().lock_owned())
                .await
                .ok()?;
            if existing.lock().ended {
                continue;
            }
            if clean_start {
                broker.end_session(&existing);
                continue;
            }
            let mut state = existing.lock();
            state.generation += 1;
            state.attached = Some(attachment);
            state.protocol = protocol;
            drop(state);
            return Some((existing, true, guard));
        }
        let session = Arc::new(Session::new(client_id.clone(), broker.next_id(), protocol));
        let guard = session.attach.clone().lock_owned().await;
        {
            let mut state = session.lock();
            state.generation = 1;
            state.attached = Some(attachment.clone());
        }
        if broker.register(&session) {
            return Some((session, false, guard));
        }
    }
}

/// A refusing CONNACK, encoded.
fn refusal(protocol: Protocol, code: ReasonCode, reason: Option<String>) -> BytesMut {
    crate::telemetry::catalogue::connection_attempt(code);
    let mut out = BytesMut::new();
    let connack = ConnAck {
        session_present: false,
        code,
        properties: Properties { reason_string: reason, ..Properties::default() },
    };
    Codec::encode(&Packet::ConnAck(connack), protocol, &mut out);
    out
}
