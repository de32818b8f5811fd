//! Sessions anywhere, one at a time: which node holds each client's session, and how a session
//! moves to the node its client connects to, or to a live node when its own dies.
//!
//! - Ownership: bucket `owners`, key `client_key(id)` → [`Owner`]. Every CONNECT claims its
//!   client id first (`broker::SessionDirectory::claim`), under a per-client lock of this node,
//!   so that another node's request for the same session waits for the claim and the attach.
//!   Each claim also counts the connection in the entry (lifecycle events' sequence number);
//!   when a session ends, its entry is vacated (it names no node) rather than deleted, so
//!   that the count goes on.
//! - Release (`release.rs`): a node asked for a session (`<p>.ctl.<node>.release`) kicks its
//!   connection with 0x8E, waits until it let go, evicts it (its stored state stays whole),
//!   flushes its journal so every delivery it queued is stored, and answers with the log
//!   position E it had fanned out up to when it evicted the session.
//! - Load (`load.rs`): the claiming node reads the session's state from the sessions bucket and
//!   replays from the message log every message after E that matches its filters.
//! - Liveness (`liveness.rs`): every node says it is alive in bucket `nodes` each second and
//!   writes the log position its journal has stored everything up to (`a.<node>.<incarnation>`
//!   in the owners bucket; the janitor deletes it once no owner entry names that run).
//! - Dead owners (`janitor.rs`): a session whose owner is not alive is adopted by one node (the
//!   claim is a compare-and-set), offline: its expiry and its will run there. A will is stored
//!   at CONNECT in cluster mode, marked "connected", so the adopter publishes it once, its
//!   delay after adopting.
//!
//! A message may reach a moving session twice (QoS 1 is at-least-once) but never not at all.

mod janitor;
mod liveness;
mod load;
mod release;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::kv::UpdateErrorKind;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::link::Link;
use super::store::{client_key, key_name, name_key};
use crate::broker::{Broker, ClaimGuard, ClaimRefused, SessionDirectory};
use crate::store::Op;

/// How many times a claim reads the owner and tries to take it over before it gives up.
const CLAIM_TRIES: usize = 10;

/// The pause between two tries of a claim.
const CLAIM_PAUSE: Duration = Duration::from_millis(100);

/// How long a release waits for the session's connection to let go of it.
const DETACH_WAIT: Duration = Duration::from_secs(4);

/// How often a node says it is alive and stores its position in the log.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a node may fail to say it is alive before it takes itself for dead (the `nodes`
/// bucket forgets a node 5 s after its last heartbeat).
const PRESUMED_DEAD: Duration = Duration::from_secs(4);

/// The most release requests handled at once; more wait in the subscription's own bound.
const MAX_RELEASES: usize = 256;

/// Who holds a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub node: String,
    pub incarnation: u64,
    /// Counts the session's moves.
    pub epoch: u64,
    /// The log position the owner's copy of the session was complete up to when it took the
    /// session: a floor for the next owner's replay if this one dies.
    #[serde(default)]
    pub from: u64,
    /// How many connections the client id has had, cluster-wide: each CONNECT's claim counts
    /// one, and the count is the connection's lifecycle sequence number (Event Grid numbers a
    /// client's connections on whichever node they land). The entry stays, naming no node,
    /// when the session ends, so that the count goes on.
    #[serde(default)]
    pub connections: u64,
}

impl Owner {
    /// Whether the entry names no node: its session ended (or the entry was unreadable).
    pub fn is_vacant(&self) -> bool {
        self.node.is_empty()
    }

    /// The entry of a session that ended: no owner, the same connection count.
    fn vacated(&self) -> Owner {
        Owner { node: String::new(), incarnation: 0, ..self.clone() }
    }
}

/// A release request.
#[derive(Debug, Serialize, Deserialize)]
struct Release {
    client_id: String,
    /// The run of the owner the requester means; another run answers [`Released::NotMe`].
    incarnation: u64,
    /// Only asks whether that run is alive: it answers [`Released::Busy`] and keeps the
    /// session.
    #[serde(default)]
    probe: bool,
}

/// A release answer.
#[derive(Debug, Serialize, Deserialize)]
enum Released {
    /// Released (or not held here): its state is stored complete up to log position
    /// `applied`, and the owner entry, when it still names the releasing node, is at
    /// `revision` (the releasing node wrote `applied` into it as the next owner's floor).
    /// `session` is the released session's number on the releasing node (`Gm-Pub` of what
    /// it published there), for No Local in the replay.
    Upto { applied: u64, revision: Option<u64>, session: Option<u64> },
    /// This is another run of the node: the one asked for is gone.
    NotMe,
    /// The session's connection did not let go in time; try again.
    Busy,
}

