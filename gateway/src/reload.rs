//! Config reload without restart: SIGHUP, or `POST /config:reload` on the management API,
//! reads the config file again and applies what changed.
//!
//! # What applies
//! - `[routing]` routes and enrichments, `[topics.*]` with their event subscriptions
//!   (`routing/router/reload.rs`);
//! - the namespace resources (`[clients.*]`, `[clientGroups.*]`, `[topicSpaces.*]`,
//!   `[permissionBindings.*]`, `[caCertificates.*]`), `[namespace]`'s alternative
//!   authentication name sources, `[access.limits]` and `[auth]` (`namespace/reload.rs`).
//!
//! A client whose grants shrink loses only the subscriptions it may no longer hold, and a
//! client that is disabled or no longer registered is disconnected, exactly as after a change
//! through the management API; every other connection stays up. Resources, topics and
//! subscriptions created through the management API under names the file does not declare are
//! kept.
//!
//! # What needs a restart
//! Listeners (`server`), `[mqtt]`, `[store]`, `[management]`, `[http]`, `[systemTopic]`,
//! `routing.max_buffered_events` and the namespace's identity (`namespace.name`,
//! `subscription_id`, `resource_group`). A reload that changes them applies the rest, keeps
//! the running values, and names them in [`ReloadOutcome::restart_required`] and the log. So
//! does a reload that adds routing or access control to a gateway started without it.
//!
//! # All or nothing
//! The file is parsed and validated as at start-up, then every part is planned (validated and
//! built) before anything applies, under the namespace's and the router's change locks, so a
//! refused reload changes nothing. Each reload is logged and counted in
//! `gridmq_config_reloads_total{result="applied"|"refused"}`.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::namespace::{Namespace, NamespaceReloadError};
use crate::routing::Router;

/// What a started gateway does to a freshly loaded config before it is compared: the command
/// line's overrides (`--listen`, `--data-dir`, `--in-memory`), which the file does not carry.
pub type Overrides = Box<dyn Fn(&mut Config) + Send + Sync>;

/// Reloads the config of one running gateway.
pub struct Reloader {
    /// The config in force: the file as last applied, with the running values of the sections
    /// that need a restart.
    running: tokio::sync::Mutex<Config>,
    source: parking_lot::Mutex<Option<Source>>,
    namespace: Option<Arc<Namespace>>,
    router: Option<Arc<Router>>,
}

struct Source {
    path: PathBuf,
    overrides: Arc<Overrides>,
}

impl crate::mgmt::ConfigReload for Reloader {
    fn reload(
        &self,
    ) -> crate::hooks::BoxFuture<'_, Result<serde_json::Value, crate::mgmt::ReloadRefused>> {
        use crate::mgmt::ReloadRefused;
        Box::pin(async move {
            match Reloader::reload(self).await {
                Ok(outcome) => serde_json::to_value(outcome)
                    .map_err(|error| ReloadRefused::Invalid(Box::new(error))),
                Err(ReloadError::NoFile) => Err(ReloadRefused::NoFile),
                Err(error) => Err(ReloadRefused::Invalid(Box::new(error))),
            }
        })
    }
}

/// What a reload did: the sections it applied and those that changed but need a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadOutcome {
    pub applied: Vec<String>,
    pub restart_required: Vec<String>,
}

/// Why a reload was refused; the config in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no config file: gridmq was started without --config")]
    NoFile,
    /// The file, as at start-up: the message names the field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The namespace the file and the management API's resources would make together.
    #[error(transparent)]
    Namespace(#[from] NamespaceReloadError),
    /// A topic or subscription that cannot be built; the message names the field.
    #[error("invalid config: {0}")]
    Routing(crate::routing::config::RoutingConfigError),
}

impl Reloader {
    /// A reloader for a gateway started with `config` (overrides applied).
    pub(crate) fn new(
        config: Config,
        namespace: Option<Arc<Namespace>>,
        router: Option<Arc<Router>>,
    ) -> Reloader {
        Reloader {
            running: tokio::sync::Mutex::new(config),
            source: parking_lot::Mutex::new(None),
            namespace,
            router,
        }
    }

    /// Makes `path` the file reloads read, with `overrides` applied to what it holds.
    pub fn watch(&self, path: PathBuf, overrides: Overrides) {
        *self.source.lock() = Some(Source { path, overrides: Arc::new(overrides) });
    }

