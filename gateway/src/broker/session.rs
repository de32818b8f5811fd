//! A session: the state MQTT keeps for a client id across connections.
//!
//! The session outlives its connections: subscriptions, the queue of messages waiting for the
//! client, the outbound in-flight window and the inbound QoS 2 packet ids all live here. Each
//! session has its own lock, so publishers fanning out to different subscribers never contend;
//! the lock is held only to push or pop a queue entry, never across an await.
//!
//! Invariant: a session is attached to at most one connection at a time. The connection holds
//! the `attach` lock for its whole life; a takeover waits for that lock, so the old connection
//! has let go of the session before the new one touches it.

mod queue;

pub use self::queue::Queue;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

use super::config::{MqttConfig, QueueFull};
use super::message::Delivery;
use super::persist;
use crate::mqtt::{Protocol, QoS, ReasonCode, SubscriptionOptions};
use crate::store::{Journal, Ticket};

/// A client's session.
#[derive(Debug)]
pub struct Session {
    pub client_id: Arc<str>,
    /// Unique for each session the broker creates (a clean start makes a new one).
    pub id: u64,
    state: Mutex<SessionState>,
    /// Wakes the attached connection when deliveries are queued.
    pub(crate) wake: Notify,
    /// Wakes publishers held back by this session's congestion when its queue has drained
    /// below the soft limit.
    pub(crate) space: Notify,
    /// Set when a publisher's whole pause (`mqtt.max_publisher_pause_ms`) passed without this
    /// session draining below its soft limit: the client is not reading, so publishers stop
    /// waiting for it (its queue bound applies instead) until it drains again.
    stalled: AtomicBool,
    /// Held by the attached connection; see the module invariant.
    pub(crate) attach: Arc<tokio::sync::Mutex<()>>,
}

/// One subscription as the session remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub options: SubscriptionOptions,
    pub identifier: Option<u32>,
}

/// Where an outbound QoS 1/2 delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// PUBLISH sent at QoS 1, waiting for PUBACK.
    AwaitingPubAck,
    /// PUBLISH sent at QoS 2, waiting for PUBREC.
    AwaitingPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitingPubComp,
}

/// An outbound delivery that has a packet id.
#[derive(Debug, Clone)]
pub struct Inflight {
    pub packet_id: u16,
    pub stage: Stage,
    pub delivery: Delivery,
}

/// The link from a session to the connection attached to it.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Set when the connection must close with this reason (takeover, overflow, lost access);
    /// see `Session::kick`. The first reason stays.
    pub kicked: Option<ReasonCode>,
    /// How many QoS 1/2 deliveries may be in flight at once (client's Receive Maximum, capped).
    pub window: usize,
}

/// Everything behind the session lock.
#[derive(Debug)]
pub struct SessionState {
    pub protocol: Protocol,
    /// Keyed by the filter as subscribed (shared filters with their `$share/g/` prefix).
    pub subscriptions: HashMap<String, Subscription>,
    pub queue: Queue,
    /// Whether a publish found this session congested since publishers were last woken: the
    /// drain that reaches the low-water mark wakes them (see `under_low_water`).
    pub publishers_waiting: bool,
    /// Room below the soft limit that publishers have claimed for runs they are about
    /// to queue (`Session::reserve_run`), so that two publishers do not both count it.
    pub reserved: usize,
    /// In the order the PUBLISH packets were first sent.
    pub inflight: VecDeque<Inflight>,
    next_packet_id: u16,
    /// How many ids from `next_packet_id` on are known not to be in flight, so that the
    /// allocator looks through the window only once in that many deliveries rather than on
    /// every one. Only ever an underestimate: removing an entry cannot make it wrong, and an
    /// entry is only ever added under an id from the allocator or after `reserve_packet_id`,
    /// which sets it back to 0.
    free_ahead: u16,
    /// Inbound QoS 2 packet ids that got PUBREC and wait for PUBREL.
    pub inbound_qos2: PacketIds,
    pub attached: Option<Attachment>,
    /// Seconds the session outlives its connection; `u32::MAX` means never expires.
    pub expiry_interval: u32,
    /// Counts attachments, so a timer started at one disconnect can tell whether the client
    /// came back since.
    pub generation: u64,
    /// Set once the session is discarded; nothing is queued to it afterwards.
    pub ended: bool,
    /// Whether the store holds a record of this session, so ending it must delete it.
    pub stored: bool,
    /// Whether a delayed will waits; a client that comes back cancels it (and its record).
    pub will_pending: bool,
    /// The attached connection while it is parked (ARCHITECTURE.md, "Parked connections"):
    /// whatever would wake it takes it out and resumes it.
    parked: Option<Box<dyn Parked>>,
}

