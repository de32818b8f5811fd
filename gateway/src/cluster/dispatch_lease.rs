//! Which node pushes each push subscription ([`crate::routing::shared::Claim`]): an entry
//! `<base64url(topic/subscription)>` in the `dispatch` bucket names the holder.
//!
//! The bucket's entries expire [`CLAIM_TERM`] after they were last written, so a claim is a
//! lease: the holder rewrites it every second with a compare-and-set on its last revision, and
//! when the holder dies (or is cut off from NATS) the entry lapses and another node's create
//! succeeds. A claim's value is the node and a random number of this claim, so that a holder
//! whose write was stored but not confirmed still recognizes its own entry. A node without the
//! claim reads the entry first and creates it only when it is gone: one request a second per
//! standby node and subscription.

use std::sync::Arc;

use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
use futures_util::future::BoxFuture;
use tracing::debug;

use super::link::Link;
#[cfg(doc)]
use crate::routing::shared::CLAIM_TERM;
use crate::routing::shared::{Claim, SharedError};

/// One subscription's claim, as seen from this node.
pub struct DispatchClaim {
    link: Arc<Link>,
    key: String,
    /// `<node>/<random>`: who holds it, and which claim of that node.
    value: bytes::Bytes,
    /// The entry's revision while this holds it.
    revision: Option<u64>,
}

impl DispatchClaim {
    pub fn new(link: Arc<Link>, node: &str, topic: &str, subscription: &str) -> DispatchClaim {
        DispatchClaim {
            link,
            key: super::store::name_key(&format!("{topic}/{subscription}")),
            value: format!("{node}/{}", super::random_u64()).into(),
            revision: None,
        }
    }

    async fn take_or_keep(&mut self) -> Result<bool, SharedError> {
        let unavailable = |e: &dyn std::fmt::Display| SharedError::Unavailable(e.to_string());
        let bucket = &self.link.dispatch;
        if let Some(revision) = self.revision {
            match bucket.update(&self.key, self.value.clone(), revision).await {
                Ok(revision) => {
                    self.revision = Some(revision);
                    return Ok(true);
                }
                // It lapsed (or was taken after lapsing): try to take it again below.
                Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => {
                    self.revision = None;
                }
                Err(error) => return Err(unavailable(&error)),
            }
        }
        // Read first: most tries are a standby's finding the claim held, one request.
        match bucket.entry(&self.key).await.map_err(|e| unavailable(&e))? {
            // Ours, when an earlier write was stored and its confirmation lost. A read may come
            // from a replica behind the leader, so it is ours only once a write on that
            // revision succeeds.
            Some(entry) if entry.operation == Operation::Put && entry.value == self.value => {
                return match bucket.update(&self.key, self.value.clone(), entry.revision).await {
                    Ok(revision) => {
                        self.revision = Some(revision);
                        Ok(true)
                    }
                    Err(error) if error.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
                    Err(error) => Err(unavailable(&error)),
                };
            }
            Some(entry) if entry.operation == Operation::Put => return Ok(false),
            _ => {}
        }
        match bucket.create(&self.key, self.value.clone()).await {
            Ok(revision) => {
                self.revision = Some(revision);
                Ok(true)
            }
            // Another node was quicker.
            Err(error) if error.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(unavailable(&error)),
        }
    }
}

impl Claim for DispatchClaim {
    fn keep(&mut self) -> BoxFuture<'_, Result<bool, SharedError>> {
        Box::pin(self.take_or_keep())
    }

    fn release(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(revision) = self.revision.take() else { return };
            // Only our own entry: one that lapsed and was taken is left to its holder.
            if let Err(error) =
                self.link.dispatch.delete_expect_revision(&self.key, Some(revision)).await
            {
                debug!(key = %self.key, %error, "Releasing a dispatch claim; it lapses instead.");
            }
        })
    }
}
