//! Access control: Event Grid's namespace resources and the authorization they grant.
//!
//! Event Grid's model is an RBAC triple. A **client group** (the principal) selects clients by a
//! query over their authentication name and attributes; a **topic space** (the resource) is a set
//! of topic templates that may name the client (`${client.authenticationName}`,
//! `${client.attributes.x}`); a **permission binding** grants one group `Publisher` or
//! `Subscriber` on one space. There is no implicit access.
//!
//! # Layout
//! - [`model`]: the resources with their JSON (REST) and TOML (config) shapes, validation and
//!   limits.
//! - [`query`]: the client group query language: parser and evaluator.
//! - [`template`]: topic templates: parsing, substitution for one client, topic matching and
//!   subscription-filter coverage.
//! - [`permissions`]: what one client may do, compiled for fast per-message checks.
//! - [`authorizer`]: the policy built from the resources and the cached [`Authorizer`]
//!   implementation the broker calls.
//! - [`explain`]: why a client may or may not publish or subscribe (`POST /access:check`).
//!
//! Invariants:
//! - Nothing here does I/O or knows about connections; the broker calls in through
//!   [`crate::hooks::Authorizer`] and re-checks live subscriptions with
//!   [`permissions::Permissions::still_allows`].
//! - Queries and templates are parsed once, when resources are loaded or changed. Per message,
//!   only precompiled templates are matched.
//! - A substituted variable fills exactly one topic level or part of one, so no attribute value
//!   can widen a template or move it to another level.
//!
//! [`Authorizer`]: crate::hooks::Authorizer

use std::collections::BTreeMap;

use crate::hooks::{AttributeValue, ClientIdentity};

pub mod authorizer;
pub mod explain;
pub mod model;
pub mod permissions;
pub mod query;
pub mod registry;
pub mod template;

pub use authorizer::{AccessControl, AccessPolicy};
pub use model::{Limits, Resources, ValidationError};
pub use permissions::Permissions;

/// The parts of a client that queries and templates look at: its authentication name and its
/// attributes. Borrowed, so evaluating a query or substituting a template copies nothing.
#[derive(Debug, Clone, Copy)]
pub struct ClientView<'a> {
    /// The authentication name, in the case that templates and queries compare against.
    pub authentication_name: &'a str,
    pub attributes: &'a BTreeMap<String, AttributeValue>,
}

impl<'a> From<&'a ClientIdentity> for ClientView<'a> {
    fn from(identity: &'a ClientIdentity) -> ClientView<'a> {
        ClientView {
            authentication_name: &identity.authentication_name,
            attributes: &identity.attributes,
        }
    }
}
