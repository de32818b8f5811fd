//! The namespace at run time: its resources ([`Registry`]), the authorization they grant
//! ([`AccessControl`]) and the authenticator, assembled into the broker's [`Hooks`]; and every
//! change to the resources, from the management API, applied at once to live sessions.
//!
//! # When access control applies
//! The embedded default (no registry resources, no `[auth]`, no `[management]`, nothing stored
//! by the management API) keeps the hooks the caller gave: anonymous clients, everything
//! authorized. As soon as any of those is present, the namespace's hooks replace the
//! authenticator and the authorizer, and there is no implicit access: a client with no
//! permission binding can do nothing. Authentication is then [`Authentication`] with the
//! `[auth]` table, or its defaults when there is none (registered clients with credentials
//! only); anonymous clients need `auth.allow_anonymous = true`.
//!
//! # Where resources come from
//! The config file declares resources; the management API creates, changes and deletes others,
//! persisted in the store (`PutResource`/`DeleteResource`). At start-up the resources are the
//! config's, plus the stored ones whose names the config does not declare. The config is
//! authoritative for the names it declares: the API refuses to change or delete them (409), so
//! a resource has exactly one owner and a restart never silently undoes either side.
//!
//! # A change takes effect at once
//! [`Namespace::apply`] validates the whole changed namespace, appends the change to the
//! journal and waits until it is durable, swaps the resources in, updates [`AccessControl`]
//! (bumping its generation, so the next PUBLISH is judged by the new policy), and then walks the
//! sessions of clients it has seen connect:
//! - a client that is now disabled, or that was registered and no longer is (deleted, or its
//!   authentication name changed), is disconnected with DISCONNECT 0x98 (administrative action);
//! - every subscription the client may no longer hold ([`Permissions::still_allows`]) is
//!   removed from its session, connected or not.
//!
//! A persistent session resumed after a restart (or after a change made while the broker did
//! not know its identity) is re-checked the same way when its client reconnects.
//!
//! # Client ids
//! A session belongs to the authentication name that created it. While the broker holds a
//! session (connected or not), a CONNECT or re-authentication with the same client id under
//! another authentication name (compared case-insensitively) is refused with 0x87, as Event
//! Grid does; so is a registered client that is disabled.

mod kind;
mod reload;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{Mutex, RwLock};
use tracing::{info, warn};

pub use self::kind::ResourceKind;
pub use self::reload::{NamespaceReload, NamespaceReloadError};
use crate::access::model::{ClientState, Limits, Resources, ValidationError};
use crate::access::registry::Registry;
use crate::access::{AccessControl, Permissions};
use crate::auth::{AuthConfig, AuthConfigError, Authentication};
use crate::broker::Broker;
use crate::broker::session::Session;
use crate::hooks::{
    AuthDecision, AuthRequest, Authenticator, BoxFuture, ClientIdentity, Hooks, LifecycleEvent,
    LifecycleObserver,
};
use crate::mqtt::ReasonCode;
use crate::store::Op;
use crate::store::record::now_ms;

/// The part of the config file the namespace is built from ([`crate::config::Config`] gives
/// it).
#[derive(Debug, Clone, Default)]
pub struct NamespaceSection {
    /// The resources the file declares.
    pub resources: Resources,
    /// `[access.limits]`.
    pub limits: Limits,
    /// `[auth]`; without it, its defaults apply.
    pub auth: Option<AuthConfig>,
    /// Whether the file turns access control on (see [`crate::config::Config`]).
    pub access_control: bool,
}

/// Why the namespace could not be built at start-up; the message names the resource and the
/// field.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A stored resource whose body is not JSON.
    #[error("store: {kind}[{name}]: {source}")]
    StoredJson { kind: String, name: String, source: serde_json::Error },
    /// A stored resource whose properties are not valid for its kind.
    #[error("store: {kind}[{name}].{source}")]
    StoredResource { kind: String, name: String, source: ValidationError },
    /// The declared and stored resources together are not a valid namespace.
    #[error("namespace resources (config and store): {0}")]
    Resources(#[from] ValidationError),
    /// An `[auth]` table that cannot be built (e.g. an unreadable key file).
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
}

