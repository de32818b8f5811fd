//! Azure Resource Manager paths: `/subscriptions/{sub}/resourceGroups/{rg}/providers/
//! Microsoft.EventGrid/namespaces/{ns}/{rest}` is served as `/{rest}` once the prefix is the
//! namespace's own resource id (compared case-insensitively, as ARM does). The prefix alone is
//! the namespace resource. A request for another subscription, resource group or namespace is
//! answered 404 with ARM's error codes, after the token check, so that an unauthenticated
//! caller learns nothing about which ids exist.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Api, ApiError};

/// The segments between the subscription id and the namespace name, in ARM's spelling.
const PROVIDER: [&str; 4] = ["resourceGroups", "", "providers", "Microsoft.EventGrid"];

/// Where an ARM path points, relative to the namespace.
enum Target {
    /// Not an ARM path: served as it is.
    Plain,
    /// The namespace resource itself.
    Namespace,
    /// `/{rest}` under the namespace.
    Nested(String),
    /// Another subscription, resource group or namespace.
    Elsewhere(ApiError),
}

/// Rewrites ARM paths onto the short ones; see the module docs.
pub(super) async fn rewrite(
    State(api): State<Arc<Api>>,
    mut request: Request,
    next: Next,
) -> Response {
    let settings = api.namespace.resources().namespace.clone();
    let target = target(
        request.uri().path(),
        &settings.subscription_id,
        &settings.resource_group,
        &settings.name,
    );
    if matches!(target, Target::Plain) {
        return next.run(request).await;
    }
    if let Some(response) = api.refusal(request.headers()) {
        return response;
    }
    match target {
        Target::Plain => next.run(request).await,
        Target::Elsewhere(error) => error.into_response(),
        Target::Namespace if request.method() == Method::GET => {
            let body = super::arm_resource(
                settings.resource_id(),
                &settings.name,
                "Microsoft.EventGrid/namespaces",
                json!({"topicSpacesConfiguration": {"state": "Enabled"}}),
            );
            axum::Json(body).into_response()
        }
        Target::Namespace => ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "MethodNotAllowed",
            message: "the namespace itself is configured in the config file".into(),
        }
        .into_response(),
        Target::Nested(rest) => {
            let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            match format!("{rest}{query}").parse::<Uri>() {
                Ok(uri) => {
                    *request.uri_mut() = uri;
                    next.run(request).await
                }
                Err(error) => ApiError::invalid("path", error).into_response(),
            }
        }
    }
}

/// Classifies `path` against the namespace's subscription, resource group and name.
fn target(path: &str, subscription: &str, group: &str, namespace: &str) -> Target {
    let Some(rest) = path.strip_prefix("/subscriptions/") else { return Target::Plain };
    let segments: Vec<&str> = rest.split('/').collect();
    let not_found = |code: &'static str, message: String| {
        Target::Elsewhere(ApiError { status: StatusCode::NOT_FOUND, code, message })
    };
    let Some(&sub) = segments.first() else { return Target::Plain };
    if !sub.eq_ignore_ascii_case(subscription) {
        return not_found(
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        );
    }
    let shape_ok = segments.len() >= 7
        && PROVIDER.iter().enumerate().all(|(i, expected)| {
            expected.is_empty() || segments[i + 1].eq_ignore_ascii_case(expected)
        })
        && segments[5].eq_ignore_ascii_case("namespaces");
    if !shape_ok {
        return not_found(
            "NotFound",
            "expected /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.EventGrid/namespaces/{ns}/..."
                .into(),
        );
    }
    let rg = segments[2];
    if !rg.eq_ignore_ascii_case(group) {
        return not_found(
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        );
    }
    let ns = segments[6];
    if !ns.eq_ignore_ascii_case(namespace) {
        return not_found(
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.EventGrid/namespaces/{ns}' under resource group '{rg}' was not found."
            ),
        );
    }
    let nested = &segments[7..];
    if nested.iter().all(|s| s.is_empty()) {
        return Target::Namespace;
    }
    Target::Nested(format!("/{}", nested.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-0000-0000-0000-000000000000";

    fn nested(path: &str) -> Option<String> {
        match target(path, SUB, "gridmq", "ns1") {
            Target::Nested(rest) => Some(rest),
            _ => None,
        }
    }

    #[test]
    fn arm_paths_map_onto_the_short_ones() {
        let base = format!(
            "/subscriptions/{SUB}/resourceGroups/gridmq/providers/Microsoft.EventGrid/namespaces/ns1"
        );
        assert_eq!(nested(&format!("{base}/clients/c1")).as_deref(), Some("/clients/c1"));
        assert_eq!(
            nested(&format!("{base}/topics/t/eventSubscriptions")).as_deref(),
            Some("/topics/t/eventSubscriptions")
        );
        let shouted = base.replace("resourceGroups/gridmq", "RESOURCEGROUPS/GridMQ");
        assert_eq!(nested(&format!("{shouted}/clients")).as_deref(), Some("/clients"));
        assert!(matches!(target(&base, SUB, "gridmq", "ns1"), Target::Namespace));
        assert!(matches!(target("/clients", SUB, "gridmq", "ns1"), Target::Plain));
    }

    #[test]
    fn other_ids_are_not_found_with_arms_codes() {
        let code = |path: &str| match target(path, SUB, "gridmq", "ns1") {
            Target::Elsewhere(error) => Some(error.code),
            _ => None,
        };
        let other = "/subscriptions/11111111-0000-0000-0000-000000000000/resourceGroups/gridmq/providers/Microsoft.EventGrid/namespaces/ns1/clients";
        assert_eq!(code(other), Some("SubscriptionNotFound"));
        let rg = format!(
            "/subscriptions/{SUB}/resourceGroups/rg2/providers/Microsoft.EventGrid/namespaces/ns1/clients"
        );
        assert_eq!(code(&rg), Some("ResourceGroupNotFound"));
        let ns = format!(
            "/subscriptions/{SUB}/resourceGroups/gridmq/providers/Microsoft.EventGrid/namespaces/ns2"
        );
        assert_eq!(code(&ns), Some("ResourceNotFound"));
        assert_eq!(code(&format!("/subscriptions/{SUB}/resourceGroups/gridmq")), Some("NotFound"));
    }
}
