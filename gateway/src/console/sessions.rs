//! The console's clients and sessions: every session the broker holds, and every registered
//! client without one, searchable by client id or authentication name; disconnecting a client
//! and deleting a session.
//!
//! - `GET /console/api/sessions?search=text` answers `{"value": [...]}`, sorted by client id,
//!   at most [`MAX_LISTED`] rows (`truncated` says when there were more).
//! - `POST /console/api/sessions/{clientId}/disconnect` closes the client's connection with
//!   0x98 (administrative action); its session stays as its expiry says. 200, or 404 when the
//!   client is not connected.
//! - `DELETE /console/api/sessions/{clientId}` closes the connection, if any, and discards the
//!   session (subscriptions, queue, stored record). 200, or 404 when there is no session.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::Console;
use crate::hooks::LifecycleEvent;
use crate::mgmt::ApiError;
use crate::mqtt::{Protocol, ReasonCode};

/// The most rows one listing returns; a search narrows it down.
pub const MAX_LISTED: usize = 500;

/// One row of the listing.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    client_id: String,
    /// The authentication name of the connected (or last connected) client, or of the
    /// registered client.
    authentication_name: Option<String>,
    /// The registered client's resource name, when it is registered.
    registered_as: Option<String>,
    has_session: bool,
    connected: bool,
    /// `MQTT3` or `MQTT5`.
    protocol: Option<&'static str>,
    /// Filter and granted QoS of each subscription.
    subscriptions: BTreeMap<String, u8>,
    queued: usize,
    in_flight: usize,
    /// Seconds the session outlives its connection; `null` when it never expires.
    session_expiry_seconds: Option<u32>,
    /// This broker: gridmq runs as one node.
    node: &'static str,
}

pub async fn list(State(console): State<Arc<Console>>, RawQuery(query): RawQuery) -> Response {
    let wanted = super::query_value(query.as_deref(), "search").unwrap_or_default().to_lowercase();
    let matches = |text: &str| wanted.is_empty() || text.to_lowercase().contains(&wanted);
    let resources = console.namespace.resources();
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    if let Some(broker) = console.namespace.attached_broker() {
        for session in broker.sessions_snapshot() {
            let identity = console.namespace.known_identity(&session.client_id);
            let authentication_name = identity.map(|i| i.authentication_name.to_string());
            if !matches(&session.client_id) && !authentication_name.as_deref().is_some_and(&matches)
            {
                continue;
            }
            let registered_as = authentication_name.as_deref().and_then(|name| {
                resources.client_by_authentication_name(name).map(|(n, _)| n.to_string())
            });
            let state = session.lock();
            let row = Row {
                client_id: session.client_id.to_string(),
                authentication_name,
                registered_as,
                has_session: true,
                connected: state.attached.is_some(),
                protocol: Some(match state.protocol {
                    Protocol::V311 => "MQTT3",
                    Protocol::V5 => "MQTT5",
                }),
                subscriptions: state
                    .subscriptions
                    .iter()
                    .map(|(filter, s)| (filter.clone(), s.options.qos as u8))
                    .collect(),
                queued: state.queue.len(),
                in_flight: state.inflight.len(),
                session_expiry_seconds: (state.expiry_interval != u32::MAX)
                    .then_some(state.expiry_interval),
                node: "local",
            };
            drop(state);
            rows.insert(row.client_id.clone(), row);
        }
    }
    // Registered clients that hold no session are listed too, under their resource name.
    for (name, client) in &resources.clients {
        let authentication_name = client.authentication_name_or(name);
        let has_session = rows.values().any(|row| row.registered_as.as_deref() == Some(name));
        if has_session
            || rows.contains_key(name)
            || !(matches(name) || matches(authentication_name))
        {
            continue;
        }
        rows.insert(
            name.clone(),
            Row {
                client_id: name.clone(),
                authentication_name: Some(authentication_name.to_string()),
                registered_as: Some(name.clone()),
                has_session: false,
                connected: false,
                protocol: None,
                subscriptions: BTreeMap::new(),
                queued: 0,
                in_flight: 0,
                session_expiry_seconds: None,
                node: "local",
            },
        );
    }
    let truncated = rows.len() > MAX_LISTED;
    let value: Vec<Row> = rows.into_values().take(MAX_LISTED).collect();
    axum::Json(json!({ "value": value, "truncated": truncated })).into_response()
}

pub async fn disconnect(
    State(console): State<Arc<Console>>,
    Path(client_id): Path<String>,
) -> Response {
    let session = console.namespace.attached_broker().and_then(|b| b.session(&client_id));
    match session {
        Some(session) if session.kick(ReasonCode::AdministrativeAction) => {
            tracing::info!(client_id, "Console: disconnecting a client.");
            axum::Json(json!({ "disconnected": client_id })).into_response()
        }
        _ => not_found(&client_id, "is not connected"),
    }
}

pub async fn delete(
    State(console): State<Arc<Console>>,
    Path(client_id): Path<String>,
) -> Response {
    let Some(broker) = console.namespace.attached_broker() else {
        return not_found(&client_id, "has no session");
    };
    let Some(session) = broker.session(&client_id) else {
        return not_found(&client_id, "has no session");
    };
    // The connection closes on its own task; the session is discarded now, so the connection
    // finds it ended and stores nothing when it goes.
    session.kick(ReasonCode::AdministrativeAction);
    broker.end_session(&session);
    broker.hooks.emit(LifecycleEvent::SessionExpired { client_id: session.client_id.clone() });
    tracing::info!(client_id, "Console: deleted a session.");
    axum::Json(json!({ "deleted": client_id })).into_response()
}

fn not_found(client_id: &str, what: &str) -> Response {
    let message = format!("client {client_id:?} {what}");
    ApiError { status: StatusCode::NOT_FOUND, code: "NotFound", message }.into_response()
}
