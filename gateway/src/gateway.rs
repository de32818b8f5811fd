//! The composition root: the gateway's parts built from the config, started in order, and
//! shut down in order.
//!
//! [`Gateway::start`] binds the listeners ([`crate::server`]), serves the HTTP APIs from before
//! the store is read (so `/readyz` can say that recovery runs), opens the store
//! ([`crate::startup`]), builds the router ([`crate::routing`]) and, when the config turns access
//! control on, the namespace ([`crate::namespace`]) into the broker's hooks, recovers the
//! broker, and then starts accepting. The parts take their own config sections; the whole
//! [`Config`] stays here, in [`crate::reload`] and in [`crate::embed`].
//!
//! Shutdown order: stop accepting; tell every connection (5.0 clients get DISCONNECT 0x8B, in
//! a lingering close: see `connection/linger.rs`); wait for connection tasks, lingering closes
//! and timers, bounded by the grace period.

mod error;
mod gauges;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::error::StartError;
use crate::broker::Broker;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::routing::BuildError;
use crate::server::ListenerKind;
use crate::server::https::HttpListener;
use crate::server::listener;

/// How often expired retained messages are swept out.
const RETAINED_SWEEP: Duration = Duration::from_secs(60);

/// A running gateway.
pub struct Gateway {
    listeners: Vec<(ListenerKind, SocketAddr)>,
    /// Where the management API listens, when it runs, and whether it speaks HTTPS.
    management: Option<(SocketAddr, bool)>,
    /// Where the data-plane API listens, when `[http]` is present, and whether it speaks HTTPS.
    data_plane: Option<(SocketAddr, bool)>,
    /// Where the metrics-only listener listens, when `[metrics]` gives `listen`.
    metrics: Option<SocketAddr>,
    namespace: Option<Arc<crate::namespace::Namespace>>,
    router: Option<Arc<crate::routing::Router>>,
    broker: Arc<Broker>,
    storage: crate::store::Storage,
    grace: Duration,
    reloader: Arc<crate::reload::Reloader>,
    /// What `/readyz` answers from, and the entries of the listeners and of recovery.
    readiness: Arc<crate::readiness::Readiness>,
    _ready: Vec<crate::readiness::Entry>,
}