/// Packet ids, as a set made on first use: most clients never publish at QoS 2, and every
/// session would otherwise carry an empty hash set's 48 bytes.
#[derive(Debug, Default)]
#[allow(clippy::box_collection, reason = "8 bytes inline instead of 48 for every session")]
pub struct PacketIds(Option<Box<HashSet<u16>>>);

impl PacketIds {
    pub fn insert(&mut self, id: u16) -> bool {
        self.0.get_or_insert_default().insert(id)
    }

    pub fn remove(&mut self, id: &u16) -> bool {
        self.0.as_mut().is_some_and(|ids| ids.remove(id))
    }

    pub fn contains(&self, id: &u16) -> bool {
        self.0.as_ref().is_some_and(|ids| ids.contains(id))
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |ids| ids.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// An idle connection kept without a task of its own, waiting for its socket, its session
/// or its deadline. The session holds it because the session is what every wake-up goes
/// through: queueing a delivery or kicking takes it out (under the session lock, so exactly
/// one waker gets it) and resumes it.
pub trait Parked: Send {
    /// Gives the connection a task again.
    fn resume(self: Box<Self>);
    /// When the connection must look at its keep-alive or credentials even if nothing wakes it.
    fn deadline(&self) -> tokio::time::Instant;
}

impl std::fmt::Debug for dyn Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked").field("deadline", &self.deadline()).finish()
    }
}

/// What became of a delivery offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued (and the connection woken if attached).
    Queued,
    /// Not queued: QoS 0 to an offline session, or the session has ended.
    Skipped,
    /// Queued after dropping the oldest queued message (`drop-oldest`), or a QoS 0 message
    /// was dropped because the queue is full.
    Dropped,
    /// The queue is full under `end-session`: the caller must end the session.
    Overflow,
}

/// What `Session::enqueue` did with a delivery.
#[derive(Debug, Clone, Copy)]
pub struct Offered {
    pub outcome: Enqueued,
    /// Durable once the delivery's store entry is.
    pub ticket: Option<Ticket>,
    /// Whether the session's publishers should now pause (see `Session::is_congested`).
    pub congested: bool,
}

impl SessionState {
    /// Whether the attached connection is parked.
    pub fn is_parked(&self) -> bool {
        self.parked.is_some()
    }
}

