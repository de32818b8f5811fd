//! The access policy compiled from the namespace's resources, and [`AccessControl`], the
//! [`Authorizer`] the broker calls for every PUBLISH and SUBSCRIBE.
//!
//! # From resources to permissions
//! [`AccessPolicy::new`] validates the resources and parses every query and template once.
//! [`AccessPolicy::compile`] then gives one client's [`Permissions`]:
//! 1. Find the registered client by authentication name, case-insensitively, as Event Grid
//!    does. A disabled client gets nothing. A registered client is judged by its registered
//!    authentication name (the case it was registered with) and its registered attributes, so
//!    changes through the management API apply to live connections. A client that is not
//!    registered (vouched for by a token or webhook) is judged by its identity as given.
//! 2. Its groups: `$all`, and every group whose query it satisfies.
//! 3. Every template of every topic space bound to one of those groups, substituted for the
//!    client (templates that do not apply are dropped), into the publish or subscribe set.
//!
//! Templates compare the authentication name byte for byte: a client registered as `car1` and
//! connecting as `Car1` gets `vehicles/car1/#`, and `vehicles/Car1/x` is another client's topic.
//!
//! # Caching
//! [`AccessControl`] keeps each connected client's [`Permissions`] keyed by client id, together
//! with the identity and the policy generation they were compiled for. A lookup whose identity
//! or generation differs compiles afresh, so a new identity taking over a client id never sees
//! the previous one's permissions, and [`AccessControl::update`] (which bumps the generation)
//! takes effect on the next message. Invariant: per message there is a hash lookup, an identity
//! comparison and template matching; no parsing, no query evaluation, no substitution.
//! Entries are dropped when the client connects or disconnects (via [`LifecycleObserver`]) or
//! by [`AccessControl::forget`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::access::ClientView;
use crate::access::model::{
    ALL_GROUP, ClientState, Limits, Permission, Resources, ValidationError,
};
use crate::access::permissions::{Permissions, TemplateSet};
use crate::access::query::Query;
use crate::access::template::TopicTemplate;
use crate::hooks::{
    AttributeValue, Authorizer, ClientIdentity, Denied, LifecycleEvent, LifecycleObserver,
};

/// The resources, parsed and indexed for compiling permissions.
#[derive(Debug, Default)]
pub struct AccessPolicy {
    /// Registered clients by lower-cased authentication name.
    clients: HashMap<String, RegisteredClient>,
    /// Declared groups, in name order.
    groups: Vec<Group>,
    /// What `$all` is granted.
    all_grants: Vec<Grant>,
    spaces: Vec<Vec<TopicTemplate>>,
}

/// The [`Authorizer`]: the current policy plus a cache of compiled permissions per client id.
#[derive(Debug)]
pub struct AccessControl {
    /// Changed only by a config reload ([`AccessControl::update_with_limits`]).
    limits: RwLock<Limits>,
    policy: RwLock<Arc<AccessPolicy>>,
    generation: AtomicU64,
    cache: RwLock<HashMap<Arc<str>, CacheEntry>>,
}

/// A client as the policy judges it ([`AccessPolicy::subject`]).
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A registered client that is disabled: it may do nothing.
    Disabled { client: &'a Arc<str> },
    /// A client judged by `view`: its registered name and attributes when `registered`, its
    /// identity as given otherwise.
    Enabled { client: &'a Arc<str>, registered: bool, view: ClientView<'a> },
}

#[derive(Debug)]
struct RegisteredClient {
    authentication_name: Arc<str>,
    enabled: bool,
    attributes: std::collections::BTreeMap<String, AttributeValue>,
}

#[derive(Debug)]
struct Group {
    name: Arc<str>,
    query: Query,
    grants: Vec<Grant>,
}

#[derive(Debug, Clone, Copy)]
struct Grant {
    permission: Permission,
    /// Index into `AccessPolicy::spaces`.
    space: usize,
}

#[derive(Debug)]
struct CacheEntry {
    generation: u64,
    identity: ClientIdentity,
    permissions: Arc<Permissions>,
}