/// The session on the node it was released from, for No Local in the replay.
pub(super) struct Previous {
    node: String,
    session: u64,
}

/// What became of a release request.
enum Outcome {
    Released { applied: u64, revision: Option<u64>, session: Option<u64> },
    Gone,
    Busy,
}

/// The cluster's [`SessionDirectory`].
pub struct Sessions {
    link: Arc<Link>,
    node: Arc<str>,
    /// This node's run as the owners bucket knows it: the process's, until the node was cut
    /// off long enough to be taken for dead (see `start_over`).
    incarnation: AtomicU64,
    applied: Arc<AtomicU64>,
    gate: Arc<tokio::sync::Mutex<()>>,
    release_timeout: Duration,
    broker: Weak<Broker>,
    runtime: tokio::runtime::Handle,
    /// One lock per client id being claimed, released or adopted on this node.
    locks: parking_lot::Mutex<HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds a client id's lock on this node; the map entry goes with the last holder.
struct ClientLock {
    sessions: Arc<Sessions>,
    client_id: Arc<str>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for ClientLock {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self.sessions.locks.lock();
        if locks.get(&self.client_id).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            locks.remove(&self.client_id);
        }
    }
}

/// Why a step of a claim failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("the broker is gone")]
    Stopped,
    #[error("stored session state: {0}")]
    Store(#[from] crate::store::StoreError),
}

fn nats(error: impl std::fmt::Display) -> SessionsError {
    SessionsError::Nats(error.to_string())
}

