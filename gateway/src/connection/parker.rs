//! The parking loop: one task that watches every parked connection's socket, in one epoll
//! set of our own, and its deadline, in one heap, and resumes the connection when either
//! comes. What else wakes a parked connection (a delivery, a kick) goes through its session
//! (`Session::park`).
//!
//! A connection with a task of its own costs its task (about 1 KB), tokio's registration of its
//! socket (256 bytes) and its timer; a parked one costs its boxed state, one slot in the table
//! below and an entry in the heap (ARCHITECTURE.md, "Parked connections").

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use parking_lot::Mutex;
use tokio::io::unix::AsyncFd;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::broker::session::Session;

/// How many readiness events one turn of the loop takes from the epoll set.
const EVENTS: usize = 256;

/// Sockets at or above this descriptor are not parked: a heap entry keeps 24 bits for it.
const FD_LIMIT: usize = 1 << 24;
const FD_MASK: u64 = (1 << 24) - 1;

/// A parked socket's descriptor, known to be below [`FD_LIMIT`]: it fits the 24 bits a heap
/// entry keeps for it, and indexes the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot(u32);

impl Slot {
    /// The slot of `fd`; `None` for a descriptor that is not parked (negative, or too high).
    fn of(fd: RawFd) -> Option<Slot> {
        u32::try_from(fd).ok().filter(|&fd| (fd as usize) < FD_LIMIT).map(Slot)
    }

    /// The slot in the low 24 bits of a heap entry, which a `u32` holds whole.
    fn from_entry(entry: u64) -> Slot {
        Slot((entry & FD_MASK) as u32)
    }

    fn index(self) -> usize {
        self.0 as usize
    }
}

/// Heap entries beyond twice the parked connections (plus this) are swept: a connection that
/// is resumed and parks again leaves its old entry behind until it comes due.
const HEAP_SLACK: usize = 1024;

/// The parking loop's shared state; connections hold it to park and resume.
pub struct Parker {
    registry: mio::Registry,
    /// The session of each parked socket, indexed by file descriptor: descriptors are small
    /// and dense, so this costs 8 bytes per descriptor the process has open.
    sessions: Mutex<Table>,
    /// Parked connections' deadlines (keep-alive, credentials), earliest first, each packed
    /// with its socket into 8 bytes (see `Parker::entry`). An entry is only a reminder to look:
    /// the parked connection's own deadline decides.
    deadlines: Mutex<BinaryHeap<Reverse<u64>>>,
    /// What the packed deadlines count milliseconds from.
    epoch: Instant,
    /// Wakes the loop when a connection parks with a deadline earlier than any before.
    earlier: Notify,
    /// Where resumed connections are spawned: a wake-up can come from any thread.
    handle: Handle,
    /// How long a connection stays unparked without traffic (`mqtt.park_after_ms`).
    after: Duration,
}

#[derive(Default)]
struct Table {
    by_fd: Vec<Option<Arc<Session>>>,
    parked: usize,
}

