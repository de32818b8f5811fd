//! One task per client connection: it reads packets, acts on them, and writes whatever the
//! session has queued for the client.
//!
//! The task owns the socket and both buffers. Reading, queue wake-ups (which also carry kicks:
//! takeover, overflow, lost access, shutdown) and one timer (keep-alive and credentials' expiry)
//! are one `select!`; everything that a wake-up produces is appended to the write buffer and
//! written with one `write_all`, so a burst of deliveries costs one syscall rather than one per
//! packet. In the other direction, a burst of QoS 0 publishes is fanned out in runs. What an idle connection keeps is kept small on purpose (ARCHITECTURE.md, "Hot path").
//!
//! Invariant: the connection holds its session's `attach` lock from CONNACK until it has
//! detached, so no two connections ever drive one session.

mod handshake;
mod inbound;
mod outbound;

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::debug;

use self::outbound::Outbound;
use crate::broker::Broker;
use crate::broker::config::MqttConfig;
use crate::broker::message::Message;
use crate::broker::session::{Session, Stage};
use crate::hooks::{ClientIdentity, DisconnectReason, LifecycleEvent};
use crate::mqtt::{Codec, Disconnect, Packet, Properties, Protocol, ReasonCode};
use crate::store::Ticket;
use crate::store::record::now_ms;

/// The initial capacity of the buffer a CONNECT is read into and of the CONNACK's write
/// buffer; both are let go once the connection is idle.
const INITIAL_BUFFER: usize = 512;

/// How much a quiet connection reads at once, through a buffer on the stack: an idle
/// connection then keeps no read buffer at all, only the bytes of a partial packet.
const QUIET_READ: usize = 2048;

/// The most a busy connection reads at once. A connection whose last read filled the space it
/// had reads into a heap buffer with this much room: reading a whole burst of publishes at
/// once lets them share one store commit and one write of acknowledgements. It is also the
/// bound: the buffer never holds more than one such read beyond a partial packet.
const BUSY_READ: usize = 32 * 1024;

/// Most PUBACKs finished under one lock of the session (see `process_input`).
const PUBACK_RUN: usize = 64;

/// Where the transport came from, as the authenticator sees it.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// DER certificates the client presented over TLS, leaf first.
    pub certificates: Vec<Bytes>,
}

/// What a connection task starts from: the byte stream after the transport's handshakes.
///
/// `serve` takes it boxed because an async fn keeps its arguments in its state for its whole
/// life, even after they are moved out: as arguments, the stream, the peer and the broker
/// cost every idle connection their size twice over; as a box, 8 bytes.
pub struct Start<S> {
    pub stream: S,
    pub peer: Peer,
    pub broker: Arc<Broker>,
    /// The listener's connection slot (`max_connections`), given back when the connection
    /// ends; `None` outside a listener.
    pub slot: Option<OwnedSemaphorePermit>,
}

/// Serves one client until it disconnects, breaks the protocol, or the server shuts down.
pub async fn serve<S>(start: Box<Start<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Start { stream, peer, broker, slot } = *start;
    // The handshake and the teardown are boxed so that their (large, short-lived) states are
    // not part of the task every idle connection keeps for its whole life.
    let Some(mut connection) = Box::pin(handshake::accept(stream, peer, broker)).await else {
        return;
    };
    connection._slot = slot;
    let reason = connection.run().await;
    Box::pin(connection.finish(reason)).await;
}

/// How a connected session ends.
#[derive(Debug)]
struct Ending {
    reason: DisconnectReason,
    /// A DISCONNECT to send before closing (5.0 only).
    notify: Option<Disconnect>,
    /// Whether the will is published.
    publish_will: bool,
}

/// A will waiting for the connection to end.
#[derive(Debug)]
struct Will {
    message: Arc<Message>,
    delay: u32,
}

