//! One task per busy client connection: it reads packets, acts on them, and writes whatever
//! the session has queued for the client. An idle plain TCP connection gives its task up and
//! is parked with its session until its socket, its session or its deadline wakes it
//! (`parker.rs`, `parked.rs`; ARCHITECTURE.md, "Parked connections").
//!
//! The task owns the socket and both buffers. Reading, queue wake-ups (which also carry kicks:
//! takeover, overflow, lost access, shutdown) and one timer (keep-alive and credentials' expiry)
//! are one `select!`; everything that a wake-up produces is appended to the write buffer and
//! written with one `write_all`, so a burst of deliveries costs one syscall rather than one per
//! packet. In the other direction, a burst of QoS 0 and QoS 1 publishes is fanned out in runs.
//!
//! Invariant: the connection holds its session's `attach` lock from CONNACK until it has
//! detached, so no two connections ever drive one session.

mod handshake;
mod inbound;
mod linger;
mod outbound;
mod parked;
mod parker;
mod socket;

pub use self::linger::{LINGER, LINGER_BYTES, MAX_LINGERING};
pub use self::parker::Parker;
pub use self::socket::{Park, Socket};

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
/// buffer; both grow when they must, and are let go once the connection is idle. Small,
/// because a connection storm holds one of each per handshake in flight, and a CONNECT
/// without a long token, like a CONNACK, fits.
const INITIAL_BUFFER: usize = 256;

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
    /// DER certificates the client presented over TLS, leaf first (a boxed slice: every
    /// connection keeps its peer, most without certificates).
    pub certificates: Box<[Bytes]>,
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
    /// Where the connection parks when idle; `None` keeps it a task for its whole life.
    pub parker: Option<Arc<Parker>>,
}

/// Serves one client until it disconnects, breaks the protocol, or the server shuts down.
pub async fn serve<S>(start: Box<Start<S>>)
where
    S: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
{
    let Start { stream, peer, broker, slot, parker } = *start;
    // The handshake and the teardown are boxed so that their (large, short-lived) states are
    // not part of the task every idle connection keeps for its whole life.
    let Some(mut connection) = Box::pin(handshake::accept(stream, peer, broker)).await else {
        return;
    };
    connection._slot = slot;
    connection.parker = parker;
    drive(connection).await;
}

/// Runs a connection until it ends or parks. A parked connection's task ends here; when
/// something wakes it, `resume` gives it a new one that continues here.
async fn drive<S>(mut connection: Box<Connection<S>>)
where
    S: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
{
    loop {
        match connection.run().await {
            Step::End(ending) => {
                Box::pin(connection.finish(ending)).await;
                return;
            }
            Step::Park => match connection.park() {
                Ok(()) => return,
                Err(back) => connection = back,
            },
        }
    }
}

/// What the event loop stopped for.
enum Step {
    End(Ending),
    /// Nothing to do: give up the task until the socket, the session or a deadline wakes us.
    Park,
}

