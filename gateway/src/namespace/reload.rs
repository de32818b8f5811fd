//! A config reload of the namespace: the resources the file declares, `[access.limits]` and
//! `[auth]`, applied as one change (see `crate::reload`).
//!
//! The file stays authoritative for the names it declares, and only for those:
//! - a name the new file declares takes the file's definition; when the management API had
//!   created it, the stored copy is deleted, so a restart does not bring it back later;
//! - a name the old file declared and the new one does not is deleted;
//! - a resource the management API created, under a name neither file declares, is kept.
//!
//! Planning validates the merged namespace and builds the new authenticator without changing
//! anything; applying cannot fail, so a reload is all or nothing.

use std::collections::HashSet;
use std::sync::Arc;

use tracing::{info, warn};

use super::{Namespace, NamespaceSection, ResourceKind};
use crate::access::model::{Limits, Resources, ValidationError};
use crate::auth::{AuthConfigError, Authentication};
use crate::store::Op;

/// A validated reload of the namespace, not applied yet.
pub struct NamespaceReload {
    resources: Resources,
    limits: Limits,
    declared: HashSet<(ResourceKind, String)>,
    /// The new authenticator, when `[auth]` changed.
    authenticator: Option<Arc<Authentication>>,
    /// API-created resources the file now declares: their stored copies are deleted.
    taken_over: Vec<(ResourceKind, String)>,
}

/// Why the namespace part of a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceReloadError {
    /// The file's resources with those the management API created are not a valid namespace.
    #[error("invalid config: namespace resources (config and management API): {0}")]
    Resources(#[from] ValidationError),
    /// An `[auth]` table that cannot be built (e.g. an unreadable key file).
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
}

impl Namespace {
    /// Waits for changes in progress and keeps others out while the guard lives: a reload
    /// plans and applies under it.
    pub async fn lock_changes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// Plans a reload to `section` of the new file; `auth_changed` says whether its `[auth]`
    /// table differs from the one in force. Nothing changes until [`Namespace::apply_reload`].
    pub fn plan_reload(
        &self,
        section: NamespaceSection,
        auth_changed: bool,
    ) -> Result<NamespaceReload, NamespaceReloadError> {
        let NamespaceSection { mut resources, limits, auth, .. } = section;
        let current = self.registry.current();
        let old_declared = self.declared.read().clone();
        // The namespace's identity (name, resource id) needs a restart; the rest of
        // `[namespace]` applies.
        resources.namespace.name = current.namespace.name.clone();
        resources.namespace.subscription_id = current.namespace.subscription_id.clone();
        resources.namespace.resource_group = current.namespace.resource_group.clone();
        let mut declared = HashSet::new();
        for kind in ResourceKind::ALL {
            for name in kind.names(&resources) {
                declared.insert((kind, name));
            }
        }
        let mut taken_over = Vec::new();
        for kind in ResourceKind::ALL {
            for name in kind.names(&current) {
                let key = (kind, name);
                if old_declared.contains(&key) {
                    continue;
                }
                if declared.contains(&key) {
                    taken_over.push(key);
                    continue;
                }
                let (kind, name) = key;
                if let Some(body) = kind.get(&current, &name) {
                    kind.put(&mut resources, &name, body).map_err(|error| {
                        ValidationError::new(
                            format!("{}[{name}].{}", kind.as_str(), error.path),
                            error.problem,
                        )
                    })?;
                }
            }
        }
        resources.validate(&limits)?;
        crate::access::AccessPolicy::new(&resources, &limits)?;
        let authenticator = if auth_changed {
            let built = Authentication::new(&auth.unwrap_or_default(), self.registry.clone())?;
            Some(Arc::new(built))
        } else {
            None
        };
        Ok(NamespaceReload { resources, limits, declared, authenticator, taken_over })
    }

    /// Applies a planned reload: stores the take-overs, swaps the resources, limits and
    /// authenticator in, and re-checks live sessions as a management API change does.
    pub async fn apply_reload(&self, plan: NamespaceReload) {
        if let Some(broker) = self.broker() {
            let mut last = None;
            for (kind, name) in &plan.taken_over {
                let kind_name: Arc<str> = kind.as_str().into();
                let resource: Arc<str> = name.as_str().into();
                last = last.max(broker.journal_append(|| Op::DeleteResource(kind_name, resource)));
            }
            broker.durable(last).await;
        }
        for (kind, name) in &plan.taken_over {
            info!(kind = kind.as_str(), %name, "The config file now declares this resource; the one the management API created is replaced.");
        }
        let previous = self.registry.current();
        let current = match self.registry.replace_with_limits(plan.resources, plan.limits.clone()) {
            Ok(current) => current,
            Err(error) => {
                // Planning validated the same resources under the same limits, under the
                // changes lock: this cannot happen, and nothing has changed if it does.
                warn!(%error, "Reload of the namespace resources refused.");
                return;
            }
        };
        if let Err(error) = self.access.update_with_limits(&current, plan.limits) {
            warn!(%error, "Reload of the access policy refused.");
        }
        if let Some(authenticator) = plan.authenticator {
            *self.authenticator.write() = authenticator;
            self.prepare().await;
        }
        *self.declared.write() = plan.declared;
        self.enforce(&previous, &current);
    }
}
