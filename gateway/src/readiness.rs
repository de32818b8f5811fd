//! What `GET /readyz` answers from: a small registry that each component keeps up to date as
//! its state changes, so that answering costs one lock and no probing.
//!
//! Ready means every listener is bound, the store is writable (its last commit succeeded),
//! recovery is finished and every push dispatcher is running with its endpoint validated. A
//! component registers an [`Entry`] and marks it ready or not ready with a reason; dropping
//! the entry (a retired dispatcher) removes it. `/healthz` stays liveness only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

/// The parts of the gateway readiness is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Component {
    Listener,
    Store,
    Recovery,
    Dispatcher,
    /// The NATS connection of a cluster node.
    Cluster,
}

/// One component that is not ready, as `/readyz` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotReady {
    pub component: Component,
    pub name: String,
    pub reason: String,
}

/// The `/readyz` answer's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub ready: bool,
    pub not_ready: Vec<NotReady>,
}

struct State {
    component: Component,
    name: String,
    /// `None` when ready.
    reason: Option<String>,
}

/// The registry of one gateway.
#[derive(Default)]
pub struct Readiness {
    entries: Mutex<BTreeMap<u64, State>>,
    next: AtomicU64,
    /// The store's journal, whose commits say whether the store is writable.
    journal: std::sync::OnceLock<Arc<crate::store::Journal>>,
}

impl Readiness {
    pub fn new() -> Arc<Readiness> {
        Arc::new(Readiness::default())
    }

    /// Registers a component, not ready for `reason` until told otherwise.
    pub fn register(
        self: &Arc<Self>,
        component: Component,
        name: impl Into<String>,
        reason: impl Into<String>,
    ) -> Entry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = State { component, name: name.into(), reason: Some(reason.into()) };
        self.entries.lock().insert(id, state);
        Entry { registry: self.clone(), id }
    }

    /// Watches the store's commits: a failing commit makes the gateway not ready.
    pub fn watch_store(&self, journal: Arc<crate::store::Journal>) {
        let _ = self.journal.set(journal);
    }

    /// What is not ready now.
    pub fn report(&self) -> Report {
        let mut not_ready: Vec<NotReady> = self
            .entries
            .lock()
            .values()
            .filter_map(|state| {
                Some(NotReady {
                    component: state.component,
                    name: state.name.clone(),
                    reason: state.reason.clone()?,
                })
            })
            .collect();
        if let Some(journal) = self.journal.get()
            && let Some(error) = journal.commit_failure()
        {
            not_ready.push(NotReady {
                component: Component::Store,
                name: "store".into(),
                reason: format!("commits fail: {error}"),
            });
        }
        not_ready.sort_by(|a, b| (a.component, &a.name).cmp(&(b.component, &b.name)));
        Report { ready: not_ready.is_empty(), not_ready }
    }
}

/// One registered component; removed from the registry when dropped.
pub struct Entry {
    registry: Arc<Readiness>,
    id: u64,
}

impl Entry {
    pub fn ready(&self) {
        self.set(None);
    }

    pub fn not_ready(&self, reason: impl Into<String>) {
        self.set(Some(reason.into()));
    }

    fn set(&self, reason: Option<String>) {
        if let Some(state) = self.registry.entries.lock().get_mut(&self.id) {
            state.reason = reason;
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.registry.entries.lock().remove(&self.id);
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("id", &self.id).finish()
    }
}

/// `GET /readyz`, without a credential, for the management and data-plane listeners.
pub fn routes(readiness: Arc<Readiness>) -> axum::Router {
    axum::Router::new().route(
        "/readyz",
        axum::routing::get(move || {
            let readiness = readiness.clone();
            async move { answer(&readiness) }
        }),
    )
}

/// An HTTP API served from before recovery: `/healthz` and `/readyz` answer at once, every
/// other route answers 503 until the API itself is [set](Deferred::set), once the gateway is up.
#[derive(Clone, Default)]
pub struct Deferred(Arc<std::sync::OnceLock<axum::Router>>);

impl Deferred {
    /// From now on, requests go to `app`.
    pub fn set(&self, app: axum::Router) {
        let _ = self.0.set(app);
    }

    /// The router to serve: `/readyz` from `readiness`, `/healthz`, then the API once set.
    pub fn router(&self, readiness: Arc<Readiness>) -> axum::Router {
        use tower::ServiceExt as _;
        let app = self.0.clone();
        routes(readiness)
            .route(
                "/healthz",
                axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
            )
            .fallback(move |request: axum::extract::Request| {
                let app = app.get().cloned();
                async move {
                    match app {
                        Some(app) => match app.oneshot(request).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        },
                        None => starting(),
                    }
                }
            })
    }
}

/// The answer of an API that is not up yet.
fn starting() -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({"error": {
        "code": "ServiceUnavailable",
        "message": "gridmq is starting: recovery is not finished; see /readyz",
    }});
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// The `GET /readyz` handler's answer: 200 with the report when ready, 503 otherwise.
pub fn answer(readiness: &Readiness) -> axum::response::Response {
    use axum::response::IntoResponse;
    let report = readiness.report();
    let status = if report.ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_entry_is() {
        let readiness = Readiness::new();
        assert!(readiness.report().ready);
        let hook = readiness.register(Component::Dispatcher, "vehicles/hook", "handshake pending");
        let recovery = readiness.register(Component::Recovery, "store", "recovery running");
        let report = readiness.report();
        assert!(!report.ready);
        assert_eq!(report.not_ready.len(), 2);
        assert_eq!(report.not_ready[0].component, Component::Recovery);
        recovery.ready();
        let report = serde_json::to_value(readiness.report()).unwrap();
        assert_eq!(
            report,
            serde_json::json!({"ready": false, "notReady": [
                {"component": "dispatcher", "name": "vehicles/hook", "reason": "handshake pending"}
            ]})
        );
        drop(hook);
        assert!(readiness.report().ready);
    }
}