impl Session {
    pub fn new(client_id: Arc<str>, id: u64, protocol: Protocol) -> Session {
        Session {
            client_id,
            id,
            state: Mutex::new(SessionState {
                protocol,
                subscriptions: HashMap::new(),
                queue: Queue::default(),
                publishers_waiting: false,
                reserved: 0,
                inflight: VecDeque::new(),
                next_packet_id: 1,
                free_ahead: 0,
                inbound_qos2: PacketIds::default(),
                attached: None,
                expiry_interval: 0,
                generation: 0,
                ended: false,
                stored: false,
                will_pending: false,
                parked: None,
            }),
            wake: Notify::new(),
            space: Notify::new(),
            stalled: AtomicBool::new(false),
            attach: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Whether publishers should pause: the session is attached (it drains), its queue is
    /// past half of either bound, and it has not stalled. Pausing publishers, instead of
    /// letting the queue reach its bound, is what keeps a connected slow subscriber from
    /// losing messages.
    pub fn is_congested(&self, config: &MqttConfig) -> bool {
        if self.stalled.load(Ordering::Relaxed) {
            return false;
        }
        self.congested_in(&self.state.lock(), config)
    }

    /// `is_congested`, for a caller that holds the lock.
    fn congested_in(&self, state: &SessionState, config: &MqttConfig) -> bool {
        state.attached.is_some()
            && state.over_soft_limit(config)
            && !self.stalled.load(Ordering::Relaxed)
    }

    /// Asks the attached connection, if any, to close with `reason`: the reason is left in
    /// the attachment and the connection woken, which looks there before anything else. A
    /// field and the existing wake-up, rather than a channel per connection, because every
    /// idle connection would carry that channel. Must not be called with the session locked.
    pub fn kick(&self, reason: ReasonCode) -> bool {
        let mut state = self.state.lock();
        let Some(attachment) = state.attached.as_mut() else { return false };
        attachment.kicked.get_or_insert(reason);
        let parked = state.parked.take();
        drop(state);
        self.wake.notify_one();
        if let Some(parked) = parked {
            parked.resume();
        }
        true
    }

    /// Parks the attached connection with the session, unless something already waits for it
    /// (a kick, queued deliveries) or `watch` fails; `watch` starts watching its socket and
    /// runs under the session lock, so no wake-up falls between the check and the parking.
    /// Gives the connection back when it must go on running.
    pub fn park<P: Parked + 'static>(
        &self,
        connection: Box<P>,
        watch: impl FnOnce() -> bool,
    ) -> Result<(), Box<P>> {
        let mut state = self.state.lock();
        let waiting = state.attached.as_ref().is_none_or(|a| a.kicked.is_some())
            || !state.queue.is_empty()
            || state.ended;
        if waiting || state.parked.is_some() || !watch() {
            return Err(connection);
        }
        state.parked = Some(connection);
        Ok(())
    }

    /// Resumes the parked connection, if there is one: its socket has something, or the
    /// parking loop found it (or the connection it replaced) due.
    pub fn unpark(&self) {
        let parked = self.state.lock().parked.take();
        if let Some(parked) = parked {
            parked.resume();
        }
    }

    /// Resumes the parked connection if its deadline has come.
    pub fn unpark_if_due(&self, now: tokio::time::Instant) {
        let mut state = self.state.lock();
        if state.parked.as_ref().is_some_and(|p| p.deadline() <= now) {
            let parked = state.parked.take();
            drop(state);
            if let Some(parked) = parked {
                parked.resume();
            }
        }
    }

    /// The parked connection's deadline, if one is parked.
    pub fn parked_deadline(&self) -> Option<tokio::time::Instant> {
        self.state.lock().parked.as_ref().map(|p| p.deadline())
    }

    /// The reason the attached connection was asked to close for, if it was.
    pub fn kicked(&self) -> Option<ReasonCode> {
        self.state.lock().attached.as_ref().and_then(|a| a.kicked)
    }

    /// Records that a publisher waited a whole pause for this session in vain (see `stalled`).
    pub fn mark_stalled(&self) {
        if !self.stalled.swap(true, Ordering::Relaxed) {
            metrics::counter!(crate::telemetry::catalogue::SESSION_STALLS).increment(1);
            tracing::debug!(client_id = %self.client_id, "Subscriber stalled; publishers no longer wait for it.");
        }
    }

    /// Called when the session's queue is below its soft limit: publishers wait for it again.
    pub fn mark_draining(&self) {
        if self.stalled.load(Ordering::Relaxed) {
            self.stalled.store(false, Ordering::Relaxed);
        }
    }

    /// Locks the session state. Never hold the guard across an await.
    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock()
    }

