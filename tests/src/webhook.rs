//! A webhook destination on wiremock: it passes Event Grid's abuse-protection handshake and
//! answers 200 to every POST unless a test mounts something more specific, and it lets a test
//! wait for the POSTs that reached it (on one path or any), with their bodies exactly as
//! received, and read the CloudEvents they carried.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A webhook that accepts the handshake (`OPTIONS`) and every `POST`.
pub async fn accepting() -> MockServer {
    accept(MockServer::start().await, Duration::ZERO).await
}

/// A webhook like [`accepting`] on `listener`, so that a test can stop it and start another on
/// the same port, answering each `POST` after `delay`.
pub async fn accepting_on(listener: TcpListener, delay: Duration) -> MockServer {
    accept(MockServer::builder().listener(listener).start().await, delay).await
}

async fn accept(server: MockServer, delay: Duration) -> MockServer {
    Mock::given(method("OPTIONS"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("WebHook-Allowed-Origin", "eventgrid.azure.net"),
        )
        .mount(&server)
        .await;
    // The lowest priority, so that a test's own POST mock (a 400 on one path) wins.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(delay))
        .with_priority(u8::MAX)
        .mount(&server)
        .await;
    server
}

/// The POSTs received on `path` so far, in arrival order.
pub async fn posts(server: &MockServer, path: &str) -> Vec<Request> {
    received(server, Some(path)).await
}

/// The POSTs received on any path so far, in arrival order.
pub async fn all_posts(server: &MockServer) -> Vec<Request> {
    received(server, None).await
}

async fn received(server: &MockServer, path: Option<&str>) -> Vec<Request> {
    let requests = server.received_requests().await.unwrap_or_default();
    requests
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && path.is_none_or(|path| r.url.path() == path))
        .collect()
}

/// Waits up to `within` until `done` holds for the POSTs on `path`; returns them. Panics
/// naming the path when it never does.
pub async fn wait_posts(
    server: &MockServer,
    path: &str,
    within: Duration,
    done: impl Fn(&[Request]) -> bool,
) -> Vec<Request> {
    wait(server, Some(path), within, done).await
}

/// Waits up to `within` until `done` holds for the POSTs on any path; returns them.
pub async fn wait_all_posts(
    server: &MockServer,
    within: Duration,
    done: impl Fn(&[Request]) -> bool,
) -> Vec<Request> {
    wait(server, None, within, done).await
}

async fn wait(
    server: &MockServer,
    path: Option<&str>,
    within: Duration,
    done: impl Fn(&[Request]) -> bool,
) -> Vec<Request> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let posts = received(server, path).await;
        if done(&posts) {
            return posts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for POSTs on {}; {} arrived",
            path.unwrap_or("any path"),
            posts.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events of one POST: one (structured mode) or several (a batch). Panics on a body that
/// is not JSON, so use it on structured and batch deliveries only.
pub fn events_of(request: &Request) -> Vec<Value> {
    match serde_json::from_slice(&request.body).expect("JSON body") {
        Value::Array(events) => events,
        event => vec![event],
    }
}

/// Every event of `posts`, in arrival order, batches flattened.
pub fn events(posts: &[Request]) -> Vec<Value> {
    posts.iter().flat_map(events_of).collect()
}

/// The value of header `name` of `request`, or "" when it has none.
pub fn header<'a>(request: &'a Request, name: &str) -> &'a str {
    request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}