/// A connected client, after a successful CONNACK.
struct Connection<S> {
    broker: Arc<Broker>,
    stream: S,
    read_buf: BytesMut,
    write_buf: BytesMut,
    codec: Codec,
    protocol: Protocol,
    session: Arc<Session>,
    identity: ClientIdentity,
    /// This connection's number in lifecycle events.
    number: u64,
    /// Keep-alive as negotiated; `None` when off.
    keep_alive: Option<Duration>,
    last_packet: Instant,
    will: Option<Will>,
    /// Whether CONNECT set Session Expiry 0, which DISCONNECT may then not change.
    expiry_was_zero: bool,
    auth_method: Option<String>,
    peer: Peer,
    /// Whether reason strings and user properties may go in acknowledgements (5.0
    /// Request Problem Information).
    problem_information: bool,
    /// Topic aliases the client set up (5.0); boxed and made on first use, as most clients
    /// never use aliases and the connection's state is what an idle connection costs.
    #[allow(clippy::box_collection, reason = "8 bytes inline instead of 48 for every connection")]
    inbound_aliases: Option<Box<HashMap<u16, Arc<str>>>>,
    outbound: Outbound,
    /// A subscriber session whose queue is past its soft limit because of our publishes: we
    /// read nothing more from this client until it drains (or `pause_until` passes), so the
    /// publisher slows to the subscriber's pace instead of the subscriber losing messages.
    congested: Option<Arc<Session>>,
    /// When the current pause must end at the latest (`mqtt.max_publisher_pause_ms`).
    pause_until: Instant,
    /// Whether the last read filled all the room the read buffer had (see `BUSY_READ`).
    busy: bool,
    /// When the client's credentials lapse (token `exp`, certificate `notAfter`, webhook
    /// `expiration`): the connection ends then unless re-authentication (AUTH 0x19) extends it.
    credentials_expire: Option<Instant>,
    /// The journal point that must be durable before the write buffer goes out: an
    /// acknowledgement must never promise what a crash could still lose.
    barrier: Option<Ticket>,
    /// QoS 0 publishes already read, held back by a pause (see `process_input`); boxed, as
    /// it is rare and every idle connection carries the field.
    held: Option<Box<inbound::Run>>,
    _attached: OwnedMutexGuard<()>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// The connection's event loop; returns why it ended.
    async fn run(&mut self) -> Ending {
        let session = self.session.clone();
        // Packets that arrived in the same read as CONNECT are already buffered.
        if !self.read_buf.is_empty()
            && let Some(ending) = Box::pin(self.process_input()).await
        {
            return ending;
        }
        if self.read_buf.is_empty() {
            // The CONNECT's buffer is not kept: reads from here on allocate what they need.
            self.read_buf = BytesMut::new();
        }
        // One timer for the keep-alive and the credentials' expiry, armed at the earlier of
        // the two and moved only when it fires early or re-authentication brings the expiry
        // forward. The keep-alive deadline moves later with every packet; re-arming the timer
        // on every turn put a timer-wheel removal and insertion, under the time driver's lock,
        // on every read: about a fifth of the CPU of a QoS 1 fan-in.
        let timer = tokio::time::sleep_until(self.next_deadline());
        tokio::pin!(timer);
        loop {
            if self.broker.is_stopping() {
                return Ending::kicked(ReasonCode::ServerShuttingDown);
            }
            if let Some(reason) = session.kicked() {
                return Ending::kicked(reason);
            }
            let drained = self.outbound.drain(
                &session,
                &mut self.write_buf,
                self.broker.journal(),
                &self.broker.config,
            );
            self.hold(drained);
            if let Some(ticket) = self.barrier.take() {
                self.broker.durable(Some(ticket)).await;
            }
            if let Err(error) = self.flush().await {
                debug!(%error, "Write failed.");
                return Ending::lost();
            }
            if let Some(expiry) = self.credentials_expire
                && expiry < timer.deadline()
            {
                timer.as_mut().reset(expiry);
            }
            if self.congested.is_some() && self.pause_until < timer.deadline() {
                // The pause's bound rides on the same timer: when it fires early, it is moved
                // back to the next real deadline, and the check above ends the pause.
                timer.as_mut().reset(self.pause_until);
            }
            if let Some(target) = &self.congested {
                let still_congested = target.is_congested(&self.broker.config);
                let pause_over = Instant::now() >= self.pause_until;
                if !still_congested || pause_over {
                    if still_congested {
                        target.mark_stalled();
                    }
                    self.congested = None;
                    // Packets held back while congested are still in the read buffer.
                    if let Some(ending) = Box::pin(self.process_input()).await {
                        return ending;
                    }
                    continue;
                }
            }
            let congested = self.congested.clone();
            tokio::select! {
                biased;
                () = wait_for_space(congested.as_ref(), &self.broker.config), if congested.is_some() => {
                    // We are the ones not reading: the client's PINGREQs wait in the socket.
                    self.last_packet = Instant::now();
                }
                read = read_some(&mut self.stream, &mut self.read_buf, self.busy), if congested.is_none() => {
                    match read {
                        Ok((0, _)) | Err(_) => return Ending::lost(),
                        Ok((_, filled)) => {
                            self.busy = filled;
                            if let Some(ending) = Box::pin(self.process_input()).await {
                                return ending;
                            }
                            if self.read_buf.is_empty() && !self.busy {
                                // Nothing partial is left: a quiet connection holds no buffer.
                                self.read_buf = BytesMut::new();
                            }
                        }
                    }
                }
                () = session.wake.notified() => {}
                () = &mut timer => {
                    let now = Instant::now();
                    if self.credentials_expire.is_some_and(|at| at <= now) {
                        // MQTT 5 has no "credentials expired" code; 0xA0 (maximum connect time)
                        // says the time this connection was authorized for is over.
                        return Ending {
                            reason: DisconnectReason::Administrative(ReasonCode::MaximumConnectTime),
                            notify: Some(Disconnect::new(ReasonCode::MaximumConnectTime)),
                            publish_will: true,
                        };
                    }
                    if self.keep_alive_ends().is_some_and(|at| at <= now) {
                        return Ending {
                            reason: DisconnectReason::KeepAliveTimeout,
                            notify: Some(Disconnect::new(ReasonCode::KeepAliveTimeout)),
                            publish_will: true,
                        };
                    }
                    timer.as_mut().reset(self.next_deadline());
                }
            }
        }
    }