impl Sessions {
    pub fn new(cluster: &super::Cluster, broker: &Arc<Broker>) -> Arc<Sessions> {
        Arc::new(Sessions {
            link: cluster.link.clone(),
            node: cluster.node.clone(),
            incarnation: AtomicU64::new(cluster.incarnation),
            applied: cluster.applied.clone(),
            gate: cluster.gate.clone(),
            release_timeout: Duration::from_millis(cluster.config.release_timeout_ms),
            broker: Arc::downgrade(broker),
            runtime: tokio::runtime::Handle::current(),
            locks: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// Starts the tasks: release requests, heartbeat and the janitor. Each stops on `stop`.
    pub fn start(self: &Arc<Self>, broker: &Arc<Broker>, stop: CancellationToken) {
        broker.tasks.spawn(self.clone().serve_releases(stop.clone()));
        broker.tasks.spawn(self.clone().heartbeat(stop.clone()));
        broker.tasks.spawn(self.clone().janitor(stop));
    }

    fn broker(&self) -> Result<Arc<Broker>, SessionsError> {
        self.broker.upgrade().ok_or(SessionsError::Stopped)
    }

    fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::SeqCst)
    }

    fn me(&self, epoch: u64, from: u64, connections: u64) -> Owner {
        Owner {
            node: self.node.to_string(),
            incarnation: self.incarnation(),
            epoch,
            from,
            connections,
        }
    }

    fn is_me(&self, owner: &Owner) -> bool {
        *owner.node == *self.node && owner.incarnation == self.incarnation()
    }

    async fn lock(self: &Arc<Self>, client_id: &Arc<str>) -> ClientLock {
        let lock = self.locks.lock().entry(client_id.clone()).or_default().clone();
        let guard = lock.lock_owned().await;
        ClientLock { sessions: self.clone(), client_id: client_id.clone(), guard: Some(guard) }
    }

    /// The subject a node answers release requests on.
    fn release_subject(&self, node: &str) -> String {
        format!("{}.ctl.{}.release", self.link.names.prefix, name_key(node))
    }

    /// The owners-bucket key of a node run's stored log position (not a client key: those
    /// hold no `.`).
    fn marker_key(node: &str, incarnation: u64) -> String {
        format!("a.{}.{incarnation:x}", name_key(node))
    }

    /// The owner entry of `key` with its revision; `None` when there is none.
    async fn owner(&self, key: &str) -> Result<Option<(Owner, u64)>, SessionsError> {
        let Some(entry) = self.link.owners.entry(key).await.map_err(nats)? else {
            return Ok(None);
        };
        if entry.operation != async_nats::jetstream::kv::Operation::Put {
            // A deleted entry: `create` takes it.
            return Ok(None);
        }
        match serde_json::from_slice::<Owner>(&entry.value) {
            Ok(owner) => Ok(Some((owner, entry.revision))),
            Err(error) => {
                // Unreadable: taken over as if its owner were gone.
                warn!(key, %error, "An unreadable session owner entry; taking it over.");
                let gone = Owner {
                    node: String::new(),
                    incarnation: 0,
                    epoch: 0,
                    from: 0,
                    connections: 0,
                };
                Ok(Some((gone, entry.revision)))
            }
        }
    }

    /// Whether the run of the node named in `owner` is alive.
    async fn is_live(&self, owner: &Owner) -> Result<bool, SessionsError> {
        if owner.node.is_empty() {
            return Ok(false);
        }
        let value = self.link.nodes.get(name_key(&owner.node)).await.map_err(nats)?;
        Ok(value.is_some_and(|v| v == owner.incarnation.to_string().as_bytes()))
    }

    /// The log position a dead owner had stored everything up to.
    async fn floor(&self, owner: &Owner) -> Result<u64, SessionsError> {
        if owner.node.is_empty() {
            return Ok(owner.from);
        }
        let key = Sessions::marker_key(&owner.node, owner.incarnation);
        let value = self.link.owners.get(key).await.map_err(nats)?;
        let marker = value
            .and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse::<u64>().ok()))
            .unwrap_or(0);
        Ok(marker.max(owner.from))
    }

    /// Asks the owner to let go of the session.
    async fn release(&self, owner: &Owner, client_id: &str) -> Result<Outcome, SessionsError> {
        self.ask(owner, client_id, false).await
    }

    /// Asks the owner to let go of the session, or with `probe` only whether it is alive
    /// (`Busy` then means alive).
    async fn ask(
        &self,
        owner: &Owner,
        client_id: &str,
        probe: bool,
    ) -> Result<Outcome, SessionsError> {
        if owner.node.is_empty() {
            return Ok(Outcome::Gone);
        }
        let request =
            Release { client_id: client_id.to_string(), incarnation: owner.incarnation, probe };
        let payload = serde_json::to_vec(&request).map_err(nats)?;
        let subject = self.release_subject(&owner.node);
        let asked = self.link.client.request(subject, payload.into());
        match tokio::time::timeout(self.release_timeout, asked).await {
            Ok(Ok(reply)) => match serde_json::from_slice::<Released>(&reply.payload) {
                Ok(Released::Upto { applied, revision, session }) => {
                    Ok(Outcome::Released { applied, revision, session })
                }
                Ok(Released::NotMe) => Ok(Outcome::Gone),
                Ok(Released::Busy) => Ok(Outcome::Busy),
                Err(error) => Err(nats(format!("a release answer does not decode: {error}"))),
            },
            Ok(Err(error)) if error.kind() == async_nats::RequestErrorKind::NoResponders => {
                Ok(Outcome::Gone)
            }
            Ok(Err(error)) if error.kind() != async_nats::RequestErrorKind::TimedOut => {
                Err(nats(error))
            }
            // No answer in time: gone if its heartbeat is, else busy.
            _ => match self.is_live(owner).await? {
                true => Ok(Outcome::Busy),
                false => Ok(Outcome::Gone),
            },
        }
    }

    /// Waits until this node's journal has stored everything appended so far.
    async fn flush(&self, broker: &Broker) {
        let ticket = broker.journal_append(|| Op::Nop);
        broker.durable(ticket).await;
    }

    /// One try of a claim: the connection's number among the client id's connections, or
    /// `None` when it lost a race and should try again.
    async fn try_claim(
        self: &Arc<Self>,
        client_id: &Arc<str>,
        clean_start: bool,
    ) -> Result<Option<u64>, SessionsError> {
        let broker = self.broker()?;
        let key = client_key(client_id);
        let entry = self.owner(&key).await?;
        // Every write below is a compare-and-set of the entry read here, so two claims never
        // get the same number.
        let connection = entry.as_ref().map_or(0, |(owner, _)| owner.connections) + 1;
        let applied = self.applied.load(Ordering::SeqCst);
        let Some((owner, revision)) = entry else {
            let mine = serde_json::to_vec(&self.me(1, applied, connection)).map_err(nats)?;
            return match self.link.owners.create(&key, mine.into()).await {
                Ok(_) => Ok(Some(connection)),
                Err(error)
                    if error.kind()
                        == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists =>
                {
                    Ok(None)
                }
                Err(error) => Err(nats(error)),
            };
        };
        if owner.is_vacant() {
            // The session ended: there is nothing to load, as when there is no entry.
            let taken = self.take(&key, &owner, revision, applied, connection).await?;
            return Ok(taken.then_some(connection));
        }
        if self.is_me(&owner) {
            if broker.session(client_id).is_some() {
                // Here already: the write only counts the connection.
                let counted = Owner { connections: connection, ..owner };
                return Ok(self.write(&key, &counted, revision).await?.then_some(connection));
            }
            // Ours, but not here: released to another node that has not written its claim
            // yet, or an earlier session that ended, or a load that failed. The entry is
            // written again, so that a claim racing this one from the other node fails.
            if !self.take(&key, &owner, revision, owner.from, connection).await? {
                return Ok(None);
            }
            if clean_start {
                broker.journal_append(|| Op::DeleteSession(client_id.clone()));
            } else {
                // Loaded from what is stored, once our own journal has stored all of it.
                self.flush(&broker).await;
                self.load(&broker, client_id, owner.from, None).await?;
            }
            return Ok(Some(connection));
        }
        // Asked even when its heartbeat looks gone (a read may lag): a dead run has no
        // responders, and a new run of the node answers that it is not the one.
        let (from, revision, previous) = match self.release(&owner, client_id).await? {
            Outcome::Released { applied, revision: now, session } => {
                let previous =
                    session.map(|session| Previous { node: owner.node.clone(), session });
                (applied, now.unwrap_or(revision), previous)
            }
            Outcome::Gone => (self.floor(&owner).await?, revision, None),
            Outcome::Busy => return Ok(None),
        };
        if !self.take(&key, &owner, revision, from, connection).await? {
            return Ok(None);
        }
        debug!(client_id = %client_id, from = %owner.node, "Took a session over from another node.");
        if let Some(stale) = broker.session(client_id) {
            // A copy left from before this node lost the session: the stored one is newer.
            broker.evict(&stale);
        }
        if clean_start {
            broker.journal_append(|| Op::DeleteSession(client_id.clone()));
        } else {
            self.load(&broker, client_id, from, previous).await?;
        }
        Ok(Some(connection))
    }

    /// Compare-and-set of the owner entry to this node, with `connections` counted; `false`
    /// when another write won.
    async fn take(
        &self,
        key: &str,
        owner: &Owner,
        revision: u64,
        from: u64,
        connections: u64,
    ) -> Result<bool, SessionsError> {
        self.write(key, &self.me(owner.epoch + 1, from, connections), revision).await
    }

    /// Compare-and-set of the owner entry; `false` when another write won.
    async fn write(&self, key: &str, owner: &Owner, revision: u64) -> Result<bool, SessionsError> {
        let value = serde_json::to_vec(owner).map_err(nats)?;
        match self.link.owners.update(key, value.into(), revision).await {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(error) => Err(nats(error)),
        }
    }

    /// Vacates the owner entry of a session that ended here, if it still names this node.
    async fn forget(self: Arc<Self>, client_id: Arc<str>) {
        let _lock = self.lock(&client_id).await;
        let Ok(broker) = self.broker() else { return };
        if broker.session(&client_id).is_some() {
            return;
        }
        let key = client_key(&client_id);
        match self.owner(&key).await {
            Ok(Some((owner, revision))) if self.is_me(&owner) => {
                if let Err(error) = self.write(&key, &owner.vacated(), revision).await {
                    debug!(%error, client_id = %client_id, "Could not vacate a session's owner entry.");
                }
            }
            Ok(_) => {}
            Err(error) => {
                debug!(%error, client_id = %client_id, "Could not read a session's owner entry.")
            }
        }
    }
}