/// The live namespace: see the module docs.
pub struct Namespace {
    registry: Arc<Registry>,
    access: Arc<AccessControl>,
    /// The `[auth]` methods over the live registry; a config reload swaps them.
    authenticator: RwLock<Arc<Authentication>>,
    /// Names the config file declares: read-only through the API. A config reload replaces
    /// them.
    declared: RwLock<HashSet<(ResourceKind, String)>>,
    /// The identity of every session the broker holds whose client connected since start-up.
    known: Mutex<HashMap<Arc<str>, ClientIdentity>>,
    broker: OnceLock<Weak<Broker>>,
    /// Serializes changes, so none is lost between validation and swap.
    changes: tokio::sync::Mutex<()>,
}

/// One change through the management API.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create or replace a resource from its JSON properties.
    Put {
        kind: ResourceKind,
        name: String,
        properties: serde_json::Value,
    },
    Delete {
        kind: ResourceKind,
        name: String,
    },
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The change would make the namespace invalid; the path names the field.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The resource is declared in the config file.
    #[error("{kind}/{name} is declared in the config file; change it there")]
    Declared { kind: &'static str, name: String },
}

/// Where a change comes from: this node's management API, or another node's through the
/// cluster (already stored there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    Cluster,
}

/// What a successful change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Whether a resource of that name existed before.
    pub existed: bool,
}

// === impl Namespace ===

impl Namespace {
    /// Builds the namespace from its section of the config and the resources the store holds
    /// (kind, name, JSON), or `None` in the embedded default, where no access control applies. The error
    /// names the resource and the field.
    pub fn open(
        section: NamespaceSection,
        stored: &[(String, String, Vec<u8>)],
    ) -> Result<Option<Arc<Namespace>>, OpenError> {
        let NamespaceSection { resources: declared_resources, limits, auth, access_control } =
            section;
        let stored_resources =
            stored.iter().any(|(kind, ..)| !crate::routing::router::is_topic_kind(kind));
        if !access_control && !stored_resources {
            return Ok(None);
        }
        let mut declared = HashSet::new();
        for kind in ResourceKind::ALL {
            for name in kind.names(&declared_resources) {
                declared.insert((kind, name));
            }
        }
        let mut resources = declared_resources;
        for (kind_name, name, body) in stored {
            if crate::routing::router::is_topic_kind(kind_name) {
                // Namespace topics and their subscriptions belong to the router.
                continue;
            }
            let Some(kind) = ResourceKind::parse(kind_name) else {
                warn!(kind = %kind_name, %name, "Ignoring a stored resource of unknown kind.");
                continue;
            };
            if declared.contains(&(kind, name.clone())) {
                warn!(kind = %kind_name, %name, "The config declares this resource: the stored one is ignored.");
                continue;
            }
            let value: serde_json::Value = serde_json::from_slice(body).map_err(|source| {
                OpenError::StoredJson { kind: kind_name.clone(), name: name.clone(), source }
            })?;
            kind.put(&mut resources, name, value).map_err(|source| OpenError::StoredResource {
                kind: kind_name.clone(),
                name: name.clone(),
                source,
            })?;
        }
        let registry = Registry::new(resources.clone(), limits.clone())?;
        let access = AccessControl::new(&resources, limits)?;
        let registry = Arc::new(registry);
        // Without an `[auth]` table its defaults apply: registered clients with credentials
        // only, no anonymous access.
        let authenticator = Authentication::new(&auth.unwrap_or_default(), registry.clone())?;
        let authenticator = Arc::new(authenticator);
        info!(
            clients = resources.clients.len(),
            client_groups = resources.client_groups.len(),
            topic_spaces = resources.topic_spaces.len(),
            permission_bindings = resources.permission_bindings.len(),
            stored = stored.len(),
            "Access control applies."
        );
        Ok(Some(Arc::new(Namespace {
            registry,
            access: Arc::new(access),
            authenticator: RwLock::new(authenticator),
            declared: RwLock::new(declared),
            known: Mutex::new(HashMap::new()),
            broker: OnceLock::new(),
            changes: tokio::sync::Mutex::new(()),
        })))
    }