    /// Offers a delivery to this session, applying the queue bounds of `config`. A QoS 1/2
    /// delivery to a session that outlives its connection is journaled; the ticket says when
    /// it is durable. Whether the session is congested afterwards is read under the same lock.
    pub fn enqueue(
        &self,
        delivery: Delivery,
        config: &MqttConfig,
        journal: Option<&Journal>,
        mut next_seq: impl FnMut() -> u64,
    ) -> Offered {
        let mut state = self.state.lock();
        // Only a queue that was empty needs a wake-up: the connection drains on every turn of
        // its loop, so a non-empty queue means it was woken already and has not run since, or
        // its in-flight window is full and the next acknowledgement it reads starts a drain.
        // Waking it per message cost a lock in `Notify` and a task wake-up per delivery.
        let wake = state.attached.is_some() && state.queue.is_empty();
        let mut ticket = None;
        let outcome =
            state.push(delivery, &self.client_id, config, journal, &mut next_seq, &mut ticket);
        if matches!(outcome, Enqueued::Skipped | Enqueued::Overflow) {
            return Offered { outcome, ticket, congested: false };
        }
        let congested = self.congested_in(&state, config);
        state.publishers_waiting |= congested;
        let parked = state.parked.take();
        drop(state);
        // Queued or Dropped: a queue that was empty now holds this delivery (a full one is
        // never empty, so a QoS 0 delivery dropped there never asks for a wake-up).
        if wake {
            self.wake.notify_one();
        }
        if let Some(parked) = parked {
            parked.resume();
        }
        Offered { outcome, ticket, congested }
    }
}

/// What `Session::reserve_run` granted a run.
#[derive(Debug, Clone, Copy)]
pub struct RunRoom {
    /// How many deliveries the session takes before it passes its soft limit: as many as
    /// asked when it does not hold publishers back (detached, stalled).
    pub room: usize,
    /// The part of `room` claimed from the session, given back by `enqueue_run`.
    pub reserved: usize,
}

impl Session {
    /// First half of queueing a run (see `Broker::publish_run`): how many of `wanted`
    /// deliveries fit, claimed until `enqueue_run` so that concurrent publishers do not count
    /// the same room twice. The room is up to twice the soft limit (and within the queue
    /// bound); a session already past half its byte bound has none. A run may so carry a
    /// subscriber past its soft limit, by at most the soft limit, and then its publishers
    /// pause as after any publish: a subscriber that keeps reading loses nothing to runs.
    pub fn reserve_run(&self, wanted: usize, config: &MqttConfig) -> RunRoom {
        let mut state = self.state.lock();
        if state.ended || state.attached.is_none() || self.stalled.load(Ordering::Relaxed) {
            return RunRoom { room: wanted, reserved: 0 };
        }
        let cap = config.max_queued_messages.min(2 * SessionState::soft_limit(config));
        let room = if state.queue.bytes() >= config.max_queued_bytes / 2 {
            0
        } else {
            cap.saturating_sub(state.queue.len() + state.reserved).min(wanted)
        };
        state.reserved += room;
        RunRoom { room, reserved: room }
    }

    /// Queues a run of deliveries (see `Broker::publish_run`) under one lock, with one
    /// wake-up, and gives back what `reserve_run` claimed. Each delivery meets the bounds and
    /// the journal as in `enqueue`; under `end-session` the first that overflows stops the run,
    /// and the caller must end the session.
    pub fn enqueue_run(
        &self,
        deliveries: impl Iterator<Item = Delivery>,
        reserved: usize,
        config: &MqttConfig,
        journal: Option<&Journal>,
        mut next_seq: impl FnMut() -> u64,
    ) -> RunOffered {
        let mut state = self.state.lock();
        state.reserved = state.reserved.saturating_sub(reserved);
        // As in `enqueue`: a queue that was not empty has its wake-up coming.
        let wake = state.attached.is_some() && state.queue.is_empty();
        let mut offered = RunOffered::default();
        for delivery in deliveries {
            match state.push(
                delivery,
                &self.client_id,
                config,
                journal,
                &mut next_seq,
                &mut offered.ticket,
            ) {
                Enqueued::Queued | Enqueued::Skipped | Enqueued::Dropped => {}
                Enqueued::Overflow => {
                    offered.overflow = true;
                    break;
                }
            }
        }
        offered.congested = self.congested_in(&state, config);
        state.publishers_waiting |= offered.congested;
        let parked = state.parked.take();
        let queued = !state.queue.is_empty();
        drop(state);
        if wake && queued {
            self.wake.notify_one();
        }
        if let Some(parked) = parked {
            parked.resume();
        }
        offered
    }
}

