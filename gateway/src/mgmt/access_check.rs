//! `POST /access:check`: whether a client may publish to a topic or subscribe to a filter,
//! and why ([`crate::access::explain`]).
//!
//! The body is `{"client": "...", "action": "publish" | "subscribe", "topic": "..."}`. The
//! client is looked up, in this order, as the client id of a session whose client connected
//! since start-up (judged by the identity it connected with), as a registered client's
//! resource name, as a registered client's authentication name (case-insensitively), and
//! otherwise as the authentication name of an unregistered client without attributes (one a
//! token or webhook would vouch for). The answer is the [`Explanation`] with a `client` object
//! saying how the client was found.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::{Api, ApiError};
use crate::access::explain::{Action, Explanation, explain};
use crate::hooks::ClientIdentity;
use crate::mqtt::topic::{valid_topic_filter, valid_topic_name};

/// `routes` with the explainer's route added (behind the token check, like the rest).
pub(super) fn routes(routes: Router<Arc<Api>>) -> Router<Arc<Api>> {
    routes.route("/access:check", post(check))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    client: String,
    action: Action,
    topic: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    client: Found,
    #[serde(flatten)]
    explanation: Explanation,
}

/// How the client named in the request was found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Found {
    /// As named in the request.
    requested: String,
    client_id: String,
    /// `session`, `registeredName`, `authenticationName` or `unregistered`.
    found_as: &'static str,
}

async fn check(State(api): State<Arc<Api>>, body: Bytes) -> Result<Response, ApiError> {
    let check: Check = serde_json::from_slice(&body)
        .map_err(|error| ApiError::invalid("body", format!("{error}")))?;
    if check.client.is_empty() {
        return Err(ApiError::invalid("client", "must not be empty"));
    }
    let valid = match check.action {
        Action::Publish => valid_topic_name(&check.topic),
        Action::Subscribe => valid_topic_filter(&check.topic),
    };
    if !valid {
        let what = match check.action {
            Action::Publish => "not a valid topic name (no '+' or '#', not empty)",
            Action::Subscribe => "not a valid topic filter",
        };
        return Err(ApiError::invalid("topic", what));
    }
    let (identity, found_as) = resolve(&api, &check.client);
    // The resources and the policy are read as one snapshot: the policy is compiled from the
    // registry's resources, and both change together under the namespace's change lock.
    let resources = api.namespace.resources();
    let policy = api.namespace.access().policy();
    let explanation = explain(&policy, &resources, &identity, check.action, &check.topic);
    let client =
        Found { requested: check.client, client_id: identity.client_id.to_string(), found_as };
    Ok(axum::Json(Answer { client, explanation }).into_response())
}

/// The identity the client named `name` is judged by (see the module docs).
fn resolve(api: &Api, name: &str) -> (ClientIdentity, &'static str) {
    if let Some(identity) = api.namespace.known_identity(name) {
        return (identity, "session");
    }
    let resources = api.namespace.resources();
    let registered = |client_id: &str, authentication_name: &str| ClientIdentity {
        client_id: client_id.into(),
        authentication_name: authentication_name.into(),
        attributes: BTreeMap::new(),
    };
    if let Some(client) = resources.clients.get(name) {
        return (registered(name, client.authentication_name_or(name)), "registeredName");
    }
    if let Some((resource, client)) = resources.client_by_authentication_name(name) {
        return (
            registered(resource, client.authentication_name_or(resource)),
            "authenticationName",
        );
    }
    (registered(name, name), "unregistered")
}

#[cfg(test)]
mod tests;
