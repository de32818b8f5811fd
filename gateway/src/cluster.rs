//! Cluster mode: gridmq nodes that share their MQTT state through NATS JetStream.
//!
//! A node keeps its connections, its local fan-out and its timers; what must outlive it lives
//! in JetStream with the configured replicas (see `store.rs` for the layout). We write no
//! consensus of our own: JetStream's streams and buckets are the replicated engine.
//!
//! - `config`: the `[cluster]` table. `link`: the NATS connection, streams and buckets.
//! - `store`: the journal's ops written to JetStream, so a PUBACK still means "stored".
//! - `forward`: this node's publishes sent on (QoS 1/2 through the journal, QoS 0 on core NATS).
//! - `inbound`: the other nodes' publishes fanned out here, and the retained index kept equal.
//! - `events`: the routing log: routed events per event subscription, leased by any node.
//! - `dispatch_lease`: which node pushes each push subscription, one at a time.
//! - `locks`: pull delivery's lock operations other nodes send to the node holding the locks.
//! - `resources`: namespace resources any node's management API changes (access control,
//!   namespace topics and event subscriptions), applied on every node.
//! - `shared`: `$share` groups with members on several nodes, each message to one member.
//! - `subject`: MQTT topics as NATS subjects, injective and safe for every legal topic.
//! - `watch`: one supervised bucket watch, restarted after errors and when found behind.
//! - `sessions`: which node holds each session; sessions moving between nodes, adopted when
//!   their node dies.
//!
//! Fencing: a node cut off from NATS for `fence_after_ms` disconnects all its clients, so that
//! no client is served by a node that can no longer store what it acknowledges, and another
//! node may take its sessions over. While it is cut off, the journal's commits fail and are
//! retried, so no QoS 1/2 publish is acknowledged.

pub mod config;
pub mod dispatch_lease;
pub mod events;
pub mod forward;
pub mod inbound;
pub mod link;
pub mod locks;
pub mod resources;
pub mod sessions;
pub mod shared;
pub mod store;
pub mod subject;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tracing::warn;

pub use self::config::{ClusterConfig, ClusterConfigError};
use self::link::Link;
pub use self::link::LinkError;
use crate::broker::Broker;
use crate::mqtt::ReasonCode;
use crate::store::{Storage, StoreConfig, StoreError};

/// Room left in a NATS message for what is not the MQTT packet: the record's expiry, and the
/// headers (origin, publisher, message id).
const RECORD_OVERHEAD: usize = 8 * 1024;

/// A node's membership in the cluster.
pub struct Cluster {
    pub link: Arc<Link>,
    pub node: Arc<str>,
    /// Random per process (see `store.rs`, message ids).
    pub incarnation: u64,
    /// The message stream's sequence this node has fanned out up to.
    pub applied: Arc<AtomicU64>,
    /// Held by the message stream's reader for each message it fans out, and by whatever must
    /// see `applied` stand still (a session being loaded and replayed).
    pub gate: Arc<tokio::sync::Mutex<()>>,
    pub config: ClusterConfig,
    /// The routing log (`events.rs`).
    pub events: Arc<events::Events>,
}

impl Cluster {
    /// Connects to NATS (waiting up to `connect_timeout_secs`) and opens the streams and
    /// buckets, creating them when this is the first node.
    pub async fn join(config: &ClusterConfig) -> Result<Cluster, LinkError> {
        let node: Arc<str> = config.node().into();
        let link = Arc::new(Link::open(config, &node).await?);
        // A stream or bucket another node has just created may not answer for a moment
        // (its replicas are still forming their group): both reads are retried, bounded.
        let deadline = tokio::time::Instant::now() + config.connect_timeout();
        let last = retried(deadline, || async {
            link.messages.clone().info().await.map(|info| info.state.last_sequence)
        })
        .await
        .map_err(|problem| LinkError::Create {
            what: format!("stream {}", link.names.messages),
            replicas: config.replicas,
            problem,
        })?;
        let incarnation = random_u64();
        // Alive before any client can claim a session here: another node's janitor must not
        // take this run's first sessions for a dead node's.
        retried(deadline, || {
            link.nodes.put(store::name_key(&node), incarnation.to_string().into())
        })
        .await
        .map_err(|problem| LinkError::Create {
            what: format!("bucket {}", link.names.nodes),
            replicas: config.replicas,
            problem,
        })?;
        Ok(Cluster {
            events: Arc::new(events::Events::new(link.clone(), node.clone())),
            link,
            node,
            incarnation,
            applied: Arc::new(AtomicU64::new(last)),
            gate: Arc::new(tokio::sync::Mutex::new(())),
            config: config.clone(),
        })
    }

