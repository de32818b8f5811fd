use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::config::Config;
use crate::mgmt::app;
use crate::namespace::Namespace;

const TOKEN: &str = "test-admin-token-0123456789";

fn namespace() -> Arc<Namespace> {
    let config = Config::parse(&format!(
        r#"
        [management]
        admin_token = "{TOKEN}"
        [clients.car1]
        attributes = {{ fleet = "cars" }}
        [clients.other]
        authenticationName = "Other-Name"
        [clientGroups.cars]
        query = "attributes.fleet = 'cars'"
        [topicSpaces.vehicles]
        topicTemplates = ["vehicles/${{client.authenticationName}}/#"]
        [permissionBindings.cars-pub]
        clientGroupName = "cars"
        topicSpaceName = "vehicles"
        permission = "Publisher"
        "#
    ))
    .expect("config");
    Namespace::open(config.namespace_section(), &[])
        .expect("namespace")
        .expect("access control applies")
}

use std::sync::Arc;

async fn check(token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut request = Request::builder().method(Method::POST).uri("/access:check");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Body::from(body.to_string())).expect("request");
    let response = app(namespace(), TOKEN, None).oneshot(request).await.expect("call");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).expect("json"))
}

#[tokio::test]
async fn an_allowed_publish_names_what_grants_it() {
    let body = json!({"client": "car1", "action": "publish", "topic": "vehicles/car1/speed"});
    let (status, answer) = check(Some(TOKEN), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["allowed"], true);
    assert_eq!(answer["client"]["foundAs"], "registeredName");
    assert_eq!(
        answer["grantedBy"][0],
        json!({
            "binding": "cars-pub",
            "clientGroup": "cars",
            "topicSpace": "vehicles",
            "template": "vehicles/${client.authenticationName}/#",
            "substituted": "vehicles/car1/#",
        })
    );
}

#[tokio::test]
async fn a_denied_publish_says_why_for_each_binding() {
    let body = json!({"client": "other-name", "action": "publish", "topic": "vehicles/x/y"});
    let (status, answer) = check(Some(TOKEN), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["allowed"], false);
    assert_eq!(answer["client"]["foundAs"], "authenticationName");
    assert_eq!(answer["authenticationName"], "Other-Name");
    assert_eq!(answer["grantedBy"], json!([]));
    assert_eq!(answer["bindings"][0]["verdict"], "groupNotMatched");
    assert_eq!(answer["bindings"][0]["why"], "the client is not in client group \"cars\"");
    let reason = answer["reason"].as_str().expect("reason");
    assert!(reason.starts_with("not authorized: publish to \"vehicles/x/y\""), "{reason}");
}

#[tokio::test]
async fn an_unknown_client_is_judged_as_unregistered() {
    let body = json!({"client": "ghost", "action": "subscribe", "topic": "vehicles/#"});
    let (status, answer) = check(Some(TOKEN), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (answer["allowed"].clone(), answer["registered"].clone()),
        (json!(false), json!(false))
    );
    assert_eq!(answer["client"]["foundAs"], "unregistered");
}

#[tokio::test]
async fn bad_requests_name_the_field_and_the_token_is_required() {
    let body = json!({"client": "car1", "action": "publish", "topic": "vehicles/+"});
    let (status, answer) = check(Some(TOKEN), body.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap_or_default().starts_with("topic: "));
    let (status, answer) =
        check(Some(TOKEN), json!({"client": "car1", "action": "read", "topic": "a"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = check(None, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"]["code"], "Unauthorized");
    let (status, _) = check(Some("wrong-token-0123456789"), body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
