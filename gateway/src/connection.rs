//! One task per busy client connection: it reads packets, acts on them, and writes whatever
//! the session has queued for the client. An idle plain TCP connection gives its task up and
//! is parked with its session until its socket, its session or its deadline wakes it
//! (`parker.rs`, `parked.rs`; ARCHITECTURE.md, "Parked connections").
//!
//! A connection is its `Core`, what survives parking, and while it has a task its `Running`
//! parts (`running.rs`): both buffers, the pause, the durability barrier, the held run and the
//! parking timer. Reading, queue wake-ups (which also carry kicks: takeover, overflow, lost
//! access, shutdown) and one timer (keep-alive, credentials' expiry, the pause's bound, the
//! next parking look) are one `select!`; everything that a wake-up produces is appended to the
//! write buffer and written with one `write_all`, so a burst of deliveries costs one syscall
//! rather than one per packet. In the other direction, a burst of QoS 0 and QoS 1 publishes is
//! fanned out in runs.
//!
//! Invariant: the connection holds its session's `attach` lock from CONNACK until it has
//! detached, so no two connections ever drive one session.

mod ending;
mod handshake;
mod inbound;
mod linger;
mod outbound;
mod park_timer;
mod parked;
mod parker;
mod pause;
mod running;
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

use self::ending::Ending;
use self::outbound::Outbound;
use self::park_timer::ParkTimer;
use self::running::Running;
use crate::broker::Broker;
use crate::broker::config::MqttConfig;
use crate::broker::message::Message;
use crate::broker::session::{Session, Stage};
use crate::hooks::{ClientIdentity, DisconnectReason};
use crate::mqtt::{Codec, Disconnect, Packet, Properties, Protocol, ReasonCode};
use crate::store::Ticket;

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
    connection.core._slot = slot;
    connection.running.park = parker.map(ParkTimer::connected);
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

/// A will waiting for the connection to end.
#[derive(Debug)]
struct Will {
    message: Arc<Message>,
    delay: u32,
}

