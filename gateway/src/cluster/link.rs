//! The node's connection to NATS: connecting with a bounded wait, the streams and buckets the
//! cluster keeps, and whether the connection is up right now (for fencing and `/readyz`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, StorageType};
use tracing::{info, warn};

use super::config::ClusterConfig;

/// Why the cluster could not start. Each names the `[cluster]` field to look at.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cluster.nats_urls: no NATS server answered within {secs} s ({urls}): {last}")]
    Unreachable { secs: u64, urls: String, last: String },
    #[error("cluster: cannot read {field}: {source}")]
    Credentials { field: &'static str, source: std::io::Error },
    #[error("cluster.replicas: cannot create {what} with {replicas} replicas: {problem}")]
    Create { what: String, replicas: usize, problem: String },
}

/// The names of what the cluster keeps in JetStream, all under `subject_prefix`.
#[derive(Debug, Clone)]
pub struct Names {
    pub prefix: String,
    /// Stream of QoS 1/2 messages: every node reads it, and sessions that move replay from it.
    pub messages: String,
    /// Buckets: session state (records, queued deliveries, inbound QoS 2 ids, wills), retained
    /// messages, session ownership, namespace resources, node liveness.
    pub sessions: String,
    pub retained: String,
    pub owners: String,
    pub resources: String,
    pub nodes: String,
    /// Which nodes have members of which shared subscription (`shared.rs`).
    pub shares: String,
    /// Stream of routed events, one subject per event subscription (`events.rs`).
    pub events: String,
    /// Stream of dead-letter records, one subject per event subscription.
    pub dead_letters: String,
    /// Bucket of the secret pull delivery's lock tokens are signed with (`routing::queue`).
    pub locks: String,
    /// Bucket: which node pushes each push subscription (`dispatch_lease.rs`).
    pub dispatch: String,
    /// Bucket: the delivery attempts made on each routed event that push delivery retries
    /// (`events.rs`).
    pub attempts: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        let upper = prefix.to_ascii_uppercase();
        Names {
            prefix: prefix.to_string(),
            messages: format!("{upper}_MSGS"),
            sessions: format!("{prefix}_sessions"),
            retained: format!("{prefix}_retained"),
            owners: format!("{prefix}_owners"),
            resources: format!("{prefix}_resources"),
            nodes: format!("{prefix}_nodes"),
            shares: format!("{prefix}_shares"),
            events: format!("{upper}_EVENTS"),
            dead_letters: format!("{upper}_DLQ"),
            locks: format!("{prefix}_locks"),
            dispatch: format!("{prefix}_dispatch"),
            attempts: format!("{prefix}_attempts"),
        }
    }

    /// The routed events of subscription `subscription` of namespace topic `topic`:
    /// `<prefix>.ev.<base64url(topic)>.<base64url(subscription)>`.
    pub fn event_subject(&self, topic: &str, subscription: &str) -> String {
        let (topic, subscription) =
            (super::store::name_key(topic), super::store::name_key(subscription));
        format!("{}.ev.{topic}.{subscription}", self.prefix)
    }

    /// The dead letters of a subscription: `<prefix>.dlq.<base64url(topic)>.<base64url(subscription)>`.
    pub fn dead_letter_subject(&self, topic: &str, subscription: &str) -> String {
        let (topic, subscription) =
            (super::store::name_key(topic), super::store::name_key(subscription));
        format!("{}.dlq.{topic}.{subscription}", self.prefix)
    }

    /// The subject node `node` serves pull delivery's lock operations on (`locks.rs`):
    /// `<prefix>.lock.<base64url(node)>`.
    pub fn lock_subject(&self, node: &str) -> String {
        format!("{}.lock.{}", self.prefix, super::store::name_key(node))
    }

    /// The subject of the QoS 1/2 log's subjects, `<prefix>.m1.>`.
    pub fn messages_subjects(&self) -> String {
        format!("{}.m1.>", self.prefix)
    }

    /// Core-NATS subjects of QoS 0 messages.
    pub fn qos0_subjects(&self) -> String {
        format!("{}.m0.>", self.prefix)
    }
}

/// A live connection to the NATS cluster, with the streams and buckets opened.
pub struct Link {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub names: Names,
    pub messages: stream::Stream,
    pub sessions: kv::Store,
    pub retained: kv::Store,
    pub owners: kv::Store,
    pub resources: kv::Store,
    pub nodes: kv::Store,
    pub shares: kv::Store,
    /// Routed events waiting for their subscriptions (work queue: an event leaves once its
    /// subscription's consumer acknowledges or terminates it).
    pub events: stream::Stream,
    /// Dead-letter records.
    pub dead_letters: stream::Stream,
    /// The key every node signs and checks pull delivery's lock tokens with.
    pub lock_key: ring::hmac::Key,
    /// Claims on push subscriptions; an entry lapses unless its holder keeps it.
    pub dispatch: kv::Store,
    /// Delivery attempts of retried routed events, by stream sequence; an entry goes when its
    /// event is settled, or after a week (the routing log's own limit).
    pub attempts: kv::Store,
    /// Whether the client is connected right now (set by the client's events).
    connected: Arc<AtomicBool>,
    /// How long the connection has been down since start, and since when it is down now.
    downtime: Arc<Downtime>,
    /// Woken on every change of `connected`.
    pub changes: Arc<tokio::sync::Notify>,
}

