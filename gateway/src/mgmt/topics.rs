//! The management API's namespace topics and event subscriptions, in Event Grid's ARM shapes:
//! `topics/{name}` and `topics/{topic}/eventSubscriptions/{name}`, each with list, GET, PUT
//! (201 created, 200 replaced), PATCH (200; a JSON merge patch of the properties the resource
//! was created with, as the SDKs' `begin_update` sends) and DELETE (200, or 204 when there was
//! nothing to delete).
//! The router validates, stores and applies the change (`routing/router/topics.rs`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{Api, ApiError};
use crate::routing::router::TopicsError;

const TOPIC_TYPE: &str = "Microsoft.EventGrid/namespaces/topics";
const SUBSCRIPTION_TYPE: &str = "Microsoft.EventGrid/namespaces/topics/eventSubscriptions";

/// `routes` with the topic and subscription routes added.
pub(super) fn routes(routes: Router<Arc<Api>>) -> Router<Arc<Api>> {
    routes
        .route("/topics", get(list_topics))
        .route(
            "/topics/{name}",
            get(read_topic).put(put_topic).patch(patch_topic).delete(delete_topic),
        )
        .route("/topics/{topic}/eventSubscriptions", get(list_subscriptions))
        .route(
            "/topics/{topic}/eventSubscriptions/{name}",
            get(read_subscription)
                .put(put_subscription)
                .patch(patch_subscription)
                .delete(delete_subscription),
        )
}

fn router(api: &Api) -> Result<&crate::routing::Router, ApiError> {
    api.router.as_deref().ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        code: "NotFound",
        message: "namespace topics are not enabled".into(),
    })
}

fn topic_resource(api: &Api, name: &str, properties: Value) -> Value {
    super::arm_resource(
        format!("{}/topics/{name}", api.resource_id()),
        name,
        TOPIC_TYPE,
        properties,
    )
}

fn subscription_resource(api: &Api, topic: &str, name: &str, properties: Value) -> Value {
    let id = format!("{}/topics/{topic}/eventSubscriptions/{name}", api.resource_id());
    super::arm_resource(id, name, SUBSCRIPTION_TYPE, properties)
}

async fn list_topics(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let router = router(&api)?;
    let value: Vec<Value> = router
        .topic_names()
        .iter()
        .filter_map(|name| Some(topic_resource(&api, name, router.topic(name)?)))
        .collect();
    Ok(axum::Json(json!({ "value": value })).into_response())
}

async fn read_topic(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let properties = router(&api)?
        .topic(&name)
        .ok_or_else(|| TopicsError::NotFound(format!("topics/{name}")))?;
    Ok(axum::Json(topic_resource(&api, &name, properties)).into_response())
}

async fn put_topic(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let properties = super::properties_of(&body)?;
    let router = router(&api)?;
    let existed = router.put_topic(&name, properties).await?;
    let properties = router.topic(&name).unwrap_or(Value::Null);
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, axum::Json(topic_resource(&api, &name, properties))).into_response())
}

async fn patch_topic(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = super::properties_of(&body)?;
    let router = router(&api)?;
    router.patch_topic(&name, patch).await?;
    let properties = router.topic(&name).unwrap_or(Value::Null);
    Ok(axum::Json(topic_resource(&api, &name, properties)).into_response())
}

async fn delete_topic(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let existed = router(&api)?.delete_topic(&name).await?;
    Ok(if existed { StatusCode::OK } else { StatusCode::NO_CONTENT })
}

async fn list_subscriptions(
    State(api): State<Arc<Api>>,
    Path(topic): Path<String>,
) -> Result<Response, ApiError> {
    let router = router(&api)?;
    let names = router
        .subscription_names(&topic)
        .ok_or_else(|| TopicsError::NotFound(format!("topics/{topic}")))?;
    let value: Vec<Value> = names
        .iter()
        .filter_map(|name| {
            let properties = router.subscription(&topic, name)?;
            Some(subscription_resource(&api, &topic, name, properties))
        })
        .collect();
    Ok(axum::Json(json!({ "value": value })).into_response())
}

async fn read_subscription(
    State(api): State<Arc<Api>>,
    Path((topic, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let properties = router(&api)?.subscription(&topic, &name).ok_or_else(|| {
        TopicsError::NotFound(format!("topics/{topic}/eventSubscriptions/{name}"))
    })?;
    Ok(axum::Json(subscription_resource(&api, &topic, &name, properties)).into_response())
}

async fn put_subscription(
    State(api): State<Arc<Api>>,
    Path((topic, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let properties = super::properties_of(&body)?;
    let router = router(&api)?;
    let existed = router.put_subscription(&topic, &name, properties).await?;
    let properties = router.subscription(&topic, &name).unwrap_or(Value::Null);
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    let body = subscription_resource(&api, &topic, &name, properties);
    Ok((status, axum::Json(body)).into_response())
}

async fn patch_subscription(
    State(api): State<Arc<Api>>,
    Path((topic, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = super::properties_of(&body)?;
    let router = router(&api)?;
    router.patch_subscription(&topic, &name, patch).await?;
    let properties = router.subscription(&topic, &name).unwrap_or(Value::Null);
    Ok(axum::Json(subscription_resource(&api, &topic, &name, properties)).into_response())
}

async fn delete_subscription(
    State(api): State<Arc<Api>>,
    Path((topic, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let existed = router(&api)?.delete_subscription(&topic, &name).await?;
    Ok(if existed { StatusCode::OK } else { StatusCode::NO_CONTENT })
}

impl From<TopicsError> for ApiError {
    fn from(error: TopicsError) -> ApiError {
        match error {
            TopicsError::NotFound(what) => ApiError {
                status: StatusCode::NOT_FOUND,
                code: "NotFound",
                message: format!("{what} not found"),
            },
            TopicsError::Invalid { field, problem } => ApiError::invalid(&field, problem),
            declared @ TopicsError::Declared(_) => ApiError {
                status: StatusCode::CONFLICT,
                code: "Conflict",
                message: declared.to_string(),
            },
        }
    }
}