impl Parker {
    /// Starts the parking loop on the current runtime; it stops on `shutdown` (the sessions'
    /// kicks resume every parked connection first, see `Broker::begin_shutdown`).
    pub fn start(
        after: Duration,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> io::Result<Arc<Parker>> {
        let poll = mio::Poll::new()?;
        let parker = Arc::new(Parker {
            registry: poll.registry().try_clone()?,
            sessions: Mutex::new(Table::default()),
            deadlines: Mutex::new(BinaryHeap::new()),
            epoch: Instant::now(),
            earlier: Notify::new(),
            handle: Handle::current(),
            after,
        });
        // The safe constructor is deprecated because a caller could close the descriptor while
        // it is registered; here the `AsyncFd` owns the `Poll`, and with it the descriptor,
        // for as long as the registration lasts. The replacement is `unsafe`, which we forbid.
        #[allow(deprecated, reason = "the AsyncFd owns the epoll descriptor it registers")]
        let events = AsyncFd::with_interest(poll, tokio::io::Interest::READABLE)?;
        tasks.spawn(parker.clone().run(events, shutdown));
        Ok(parker)
    }

    /// How long a connection stays unparked without traffic.
    pub fn after(&self) -> Duration {
        self.after
    }

    pub(super) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Starts watching `fd` for `session`'s parked connection; false if the epoll set refused
    /// it (the connection then goes on running). Called under the session lock.
    pub(super) fn watch(&self, fd: RawFd, session: &Arc<Session>) -> bool {
        let Ok(slot) = usize::try_from(fd) else { return false };
        if slot >= FD_LIMIT {
            return false;
        }
        let mut table = self.sessions.lock();
        if table.by_fd.len() <= slot {
            table.by_fd.resize(slot + 1, None);
        }
        if let Err(error) =
            self.registry.register(&mut SourceFd(&fd), Token(slot), Interest::READABLE)
        {
            warn!(%error, "Could not park a connection.");
            return false;
        }
        if table.by_fd[slot].replace(session.clone()).is_none() {
            table.parked += 1;
        }
        true
    }

    /// Stops watching `fd`: its connection was taken out of its session to be resumed.
    pub(super) fn unwatch(&self, fd: RawFd) {
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        let Ok(slot) = usize::try_from(fd) else { return };
        let mut table = self.sessions.lock();
        if table.by_fd.get_mut(slot).and_then(Option::take).is_some() {
            table.parked -= 1;
        }
    }

    /// Reminds the loop to look at `fd`'s connection at `deadline`.
    pub(super) fn schedule(&self, deadline: Instant, fd: RawFd) {
        // `watch` parks no socket outside the table, so there is nothing to look at then.
        let Some(slot) = Slot::of(fd) else { return };
        let entry = self.entry(deadline, slot);
        let mut heap = self.deadlines.lock();
        let earliest = heap.peek().is_none_or(|Reverse(first)| entry < *first);
        heap.push(Reverse(entry));
        let parked = self.sessions.lock().parked;
        if heap.len() > 2 * parked + HEAP_SLACK {
            heap.retain(|Reverse(entry)| self.is_current(*entry));
        }
        drop(heap);
        if earliest {
            self.earlier.notify_one();
        }
    }

    /// A heap entry: the deadline in whole milliseconds after `epoch`, rounded up so that an
    /// entry never comes due before its deadline, above the socket's 24 bits.
    fn entry(&self, deadline: Instant, slot: Slot) -> u64 {
        let after = deadline.saturating_duration_since(self.epoch);
        let ms = u64::try_from(after.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX >> 24);
        (ms.min(u64::MAX >> 24) << 24) | u64::from(slot.0)
    }

    /// When an entry comes due, and its socket.
    fn unpack(&self, entry: u64) -> (Instant, Slot) {
        let at = self.epoch + Duration::from_millis(entry >> 24);
        (at, Slot::from_entry(entry))
    }

    /// Whether the entry is that of a connection parked now with that deadline (else it is
    /// stale: the connection was resumed, and parked again with a new entry, or left).
    fn is_current(&self, entry: u64) -> bool {
        let (_, slot) = self.unpack(entry);
        self.session(slot)
            .and_then(|session| session.parked_deadline())
            .is_some_and(|deadline| self.entry(deadline, slot) == entry)
    }

    fn session(&self, slot: Slot) -> Option<Arc<Session>> {
        self.sessions.lock().by_fd.get(slot.index()).cloned().flatten()
    }

    async fn run(self: Arc<Self>, mut poll: AsyncFd<mio::Poll>, shutdown: CancellationToken) {
        let mut events = Events::with_capacity(EVENTS);
        let far = || Instant::now() + Duration::from_secs(3600);
        let timer = tokio::time::sleep_until(far());
        tokio::pin!(timer);
        loop {
            let next = self.deadlines.lock().peek().map(|Reverse(entry)| self.unpack(*entry).0);
            let next = next.unwrap_or_else(far);
            if next != timer.deadline() {
                timer.as_mut().reset(next);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                ready = poll.readable_mut() => {
                    let mut guard = match ready {
                        Ok(guard) => guard,
                        Err(error) => {
                            // Only when the runtime's reactor is gone, that is at exit.
                            warn!(%error, "The parking loop lost its reactor.");
                            return;
                        }
                    };
                    // Our epoll set is itself watched edge-triggered: take every event it
                    // holds before saying it is drained.
                    loop {
                        if let Err(error) = guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                            if error.kind() == io::ErrorKind::Interrupted {
                                continue;
                            }
                            warn!(%error, "Parked connections could not be polled.");
                            break;
                        }
                        if events.is_empty() {
                            break;
                        }
                        for event in &events {
                            if let Some(slot) = RawFd::try_from(event.token().0).ok().and_then(Slot::of)
                                && let Some(session) = self.session(slot)
                            {
                                session.unpark();
                            }
                        }
                    }
                    guard.clear_ready();
                }
                () = &mut timer => {
                    let now = Instant::now();
                    let mut due = Vec::new();
                    {
                        let mut heap = self.deadlines.lock();
                        while let Some(Reverse(entry)) = heap.peek().copied() {
                            if self.unpack(entry).0 > now {
                                break;
                            }
                            heap.pop();
                            due.push(entry);
                        }
                    }
                    for entry in due {
                        let (_, slot) = self.unpack(entry);
                        if let Some(session) = self.session(slot) {
                            session.unpark_if_due(now);
                        }
                    }
                }
                () = self.earlier.notified() => {}
            }
        }
    }
}