impl Link {
    /// Connects, retrying every second until `connect_timeout_secs`, then opens (or creates)
    /// every stream and bucket.
    pub async fn open(config: &ClusterConfig, node: &str) -> Result<Link, LinkError> {
        // The NATS client builds its TLS config from rustls' process-wide provider, and with
        // both of rustls' providers in the dependency graph none is chosen by default: without
        // this, TLS to NATS panicked. gridmq's own TLS uses ring; an earlier install wins.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connected = Arc::new(AtomicBool::new(false));
        let downtime = Arc::new(Downtime::default());
        let changes = Arc::new(tokio::sync::Notify::new());
        let deadline = tokio::time::Instant::now() + config.connect_timeout();
        let client = loop {
            let options =
                options(config, node, connected.clone(), downtime.clone(), changes.clone()).await?;
            match options.connect(config.nats_urls.clone()).await {
                Ok(client) => break client,
                Err(error) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(LinkError::Unreachable {
                            secs: config.connect_timeout_secs,
                            urls: config.nats_urls.join(", "),
                            last: error.to_string(),
                        });
                    }
                    warn!(urls = %config.nats_urls.join(", "), %error, "Cannot reach NATS; retrying in 1 s.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        connected.store(true, Ordering::SeqCst);
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .max_ack_inflight(20_000)
            .build(client.clone());
        let names = Names::new(&config.subject_prefix);
        let replicas = config.replicas;
        // Start-up races the other nodes to create these; creating an identical stream is
        // idempotent, so retrying the lookup after a lost race is enough.
        let messages = ensure_stream(
            &js,
            stream::Config {
                name: names.messages.clone(),
                subjects: vec![names.messages_subjects()],
                storage: StorageType::File,
                num_replicas: replicas,
                max_age: Duration::from_secs(config.message_retention_secs),
                duplicate_window: Duration::from_secs(120),
                allow_direct: true,
                ..Default::default()
            },
            deadline,
        )
        .await?;
        // Event Grid keeps a namespace topic's events 7 days at most; each topic's own
        // retention and time to live are applied when an event is leased.
        let week = Duration::from_secs(7 * 24 * 3600);
        let events = ensure_stream(
            &js,
            stream::Config {
                name: names.events.clone(),
                subjects: vec![format!("{}.ev.>", names.prefix)],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                num_replicas: replicas,
                max_age: week,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            },
            deadline,
        )
        .await?;
        let dead_letters = ensure_stream(
            &js,
            stream::Config {
                name: names.dead_letters.clone(),
                subjects: vec![format!("{}.dlq.>", names.prefix)],
                storage: StorageType::File,
                num_replicas: replicas,
                max_age: week,
                allow_direct: true,
                ..Default::default()
            },
            deadline,
        )
        .await?;
        let bucket = |name: &str, history: i64, max_age: Duration| kv::Config {
            bucket: name.to_string(),
            history,
            max_age,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let sessions =
            ensure_bucket(&js, bucket(&names.sessions, 1, Duration::ZERO), deadline).await?;
        let retained =
            ensure_bucket(&js, bucket(&names.retained, 1, Duration::ZERO), deadline).await?;
        let owners = ensure_bucket(&js, bucket(&names.owners, 1, Duration::ZERO), deadline).await?;
        let resources =
            ensure_bucket(&js, bucket(&names.resources, 1, Duration::ZERO), deadline).await?;
        let nodes =
            ensure_bucket(&js, bucket(&names.nodes, 1, Duration::from_secs(5)), deadline).await?;
        let shares =
            ensure_bucket(&js, bucket(&names.shares, 1, super::shared::BUCKET_MAX_AGE), deadline)
                .await?;
        let locks = ensure_bucket(&js, bucket(&names.locks, 1, Duration::ZERO), deadline).await?;
        let lock_key = lock_key(&locks, deadline).await.map_err(|problem| LinkError::Create {
            what: format!("the lock-token secret in bucket {}", names.locks),
            replicas,
            problem,
        })?;
        let dispatch = ensure_bucket(
            &js,
            bucket(&names.dispatch, 1, crate::routing::shared::CLAIM_TERM),
            deadline,
        )
        .await?;
        let attempts = ensure_bucket(&js, bucket(&names.attempts, 1, week), deadline).await?;
        info!(node, urls = %config.nats_urls.join(", "), replicas, "Joined the cluster.");
        Ok(Link {
            client,
            js,
            names,
            messages,
            sessions,
            retained,
            owners,
            resources,
            nodes,
            shares,
            events,
            dead_letters,
            lock_key,
            dispatch,
            attempts,
            connected,
            downtime,
            changes,
        })
    }

    /// How long the NATS connection has been down since start, the current outage included.
    pub fn downtime(&self) -> Duration {
        self.downtime.total()
    }

    /// Whether the NATS connection is up now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}

/// The time a connection spent down.
#[derive(Default)]
pub struct Downtime {
    state: parking_lot::Mutex<(Duration, Option<std::time::Instant>)>,
}

impl Downtime {
    fn down(&self) {
        let mut state = self.state.lock();
        state.1.get_or_insert_with(std::time::Instant::now);
    }

    fn up(&self) {
        let mut state = self.state.lock();
        if let Some(since) = state.1.take() {
            state.0 += since.elapsed();
        }
    }

    fn total(&self) -> Duration {
        let state = self.state.lock();
        state.0 + state.1.map_or(Duration::ZERO, |since| since.elapsed())
    }
}

async fn options(
    config: &ClusterConfig,
    node: &str,
    connected: Arc<AtomicBool>,
    downtime: Arc<Downtime>,
    changes: Arc<tokio::sync::Notify>,
) -> Result<async_nats::ConnectOptions, LinkError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("gridmq-{node}"))
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(1))
        .max_reconnects(None)
        .event_callback(move |event| {
            let connected = connected.clone();
            let downtime = downtime.clone();
            let changes = changes.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        info!("NATS connection up.");
                        connected.store(true, Ordering::SeqCst);
                        downtime.up();
                        changes.notify_waiters();
                    }
                    async_nats::Event::Disconnected => {
                        warn!("NATS connection lost; reconnecting.");
                        connected.store(false, Ordering::SeqCst);
                        downtime.down();
                        changes.notify_waiters();
                    }
                    other => tracing::debug!(event = %other, "NATS client event."),
                }
            }
        });
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(path) = &config.nkey_seed_file {
        let seed = std::fs::read_to_string(path)
            .map_err(|source| LinkError::Credentials { field: "cluster.nkey_seed_file", source })?;
        options = options.nkey(seed.trim().to_string());
    }
    if let Some(path) = &config.credentials_file {
        options = options.credentials_file(path).await.map_err(|source| {
            LinkError::Credentials { field: "cluster.credentials_file", source }
        })?;
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
    }
    Ok(options)
}