// === impl AccessPolicy ===

impl AccessPolicy {
    /// Validates the resources against `limits` and compiles them.
    pub fn new(resources: &Resources, limits: &Limits) -> Result<AccessPolicy, ValidationError> {
        resources.validate(limits)?;
        let mut policy = AccessPolicy::default();
        let mut space_index = HashMap::new();
        for (name, space) in &resources.topic_spaces {
            let templates = space
                .topic_templates
                .iter()
                .enumerate()
                .map(|(index, template)| {
                    TopicTemplate::parse(template).map_err(|e| {
                        ValidationError::new(
                            format!("topicSpaces[{name}].topicTemplates[{index}]"),
                            e.to_string(),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            space_index.insert(name.as_str(), policy.spaces.len());
            policy.spaces.push(templates);
        }
        for (name, group) in &resources.client_groups {
            let query = Query::parse(&group.query).map_err(|e| {
                ValidationError::new(format!("clientGroups[{name}].query"), e.to_string())
            })?;
            policy.groups.push(Group { name: name.as_str().into(), query, grants: Vec::new() });
        }
        for binding in resources.permission_bindings.values() {
            // Validation guarantees that the space and the group exist.
            let Some(&space) = space_index.get(binding.topic_space_name.as_str()) else {
                continue;
            };
            let grant = Grant { permission: binding.permission, space };
            if binding.client_group_name == ALL_GROUP {
                policy.all_grants.push(grant);
            } else if let Some(group) =
                policy.groups.iter_mut().find(|g| *g.name == *binding.client_group_name)
            {
                group.grants.push(grant);
            }
        }
        for (name, client) in &resources.clients {
            let authentication_name = client.authentication_name_or(name);
            policy.clients.insert(
                authentication_name.to_lowercase(),
                RegisteredClient {
                    authentication_name: authentication_name.into(),
                    enabled: client.state == ClientState::Enabled,
                    attributes: client.attributes.clone(),
                },
            );
        }
        Ok(policy)
    }

    /// How the policy judges `identity`: step 1 of the module docs. The explainer
    /// ([`crate::access::explain`]) starts from the same answer.
    pub fn subject<'a>(&'a self, identity: &'a ClientIdentity) -> Subject<'a> {
        match self.clients.get(&identity.authentication_name.to_lowercase()) {
            Some(registered) if !registered.enabled => {
                Subject::Disabled { client: &registered.authentication_name }
            }
            Some(registered) => Subject::Enabled {
                client: &registered.authentication_name,
                registered: true,
                view: ClientView {
                    authentication_name: &registered.authentication_name,
                    attributes: &registered.attributes,
                },
            },
            None => Subject::Enabled {
                client: &identity.authentication_name,
                registered: false,
                view: ClientView::from(identity),
            },
        }
    }

    /// Compiles what the client may do (see the module docs).
    pub fn compile(&self, identity: &ClientIdentity) -> Permissions {
        let (client, view) = match self.subject(identity) {
            Subject::Disabled { client } => return Permissions::disabled(client.clone()),
            Subject::Enabled { client, view, .. } => (client.clone(), view),
        };
        let mut groups: Vec<Arc<str>> = vec![ALL_GROUP.into()];
        let mut grants = self.all_grants.clone();
        for group in &self.groups {
            if group.query.matches(&view) {
                groups.push(group.name.clone());
                grants.extend_from_slice(&group.grants);
            }
        }
        let mut publish = TemplateSet::default();
        let mut subscribe = TemplateSet::default();
        for grant in grants {
            let set = match grant.permission {
                Permission::Publisher => &mut publish,
                Permission::Subscriber => &mut subscribe,
            };
            for template in &self.spaces[grant.space] {
                if let Some(compiled) = template.substitute(&view) {
                    set.insert(compiled);
                }
            }
        }
        Permissions::new(client, groups, publish, subscribe)
    }
}

// === impl AccessControl ===

impl AccessControl {
    /// An authorizer over validated resources.
    pub fn new(resources: &Resources, limits: Limits) -> Result<AccessControl, ValidationError> {
        let policy = AccessPolicy::new(resources, &limits)?;
        Ok(AccessControl {
            limits: RwLock::new(limits),
            policy: RwLock::new(Arc::new(policy)),
            generation: AtomicU64::new(0),
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// Replaces the resources. On success every cached permission is stale from now on, and the
    /// new generation is returned; the broker then re-checks live connections with
    /// [`AccessControl::permissions`] ([`Permissions::is_disabled`],
    /// [`Permissions::still_allows`]). On error nothing changes.
    pub fn update(&self, resources: &Resources) -> Result<u64, ValidationError> {
        self.update_with_limits(resources, self.limits())
    }

    /// [`AccessControl::update`] under new `limits` (a config reload); on error nothing changes.
    pub fn update_with_limits(
        &self,
        resources: &Resources,
        limits: Limits,
    ) -> Result<u64, ValidationError> {
        let policy = AccessPolicy::new(resources, &limits)?;
        *self.limits.write() = limits;
        // The policy is replaced before the generation moves: whoever sees the new generation
        // compiles with the new policy.
        *self.policy.write() = Arc::new(policy);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.cache.write().retain(|_, entry| entry.generation == generation);
        Ok(generation)
    }

    /// The generation of the current policy; it grows by one with each update.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The limits resources are validated against.
    pub fn limits(&self) -> Limits {
        self.limits.read().clone()
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<AccessPolicy> {
        self.policy.read().clone()
    }

    /// The client's permissions, from the cache or compiled now.
    pub fn permissions(&self, identity: &ClientIdentity) -> Arc<Permissions> {
        let generation = self.generation();
        if let Some(entry) = self.cache.read().get(&identity.client_id)
            && entry.generation == generation
            && entry.identity == *identity
        {
            return entry.permissions.clone();
        }
        self.compile_and_cache(identity, generation)
    }

    /// Drops the client id's cached permissions.
    pub fn forget(&self, client_id: &str) {
        self.cache.write().remove(client_id);
    }

    /// Runs `check` against the cached permissions without touching their reference count; on
    /// a miss, compiles first.
    fn with_permissions<T>(
        &self,
        identity: &ClientIdentity,
        check: impl Fn(&Permissions) -> T,
    ) -> T {
        let generation = self.generation();
        if let Some(entry) = self.cache.read().get(&identity.client_id)
            && entry.generation == generation
            && entry.identity == *identity
        {
            return check(&entry.permissions);
        }
        check(&self.compile_and_cache(identity, generation))
    }

    fn compile_and_cache(&self, identity: &ClientIdentity, generation: u64) -> Arc<Permissions> {
        let permissions = Arc::new(self.policy.read().compile(identity));
        let entry =
            CacheEntry { generation, identity: identity.clone(), permissions: permissions.clone() };
        self.cache.write().insert(identity.client_id.clone(), entry);
        permissions
    }
}

impl Authorizer for AccessControl {
    fn authorize_publish(&self, identity: &ClientIdentity, topic: &str) -> Result<(), Denied> {
        self.with_permissions(identity, |permissions| permissions.may_publish(topic))
    }

    fn authorize_subscribe(&self, identity: &ClientIdentity, filter: &str) -> Result<(), Denied> {
        self.with_permissions(identity, |permissions| permissions.may_subscribe(filter))
    }
}

/// Drops cached permissions when a client connects (so they are compiled on first use) and
/// when it disconnects (so the cache holds connected clients only).
impl LifecycleObserver for AccessControl {
    fn on_event(&self, event: &LifecycleEvent) {
        match event {
            LifecycleEvent::Connected { identity, .. }
            | LifecycleEvent::Disconnected { identity, .. } => self.forget(&identity.client_id),
            LifecycleEvent::SessionExpired { .. }
            | LifecycleEvent::ClientChanged { .. }
            | LifecycleEvent::ClientDeleted { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