impl Gateway {
    /// Loads the listeners' TLS material, binds every listener and starts serving. A bad
    /// setting (unreadable certificate, address in use) fails with a [`StartError`] whose
    /// message names the field, e.g. `server.listeners[1].certificate: cannot read
    /// tls/server.pem: ...`, before anything is served.
    ///
    /// `hooks` run as given in the embedded default. When the config (or the store) turns access
    /// control on, the namespace's authenticator and authorizer replace those of `hooks`, whose
    /// routing tap and observers stay.
    pub async fn start(config: Config, hooks: Hooks) -> Result<Gateway, StartError> {
        config.server.validate()?;
        // Before anything counts: the catalogue's handles bind to the recorder on first use.
        let recorder = match config.metrics.enabled {
            true => crate::telemetry::install()?,
            false => None,
        };
        // In cluster mode the durable MQTT state is the cluster's, in JetStream, and a message
        // must fit in one NATS message: the packet limit comes down to what NATS takes (the
        // CONNACK tells 5.0 clients), rather than a commit that could never succeed.
        let cluster = match &config.cluster {
            Some(cluster) => Some(crate::cluster::Cluster::join(cluster).await?),
            None => None,
        };
        let mut config = config;
        if let Some(cluster) = &cluster {
            let limit = cluster.max_packet_size();
            if config.mqtt.max_packet_size > limit {
                info!(
                    configured = config.mqtt.max_packet_size,
                    limit, "Cluster mode: mqtt.max_packet_size lowered to what NATS accepts."
                );
                config.mqtt.max_packet_size = limit;
            }
        }
        let prepared = listener::prepare(&config.server.listeners, config.mqtt.max_packet_size)?;
        let readiness = crate::readiness::Readiness::new();
        let mut ready = Vec::new();
        let mut bound = Vec::with_capacity(prepared.len());
        for listener in prepared {
            let bound_listener = listener.bind().await?;
            // Binding fails the start, so a listener in the registry is bound.
            let name = format!("{} {}", bound_listener.kind.scheme(), bound_listener.addr);
            let entry = readiness.register(crate::readiness::Component::Listener, name, "");
            entry.ready();
            ready.push(entry);
            bound.push(bound_listener);
        }
        let recovery =
            readiness.register(crate::readiness::Component::Recovery, "store", "recovery running");
        let listeners: Vec<(ListenerKind, SocketAddr)> =
            bound.iter().map(|b| (b.kind, b.addr)).collect();
        // The HTTP APIs are served from before the store is read, so that `/readyz` can say
        // that recovery runs; their other routes answer 503 until the gateway is up. A start
        // that fails on the way stops them (the guard).
        let http_stop = CancellationToken::new();
        let http_guard = http_stop.clone().drop_guard();
        let mut http_tasks = Vec::new();
        let management = match &config.management {
            Some(management) => {
                let token = management.token()?;
                let (listener, addr) = crate::mgmt::bind(management).await?;
                let deferred = crate::readiness::Deferred::default();
                let https = listener.is_tls();
                let app = deferred.router(readiness.clone());
                http_tasks.push(tokio::spawn(crate::mgmt::serve(listener, app, http_stop.clone())));
                Some((deferred, token, addr, https))
            }
            None => None,
        };
        let data_plane = match &config.http {
            Some(http) => {
                let (listener, addr) = crate::dataplane::bind(http).await?;
                let deferred = crate::readiness::Deferred::default();
                let https = listener.is_tls();
                let app = deferred.router(readiness.clone());
                http_tasks.push(tokio::spawn(crate::dataplane::serve(
                    listener,
                    app,
                    http_stop.clone(),
                )));
                Some((deferred, addr, https))
            }
            None => None,
        };
        let mut resources_revision = 0;
        let (storage, mut snapshot) = match &cluster {
            Some(cluster) => {
                let (resources, revision) =
                    cluster.resources().await.map_err(StartError::ClusterStore)?;
                resources_revision = revision;
                let mut storage =
                    cluster.storage(&config.store, resources).map_err(StartError::ClusterStore)?;
                let snapshot = storage.take_snapshot();
                (storage, snapshot)
            }
            None => {
                let opened = crate::startup::open_store(&config.store)?;
                if !config.store.in_memory {
                    unmark_cluster(&config.store.data_dir);
                }
                opened
            }
        };
        let routing_rows =
            snapshot.as_mut().map(|s| std::mem::take(&mut s.routing)).unwrap_or_default();
        let stored = snapshot.as_ref().map(|s| s.resources.as_slice()).unwrap_or_default();
        if let Some(journal) = storage.journal() {
            readiness.watch_store(journal);
        }
        let routing = config.routing_section().plan().map_err(BuildError::from)?;
        let router = crate::routing::Router::build_with(
            &config.namespace,
            routing,
            storage.journal(),
            stored,
            readiness.clone(),
            cluster.as_ref().map(|cluster| cluster.routing_log()),
        )?;
        let mut hooks = hooks;
        if let Some(router) = &router {
            // The tap is installed even without routes, so a config reload can add some; with
            // none, it returns at once.
            hooks.tap = Some(router.clone());
            hooks.observers.extend(router.observer());
        }
        // The console's live trace looks on from the routing tap's place (`console/trace.rs`);
        // with no viewer it costs a publish one atomic load.
        let trace = Arc::new(crate::console::Trace::new(router.clone()));
        if config.management.is_some() {
            hooks.tap = Some(trace.tap(hooks.tap.take()));
        }
        let namespace = crate::namespace::Namespace::open(config.namespace_section(), stored)?;
        let hooks = match &namespace {
            Some(namespace) => {
                namespace.prepare().await;
                namespace.hooks(hooks)
            }
            None => hooks,
        };
        let reloader = Arc::new(crate::reload::Reloader::new(
            config.clone(),
            namespace.clone(),
            router.clone(),
        ));
        let metrics_listener = match config.metrics.listen {
            Some(addr) => {
                Some(HttpListener::bind("metrics", addr, None, None, Default::default()).await?)
            }
            None => None,
        };
        let broker =
            crate::startup::recover_broker(&config.mqtt, &config.store, hooks, &storage, snapshot)?;
        if let Some(namespace) = &namespace {
            namespace.attach(&broker);
        }
        if let Some(cluster) = &cluster {
            cluster.attach(&broker, &readiness);
        }
        // The router takes back its buffer before any client can publish, so new events are
        // numbered after the recovered ones.
        if let Some(router) = &router {
            router.recover(routing_rows);
            router.start(&broker.tasks, &broker.shutdown);
        }
        // After the router has recovered its buffer: a topic another node changes must not
        // retire subscriptions whose deliveries are not recovered yet.
        if let Some(cluster) = &cluster {
            let (namespace, router) = (namespace.as_ref(), router.as_ref());
            cluster.replicate_resources(&broker, namespace, router, resources_revision);
        }
        // Pull delivery's locks live on the node that received them; the others reach them here.
        if let (Some(cluster), Some(router)) = (&cluster, &router) {
            broker.tasks.spawn(crate::cluster::locks::serve(
                cluster.link.clone(),
                cluster.node.clone(),
                router.clone(),
                broker.shutdown.clone(),
            ));
        }
        let scrape = recorder.map(|handle| {
            broker.tasks.spawn(crate::telemetry::upkeep(handle.clone(), broker.shutdown.clone()));
            let read = gauges::reader(broker.clone(), router.clone());
            Arc::new(crate::telemetry::Scrape::new(handle, read))
        });
        // A `[management]` table turns access control on, so the namespace is there.
        let management = management.map(|(deferred, token, addr, https)| {
            if let Some(namespace) = &namespace {
                let metrics = crate::mgmt::metrics_routes(token.clone(), scrape.clone());
                deferred.set(
                    crate::mgmt::app_with_reload(
                        namespace.clone(),
                        token.clone(),
                        router.clone(),
                        Some(reloader.clone() as Arc<dyn crate::mgmt::ConfigReload>),
                    )
                    .merge(metrics)
                    .merge(crate::console::routes(
                        Arc::new(crate::console::Console {
                            namespace: namespace.clone(),
                            token: token.clone(),
                            trace: trace.clone(),
                            shutdown: broker.shutdown.clone(),
                            info: console_info(&config, &listeners, addr, https),
                        }),
                        router.is_some(),
                    )),
                );
            }
            (addr, https)
        });
        let metrics = metrics_listener.map(|(listener, addr)| {
            let app = crate::telemetry::routes(scrape.clone());
            broker.tasks.spawn(listener.serve(app, broker.shutdown.clone(), "metrics"));
            addr
        });
        let data_plane = match (data_plane, &config.http) {
            (Some((deferred, addr, https)), Some(http)) => {
                let admin_token = config.management.as_ref().map(|m| m.token()).transpose();
                let state = crate::dataplane::DataPlane::new(
                    http.clone(),
                    admin_token?,
                    broker.clone(),
                    router.clone(),
                )?;
                deferred.set(crate::dataplane::app(Arc::new(state)));
                Some((addr, https))
            }
            _ => None,
        };
        let parker = match config.mqtt.park_after_ms {
            0 => None,
            ms => Some(
                crate::connection::Parker::start(
                    Duration::from_millis(ms),
                    &broker.tasks,
                    broker.shutdown.clone(),
                )
                .map_err(StartError::Parker)?,
            ),
        };
        for listener in bound {
            broker.tasks.spawn(listener.accept_loop(broker.clone(), parker.clone()));
        }
        broker.tasks.spawn(sweep_retained(broker.clone()));
        broker.tasks.spawn(crate::diagnostics::report_suppressed(broker.shutdown.clone()));
        // The HTTP APIs stop with the broker, and shutdown waits for them.
        let shutdown = broker.shutdown.clone();
        http_guard.disarm();
        broker.tasks.spawn(async move {
            shutdown.cancelled().await;
            http_stop.cancel();
            for task in http_tasks {
                let _ = task.await;
            }
        });
        recovery.ready();
        ready.push(recovery);
        Ok(Gateway {
            listeners,
            management,
            data_plane,
            metrics,
            namespace,
            router,
            broker,
            storage,
            grace: Duration::from_secs(config.server.shutdown_grace_secs),
            reloader,
            readiness,
            _ready: ready,
        })
    }

