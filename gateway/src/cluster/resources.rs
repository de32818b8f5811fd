//! Access control and namespace topics on every node: the namespace resources that any node's
//! management API changes, applied on this node too.
//!
//! A change made through the management API is journaled by the node that made it, which the
//! cluster's store turns into a put or delete of `<kind>.<name_key(name)>` in the `resources`
//! bucket. Every node watches that bucket from the revision it read at start-up (so nothing
//! lands unseen between the read and the watch) and applies each change on its own: access
//! control kinds to its [`Namespace`] with [`Namespace::apply_replicated`] (the same validation
//! and the same enforcement on live sessions as a local change: DISCONNECT 0x98, subscriptions
//! removed), namespace topics and event subscriptions to its [`Router`] with
//! [`Router::apply_replicated`] (the same validation, and a changed subscription's deliveries
//! handed to its successor); neither is journaled again. The watch is supervised: it restarts
//! after an error from the revision after the last one it applied (a KV watch is known to need
//! that after a server restart).
//!
//! - A node's own changes come back too; they equal what it has, and change nothing.
//! - A value that a later one of the same key has replaced in the bucket is skipped, so a node
//!   never goes back to an older value (its own, coming back after a newer local change).
//!   Two nodes changing one resource at once: the last write to the bucket wins on every node.
//! - Names the node's config declares stay the config's (each node has its own config): a
//!   change of such a name from another node is skipped here, with a warning.
//! - A node without a namespace (or without a router) skips the kinds it would own.

use std::sync::Arc;

use async_nats::jetstream::kv::{Entry, Operation};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::link::Link;
use super::store::key_name;
use super::watch::{self, Watched};
use crate::namespace::{Change, ChangeError, Namespace, ResourceKind};
use crate::routing::Router;
use crate::routing::router::TopicsError;

/// Applies every change to the `resources` bucket after revision `from` to `namespace` (access
/// control) and `router` (namespace topics and event subscriptions), until `stop`.
pub async fn replicate(
    link: Arc<Link>,
    namespace: Option<Arc<Namespace>>,
    router: Option<Arc<Router>>,
    from: u64,
    stop: CancellationToken,
) {
    let mut watched = Watched::new(link.resources.clone(), "resources", watch::Start::After(from));
    while let Some(entry) = watched.next(&stop).await {
        match change(&entry) {
            Some(Replicated::Namespace(change)) => {
                if let Some(namespace) = &namespace
                    && !superseded(&link, &entry).await
                {
                    apply(namespace, change).await;
                }
            }
            Some(Replicated::Router { kind, name, properties }) => {
                if let Some(router) = &router
                    && !superseded(&link, &entry).await
                {
                    apply_to_router(router, kind, &name, properties).await;
                }
            }
            None => {}
        }
    }
}

/// A change of the bucket, by the part of this node that owns its kind.
enum Replicated {
    Namespace(Change),
    /// A namespace topic or event subscription: a put of its properties, or a delete (`None`).
    Router {
        kind: &'static str,
        name: String,
        properties: Option<serde_json::Value>,
    },
}

/// Whether the bucket holds a later value of `entry`'s key than `entry`, which this watch will
/// see next: applying `entry` first would bring an older value back for a moment.
async fn superseded(link: &Link, entry: &Entry) -> bool {
    match link.resources.entry(entry.key.clone()).await {
        Ok(Some(latest)) => latest.revision > entry.revision,
        // A key deleted since has its delete marker as the latest entry; a purged or unreadable
        // one is applied as it stands (the watch brings whatever follows).
        Ok(None) | Err(_) => false,
    }
}

/// The change an entry of the bucket carries, if it is of a kind this build knows.
fn change(entry: &Entry) -> Option<Replicated> {
    let (kind_name, name) = entry.key.split_once('.')?;
    let router_kind = crate::routing::router::topic_kind(kind_name);
    let kind = ResourceKind::parse(kind_name);
    if router_kind.is_none() && kind.is_none() {
        debug!(key = %entry.key, "Ignoring a cluster resource of unknown kind.");
        return None;
    }
    let name = key_name(name)?;
    let properties = match entry.operation {
        Operation::Put => match serde_json::from_slice(&entry.value) {
            Ok(properties) => Some(properties),
            Err(error) => {
                warn!(kind = kind_name, %name, %error, "Skipped a cluster resource that is not JSON.");
                return None;
            }
        },
        Operation::Delete | Operation::Purge => None,
    };
    if let Some(kind) = router_kind {
        return Some(Replicated::Router { kind, name, properties });
    }
    let kind = kind?;
    Some(Replicated::Namespace(match properties {
        Some(properties) => Change::Put { kind, name, properties },
        None => Change::Delete { kind, name },
    }))
}

async fn apply(namespace: &Namespace, change: Change) {
    let (kind, name) = match &change {
        Change::Put { kind, name, .. } | Change::Delete { kind, name } => (*kind, name.clone()),
    };
    match namespace.apply_replicated(change).await {
        Ok(_) => {
            debug!(kind = kind.as_str(), %name, "Applied a namespace change from the cluster.")
        }
        Err(ChangeError::Declared { .. }) => warn!(
            kind = kind.as_str(),
            %name,
            "Another node changed a resource this node's config declares: the config's stays."
        ),
        Err(ChangeError::Invalid(error)) => warn!(
            kind = kind.as_str(),
            %name,
            %error,
            "A namespace change from the cluster is not valid on this node; skipped."
        ),
    }
}

async fn apply_to_router(
    router: &Router,
    kind: &'static str,
    name: &str,
    properties: Option<serde_json::Value>,
) {
    match router.apply_replicated(kind, name, properties).await {
        Ok(changed) => {
            debug!(kind, %name, changed, "Applied a namespace topic change from the cluster.")
        }
        Err(TopicsError::Declared(_)) => warn!(
            kind,
            %name,
            "Another node changed a topic or subscription this node's config declares: the \
             config's stays."
        ),
        Err(error) => warn!(
            kind,
            %name,
            %error,
            "A namespace topic change from the cluster is not valid on this node; skipped."
        ),
    }
}