    /// Reads the config file again and applies what changed (see the module docs). Logs and
    /// counts the outcome.
    pub async fn reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let result = self.try_reload().await;
        match &result {
            Ok(outcome) => {
                metrics::counter!("gridmq_config_reloads_total", "result" => "applied")
                    .increment(1);
                info!(applied = ?outcome.applied, restart_required = ?outcome.restart_required, "Config reloaded.");
                if !outcome.restart_required.is_empty() {
                    warn!(sections = ?outcome.restart_required, "These config changes need a restart; the running values stay until then.");
                }
            }
            Err(error) => {
                metrics::counter!("gridmq_config_reloads_total", "result" => "refused")
                    .increment(1);
                error!(%error, "Config reload refused; the config in force stays.");
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let (path, overrides) = match &*self.source.lock() {
            Some(source) => (source.path.clone(), source.overrides.clone()),
            None => return Err(ReloadError::NoFile),
        };
        let mut config = Config::load(&path)?;
        overrides(&mut config);
        config.validate()?;
        // One reload at a time; changes through the management API wait for it.
        let mut running = self.running.lock().await;
        let changes = Changes::between(&running, &config);
        let mut outcome = ReloadOutcome::default();
        for section in changes.restart_only() {
            outcome.restart_required.push(section.to_string());
        }
        let _namespace_lock = match &self.namespace {
            Some(namespace) => Some(namespace.lock_changes().await),
            None => None,
        };
        let _router_lock = match &self.router {
            Some(router) => Some(router.lock_changes().await),
            None => None,
        };
        let namespace_sections = changes.namespace();
        // A file that turns access control off asks for the open embedded mode, which only a
        // restart gives: applying it here would leave an empty namespace and every client
        // without grants.
        let turns_access_off = !config.access_control_applies();
        let namespace_plan = match &self.namespace {
            Some(namespace) if !namespace_sections.is_empty() && !turns_access_off => {
                Some((namespace, namespace.plan_reload(config.namespace_section(), changes.auth)?))
            }
            _ => None,
        };
        let routing_sections = changes.routing();
        let router_plan = match &self.router {
            Some(router) if !routing_sections.is_empty() => {
                let plan = config.routing_section().plan().and_then(|p| router.plan_reload(p));
                Some((router, plan.map_err(ReloadError::Routing)?))
            }
            _ => None,
        };
        // Everything is validated and built: from here on nothing can refuse.
        let (mut applied, mut deferred) = (Vec::new(), Vec::new());
        let namespace_deferred = namespace_plan.is_none() && !namespace_sections.is_empty();
        match namespace_plan {
            Some((namespace, plan)) => {
                namespace.apply_reload(plan).await;
                applied.extend(namespace_sections);
            }
            None => deferred.extend(namespace_sections),
        }
        let routing_deferred = router_plan.is_none() && !routing_sections.is_empty();
        match router_plan {
            Some((router, plan)) => {
                router.apply_reload(plan).await;
                applied.extend(routing_sections);
            }
            None => deferred.extend(routing_sections),
        }
        outcome.applied = applied.into_iter().map(String::from).collect();
        outcome.restart_required.extend(deferred.into_iter().map(String::from));
        let mut next = changes.running(&running, config);
        if namespace_deferred {
            restore_namespace(&running, &mut next);
        }
        if routing_deferred {
            next.routing = running.routing.clone();
            next.topics = running.topics.clone();
        }
        *running = next;
        Ok(outcome)
    }
}

/// Puts `old`'s namespace sections back into `next`: a gateway started without access
/// control has none to apply them to, so they stay reported until a restart.
fn restore_namespace(old: &Config, next: &mut Config) {
    next.clients = old.clients.clone();
    next.client_groups = old.client_groups.clone();
    next.topic_spaces = old.topic_spaces.clone();
    next.permission_bindings = old.permission_bindings.clone();
    next.ca_certificates = old.ca_certificates.clone();
    next.namespace = old.namespace.clone();
    next.access = old.access.clone();
    next.auth = old.auth.clone();
}

/// Which sections differ between the config in force and a new one.
struct Changes {
    server_listeners: bool,
    server_other: bool,
    mqtt: bool,
    store: bool,
    management: bool,
    http: bool,
    system_topic: bool,
    max_buffered_events: bool,
    namespace_identity: Vec<&'static str>,
    alternative_names: bool,
    clients: bool,
    client_groups: bool,
    topic_spaces: bool,
    permission_bindings: bool,
    ca_certificates: bool,
    limits: bool,
    auth: bool,
    routes: bool,
    enrichments: bool,
    topics: bool,
}

/// Compares tables whose types do not implement `PartialEq` by their debug form, which shows
/// every field.
fn differs<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

impl Changes {
    fn between(old: &Config, new: &Config) -> Changes {
        let (a, b) = (&old.namespace, &new.namespace);
        let mut namespace_identity = Vec::new();
        if a.name != b.name {
            namespace_identity.push("namespace.name");
        }
        if a.subscription_id != b.subscription_id {
            namespace_identity.push("namespace.subscription_id");
        }
        if a.resource_group != b.resource_group {
            namespace_identity.push("namespace.resource_group");
        }
        Changes {
            server_listeners: old.server.listeners != new.server.listeners,
            server_other: old.server.shutdown_grace_secs != new.server.shutdown_grace_secs,
            mqtt: differs(&old.mqtt, &new.mqtt),
            store: differs(&old.store, &new.store),
            management: old.management != new.management,
            http: differs(&old.http, &new.http),
            system_topic: old.system_topic != new.system_topic,
            max_buffered_events: old.routing.max_buffered_events != new.routing.max_buffered_events,
            namespace_identity,
            alternative_names: a.alternative_authentication_name_sources
                != b.alternative_authentication_name_sources,
            clients: old.clients != new.clients,
            client_groups: old.client_groups != new.client_groups,
            topic_spaces: old.topic_spaces != new.topic_spaces,
            permission_bindings: old.permission_bindings != new.permission_bindings,
            ca_certificates: old.ca_certificates != new.ca_certificates,
            limits: old.access.limits != new.access.limits,
            auth: differs(&old.auth, &new.auth),
            routes: old.routing.routes != new.routing.routes,
            enrichments: old.routing.enrichments != new.routing.enrichments,
            topics: old.topics != new.topics,
        }
    }

