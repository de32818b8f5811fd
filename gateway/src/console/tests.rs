use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::*;
use crate::config::Config;

const TOKEN: &str = "test-admin-token-0123456789";

fn console() -> Router {
    let config =
        Config::parse(&format!("[management]\nadmin_token = \"{TOKEN}\"\n")).expect("config");
    let namespace = Namespace::open(config.namespace_section(), &[])
        .expect("namespace")
        .expect("access control");
    let console = Console {
        namespace,
        token: TOKEN.into(),
        trace: Arc::new(Trace::new(None)),
        shutdown: CancellationToken::new(),
        info: Info {
            version: "0.0.0-test",
            listeners: vec!["mqtt 127.0.0.1:1883".into()],
            store: "in memory".into(),
            started: Instant::now(),
        },
    };
    routes(Arc::new(console), false)
}

async fn call(
    method: Method,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String, Option<String>) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response =
        console().oneshot(request.body(Body::empty()).expect("request")).await.expect("call");
    let status = response.status();
    let csp = response
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned(), csp)
}

#[tokio::test]
async fn the_page_is_served_without_a_token_and_holds_no_data() {
    let (status, body, csp) = call(Method::GET, "/console", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<form id=\"login\">"), "{body}");
    assert!(body.contains("<label for=\"token\">Admin token</label>"));
    assert!(csp.expect("a content security policy").contains("default-src 'self'"));
    for asset in ["/console/console.js", "/console/console.css"] {
        let (status, body, _) = call(Method::GET, asset, None).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        // The SVG namespace is a name, not something fetched.
        let body = body.replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{asset} loads nothing from elsewhere"
        );
    }
}

#[tokio::test]
async fn the_console_api_requires_the_token() {
    for (method, uri) in [
        (Method::GET, "/console/api/info"),
        (Method::GET, "/console/api/sessions"),
        (Method::POST, "/console/api/sessions/c1/disconnect"),
        (Method::DELETE, "/console/api/sessions/c1"),
        (Method::GET, "/console/api/trace?filter=%23"),
    ] {
        let (status, body, _) = call(method.clone(), uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
        let (status, _, _) = call(method.clone(), uri, Some("wrong-token-0123456789")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
}

#[tokio::test]
async fn info_and_sessions_answer_with_the_token() {
    let (status, body, _) = call(Method::GET, "/console/api/info", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    let info: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(info["version"], "0.0.0-test");
    assert_eq!(info["listeners"][0], "mqtt 127.0.0.1:1883");
    assert_eq!(info["routing"], false);
    let (status, body, _) = call(Method::GET, "/console/api/sessions", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) =
        call(Method::POST, "/console/api/sessions/nobody/disconnect", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_trace_needs_a_valid_filter() {
    let (status, body, _) = call(Method::GET, "/console/api/trace?filter=a%2B", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("filter: "), "{body}");
}
