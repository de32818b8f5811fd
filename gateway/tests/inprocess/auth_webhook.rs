//! Custom webhook authentication against a real local HTTP server (wiremock).

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::{Duration, Instant};

use gateway::access::model::{ClientProperties, ClientState, Resources};
use gateway::auth::{AuthConfig, WebhookConfig};
use gateway::hooks::{AttributeValue, AuthDecision};
use gateway::mqtt::ReasonCode;
use serde_json::json;
use support::{Presented, allowed, assert_denied, authentication, decide, with_clients};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn config(server: &MockServer, timeout_ms: u64) -> AuthConfig {
    AuthConfig {
        webhook: Some(WebhookConfig {
            endpoint: format!("{}/auth", server.uri()),
            timeout_ms,
            bearer_token: Some("t0ken".into()),
            bearer_token_env: None,
        }),
        ..AuthConfig::default()
    }
}

async fn answer(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST")).and(path("/auth")).respond_with(response).mount(server).await;
}

#[tokio::test]
async fn allow_with_attributes_and_expiration() {
    let server = MockServer::start().await;
    let expiration =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    Mock::given(method("POST"))
        .and(path("/auth"))
        .and(header("authorization", "Bearer t0ken"))
        .and(body_partial_json(json!({
            "clientId": "c1", "userName": "sas-user", "password": "cGFzcw==",
            "authenticationMethod": "SAS", "authenticationData": "AQI="
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "decision": "allow",
            "clientAuthenticationName": "device-7",
            "attributes": {"floor": 3, "site": "b17", "sensors": ["t", "h"], "ratio": 0.5},
            "expiration": expiration.to_string()
        })))
        .expect(1)
        .mount(&server)
        .await;
    let auth = authentication(&config(&server, 5000), Resources::default());
    let presented =
        Presented::new("c1").username("sas-user").password(b"pass").method("SAS", &[1, 2]);
    let decision = decide(&auth, &presented).await;
    let identity = allowed(&decision);
    assert_eq!(&*identity.authentication_name, "device-7");
    assert_eq!(identity.attributes.len(), 3);
    assert_eq!(identity.attributes["floor"], AttributeValue::Integer(3));
    assert_eq!(
        identity.attributes["sensors"],
        AttributeValue::StringArray(vec!["t".into(), "h".into()])
    );
    let AuthDecision::Allow { expires_in: Some(expires_in), .. } = decision else { panic!() };
    assert!(expires_in > Duration::from_secs(590) && expires_in <= Duration::from_secs(600));
}

#[tokio::test]
async fn deny_with_reason() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(400)
            .set_body_json(json!({"decision": "deny", "errorReason": "certificate revoked"})),
    )
    .await;
    let auth = authentication(&config(&server, 5000), Resources::default());
    let decision = decide(&auth, &Presented::new("c1").username("u").password(b"p")).await;
    assert_denied(&decision, ReasonCode::NotAuthorized, "certificate revoked");
}

#[tokio::test]
async fn a_slow_webhook_is_a_refusal_within_the_timeout() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(json!({"decision": "allow", "clientAuthenticationName": "x"}))
            .set_delay(Duration::from_secs(10)),
    )
    .await;
    let auth = authentication(&config(&server, 300), Resources::default());
    let started = Instant::now();
    let decision = decide(&auth, &Presented::new("c1")).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_denied(&decision, ReasonCode::NotAuthorized, "no answer within 300 ms");
}

#[tokio::test]
async fn server_errors_bad_json_and_bad_allows_are_refusals() {
    let cases = [
        (ResponseTemplate::new(500).set_body_string("boom"), "HTTP 500"),
        (ResponseTemplate::new(200).set_body_string("{not json"), "not a webhook decision"),
        (
            ResponseTemplate::new(200).set_body_json(json!({"decision": "allow"})),
            "without clientAuthenticationName",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"decision": "maybe"})),
            "unknown decision",
        ),
        (
            ResponseTemplate::new(200).set_body_json(
                json!({"decision": "allow", "clientAuthenticationName": "x", "expiration": "1000"}),
            ),
            "expired at 1970",
        ),
    ];
    for (response, needle) in cases {
        let server = MockServer::start().await;
        answer(&server, response).await;
        let auth = authentication(&config(&server, 5000), Resources::default());
        let decision = decide(&auth, &Presented::new("c1")).await;
        assert_denied(&decision, ReasonCode::NotAuthorized, needle);
    }
}

#[tokio::test]
async fn an_unreachable_webhook_is_a_refusal() {
    let server = MockServer::start().await;
    let config = config(&server, 2000);
    drop(server);
    let auth = authentication(&config, Resources::default());
    let decision = decide(&auth, &Presented::new("c1")).await;
    assert_denied(&decision, ReasonCode::NotAuthorized, "authentication webhook failed");
}

#[tokio::test]
async fn the_webhook_cannot_let_in_a_disabled_client_nor_override_a_password() {
    let server = MockServer::start().await;
    answer(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(json!({"decision": "allow", "clientAuthenticationName": "DEV2"})),
    )
    .await;
    let disabled = ClientProperties { state: ClientState::Disabled, ..ClientProperties::default() };
    let with_password = ClientProperties {
        password_hash: Some(gateway::auth::hash_password("right")),
        ..ClientProperties::default()
    };
    let auth = authentication(
        &config(&server, 5000),
        with_clients(vec![("dev2", disabled), ("dev1", with_password)]),
    );
    let decision = decide(&auth, &Presented::new("c1")).await;
    assert_denied(&decision, ReasonCode::NotAuthorized, "client \"dev2\" is disabled");
    // A registered password client is decided by its password, never by the webhook.
    let wrong = Presented::new("c1").username("dev1").password(b"wrong");
    assert_denied(
        &decide(&auth, &wrong).await,
        ReasonCode::BadUserNameOrPassword,
        "wrong password",
    );
}