    /// When the keep-alive runs out unless a packet arrives: 1.5 times the negotiated value
    /// after the last whole packet.
    fn keep_alive_ends(&self) -> Option<Instant> {
        self.keep_alive.map(|k| self.last_packet + k.mul_f32(1.5))
    }

    /// The earlier of the keep-alive's end and the credentials' expiry, or a day from now
    /// when there is neither (the timer then only wakes to look again).
    fn next_deadline(&self) -> Instant {
        let deadline = match (self.keep_alive_ends(), self.credentials_expire) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }

    /// Decodes and handles every whole packet in the read buffer, stopping early when a
    /// publish congested a subscriber. QoS 0 publishes are gathered into runs and fanned out
    /// together (ARCHITECTURE.md, "QoS 0 runs"); what a pause leaves of a run is `held` and
    /// goes first when this is called again.
    async fn process_input(&mut self) -> Option<Ending> {
        // Keep-alive counts whole control packets (MQTT 5 3.1.2.10), so a client trickling one
        // byte at a time cannot hold its connection open. One clock reading serves every
        // packet of a read.
        let mut now = None;
        // Consecutive PUBACKs are finished together, under one lock of the session: a busy
        // subscriber sends them in runs, and its publishers contend for that lock.
        let mut acks = [0u16; PUBACK_RUN];
        let mut pending = 0;
        // QoS 0 publishes fanned out together (see `Broker::publish_run`), starting with what
        // a pause held back.
        let mut run = self.held.take().map(|held| *held).unwrap_or_default();
        let ending = loop {
            if !run.is_empty() && self.congested.is_none() && !inbound::joins_run(&self.read_buf) {
                // What comes next must not overtake the run, or the buffer is read out.
                self.flush_run(&mut run, false);
            }
            if self.congested.is_some() {
                self.finish_deliveries(&acks[..pending], Stage::AwaitingPubAck);
                break None;
            }
            let decoded = self.codec.decode(&mut self.read_buf, Some(self.protocol));
            if let Ok(Some(Packet::PubAck(ack))) = &decoded {
                self.last_packet = *now.get_or_insert_with(Instant::now);
                if pending == PUBACK_RUN {
                    self.finish_deliveries(&acks, Stage::AwaitingPubAck);
                    pending = 0;
                }
                acks[pending] = ack.packet_id;
                pending += 1;
                continue;
            }
            self.finish_deliveries(&acks[..pending], Stage::AwaitingPubAck);
            pending = 0;
            match decoded {
                Ok(Some(packet)) => {
                    self.last_packet = *now.get_or_insert_with(Instant::now);
                    if let Some(ending) = self.handle(packet, &mut run).await {
                        break Some(ending);
                    }
                }
                Ok(None) => {
                    self.flush_run(&mut run, false);
                    if run.is_empty() {
                        break None;
                    }
                }
                Err(error) => {
                    debug!(%error, client_id = %self.session.client_id, "Malformed packet.");
                    break Some(Ending::violation(error.reason_code()));
                }
            }
        };
        if ending.is_some() {
            // What the client published before it broke the protocol or left still goes out.
            self.flush_run(&mut run, true);
        } else if !run.is_empty() {
            self.held = Some(Box::new(run));
        }
        ending
    }