    /// The routing log the router keeps its events in.
    pub fn routing_log(&self) -> Arc<dyn crate::routing::shared::SharedLog> {
        self.events.clone()
    }

    /// The largest MQTT packet whose message fits in one NATS message: the server's
    /// `max_payload` less room for the record's header and the NATS headers.
    pub fn max_packet_size(&self) -> u32 {
        let max_payload = self.link.client.server_info().max_payload;
        u32::try_from(max_payload.saturating_sub(RECORD_OVERHEAD)).unwrap_or(u32::MAX).max(64)
    }

    /// The namespace resources the cluster holds, as (kind, name, JSON body), and the bucket's
    /// revision they include at least: [`Cluster::replicate_resources`] watches from there.
    pub async fn resources(&self) -> Result<(Vec<(String, String, Vec<u8>)>, u64), StoreError> {
        let backend =
            |e: &dyn std::fmt::Display| StoreError::Backend(format!("read resources: {e}"));
        // Read before the keys: a change between the two is read and then applied again,
        // which changes nothing, rather than missed.
        let mut stream = self.link.resources.stream.clone();
        let revision = stream.info().await.map_err(|e| backend(&e))?.state.last_sequence;
        let mut keys = self.link.resources.keys().await.map_err(|e| backend(&e))?;
        let mut found = Vec::new();
        while let Some(key) = futures_util::StreamExt::next(&mut keys).await {
            let key = key.map_err(|e| backend(&e))?;
            let Some((kind, name)) = key.split_once('.') else { continue };
            let Some(name) = store::key_name(name) else { continue };
            if let Some(value) = self.link.resources.get(&key).await.map_err(|e| backend(&e))? {
                found.push((kind.to_string(), name, value.to_vec()));
            }
        }
        found.sort();
        Ok((found, revision))
    }

    /// Applies on this node every namespace change any node makes after `revision` (see
    /// `resources.rs`): access control to `namespace`, namespace topics and event subscriptions
    /// to `router`, until the broker shuts down. A node without one of them (its config turns
    /// no access control on, or has no routing and no management API, and the cluster held
    /// none of those resources when it started) has nothing to apply those changes to, which
    /// its log says.
    pub fn replicate_resources(
        &self,
        broker: &Arc<Broker>,
        namespace: Option<&Arc<crate::namespace::Namespace>>,
        router: Option<&Arc<crate::routing::Router>>,
        revision: u64,
    ) {
        if namespace.is_none() {
            tracing::info!(
                node = %self.node,
                "No access control on this node: namespace resources other nodes create do not \
                 apply here until it restarts with them (or with [management] or [auth])."
            );
        }
        if router.is_none() {
            tracing::info!(
                node = %self.node,
                "No routing on this node: namespace topics other nodes create do not apply here \
                 until it restarts with them (or with [management])."
            );
        }
        if namespace.is_none() && router.is_none() {
            return;
        }
        broker.tasks.spawn(resources::replicate(
            self.link.clone(),
            namespace.cloned(),
            router.cloned(),
            revision,
            broker.shutdown.clone(),
        ));
    }

    /// The journal over the cluster's store. The routing tables stay in the local data
    /// directory (none in in-memory mode).
    pub fn storage(
        &self,
        config: &StoreConfig,
        resources: Vec<(String, String, Vec<u8>)>,
    ) -> Result<Storage, StoreError> {
        let local = match config.in_memory {
            true => None,
            false => {
                let local = crate::store::redb::RedbStore::open(&config.data_dir)?;
                crate::routing::offline::mark_cluster(
                    &config.data_dir,
                    &self.link.names.prefix,
                    &self.link.names.dead_letters,
                )?;
                Some(local)
            }
        };
        let store = store::ClusterStore::new(
            self.link.clone(),
            self.node.clone(),
            self.incarnation,
            local,
            resources,
        )?;
        Storage::over(Arc::new(store), config)
    }

