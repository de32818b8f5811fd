//! The management API's routing routes: subscriptions and their dead letters.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::{Api, ApiError};
use crate::routing::dead_letter::DeadLetterError;

const DEAD_LETTERS: &str = "/routing/topics/{topic}/eventSubscriptions/{subscription}/deadLetters";

/// The routing routes (behind the token check, like the rest).
pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/routing/subscriptions", get(subscriptions))
        .route(DEAD_LETTERS, get(list).delete(delete))
        .route(&format!("{DEAD_LETTERS}/redrive"), post(redrive))
}

async fn subscriptions(State(api): State<Arc<Api>>) -> Response {
    let Some(router) = api.router.as_ref() else {
        return axum::Json(json!({ "value": [], "buffered": 0 })).into_response();
    };
    match router.subscriptions_counted().await {
        Ok(value) => {
            axum::Json(json!({ "value": value, "buffered": router.buffered() })).into_response()
        }
        Err(error) => failed(error),
    }
}

async fn list(State(api): State<Arc<Api>>, Path((topic, sub)): Path<(String, String)>) -> Response {
    let Some(router) = api.router.as_ref() else { return unknown(&topic, &sub) };
    match router.dead_letters(&topic, &sub).await {
        Ok(records) => {
            // Serialized through structs, not `json!`: the records are JSON text and must not
            // be parsed into `Value`s, which would rewrite the events' data.
            #[derive(serde::Serialize)]
            struct Listed {
                id: u64,
                record: Box<serde_json::value::RawValue>,
            }
            #[derive(serde::Serialize)]
            struct Listing {
                value: Vec<Listed>,
            }
            let value = records.into_iter().map(|(id, record)| Listed { id, record }).collect();
            axum::Json(Listing { value }).into_response()
        }
        Err(error) => failed(error),
    }
}

async fn redrive(
    State(api): State<Arc<Api>>,
    Path((topic, sub)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let ids = match ids_of(&body) {
        Ok(ids) => ids,
        Err(error) => return error.into_response(),
    };
    let Some(router) = api.router.as_ref() else { return unknown(&topic, &sub) };
    answer("redriven", router.redrive(&topic, &sub, ids.as_deref()).await)
}

async fn delete(
    State(api): State<Arc<Api>>,
    Path((topic, sub)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let ids = match ids_of(&body) {
        Ok(ids) => ids,
        Err(error) => return error.into_response(),
    };
    let Some(router) = api.router.as_ref() else { return unknown(&topic, &sub) };
    answer("deleted", router.delete_dead_letters(&topic, &sub, ids.as_deref()).await)
}

/// `{"<answer>": count}`, or the error.
fn answer(answer: &str, outcome: Result<usize, DeadLetterError>) -> Response {
    match outcome {
        Ok(count) => axum::Json(json!({ answer: count })).into_response(),
        Err(error) => failed(error),
    }
}

/// The optional `{"ids": [..]}` body.
fn ids_of(body: &[u8]) -> Result<Option<Vec<u64>>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ids {
        ids: Vec<u64>,
    }
    let ids: Ids = serde_json::from_slice(body).map_err(|error| ApiError::invalid("ids", error))?;
    Ok(Some(ids.ids))
}

fn unknown(topic: &str, sub: &str) -> Response {
    failed(DeadLetterError::NoSuchSubscription {
        topic: topic.to_string(),
        subscription: sub.to_string(),
    })
}

/// 404 for an unknown subscription; 503 when the cluster's dead-letter stream cannot be used
/// now (the request may be repeated).
fn failed(error: DeadLetterError) -> Response {
    let (status, code) = match error {
        DeadLetterError::NoSuchSubscription { .. } => (StatusCode::NOT_FOUND, "NotFound"),
        DeadLetterError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
    };
    ApiError { status, code, message: error.to_string() }.into_response()
}
