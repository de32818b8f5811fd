//! Why the gateway did not start. Each message names the field or the resource at fault, as
//! `gridmq serve` prints it before exiting.

use crate::dataplane::DataPlaneConfigError;
use crate::mgmt::ManagementConfigError;
use crate::namespace::OpenError;
use crate::routing::BuildError;
use crate::server::config::ServerConfigError;
use crate::server::https::HttpBindError;
use crate::startup::StoreStartError;
use crate::telemetry::MetricsError;

/// A start-up that failed before anything was served, or that stopped what it had started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener: its settings, its TLS files, its address, e.g.
    /// `invalid config: server.listeners[1].certificate: cannot read tls/server.pem: ...`.
    #[error("invalid config: {0}")]
    Listener(#[from] ServerConfigError),
    /// The metrics recorder.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The management API's admin token, e.g. an unset `admin_token_env` variable.
    #[error(transparent)]
    Management(#[from] ManagementConfigError),
    /// An HTTP API's listener (management, data plane, metrics).
    #[error(transparent)]
    HttpListener(#[from] HttpBindError),
    /// The data plane's access keys.
    #[error(transparent)]
    DataPlane(#[from] DataPlaneConfigError),
    /// The store: opening it or recovering from it.
    #[error(transparent)]
    Store(#[from] StoreStartError),
    /// The routing pipeline: its event subscriptions, with the stored ones.
    #[error(transparent)]
    Routing(#[from] BuildError),
    /// The namespace's resources, declared and stored, or its `[auth]` table.
    #[error(transparent)]
    Namespace(#[from] OpenError),
    /// Cluster mode: NATS unreachable within the bounded wait, or its streams not created.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::LinkError),
    /// Cluster mode: the cluster's state could not be read.
    #[error("cluster: {0}")]
    ClusterStore(crate::store::StoreError),
    /// The poller that parks idle connections.
    #[error("cannot start the connection parker: {0}")]
    Parker(std::io::Error),
}
