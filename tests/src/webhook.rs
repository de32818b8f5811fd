//! A webhook destination on wiremock: it passes Event Grid's abuse-protection handshake and
//! answers 200 to every POST unless a test mounts something more specific, and it lets a test
//! wait for the POSTs that reached one path, with their bodies exactly as received.

use std::time::Duration;

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A webhook that accepts the handshake (`OPTIONS`) and every `POST`.
pub async fn accepting() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("OPTIONS"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("WebHook-Allowed-Origin", "eventgrid.azure.net"),
        )
        .mount(&server)
        .await;
    // The lowest priority, so that a test's own POST mock (a 400 on one path) wins.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(u8::MAX)
        .mount(&server)
        .await;
    server
}

/// The POSTs received on `path` so far, in arrival order.
pub async fn posts(server: &MockServer, path: &str) -> Vec<Request> {
    let requests = server.received_requests().await.unwrap_or_default();
    requests.into_iter().filter(|r| r.method.as_str() == "POST" && r.url.path() == path).collect()
}

/// Waits up to `within` until `done` holds for the POSTs on `path`; returns them. Panics
/// naming the path when it never does.
pub async fn wait_posts(
    server: &MockServer,
    path: &str,
    within: Duration,
    done: impl Fn(&[Request]) -> bool,
) -> Vec<Request> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let posts = posts(server, path).await;
        if done(&posts) {
            return posts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for POSTs on {path}; {} arrived",
            posts.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