/// What survives parking: everything a connection is between packets. A parked connection
/// keeps only this (`parked.rs`), so each field here is paid for by every idle client.
struct Core<S> {
    broker: Arc<Broker>,
    stream: S,
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
    /// When the client's credentials lapse (token `exp`, certificate `notAfter`, webhook
    /// `expiration`): the connection ends then unless re-authentication (AUTH 0x19) extends it.
    credentials_expire: Option<Instant>,
    _attached: OwnedMutexGuard<()>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl<S> Core<S> {
    /// When the keep-alive runs out unless a packet arrives: 1.5 times the negotiated value
    /// after the last whole packet.
    fn keep_alive_ends(&self) -> Instant {
        self.last_packet + Duration::from_millis(u64::from(self.keep_alive) * 1500)
    }

    /// What the connection must look at even if nothing wakes it: the earlier of the
    /// keep-alive's end and the credentials' expiry.
    fn deadline(&self) -> Instant {
        let keep_alive = self.keep_alive_ends();
        self.credentials_expire.map_or(keep_alive, |expiry| expiry.min(keep_alive))
    }
}

/// A connected client, after a successful CONNACK.
struct Connection<S> {
    core: Core<S>,
    running: Running,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
{
    /// The connection's event loop; returns why it ended, or that it should park. Each turn
    /// writes out what there is to write, ends a pause that is over, parks when quiet, and
    /// then waits for the one thing that comes first (see the `select!`).
    async fn run(&mut self) -> Step {
        let session = self.core.session.clone();
        if let Some(ending) = self.read_leftovers().await {
            return Step::End(ending);
        }
        // One timer for the keep-alive, the credentials' expiry, the pause's bound and the
        // next parking look, armed at the earliest and moved only when it fires early or
        // something earlier comes up. The keep-alive deadline moves later with every packet;
        // re-arming the timer on every turn would put a timer-wheel removal and insertion,
        // under the time driver's lock, on every read.
        let timer = tokio::time::sleep_until(self.timer_deadline());
        tokio::pin!(timer);
        loop {
            if let Some(ending) = self.kicked() {
                return Step::End(ending);
            }
            if let Err(error) = self.write_out().await {
                debug!(%error, "Write failed.");
                return Step::End(Ending::lost());
            }
            if let Some(earlier) = self.earlier_deadline(timer.deadline()) {
                timer.as_mut().reset(earlier);
            }
            if self.running.pause.ease(&self.core.broker.config) {
                // Packets held back while paused are still in the read buffer.
                if let Some(ending) = Box::pin(self.process_input()).await {
                    return Step::End(ending);
                }
                continue;
            }
            if self.running.should_park() {
                return Step::Park;
            }
            let waiting_on = self.running.pause.waiting_on().cloned();
            let paused = waiting_on.is_some();
            let config = &self.core.broker.config;
            // Biased: the arms are polled in this order, not at random. Waiting for space and
            // reading exclude each other; reading comes before the wake-up because the top of
            // the loop drains the queue after either, and PUBACKs read first make room in the
            // in-flight window for that drain; the timer comes last, so that a packet already
            // there counts for the keep-alive before the timer looks.
            tokio::select! {
                biased;
                // Paused: the congested session signals queue space (or detaches). We are the
                // ones not reading, so the client's PINGREQs wait in the socket: the
                // keep-alive counts from now.
                () = wait_for_space(waiting_on.as_ref(), config), if paused => {
                    self.core.last_packet = Instant::now();
                }
                // Not paused: whatever the client sent.
                read = read_some(&mut self.core.stream, &mut self.running.read_buf, self.running.busy), if !paused => {
                    if let Some(ending) = self.on_read(read).await {
                        return Step::End(ending);
                    }
                }
                // Deliveries queued or a kick for us: the top of the loop drains and looks.
                () = session.wake.notified() => self.stir(),
                // A deadline: keep-alive, credentials, the pause's bound or a parking look.
                () = &mut timer => {
                    if let Some(ending) = self.on_timer() {
                        return Step::End(ending);
                    }
                    timer.as_mut().reset(self.timer_deadline());
                }
            }
        }
    }

    /// Handles packets that arrived in the same read as CONNECT, then lets the CONNECT's
    /// buffer go: reads from here on allocate what they need.
    async fn read_leftovers(&mut self) -> Option<Ending> {
        if !self.running.read_buf.is_empty()
            && let Some(ending) = Box::pin(self.process_input()).await
        {
            return Some(ending);
        }
        if self.running.read_buf.is_empty() {
            self.running.read_buf = BytesMut::new();
        }
        None
    }

    /// Why the connection must end now regardless of what the client does: the server is
    /// stopping, or the session was taken over, overflowed or lost its access.
    fn kicked(&self) -> Option<Ending> {
        if self.core.broker.is_stopping() {
            return Some(Ending::kicked(ReasonCode::ServerShuttingDown));
        }
        self.core.session.kicked().map(Ending::kicked)
    }

    /// Moves queued deliveries into the write buffer, waits until what it acknowledges is
    /// durable, and writes it.
    async fn write_out(&mut self) -> io::Result<()> {
        let core = &mut self.core;
        let drained = core.outbound.drain(
            &core.session,
            &mut self.running.write_buf,
            core.broker.journal(),
            &core.broker.config,
        );
        self.running.hold(drained);
        if let Some(ticket) = self.running.barrier.take() {
            self.await_durable(ticket).await;
        }
        self.flush().await
    }

    /// Waits until `ticket` is durable, or until the session is kicked: a commit may never
    /// come (cluster mode cut off from NATS, where fencing kicks every session), and a kicked
    /// connection must still end. What the barrier held back (acknowledgements of what is not
    /// stored) is then dropped unsent, so `finish` writes only the DISCONNECT.
    async fn await_durable(&mut self, ticket: Ticket) {
        let (session, write_buf) = (&self.core.session, &mut self.running.write_buf);
        let durable = self.core.broker.durable(Some(ticket));
        tokio::pin!(durable);
        let mut woken = false;
        loop {
            tokio::select! {
                biased;
                () = &mut durable => break,
                // `kick` sets the reason, then wakes (a stored permit when nobody waits, so
                // a kick from before this wait is seen too). Only the session's kick: at
                // shutdown the journal commits what is pending, and those acknowledgements
                // still go out.
                () = session.wake.notified() => {
                    woken = true;
                    if session.kicked().is_some() {
                        write_buf.clear();
                        break;
                    }
                }
            }
        }
        // A wake-up taken here may have been for queued deliveries or the kick: passed on to
        // the event loop, which looks at both.
        if woken {
            session.wake.notify_one();
        }
    }

    /// A deadline earlier than the timer's `armed` one that came up since it was armed:
    /// re-authentication brought the credentials' expiry forward, or a pause began. When the
    /// timer fires early for it, it is moved back to the next real deadline.
    fn earlier_deadline(&self, armed: Instant) -> Option<Instant> {
        let credentials = self.core.credentials_expire.filter(|&expiry| expiry < armed);
        let pause = self.running.pause.deadline().filter(|&until| until < armed);
        match (credentials, pause) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Acts on what a read brought: the client's packets, or the end of the connection.
    async fn on_read(&mut self, read: io::Result<(usize, bool)>) -> Option<Ending> {
        let (read, filled) = match read {
            Ok((0, _)) | Err(_) => return Some(Ending::lost()),
            Ok(read) => read,
        };
        crate::telemetry::catalogue::RECEIVED_BYTES.increment(read as u64);
        self.running.busy = filled;
        self.stir();
        if let Some(ending) = Box::pin(self.process_input()).await {
            return Some(ending);
        }
        if self.running.read_buf.is_empty() && !self.running.busy {
            // Nothing partial is left: a quiet connection holds no buffer.
            self.running.read_buf = BytesMut::new();
        }
        None
    }

    /// The timer fired: ends the connection when its credentials or keep-alive ran out, and
    /// takes the parking timer's look.
    fn on_timer(&mut self) -> Option<Ending> {
        let now = Instant::now();
        if self.core.credentials_expire.is_some_and(|at| at <= now) {
            // MQTT 5 has no "credentials expired" code; 0xA0 (maximum connect time) says the
            // time this connection was authorized for is over.
            return Some(Ending::administrative(ReasonCode::MaximumConnectTime));
        }
        if self.core.keep_alive_ends() <= now {
            return Some(Ending {
                reason: DisconnectReason::KeepAliveTimeout,
                notify: Some(Box::new(Disconnect::new(ReasonCode::KeepAliveTimeout))),
                publish_will: true,
            });
        }
        if let Some(park) = &mut self.running.park {
            park.look(now);
        }
        None
    }

    /// Something was read or woken: the connection is not quiet.
    fn stir(&mut self) {
        if let Some(park) = &mut self.running.park {
            park.stir();
        }
    }

    /// The connection's timer: `Core::deadline`, or earlier the next look at whether it is
    /// quiet enough to park.
    fn timer_deadline(&self) -> Instant {
        let deadline = self.core.deadline();
        match self.running.park.as_ref().and_then(ParkTimer::deadline) {
            Some(check) => deadline.min(check),
            None => deadline,
        }
    }

    /// Parks the connection with its session (ARCHITECTURE.md, "Parked connections"), or
    /// gives it back when something already waits for it or its socket cannot park.
    fn park(mut self: Box<Self>) -> Result<(), Box<Self>> {
        let Some(parker) = self.running.park.as_ref().map(|park| park.parker.clone()) else {
            return Err(self);
        };
        let Some(fd) = self.core.stream.park() else {
            // A transport that does not park (or a socket lost on the way, which the next
            // read reports) goes on as a task.
            self.running.park = None;
            return Err(self);
        };
        let session = self.core.session.clone();
        let deadline = self.core.deadline();
        let parked = (*self).into_parked(parker.clone());
        match session.park(parked, || parker.watch(fd, &session)) {
            Ok(()) => {
                parker.schedule(deadline, fd);
                Ok(())
            }
            Err(parked) => {
                let mut this = parked.into_connection();
                this.core.stream.unpark();
                Err(this)
            }
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
        let mut acks = PubAcks::new();
        // QoS 0 and 1 publishes fanned out together (see `Broker::publish_run`), starting with
        // what a pause held back.
        let mut run = self.running.held.take().map(|held| *held).unwrap_or_default();
        let ending = loop {
            let paused = self.running.pause.is_paused();
            if !run.is_empty() && !paused && !inbound::joins_run(&self.running.read_buf) {
                // What comes next must not overtake the run, or the buffer is read out.
                self.flush_run(&mut run, false);
            }
            if self.running.pause.is_paused() {
                acks.finish(self);
                break None;
            }
            let decoded =
                self.running.codec.decode(&mut self.running.read_buf, Some(self.core.protocol));
            if let Ok(Some(Packet::PubAck(ack))) = &decoded {
                self.core.last_packet = *now.get_or_insert_with(Instant::now);
                acks.push(self, ack.packet_id);
                continue;
            }
            acks.finish(self);
            match decoded {
                Ok(Some(packet)) => {
                    self.core.last_packet = *now.get_or_insert_with(Instant::now);
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
                    debug!(%error, client_id = %self.core.session.client_id, "Malformed packet.");
                    break Some(Ending::violation(error.reason_code()));
                }
            }
        };
        if ending.is_some() {
            // What the client published before it broke the protocol or left still goes out.
            self.flush_run(&mut run, true);
        } else if !run.is_empty() {
            self.running.held = Some(Box::new(run));
        }
        ending
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let write_buf = &mut self.running.write_buf;
        if !write_buf.is_empty() {
            self.core.stream.write_all(write_buf).await?;
            crate::telemetry::catalogue::SENT_BYTES.increment(write_buf.len() as u64);
            if self.running.busy {
                write_buf.clear();
            } else {
                // A connection that is not reading bursts gives its write buffer back: an idle
                // connection then holds none, and a busy one keeps its grown buffer.
                *write_buf = BytesMut::new();
            }
            self.core.stream.flush().await?;
        }
        Ok(())
    }

    /// Makes the next write wait until `ticket` is durable.
    fn hold(&mut self, ticket: Option<Ticket>) {
        self.running.hold(ticket);
    }

    /// Appends a packet to the write buffer.
    fn send(&mut self, packet: Packet) {
        Codec::encode(&packet, self.core.protocol, &mut self.running.write_buf);
    }

    /// Properties carrying a reason string, when the client has not asked us to leave them out.
    fn reason_properties(&self, reason: Option<String>) -> Properties {
        Properties {
            reason_string: reason.filter(|_| self.core.problem_information),
            ..Properties::default()
        }
    }
}

/// PUBACKs read back to back, finished together under one lock of the session.
struct PubAcks {
    ids: [u16; PUBACK_RUN],
    len: usize,
}

impl PubAcks {
    fn new() -> PubAcks {
        PubAcks { ids: [0; PUBACK_RUN], len: 0 }
    }

    /// Adds one, finishing those before it first when the batch is full.
    fn push<S>(&mut self, connection: &mut Connection<S>, packet_id: u16)
    where
        S: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
    {
        if self.len == PUBACK_RUN {
            self.finish(connection);
        }
        self.ids[self.len] = packet_id;
        self.len += 1;
    }

    /// Finishes the deliveries acknowledged so far.
    fn finish<S>(&mut self, connection: &mut Connection<S>)
    where
        S: AsyncRead + AsyncWrite + Park + Unpin + Send + 'static,
    {
        connection.finish_deliveries(&self.ids[..self.len], Stage::AwaitingPubAck);
        self.len = 0;
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