/// How a connected session ends.
#[derive(Debug)]
struct Ending {
    reason: DisconnectReason,
    /// A DISCONNECT to send before closing (5.0 only); boxed, as its properties would
    /// otherwise make every `Ending` (and the futures that return one) 300 bytes larger.
    notify: Option<Box<Disconnect>>,
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
    /// Keep-alive as negotiated, in seconds; never 0 (a client asking for none gets
    /// `mqtt.max_keep_alive`).
    keep_alive: u16,
    last_packet: Instant,
    will: Option<Will>,
    /// Whether CONNECT set Session Expiry 0, which DISCONNECT may then not change.
    expiry_was_zero: bool,
    /// The 5.0 authentication method, for re-authentication.
    auth_method: Option<Box<str>>,
    peer: Peer,
    /// Whether reason strings and user properties may go in acknowledgements (5.0
    /// Request Problem Information).
    problem_information: bool,
    /// Topic aliases the client set up (5.0); boxed and made on first use, as most clients
    /// never use aliases and the connection's state is what an idle connection costs.
    #[allow(clippy::box_collection, reason = "8 bytes inline instead of 48 for every connection")]
    inbound_aliases: Option<Box<HashMap<u16, Arc<str>>>>,
    outbound: Outbound,
    /// The subscriber sessions whose queues our last publish left past their soft limit: we
    /// read nothing more from this client until every one of them has drained (or
    /// `pause_until` passes), so the publisher slows to the slowest subscriber's pace instead
    /// of a subscriber losing messages. One that drains first must not end the pause: another
    /// may still be at its bound, where the next message would be dropped.
    congested: Vec<Arc<Session>>,
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
    /// QoS 0 and QoS 1 publishes already read, held back by a pause (see `process_input`; a
    /// held QoS 1 publish is not acknowledged until it is fanned out); boxed, as it is rare
    /// and every idle connection carries the field.
    held: Option<Box<inbound::Run>>,
    parker: Option<Arc<Parker>>,
    /// Whether to park at the next moment with nothing to do: at once after CONNACK (so a
    /// connection storm never holds a task per connection), then after `Parker::after`
    /// without traffic.
    park_due: bool,
    /// Whether anything was read or woken since `park_check` was set.
    active: bool,
    /// When to look whether the connection was quiet since the last look.
    park_check: Instant,
    _attached: OwnedMutexGuard<()>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
{
    /// The connection's event loop; returns why it ended, or that it should park.
    async fn run(&mut self) -> Step {
        let session = self.session.clone();
        // Packets that arrived in the same read as CONNECT are already buffered.
        if !self.read_buf.is_empty()
            && let Some(ending) = Box::pin(self.process_input()).await
        {
            return Step::End(ending);
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
        let timer = tokio::time::sleep_until(self.timer_deadline());
        tokio::pin!(timer);
        loop {
            if self.broker.is_stopping() {
                return Step::End(Ending::kicked(ReasonCode::ServerShuttingDown));
            }
            if let Some(reason) = session.kicked() {
                return Step::End(Ending::kicked(reason));
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
                return Step::End(Ending::lost());
            }
            if let Some(expiry) = self.credentials_expire
                && expiry < timer.deadline()
            {
                timer.as_mut().reset(expiry);
            }
            if !self.congested.is_empty() && self.pause_until < timer.deadline() {
                // The pause's bound rides on the same timer: when it fires early, it is moved
                // back to the next real deadline, and the check above ends the pause.
                timer.as_mut().reset(self.pause_until);
            }
            if !self.congested.is_empty() {
                let pause_over = Instant::now() >= self.pause_until;
                while let Some(target) = self.congested.last() {
                    let still_congested = target.is_congested(&self.broker.config);
                    if still_congested && !pause_over {
                        break;
                    }
                    if still_congested {
                        target.mark_stalled();
                    }
                    self.congested.pop();
                }
                if self.congested.is_empty() {
                    // Packets held back while congested are still in the read buffer.
                    if let Some(ending) = Box::pin(self.process_input()).await {
                        return Step::End(ending);
                    }
                    continue;
                }
            }
            if self.park_due && self.parker.is_some() && self.is_quiet() {
                return Step::Park;
            }
            let congested = self.congested.last().cloned();
            tokio::select! {
                biased;
                () = wait_for_space(congested.as_ref(), &self.broker.config), if congested.is_some() => {
                    // We are the ones not reading: the client's PINGREQs wait in the socket.
                    self.last_packet = Instant::now();
                }
                read = read_some(&mut self.stream, &mut self.read_buf, self.busy), if congested.is_none() => {
                    match read {
                        Ok((0, _)) | Err(_) => return Step::End(Ending::lost()),
                        Ok((read, filled)) => {
                            crate::telemetry::catalogue::RECEIVED_BYTES.increment(read as u64);
                            self.busy = filled;
                            self.active = true;
                            if let Some(ending) = Box::pin(self.process_input()).await {
                                return Step::End(ending);
                            }
                            if self.read_buf.is_empty() && !self.busy {
                                // Nothing partial is left: a quiet connection holds no buffer.
                                self.read_buf = BytesMut::new();
                            }
                        }
                    }
                }
                () = session.wake.notified() => self.active = true,
                () = &mut timer => {
                    let now = Instant::now();
                    if self.credentials_expire.is_some_and(|at| at <= now) {
                        // MQTT 5 has no "credentials expired" code; 0xA0 (maximum connect time)
                        // says the time this connection was authorized for is over.
                        return Step::End(Ending {
                            reason: DisconnectReason::Administrative(ReasonCode::MaximumConnectTime),
                            notify: Some(Box::new(Disconnect::new(ReasonCode::MaximumConnectTime))),
                            publish_will: true,
                        });
                    }
                    if self.keep_alive_ends() <= now {
                        return Step::End(Ending {
                            reason: DisconnectReason::KeepAliveTimeout,
                            notify: Some(Box::new(Disconnect::new(ReasonCode::KeepAliveTimeout))),
                            publish_will: true,
                        });
                    }
                    if let Some(parker) = &self.parker
                        && self.park_check <= now
                    {
                        if self.active {
                            self.active = false;
                            self.park_check = now + parker.after();
                        } else {
                            self.park_due = true;
                        }
                    }
                    timer.as_mut().reset(self.timer_deadline());
                }
            }
        }
    }

    /// When the keep-alive runs out unless a packet arrives: 1.5 times the negotiated value
    /// after the last whole packet.
    fn keep_alive_ends(&self) -> Instant {
        keep_alive_ends(self.last_packet, self.keep_alive)
    }

    /// The earlier of the keep-alive's end and the credentials' expiry.
    fn next_deadline(&self) -> Instant {
        deadline(self.last_packet, self.keep_alive, self.credentials_expire)
    }

    /// The connection's timer: `next_deadline`, or earlier the next look at whether it is
    /// quiet enough to park.
    fn timer_deadline(&self) -> Instant {
        let deadline = self.next_deadline();
        if self.parker.is_some() && !self.park_due {
            deadline.min(self.park_check)
        } else {
            deadline
        }
    }

    /// Whether the connection holds nothing that a parked connection could not: no partial
    /// packet, nothing to write or wait for, no pause.
    fn is_quiet(&self) -> bool {
        self.read_buf.is_empty()
            && self.write_buf.is_empty()
            && !self.busy
            && self.congested.is_empty()
            && self.held.is_none()
            && self.barrier.is_none()
    }

    /// Parks the connection with its session (ARCHITECTURE.md, "Parked connections"), or
    /// gives it back when something already waits for it or its socket cannot park.
    fn park(mut self: Box<Self>) -> Result<(), Box<Self>> {
        let Some(parker) = self.parker.clone() else { return Err(self) };
        let Some(fd) = self.stream.park() else {
            // A transport that does not park (or a socket lost on the way, which the next
            // read reports) goes on as a task.
            self.park_due = false;
            self.park_check = Instant::now() + Duration::from_secs(86_400 * 365);
            return Err(self);
        };
        let session = self.session.clone();
        let deadline = self.next_deadline();
        let parked = match self.into_parked() {
            Ok(parked) => parked,
            Err(mut this) => {
                this.stream.unpark();
                this.awake();
                return Err(this);
            }
        };
        match session.park(parked, || parker.watch(fd, &session)) {
            Ok(()) => {
                parker.schedule(deadline, fd);
                Ok(())
            }
            Err(parked) => {
                let mut this = (*parked).into_connection();
                this.stream.unpark();
                Err(this)
            }
        }
    }

    /// Starts a new wait for quiet: a connection that was just woken parks again only after
    /// `Parker::after` without traffic.
    fn awake(&mut self) {
        self.park_due = false;
        self.active = false;
        if let Some(parker) = &self.parker {
            self.park_check = Instant::now() + parker.after();
        }
    }

    /// Decodes and handles every whole packet in the read buffer, stopping early when a
    /// publish congested a subscriber. QoS 0 and QoS 1 publishes are gathered into runs and
    /// fanned out together (ARCHITECTURE.md, "Runs"); what a pause leaves of a run is `held`
    /// and goes first when this is called again.
    async fn process_input(&mut self) -> Option<Ending> {
        // Keep-alive counts whole control packets (MQTT 5 3.1.2.10), so a client trickling one
        // byte at a time cannot hold its connection open. One clock reading serves every
        // packet of a read.
        let mut now = None;
        // Consecutive PUBACKs are finished together, under one lock of the session: a busy
        // subscriber sends them in runs, and its publishers contend for that lock.
        let mut acks = [0u16; PUBACK_RUN];
        let mut pending = 0;
        // QoS 0 and 1 publishes fanned out together (see `Broker::publish_run`), starting with
        // what a pause held back.
        let mut run = self.held.take().map(|held| *held).unwrap_or_default();
        let ending = loop {
            if !run.is_empty() && self.congested.is_empty() && !inbound::joins_run(&self.read_buf) {
                // What comes next must not overtake the run, or the buffer is read out.
                self.flush_run(&mut run, false);
            }
            if !self.congested.is_empty() {
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
                    let ending = match packet {
                        Packet::Publish(publish) => self.on_publish(publish, &mut run),
                        packet => self.handle(packet, &mut run).await,
                    };
                    if let Some(ending) = ending {
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

    /// Detaches from the session and applies what the ending implies: will, session expiry or
    /// removal, lifecycle event; then closes, with the DISCONNECT when there is one. The
    /// session and everything else the connection holds are let go of first: a server-ended
    /// connection then lingers (`linger.rs`) holding only its transport.
    async fn finish(mut self: Box<Self>, ending: Ending) {
        crate::telemetry::catalogue::OPEN_CONNECTIONS.decrement(1);
        if let Some(disconnect) = &ending.notify {
            crate::telemetry::catalogue::dropped_session(disconnect.reason);
        }
        if let Some(disconnect) = &ending.notify
            && self.protocol == Protocol::V5
        {
            Codec::encode(
                &Packet::Disconnect((**disconnect).clone()),
                self.protocol,
                &mut self.write_buf,
            );
        }
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
        crate::diagnostics::MqttDisconnected {
            client_identity: &self.identity.authentication_name,
            session_name: &self.session.client_id,
            protocol: self.protocol,
            websocket: self.stream.websocket(),
            reason: &ending.reason,
        }
        .emit();
        self.broker.hooks.emit(LifecycleEvent::Disconnected {
            identity: self.identity.clone(),
            connection: self.number,
            reason: ending.reason,
        });
        let (broker, stream, last) = (*self).into_transport();
        if ending.notify.is_some() {
            linger::close(&broker, stream, last).await;
        } else {
            // The client ended the connection: there is nothing of its own left to read.
            linger::close_now(stream, last).await;
        }
    }

    /// The broker, the transport and what is left to write; everything else (the session's
    /// attach lock, the listener's slot) is dropped here.
    fn into_transport(self) -> (Arc<Broker>, S, BytesMut) {
        let Connection { broker, stream, write_buf, .. } = self;
        (broker, stream, write_buf)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            crate::telemetry::catalogue::SENT_BYTES.increment(self.write_buf.len() as u64);
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
            notify: Some(Box::new(Disconnect::new(code))),
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
        Ending { reason, notify: Some(Box::new(Disconnect::new(code))), publish_will }
    }
}

/// When the keep-alive runs out: 1.5 times the negotiated seconds after the last packet.
fn keep_alive_ends(last_packet: Instant, keep_alive: u16) -> Instant {
    last_packet + Duration::from_millis(u64::from(keep_alive) * 1500)
}

/// What a connection must look at even if nothing wakes it: the earlier of the keep-alive's
/// end and the credentials' expiry.
fn deadline(last_packet: Instant, keep_alive: u16, credentials_expire: Option<Instant>) -> Instant {
    let keep_alive = keep_alive_ends(last_packet, keep_alive);
    credentials_expire.map_or(keep_alive, |expiry| expiry.min(keep_alive))
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
