//! The live namespace resources: one shared, swappable snapshot that authentication,
//! authorization and the management API all read.
//!
//! Readers take an `Arc<Resources>` snapshot and never hold a lock while they use it; a change
//! builds a new snapshot, validates it, and swaps it in whole.

use std::sync::Arc;

use parking_lot::RwLock;

use super::model::{Limits, Resources, ValidationError};

/// The current resources.
#[derive(Debug)]
pub struct Registry {
    /// Changed only by a config reload, together with the resources.
    limits: RwLock<Limits>,
    current: RwLock<Arc<Resources>>,
}

impl Registry {
    /// A registry holding `resources`, which must be valid under `limits`.
    pub fn new(resources: Resources, limits: Limits) -> Result<Registry, ValidationError> {
        resources.validate(&limits)?;
        Ok(Registry { limits: RwLock::new(limits), current: RwLock::new(Arc::new(resources)) })
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Resources> {
        self.current.read().clone()
    }

    /// The limits resources are validated against.
    pub fn limits(&self) -> Limits {
        self.limits.read().clone()
    }

    /// Validates `resources` and makes them current; on error nothing changes.
    pub fn replace(&self, resources: Resources) -> Result<Arc<Resources>, ValidationError> {
        self.replace_with_limits(resources, self.limits())
    }

    /// Validates `resources` under new `limits` and makes both current (a config reload); on
    /// error nothing changes.
    pub fn replace_with_limits(
        &self,
        resources: Resources,
        limits: Limits,
    ) -> Result<Arc<Resources>, ValidationError> {
        resources.validate(&limits)?;
        let resources = Arc::new(resources);
        *self.limits.write() = limits;
        *self.current.write() = resources.clone();
        Ok(resources)
    }
}

impl Registry {
    /// A copy of the current resources with `change` applied and validated as a whole, next to
    /// the current snapshot it was made from. Nothing changes until the caller passes the copy to
    /// [`Registry::replace`]; callers that change concurrently serialize among themselves, so no
    /// change is lost between `propose` and `replace`.
    pub fn propose<T, E: From<ValidationError>>(
        &self,
        change: impl FnOnce(&mut Resources) -> Result<T, E>,
    ) -> Result<Proposal<T>, E> {
        let current = self.current();
        let mut proposed = (*current).clone();
        let outcome = change(&mut proposed)?;
        proposed.validate(&self.limits())?;
        Ok(Proposal { current, proposed, outcome })
    }
}

/// A validated change of the resources that is not current yet; see [`Registry::propose`].
#[derive(Debug)]
pub struct Proposal<T> {
    /// The snapshot the change was made from.
    pub current: Arc<Resources>,
    /// The resources with the change applied.
    pub proposed: Resources,
    /// What the change returned.
    pub outcome: T,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::model::{ClientGroupProperties, ValidationError};

    #[test]
    fn a_proposal_changes_nothing_until_replaced() {
        let registry = Registry::new(Resources::default(), Limits::default()).expect("registry");
        let group = ClientGroupProperties { description: None, query: "attributes.a = 1".into() };
        let proposal = registry
            .propose(|r| {
                r.client_groups.insert("fleet".into(), group.clone());
                Ok::<_, ValidationError>(())
            })
            .expect("valid");
        assert!(registry.current().client_groups.is_empty());
        registry.replace(proposal.proposed).expect("replace");
        assert_eq!(registry.current().client_groups.get("fleet"), Some(&group));
    }

    #[test]
    fn an_invalid_proposal_is_refused_whole() {
        let registry = Registry::new(Resources::default(), Limits::default()).expect("registry");
        let error = registry
            .propose(|r| {
                r.client_groups.insert(
                    "fleet".into(),
                    ClientGroupProperties { description: None, query: "attributes.a = ".into() },
                );
                Ok::<_, ValidationError>(())
            })
            .expect_err("bad query");
        assert!(error.path.starts_with("clientGroups[fleet].query"), "{error}");
        assert!(registry.current().client_groups.is_empty());
    }
}