    /// Detaches from the session and applies what the ending implies: DISCONNECT, will,
    /// session expiry or removal, lifecycle event.
    async fn finish(mut self, ending: Ending) {
        if let Some(disconnect) = &ending.notify
            && self.protocol == Protocol::V5
        {
            Codec::encode(
                &Packet::Disconnect(disconnect.clone()),
                self.protocol,
                &mut self.write_buf,
            );
        }
        // The client may be gone or stuck; a short bound keeps shutdown and takeover prompt.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;

        let (generation, expiry, shared) = {
            let mut state = self.session.lock();
            state.attached = None;
            (state.generation, state.expiry_interval, state.take_shared())
        };
        // A detached session congests nobody: publishers paused for it go on at once.
        self.session.space.notify_waiters();
        self.broker.redistribute(shared, &self.session);
        self.broker.persist_session(&self.session, Some(now_ms()));
        let shutting_down = self.broker.shutdown.is_cancelled();
        if let Some(will) = self.will.take()
            && ending.publish_will
            && !shutting_down
        {
            let delay = will.delay.min(expiry);
            self.broker.schedule_will(
                will.message,
                self.session.clone(),
                generation,
                Duration::from_secs(u64::from(delay)),
            );
        }
        if expiry == 0 {
            self.broker.end_session(&self.session);
        } else if expiry != u32::MAX && !shutting_down {
            self.broker.schedule_expiry(
                self.session.clone(),
                generation,
                Duration::from_secs(u64::from(expiry)),
            );
        }
        debug!(client_id = %self.session.client_id, reason = ?ending.reason, "Client disconnected.");
        self.broker.hooks.emit(LifecycleEvent::Disconnected {
            identity: self.identity.clone(),
            connection: self.number,
            reason: ending.reason,
        });
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            if self.busy {
                self.write_buf.clear();
            } else {
                // A connection that is not reading bursts gives its write buffer back: an idle
                // connection then holds none, and a busy one keeps its grown buffer.
                self.write_buf = BytesMut::new();
            }
            self.stream.flush().await?;
        }
        Ok(())
    }

    /// Makes the next write wait until `ticket` is durable.
    fn hold(&mut self, ticket: Option<Ticket>) {
        self.barrier = self.barrier.max(ticket);
    }

    /// Appends a packet to the write buffer.
    fn send(&mut self, packet: Packet) {
        Codec::encode(&packet, self.protocol, &mut self.write_buf);
    }

    /// Properties carrying a reason string, when the client has not asked us to leave them out.
    fn reason_properties(&self, reason: Option<String>) -> Properties {
        Properties {
            reason_string: reason.filter(|_| self.problem_information),
            ..Properties::default()
        }
    }
}

impl Ending {
    fn lost() -> Ending {
        Ending { reason: DisconnectReason::ConnectionLost, notify: None, publish_will: true }
    }

    fn violation(code: ReasonCode) -> Ending {
        Ending {
            reason: DisconnectReason::ProtocolViolation(code),
            notify: Some(Disconnect::new(code)),
            publish_will: true,
        }
    }

    fn kicked(code: ReasonCode) -> Ending {
        let reason = match code {
            ReasonCode::SessionTakenOver => DisconnectReason::SessionTakenOver,
            ReasonCode::QuotaExceeded => DisconnectReason::SessionOverflow,
            ReasonCode::ServerShuttingDown => DisconnectReason::ServerShutdown,
            other => DisconnectReason::Administrative(other),
        };
        // A server going down is not the client's failure: its will is not published.
        let publish_will = code != ReasonCode::ServerShuttingDown;
        Ending { reason, notify: Some(Disconnect::new(code)), publish_will }
    }
}

/// Reads what the client sent into `buf`: with `busy`, straight into `buf` with `BUSY_READ`
/// of room; otherwise through `QUIET_READ` bytes on the stack, so that `buf` is only
/// allocated, to the size read, when something arrives. Returns the bytes read and whether
/// they filled the room there was (the next read should then be a busy one).
async fn read_some<S>(stream: &mut S, buf: &mut BytesMut, busy: bool) -> io::Result<(usize, bool)>
where
    S: AsyncRead + Unpin,
{
    std::future::poll_fn(|cx| {
        if busy {
            buf.reserve(BUSY_READ);
            let mut room = (&mut *buf).limit(BUSY_READ);
            let read = std::task::ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut *stream),
                cx,
                &mut room
            ))?;
            Poll::Ready(Ok((read, read == BUSY_READ)))
        } else {
            let mut space = [MaybeUninit::<u8>::uninit(); QUIET_READ];
            let mut room = ReadBuf::uninit(&mut space);
            std::task::ready!(Pin::new(&mut *stream).poll_read(cx, &mut room))?;
            let read = room.filled().len();
            buf.extend_from_slice(room.filled());
            Poll::Ready(Ok((read, read == QUIET_READ)))
        }
    })
    .await
}

/// Waits until `session` is no longer congested: its drain signals queue space, or it
/// detaches. The waiter is registered before the session is looked at, so a drain between
/// the two cannot be missed; the pause's time bound is the connection's timer. The wait is
/// boxed, and only made when there is a congested session: its waiter would otherwise be part
/// of every idle connection's future.
async fn wait_for_space(session: Option<&Arc<Session>>, config: &MqttConfig) {
    if let Some(session) = session {
        Box::pin(async move {
            let space = session.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            if session.is_congested(config) {
                space.await;
            }
        })
        .await;
    }
}