/// The broker's handle on [`Sessions`]: the claims' futures and the clean-up tasks share it.
pub struct Directory(pub Arc<Sessions>);

impl SessionDirectory for Directory {
    fn claim(
        &self,
        client_id: Arc<str>,
        clean_start: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<ClaimGuard, ClaimRefused>> + Send>>
    {
        let this = self.0.clone();
        Box::pin(async move {
            // A node cut off from NATS cannot learn who holds the session: it says so at once
            // rather than after every try timed out.
            if !this.link.is_connected() {
                return Err(ClaimRefused("NATS is unreachable".into()));
            }
            let lock = this.lock(&client_id).await;
            // A client waits for its CONNACK meanwhile: a claim gets about two release
            // timeouts, however its tries went.
            let deadline = tokio::time::Instant::now() + this.release_timeout * 2;
            let mut last = String::from("no try");
            for attempt in 0..CLAIM_TRIES {
                if attempt > 0 {
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(CLAIM_PAUSE).await;
                }
                match this.try_claim(&client_id, clean_start).await {
                    Ok(Some(connection)) => {
                        return Ok(ClaimGuard { connection, hold: Box::new(lock) });
                    }
                    Ok(None) => last = "lost every race for it".into(),
                    Err(error) => last = error.to_string(),
                }
            }
            Err(ClaimRefused(last))
        })
    }

    fn ended(&self, client_id: &Arc<str>) {
        self.0.runtime.spawn(self.0.clone().forget(client_id.clone()));
    }
}

/// The client id a key of the owners bucket stands for.
pub fn owner_client(key: &str) -> Option<Arc<str>> {
    key_name(key).map(Into::into)
}
