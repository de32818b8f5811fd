//! Access control on every node: the namespace resources that any node's management API
//! changes, applied on this node too.
//!
//! A change made through the management API is journaled by the node that made it, which the
//! cluster's store turns into a put or delete of `<kind>.<name_key(name)>` in the `resources`
//! bucket. Every node watches that bucket from the revision it read at start-up (so nothing
//! lands unseen between the read and the watch) and applies each change to its own
//! [`Namespace`] with [`Namespace::apply_replicated`]: the same validation and the same
//! enforcement on live sessions as a local change (DISCONNECT 0x98, subscriptions removed), but
//! not journaled again. The watch is supervised: it restarts after an error from the revision
//! after the last one it applied (a KV watch is known to need that after a server restart).
//!
//! - A node's own changes come back too; they equal what it has, and change nothing.
//! - A value that a later one of the same key has replaced in the bucket is skipped, so a node
//!   never goes back to an older value (its own, coming back after a newer local change).
//!   Two nodes changing one resource at once: the last write to the bucket wins on every node.
//! - Names the node's config declares stay the config's (each node has its own config): a
//!   change of such a name from another node is skipped here, with a warning.
//! - Namespace topics and event subscriptions (kinds the router owns) are not applied here.

use std::sync::Arc;

use async_nats::jetstream::kv::{Entry, Operation};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::link::Link;
use super::store::key_name;
use super::watch::{self, Watched};
use crate::namespace::{Change, ChangeError, Namespace, ResourceKind};

/// Applies every change to the `resources` bucket after revision `from` to `namespace`, until
/// `stop`.
pub async fn replicate(
    link: Arc<Link>,
    namespace: Arc<Namespace>,
    from: u64,
    stop: CancellationToken,
) {
    let mut watched = Watched::new(link.resources.clone(), "resources", watch::Start::After(from));
    while let Some(entry) = watched.next(&stop).await {
        let Some(change) = change(&entry) else { continue };
        if superseded(&link, &entry).await {
            continue;
        }
        apply(&namespace, change).await;
    }
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

/// The change an entry of the bucket carries, if it is one the namespace owns.
fn change(entry: &Entry) -> Option<Change> {
    let (kind_name, name) = entry.key.split_once('.')?;
    if crate::routing::router::is_topic_kind(kind_name) {
        return None;
    }
    let Some(kind) = ResourceKind::parse(kind_name) else {
        debug!(key = %entry.key, "Ignoring a cluster resource of unknown kind.");
        return None;
    };
    let name = key_name(name)?;
    match entry.operation {
        Operation::Put => match serde_json::from_slice(&entry.value) {
            Ok(properties) => Some(Change::Put { kind, name, properties }),
            Err(error) => {
                warn!(kind = kind_name, %name, %error, "Skipped a cluster resource that is not JSON.");
                None
            }
        },
        Operation::Delete | Operation::Purge => Some(Change::Delete { kind, name }),
    }
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