/// What `Session::enqueue_run` did with a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOffered {
    /// Durable once every stored delivery of the run is.
    pub ticket: Option<Ticket>,
    /// Whether the session's publishers should now pause (see `Session::is_congested`).
    pub congested: bool,
    /// The queue overflowed under `end-session`: the caller must end the session.
    pub overflow: bool,
}

impl SessionState {
    /// Queues one delivery within the bounds of `config`: a QoS 0 delivery is skipped when
    /// nobody is attached and dropped when the queue is full; a QoS 1/2 one makes room under
    /// `drop-oldest` or reports the overflow under `end-session`, and is journaled when the
    /// session outlives its connection (`ticket` then covers it).
    fn push(
        &mut self,
        mut delivery: Delivery,
        client_id: &Arc<str>,
        config: &MqttConfig,
        journal: Option<&Journal>,
        next_seq: &mut impl FnMut() -> u64,
        ticket: &mut Option<Ticket>,
    ) -> Enqueued {
        if self.ended || (self.attached.is_none() && delivery.qos == QoS::AtMostOnce) {
            return Enqueued::Skipped;
        }
        let size = delivery.size();
        let mut outcome = Enqueued::Queued;
        while self.queue.len() >= config.max_queued_messages
            || (self.queue.bytes() + size > config.max_queued_bytes && !self.queue.is_empty())
        {
            if delivery.qos == QoS::AtMostOnce {
                crate::telemetry::catalogue::DROPPED_QUEUE_FULL.increment(1);
                return Enqueued::Dropped;
            }
            match config.queue_full {
                QueueFull::EndSession => return Enqueued::Overflow,
                QueueFull::DropOldest => {
                    if let Some(old) = self.queue.pop_front()
                        && let (Some(journal), true) = (journal, old.seq != 0)
                    {
                        journal.delete_entry(client_id, old.seq, old.elidable);
                    }
                    crate::telemetry::catalogue::DROPPED_QUEUE_FULL.increment(1);
                    outcome = Enqueued::Dropped;
                }
            }
        }
        if let Some(journal) = journal
            && self.expiry_interval != 0
            && delivery.qos != QoS::AtMostOnce
        {
            delivery.seq = next_seq();
            let put = journal.append(persist::entry_op(client_id, &delivery, None));
            delivery.elidable = Some(put);
            *ticket = (*ticket).max(Some(put));
        }
        self.queue.push_back(delivery);
        outcome
    }

    /// At `publisher_pause_queue` messages, or past half of either queue bound.
    pub fn over_soft_limit(&self, config: &MqttConfig) -> bool {
        self.queue.len() >= Self::soft_limit(config)
            || self.queue.bytes() >= config.max_queued_bytes / 2
    }

    /// At or under half the soft limit, by count and by bytes: where a drain wakes the
    /// publishers that paused for this session. Waking them as soon as the queue dipped under
    /// the soft limit let each push one message and pause again; with a thousand subscribers
    /// behind one publisher, the publisher went from one barely drained queue to the next.
    pub fn under_low_water(&self, config: &MqttConfig) -> bool {
        self.queue.len() <= Self::soft_limit(config) / 2
            && self.queue.bytes() <= config.max_queued_bytes / 4
    }