/// The cluster's lock-token key: the secret in `locks`, created by the first node that finds
/// none (create-if-absent, so nodes starting together agree on one).
async fn lock_key(
    locks: &kv::Store,
    deadline: tokio::time::Instant,
) -> Result<ring::hmac::Key, String> {
    use ring::rand::SecureRandom;
    const KEY: &str = "hmac-sha256";
    loop {
        let error = match locks.get(KEY).await {
            Ok(Some(secret)) if secret.len() >= 32 => {
                return Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret));
            }
            Ok(_) => {
                let mut secret = [0u8; 32];
                match ring::rand::SystemRandom::new().fill(&mut secret) {
                    Err(_) => "the system's random generator failed".to_string(),
                    // Whichever node created it first, the next read finds it.
                    Ok(()) => match locks.create(KEY, secret.to_vec().into()).await {
                        Ok(_) => continue,
                        Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {
                            continue;
                        }
                        Err(error) => error.to_string(),
                    },
                }
            }
            Err(error) => error.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(error);
        }
        warn!(%error, "Cannot read the lock-token secret yet; retrying.");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
    deadline: tokio::time::Instant,
) -> Result<stream::Stream, LinkError> {
    let name = config.name.clone();
    let replicas = config.num_replicas;
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(error) if tokio::time::Instant::now() < deadline => {
                // A JetStream cluster still electing its meta leader refuses for a moment.
                warn!(stream = %name, %error, "Cannot open the stream yet; retrying.");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => {
                return Err(LinkError::Create {
                    what: format!("stream {name}"),
                    replicas,
                    problem: error.to_string(),
                });
            }
        }
    }
}

async fn ensure_bucket(
    js: &jetstream::Context,
    config: kv::Config,
    deadline: tokio::time::Instant,
) -> Result<kv::Store, LinkError> {
    let name = config.bucket.clone();
    let replicas = config.num_replicas;
    loop {
        let error = match js.get_key_value(name.clone()).await {
            Ok(store) => return Ok(store),
            Err(_) => match js.create_key_value(config.clone()).await {
                Ok(store) => return Ok(store),
                Err(error) => error.to_string(),
            },
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(LinkError::Create {
                what: format!("bucket {name}"),
                replicas,
                problem: error,
            });
        }
        warn!(bucket = %name, %error, "Cannot open the bucket yet; retrying.");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