    /// Starts forwarding this node's publishes and fanning out the other nodes', and the
    /// fencing watch. Every task stops with the broker.
    pub fn attach(&self, broker: &Arc<Broker>, readiness: &Arc<crate::readiness::Readiness>) {
        let Some(journal) = broker.journal().cloned() else { return };
        let (forwarder, qos0) = forward::ClusterForwarder::new(journal, &self.link.names.prefix);
        broker.set_forwarder(Arc::new(forwarder));
        let directory = sessions::Sessions::new(self, broker);
        broker.set_directory(Arc::new(sessions::Directory(directory.clone())));
        directory.start(broker, broker.shutdown.clone());
        let stop = broker.shutdown.clone();
        let link = &self.link;
        let node = &self.node;
        broker.tasks.spawn(forward::send_qos0(
            link.client.clone(),
            node.clone(),
            qos0,
            stop.clone(),
        ));
        broker.tasks.spawn(inbound::messages(
            link.clone(),
            broker.clone(),
            node.clone(),
            self.applied.clone(),
            self.gate.clone(),
            stop.clone(),
        ));
        broker.tasks.spawn(inbound::qos0(link.clone(), broker.clone(), node.clone(), stop.clone()));
        broker.tasks.spawn(inbound::retained(link.clone(), broker.clone(), stop.clone()));
        let shares =
            Arc::new(shared::Shares::new(node.clone(), self.applied.clone(), self.gate.clone()));
        broker.set_share_selector(shares.clone());
        broker.tasks.spawn(shared::announce(
            shares.clone(),
            link.clone(),
            broker.clone(),
            stop.clone(),
        ));
        broker.tasks.spawn(shared::watch(shares, link.clone(), stop.clone()));
        broker.tasks.spawn(self.events.clone().count(stop.clone()));
        let entry = readiness.register(
            crate::readiness::Component::Cluster,
            format!("nats (node {node})"),
            "NATS connection lost",
        );
        entry.ready();
        broker.tasks.spawn(fence(link.clone(), broker.clone(), self.config.fence_after(), entry));
    }
}

/// Runs `attempt` until it succeeds or `deadline` passes, 200 ms apart; the last error's text.
async fn retried<T, E, F, Fut>(deadline: tokio::time::Instant, mut attempt: F) -> Result<T, String>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if tokio::time::Instant::now() >= deadline => return Err(error.to_string()),
            Err(error) => {
                tracing::debug!(%error, "Cluster start-up read failed; retrying.");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// A random number from the system's generator (a fixed one would do harm only to dedup).
fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Disconnects every client of this node once NATS has been unreachable for `after`, and
/// keeps `/readyz` saying so while it is.
async fn fence(
    link: Arc<Link>,
    broker: Arc<Broker>,
    after: std::time::Duration,
    entry: crate::readiness::Entry,
) {
    let stop = broker.shutdown.clone();
    loop {
        let changed = link.changes.notified();
        let connected = link.is_connected();
        metrics::gauge!(crate::telemetry::catalogue::CLUSTER_NATS_CONNECTED)
            .set(f64::from(u8::from(connected)));
        if connected {
            entry.ready();
            if stop.run_until_cancelled(changed).await.is_none() {
                return;
            }
            continue;
        }
        entry.not_ready("NATS connection lost");
        let reconnected = tokio::time::timeout(after, changed);
        match stop.run_until_cancelled(reconnected).await {
            None => return,
            Some(Ok(())) => continue,
            Some(Err(_)) if link.is_connected() => continue,
            Some(Err(_)) => {
                let sessions = broker.sessions_snapshot();
                warn!(
                    clients = sessions.len(),
                    after_ms = after.as_millis() as u64,
                    "NATS unreachable: disconnecting every client (fencing)."
                );
                metrics::counter!(crate::telemetry::catalogue::CLUSTER_FENCED).increment(1);
                for session in sessions {
                    // 0x89 Server busy: 0x88 (Server unavailable) is a CONNACK code only.
                    session.kick(ReasonCode::ServerBusy);
                }
                // Wait for the connection to come back before fencing again.
                while !link.is_connected() {
                    let changed = link.changes.notified();
                    if stop.run_until_cancelled(changed).await.is_none() {
                        return;
                    }
                }
            }
        }
    }
}