    /// Changed sections that only a restart applies.
    fn restart_only(&self) -> Vec<&'static str> {
        let mut sections = Vec::new();
        for (changed, name) in [
            (self.server_listeners, "server.listeners"),
            (self.server_other, "server.shutdown_grace_secs"),
            (self.mqtt, "mqtt"),
            (self.store, "store"),
            (self.management, "management"),
            (self.http, "http"),
            (self.system_topic, "systemTopic"),
            (self.max_buffered_events, "routing.max_buffered_events"),
        ] {
            if changed {
                sections.push(name);
            }
        }
        sections.extend(&self.namespace_identity);
        sections
    }

    /// Changed sections the namespace applies.
    fn namespace(&self) -> Vec<&'static str> {
        let mut sections = Vec::new();
        for (changed, name) in [
            (self.clients, "clients"),
            (self.client_groups, "clientGroups"),
            (self.topic_spaces, "topicSpaces"),
            (self.permission_bindings, "permissionBindings"),
            (self.ca_certificates, "caCertificates"),
            (self.alternative_names, "namespace.alternative_authentication_name_sources"),
            (self.limits, "access.limits"),
            (self.auth, "auth"),
        ] {
            if changed {
                sections.push(name);
            }
        }
        sections
    }

    /// Changed sections the router applies.
    fn routing(&self) -> Vec<&'static str> {
        let mut sections = Vec::new();
        for (changed, name) in [
            (self.routes, "routing.routes"),
            (self.enrichments, "routing.enrichments"),
            (self.topics, "topics"),
        ] {
            if changed {
                sections.push(name);
            }
        }
        sections
    }

    /// The config in force after applying `new`: its applied sections, with `old`'s values of
    /// those that need a restart, so a later reload still reports them.
    fn running(&self, old: &Config, mut new: Config) -> Config {
        new.server = old.server.clone();
        new.mqtt = old.mqtt.clone();
        new.store = old.store.clone();
        new.management = old.management.clone();
        new.http = old.http.clone();
        new.system_topic = old.system_topic.clone();
        new.routing.max_buffered_events = old.routing.max_buffered_events;
        new.namespace.name = old.namespace.name.clone();
        new.namespace.subscription_id = old.namespace.subscription_id.clone();
        new.namespace.resource_group = old.namespace.resource_group.clone();
        new
    }
}

#[cfg(test)]
mod tests;