    /// The broker's hooks: `base`'s routing tap and observers, with the namespace's
    /// authenticator ([`Authentication`]) behind the client-id and disabled-client checks, and
    /// [`AccessControl`] as authorizer and observer. `base`'s authenticator and authorizer are
    /// not used.
    pub fn hooks(self: &Arc<Self>, base: Hooks) -> Hooks {
        let mut observers = base.observers;
        observers.push(self.access.clone());
        observers.push(self.clone());
        Hooks {
            authenticator: Arc::new(Gatekeeper { namespace: self.clone() }),
            authorizer: self.access.clone(),
            tap: base.tap,
            observers,
        }
    }

    /// Fetches what authentication needs from the network (a JWKS URL) before clients arrive.
    /// A failure is logged, not fatal: the keys are fetched again on first use, so an issuer
    /// that is down for a moment does not keep the broker down.
    pub async fn prepare(&self) {
        let authenticator = self.authenticator.read().clone();
        if let Err(error) = authenticator.fetch_remote_keys().await {
            warn!(%error, "Cannot fetch the JWT issuer's keys yet; they are fetched on first use.");
        }
    }

    /// Connects the namespace to the broker its hooks run in, so changes reach live sessions
    /// and the journal.
    pub fn attach(&self, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
    }

    /// The current resources.
    pub fn resources(&self) -> Arc<Resources> {
        self.registry.current()
    }

    /// The registry, shared with the authentication methods.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The authorizer.
    pub fn access(&self) -> &Arc<AccessControl> {
        &self.access
    }

    /// The identity of the client holding `client_id`'s session, when it connected since
    /// start-up (the console and the access explainer look clients up by it).
    pub fn known_identity(&self, client_id: &str) -> Option<ClientIdentity> {
        self.known.lock().get(client_id).cloned()
    }

    /// The broker the namespace is attached to, while it runs.
    pub fn attached_broker(&self) -> Option<Arc<Broker>> {
        self.broker()
    }

    /// Whether the config file declares this resource.
    pub fn is_declared(&self, kind: ResourceKind, name: &str) -> bool {
        self.declared.read().contains(&(kind, name.to_string()))
    }

    /// Validates, persists and applies one change (see the module docs). Returns once the
    /// change is durable and live sessions have been re-checked.
    pub async fn apply(&self, change: Change) -> Result<Applied, ChangeError> {
        self.apply_from(change, Origin::Local).await
    }

    /// Applies a change another node of the cluster made and stored (`crate::cluster`): as
    /// [`Namespace::apply`] does, live sessions included, but without journaling it again and
    /// without the client lifecycle event, which the node that made the change emitted. A change
    /// that equals what this node already has (its own, coming back) does nothing.
    pub async fn apply_replicated(&self, change: Change) -> Result<Applied, ChangeError> {
        self.apply_from(change, Origin::Cluster).await
    }