    /// Every listener's kind and bound address (useful with port 0), in config order.
    pub fn listener_addrs(&self) -> &[(ListenerKind, SocketAddr)] {
        &self.listeners
    }

    /// The address of the first `tcp` listener; of the first listener when there is no `tcp`
    /// one.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.listener_addr(ListenerKind::Tcp)
            .or_else(|| self.listeners.first().map(|(_, addr)| *addr))
            .expect("a gateway has at least one listener")
    }

    /// The address of the first listener of `kind`.
    pub fn listener_addr(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.listeners.iter().find(|(k, _)| *k == kind).map(|(_, addr)| *addr)
    }

    /// Where the management API listens, when `[management]` is configured.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management.map(|(addr, _)| addr)
    }

    /// Whether the management API speaks HTTPS (`[management]` has a certificate).
    pub fn management_https(&self) -> bool {
        self.management.is_some_and(|(_, https)| https)
    }

    /// Where the data-plane API listens, when `[http]` is configured.
    pub fn data_plane_addr(&self) -> Option<SocketAddr> {
        self.data_plane.map(|(addr, _)| addr)
    }

    /// Where the metrics-only listener listens, when `[metrics]` gives `listen`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// Whether the data-plane API speaks HTTPS (`[http]` has a certificate).
    pub fn data_plane_https(&self) -> bool {
        self.data_plane.is_some_and(|(_, https)| https)
    }

    /// The namespace, when access control applies.
    pub fn namespace(&self) -> Option<&Arc<crate::namespace::Namespace>> {
        self.namespace.as_ref()
    }

    /// The routing pipeline, when the config routes messages or lifecycle events.
    pub fn router(&self) -> Option<&Arc<crate::routing::Router>> {
        self.router.as_ref()
    }

    /// Reloads the config without a restart (SIGHUP, `POST /config:reload`); see
    /// [`crate::reload`]. Reloads read the file given to [`crate::reload::Reloader::watch`].
    pub fn reloader(&self) -> &Arc<crate::reload::Reloader> {
        &self.reloader
    }

    /// What `/readyz` answers from.
    pub fn readiness(&self) -> &Arc<crate::readiness::Readiness> {
        &self.readiness
    }

    /// The broker, for in-process embedding and tests.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Logs where the gateway listens, for people and for the end-to-end harness: one line per
    /// listener on stdout, in config order, `gridmq listening <scheme> <address>` with scheme
    /// `mqtt` (tcp), `mqtts` (tls), `ws` or `wss`. The management API, when it runs, comes first,
    /// as `gridmq listening http <address>` (`https` over TLS), then the data-plane API as
    /// `gridmq listening api <address>` (`apis` over TLS), then the metrics-only listener as
    /// `gridmq listening metrics <address>`.
    pub fn announce(&self) {
        if let Some(addr) = self.management_addr() {
            let scheme = if self.management_https() { "https" } else { "http" };
            info!(%addr, scheme, "Management API listening.");
            println!("gridmq listening {scheme} {addr}");
        }
        if let Some(addr) = self.data_plane_addr() {
            let (scheme, label) =
                if self.data_plane_https() { ("https", "apis") } else { ("http", "api") };
            info!(%addr, scheme, "Data-plane API listening.");
            println!("gridmq listening {label} {addr}");
        }
        if let Some(addr) = self.metrics_addr() {
            info!(%addr, "Metrics listening.");
            println!("gridmq listening metrics {addr}");
        }
        for (kind, addr) in self.listener_addrs() {
            info!(listener = %kind, %addr, "Listening.");
            println!("gridmq listening {} {addr}", kind.scheme());
        }
    }

    /// Stops accepting, disconnects every client and waits for all tasks, at most the grace
    /// period. Returns false when the grace period ran out.
    pub async fn shutdown(self) -> bool {
        self.broker.begin_shutdown();
        self.broker.tasks.close();
        let drained = tokio::time::timeout(self.grace, self.broker.tasks.wait()).await.is_ok();
        // Connections and timers are done appending; the journal commits the rest and stops.
        self.storage.close().await;
        drained
    }
}

