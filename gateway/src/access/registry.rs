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
    limits: Limits,
    current: RwLock<Arc<Resources>>,
}

impl Registry {
    /// A registry holding `resources`, which must be valid under `limits`.
    pub fn new(resources: Resources, limits: Limits) -> Result<Registry, ValidationError> {
        resources.validate(&limits)?;
        Ok(Registry { limits, current: RwLock::new(Arc::new(resources)) })
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Resources> {
        self.current.read().clone()
    }

    /// The limits resources are validated against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validates `resources` and makes them current; on error nothing changes.
    pub fn replace(&self, resources: Resources) -> Result<Arc<Resources>, ValidationError> {
        resources.validate(&self.limits)?;
        let resources = Arc::new(resources);
        *self.current.write() = resources.clone();
        Ok(resources)
    }
}