    async fn apply_from(&self, change: Change, origin: Origin) -> Result<Applied, ChangeError> {
        let _serial = self.changes.lock().await;
        let (kind, name) = match &change {
            Change::Put { kind, name, .. } | Change::Delete { kind, name } => (*kind, name.clone()),
        };
        kind.check_name(&name).map_err(|problem| ValidationError::new("name", problem))?;
        if self.is_declared(kind, &name) {
            return Err(ChangeError::Declared { kind: kind.as_str(), name });
        }
        let prefix = format!("{}[{name}]", kind.as_str());
        let proposal = self
            .registry
            .propose(|resources| match change {
                Change::Put { properties, .. } => kind.put(resources, &name, properties),
                Change::Delete { .. } => Ok(kind.remove(resources, &name)),
            })
            .map_err(|error: ValidationError| relative_to(error, &prefix))?;
        let existed = proposal.outcome;
        let body = kind.get(&proposal.proposed, &name);
        if body.is_none() && !existed {
            // Deleting what is not there changes nothing.
            return Ok(Applied { existed });
        }
        if origin == Origin::Cluster && kind.get(&proposal.current, &name) == body {
            return Ok(Applied { existed });
        }
        if origin == Origin::Local
            && let Some(broker) = self.broker()
        {
            let kind_name: Arc<str> = kind.as_str().into();
            let resource: Arc<str> = name.as_str().into();
            let ticket = broker.journal_append(|| match &body {
                Some(body) => {
                    Op::PutResource(kind_name, resource, body.to_string().into_bytes().into())
                }
                None => Op::DeleteResource(kind_name, resource),
            });
            broker.durable(ticket).await;
        }
        let previous = proposal.current;
        let before = kind.get(&previous, &name);
        let current = self.registry.replace(proposal.proposed)?;
        self.access.update(&current)?;
        info!(kind = kind.as_str(), %name, deleted = body.is_none(), "Namespace resource changed.");
        self.enforce(&previous, &current);
        if kind == ResourceKind::Clients
            && origin == Origin::Local
            && let Some(broker) = self.broker()
        {
            broker.hooks.emit(client_event(&name, body.as_ref(), before.as_ref(), existed));
        }
        Ok(Applied { existed })
    }

    /// Disconnects clients that lost their access and removes subscriptions they may no longer
    /// hold, after the resources changed from `before` to `after`.
    fn enforce(&self, before: &Resources, after: &Resources) {
        let Some(broker) = self.broker() else { return };
        let registered_before = authentication_names(before);
        let registered_after = authentication_names(after);
        let known: Vec<ClientIdentity> = self.known.lock().values().cloned().collect();
        for identity in known {
            let Some(session) = broker.session(&identity.client_id) else { continue };
            let permissions = self.access.permissions(&identity);
            let name = identity.authentication_name.to_lowercase();
            let unregistered =
                registered_before.contains(&name) && !registered_after.contains(&name);
            if (permissions.is_disabled() || unregistered)
                && session.kick(ReasonCode::AdministrativeAction)
            {
                info!(client_id = %identity.client_id, "Disconnecting a client that lost its access.");
            }
            revoke_subscriptions(&broker, &session, &permissions);
        }
    }

    fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.get().and_then(Weak::upgrade)
    }

    /// Why `identity` may not have `client_id` now, if it may not.
    fn refusal(&self, identity: &ClientIdentity, client_id: &str) -> Option<String> {
        let resources = self.registry.current();
        if let Some((name, client)) =
            resources.client_by_authentication_name(&identity.authentication_name)
            && client.state == ClientState::Disabled
        {
            return Some(format!("client {name:?} is disabled"));
        }
        let holder =
            self.known.lock().get(client_id).map(|known| known.authentication_name.clone());
        match holder {
            Some(holder)
                if holder.to_lowercase() != identity.authentication_name.to_lowercase() =>
            {
                Some(format!(
                    "client id {client_id:?} belongs to a session of another authentication name"
                ))
            }
            _ => None,
        }
    }
}

/// The lifecycle event of a change to client `name`: `after` is its new body (`None` when
/// deleted), `before` its old one.
fn client_event(
    name: &str,
    after: Option<&serde_json::Value>,
    before: Option<&serde_json::Value>,
    existed: bool,
) -> LifecycleEvent {
    let authentication_name = |body: Option<&serde_json::Value>| -> Arc<str> {
        body.and_then(|b| b.get("authenticationName"))
            .and_then(|v| v.as_str())
            .unwrap_or(name)
            .into()
    };
    match after {
        Some(body) => LifecycleEvent::ClientChanged {
            name: name.into(),
            authentication_name: authentication_name(Some(body)),
            enabled: body.get("state").and_then(|v| v.as_str()) != Some("Disabled"),
            attributes: body
                .get("attributes")
                .and_then(|v| v.as_object())
                .cloned()
                .unwrap_or_default(),
            created: (!existed).then(std::time::SystemTime::now),
        },
        None => LifecycleEvent::ClientDeleted {
            name: name.into(),
            authentication_name: authentication_name(before),
        },
    }
}