/// A data directory a cluster node used and a single node now runs on: the marker that made
/// `gridmq deadletters` refuse it goes, since this node's dead letters are in its own store.
/// Failing to remove it only leaves that command refusing, so it is a warning.
fn unmark_cluster(dir: &std::path::Path) {
    match crate::routing::offline::unmark_cluster(dir) {
        Ok(None) => {}
        Ok(Some(stream)) => info!(
            data_dir = %dir.display(),
            stream,
            "This directory served a cluster node before; that node's dead letters stay in the cluster's stream."
        ),
        Err(error) => warn!(%error, "Cannot remove the cluster marker file."),
    }
}

async fn sweep_retained(broker: Arc<Broker>) {
    let mut interval = tokio::time::interval(RETAINED_SWEEP);
    while broker.shutdown.run_until_cancelled(interval.tick()).await.is_some() {
        broker.purge_expired_retained();
    }
}

/// What the console's overview says about this gateway.
fn console_info(
    config: &Config,
    listeners: &[(ListenerKind, SocketAddr)],
    management: SocketAddr,
    https: bool,
) -> crate::console::Info {
    let mut shown: Vec<String> =
        listeners.iter().map(|(kind, addr)| format!("{} {addr}", kind.scheme())).collect();
    shown.push(format!("{} {management} (management)", if https { "https" } else { "http" }));
    let store = match config.store.in_memory {
        true => "in memory (nothing survives a restart)".to_string(),
        false => format!("redb in {}", config.store.data_dir.display()),
    };
    crate::console::Info {
        version: env!("CARGO_PKG_VERSION"),
        listeners: shown,
        store,
        started: std::time::Instant::now(),
    }
}