    fn soft_limit(config: &MqttConfig) -> usize {
        config.max_queued_messages.div_ceil(2).min(config.publisher_pause_queue)
    }

    /// Takes the next queued delivery, if the in-flight window has room for it.
    pub fn next_delivery(&mut self) -> Option<Delivery> {
        let window = self.attached.as_ref().map_or(0, |a| a.window);
        let front = self.queue.front()?;
        if front.qos != QoS::AtMostOnce && self.inflight.len() >= window {
            return None;
        }
        self.queue.pop_front()
    }

    /// Puts a delivery in flight under a fresh packet id and returns that id.
    pub fn start_inflight(&mut self, delivery: Delivery) -> u16 {
        let packet_id = self.allocate_packet_id();
        let stage = match delivery.qos {
            QoS::ExactlyOnce => Stage::AwaitingPubRec,
            _ => Stage::AwaitingPubAck,
        };
        self.inflight.push_back(Inflight { packet_id, stage, delivery });
        packet_id
    }

    /// Removes the in-flight entry `packet_id` if it is at `stage`.
    pub fn finish_inflight(&mut self, packet_id: u16, stage: Stage) -> Option<Inflight> {
        let index =
            self.inflight.iter().position(|e| e.packet_id == packet_id && e.stage == stage)?;
        self.inflight.remove(index)
    }

    /// Moves `packet_id` from waiting for PUBREC to waiting for PUBCOMP.
    pub fn mark_released(&mut self, packet_id: u16) -> bool {
        match self.inflight.iter_mut().find(|e| e.packet_id == packet_id) {
            Some(entry) if entry.stage == Stage::AwaitingPubRec => {
                entry.stage = Stage::AwaitingPubComp;
                true
            }
            Some(entry) => entry.stage == Stage::AwaitingPubComp,
            None => false,
        }
    }

    /// Takes out every delivery that came through a shared subscription and has not reached
    /// the client for good (queued, or in flight before PUBREC), so another member can have it.
    pub fn take_shared(&mut self) -> Vec<Delivery> {
        let mut taken = Vec::new();
        self.queue.take_where(|delivery| delivery.shared.is_some(), &mut taken);
        let mut inflight = VecDeque::with_capacity(self.inflight.len());
        for entry in self.inflight.drain(..) {
            if entry.delivery.shared.is_some() && entry.stage != Stage::AwaitingPubComp {
                taken.push(entry.delivery);
            } else {
                inflight.push_back(entry);
            }
        }
        self.inflight = inflight;
        taken
    }

    /// Makes the allocator start after a recovered in-flight packet id.
    pub fn reserve_packet_id(&mut self, packet_id: u16) {
        self.next_packet_id = if packet_id == u16::MAX { 1 } else { packet_id + 1 };
        self.free_ahead = 0;
    }

    /// Packet ids wrap from 65535 to 1 and skip ids still in flight. Ids go out in order, so
    /// the in-flight id nearest ahead of the next one is usually the oldest, nearly a whole
    /// cycle away: one look through the window finds how many ids are free before it.
    fn allocate_packet_id(&mut self) -> u16 {
        while self.free_ahead == 0 {
            let next = u32::from(self.next_packet_id);
            // Ids run 1..=65535: the distance from `next` forward to `id`, around the cycle.
            let ahead = |id: u16| (u32::from(id) + 65_535 - next) % 65_535;
            let nearest = self.inflight.iter().map(|e| ahead(e.packet_id)).min().unwrap_or(65_535);
            if nearest == 0 {
                // `next` itself is in flight: look again from the one after it.
                self.next_packet_id = if next == 65_535 { 1 } else { self.next_packet_id + 1 };
            } else {
                self.free_ahead = u16::try_from(nearest).unwrap_or(u16::MAX);
            }
        }
        let id = self.next_packet_id;
        self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
        self.free_ahead -= 1;
        id
    }
}

#[cfg(test)]
mod tests;
