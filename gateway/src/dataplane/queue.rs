//! Pull delivery endpoints of queue event subscriptions, in Event Grid's shape:
//! `POST /topics/{topic}/eventsubscriptions/{subscription}:{operation}` with operation
//! `receive` (`?maxEvents=1..100&maxWaitTime=SECONDS`, long poll), `acknowledge`, `release`
//! (`?releaseDelayInSeconds=0|10|60|600|3600`), `reject` and `renewLock`, the last four with a
//! body `{"lockTokens": [...]}` and always the answer 200 `{"succeededLockTokens": [...],
//! "failedLockTokens": [{"lockToken": "...", "error": {"code", "message"}}]}`, even when no
//! token succeeded, as Event Grid and its SDKs do; the codes are `BadToken` (never issued by
//! this subscription, or already settled) and `TokenLost` (expired, past the hour a lock can be
//! renewed for, or, in cluster mode, held by a node that is gone).
//!
//! In cluster mode any node serves all five operations for any token (`routing::queue`).
//!
//! `maxWaitTime` is 10–120 s in Event Grid; gridmq takes 1–120 s (default 60).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::{ApiError, DataPlane};
use crate::routing::queue::{LockOp, QueueSubscription, TokenOutcome};

/// Most events one receive returns.
const MAX_EVENTS: usize = 100;
/// Longest long poll.
const MAX_WAIT_SECS: u64 = 120;
/// Release delays Event Grid allows.
const RELEASE_DELAYS: [u64; 5] = [0, 10, 60, 600, 3600];

pub(super) fn routes() -> Router<Arc<DataPlane>> {
    Router::new().route("/topics/{topic}/eventsubscriptions/{subscription_op}", post(operation))
}

async fn operation(
    State(state): State<Arc<DataPlane>>,
    Path((topic, subscription_op)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Some((subscription, op)) = subscription_op.rsplit_once(':') else {
        return bad("path", "expected {subscription}:{operation}").into_response();
    };
    let Some(queue) = state.router.as_ref().and_then(|r| r.queue(&topic, subscription)) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no queue event subscription {subscription:?} on namespace topic {topic:?}"),
        )
        .into_response();
    };
    let query = query.unwrap_or_default();
    let op = match op {
        "receive" => return receive(&queue, &query, &state.broker.shutdown).await,
        "acknowledge" => Ok(LockOp::Acknowledge),
        "reject" => Ok(LockOp::Reject),
        "renewLock" => Ok(LockOp::Renew),
        "release" => release_delay(&query).map(|delay_secs| LockOp::Release { delay_secs }),
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "unknown operation {other:?}: receive, acknowledge, release, reject or renewLock"
            ),
        )),
    };
    // In cluster mode a token may be another node's, so settling can wait on that node.
    match op.and_then(|op| tokens(&body).map(|t| (op, t))) {
        Ok((op, tokens)) => outcome_response(queue.settle(op, &tokens).await),
        Err(error) => error.into_response(),
    }
}

async fn receive(
    queue: &Arc<QueueSubscription>,
    query: &str,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Response {
    let max_events = match number(query, "maxEvents", 1) {
        Ok(n) if (1..=MAX_EVENTS as u64).contains(&n) => n as usize,
        Ok(n) => {
            return bad("maxEvents", format!("must be 1 to {MAX_EVENTS}, found {n}"))
                .into_response();
        }
        Err(error) => return error.into_response(),
    };
    let max_wait = match number(query, "maxWaitTime", 60) {
        Ok(n) if (1..=MAX_WAIT_SECS).contains(&n) => n,
        Ok(n) => {
            return bad("maxWaitTime", format!("must be 1 to {MAX_WAIT_SECS} seconds, found {n}"))
                .into_response();
        }
        Err(error) => return error.into_response(),
    };
    // A long poll ends with shutdown (empty), so that it never holds the grace period.
    let received = shutdown
        .run_until_cancelled(queue.receive(max_events, Duration::from_secs(max_wait)))
        .await
        .unwrap_or_default();
    // Written by hand so that each event's data goes out as the text that was published
    // (`CloudEvent::write_json`), never through a `serde_json::Value`.
    let mut body = br#"{"value":["#.to_vec();
    for (index, r) in received.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        let properties = json!({"lockToken": r.lock_token, "deliveryCount": r.delivery_count});
        body.extend_from_slice(br#"{"brokerProperties":"#);
        body.extend_from_slice(properties.to_string().as_bytes());
        body.extend_from_slice(br#","event":"#);
        r.event.write_json(&mut body);
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn outcome_response(outcome: TokenOutcome) -> Response {
    (StatusCode::OK, axum::Json(outcome)).into_response()
}

/// The `{"lockTokens": [...]}` body.
fn tokens(body: &[u8]) -> Result<Vec<String>, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Body {
        lock_tokens: Vec<String>,
    }
    let body: Body = serde_json::from_slice(body).map_err(|e| bad("lockTokens", e))?;
    if body.lock_tokens.is_empty() || body.lock_tokens.len() > 1000 {
        return Err(bad("lockTokens", "must hold 1 to 1000 lock tokens"));
    }
    Ok(body.lock_tokens)
}

fn release_delay(query: &str) -> Result<u64, ApiError> {
    let delay = number(query, "releaseDelayInSeconds", 0)?;
    if RELEASE_DELAYS.contains(&delay) {
        Ok(delay)
    } else {
        Err(bad(
            "releaseDelayInSeconds",
            format!("must be one of 0, 10, 60, 600, 3600; found {delay}"),
        ))
    }
}

/// The unsigned integer query parameter `name`, or `default` when absent.
fn number(query: &str, name: &str, default: u64) -> Result<u64, ApiError> {
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            return value
                .parse()
                .map_err(|_| bad(name, format!("{value:?} is not a whole number")));
        }
    }
    Ok(default)
}

fn bad(field: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", format!("{field}: {problem}"))
}