/// Keeps the identity of each session's client, and re-checks a resumed session's
/// subscriptions against the current permissions.
impl LifecycleObserver for Namespace {
    fn on_event(&self, event: &LifecycleEvent) {
        match event {
            LifecycleEvent::Connected { identity, session_present, .. } => {
                self.known.lock().insert(identity.client_id.clone(), identity.clone());
                if *session_present
                    && let Some(broker) = self.broker()
                    && let Some(session) = broker.session(&identity.client_id)
                {
                    revoke_subscriptions(&broker, &session, &self.access.permissions(identity));
                }
            }
            LifecycleEvent::Disconnected { identity, .. } => {
                // A session that outlives its connection stays known; an ended one does not.
                let ended = self.broker().is_none_or(|b| b.session(&identity.client_id).is_none());
                if ended {
                    self.known.lock().remove(&identity.client_id);
                }
            }
            LifecycleEvent::SessionExpired { client_id } => {
                self.known.lock().remove(client_id);
            }
            LifecycleEvent::ClientChanged { .. } | LifecycleEvent::ClientDeleted { .. } => {}
        }
    }
}

/// The namespace's authenticator: the configured method (as the last config reload left it),
/// then the checks of the module docs.
struct Gatekeeper {
    namespace: Arc<Namespace>,
}

impl Authenticator for Gatekeeper {
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> BoxFuture<'a, AuthDecision> {
        Box::pin(async move {
            let client_id = request.client_id;
            let inner = self.namespace.authenticator.read().clone();
            let decision = inner.authenticate(request).await;
            if let AuthDecision::Allow { identity, .. } = &decision
                && let Some(reason) = self.namespace.refusal(identity, client_id)
            {
                return AuthDecision::Deny {
                    code: ReasonCode::NotAuthorized,
                    reason: Some(format!("not authorized: {reason}")),
                };
            }
            decision
        })
    }
}

/// Removes every subscription of `session` that `permissions` no longer allow, and stores the
/// session's record if anything went.
fn revoke_subscriptions(broker: &Broker, session: &Arc<Session>, permissions: &Permissions) {
    let filters: Vec<String> = session.lock().subscriptions.keys().cloned().collect();
    let mut removed = 0;
    for filter in filters {
        if !permissions.still_allows(&filter) {
            broker.unsubscribe(session, &filter);
            removed += 1;
        }
    }
    if removed > 0 {
        info!(client_id = %session.client_id, removed, "Removed subscriptions the client may no longer hold.");
        let attached = session.lock().attached.is_some();
        // An offline session's record restarts its expiry from now: a small extension, never a
        // subscription it may not hold.
        broker.persist_session(session, (!attached).then(now_ms));
    }
}

/// Registered authentication names, lower-cased.
fn authentication_names(resources: &Resources) -> HashSet<String> {
    resources
        .clients
        .iter()
        .map(|(name, client)| client.authentication_name_or(name).to_lowercase())
        .collect()
}

/// A validation error about the resource being changed, with its path relative to the request
/// body (`clientGroups[edge].query` becomes `properties.query`).
fn relative_to(error: ValidationError, prefix: &str) -> ValidationError {
    match error.path.strip_prefix(prefix) {
        Some("") => ValidationError { path: "properties".into(), ..error },
        Some(rest) if rest.starts_with('.') => {
            ValidationError { path: format!("properties{rest}"), ..error }
        }
        _ => error,
    }
}

#[cfg(test)]
mod tests;
