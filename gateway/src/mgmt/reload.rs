//! `POST /config:reload`: reads the config file again and applies what changed
//! ([`crate::reload`], through [`ConfigReload`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{Api, ApiError};
use crate::hooks::BoxFuture;

/// What `POST /config:reload` runs: the gateway's reloader ([`crate::reload::Reloader`]). A
/// trait, so that the management API, whose config the config file composes, does not depend
/// on the reloader, which reads the whole config file.
pub trait ConfigReload: Send + Sync + 'static {
    /// Reads the config file again and applies what changed; `Ok` holds the answer's body,
    /// `{"applied": [...], "restartRequired": [...]}`.
    fn reload(&self) -> BoxFuture<'_, Result<serde_json::Value, ReloadRefused>>;
}

/// Why a reload was refused; the config in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadRefused {
    /// gridmq runs without a config file: 409.
    #[error("no config file: gridmq was started without --config")]
    NoFile,
    /// The file (or what it makes with the stored resources) is invalid: 400, and the message
    /// names the field.
    #[error(transparent)]
    Invalid(Box<dyn std::error::Error + Send + Sync>),
}

/// `routes` with the reload route added (behind the token check, like the rest).
pub(super) fn routes(routes: Router<Arc<Api>>) -> Router<Arc<Api>> {
    routes.route("/config:reload", post(reload))
}

/// 200 with what applied and what needs a restart; 400 `InvalidConfig` naming the field when
/// the file is refused; 409 when gridmq runs without a config file.
async fn reload(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    let Some(reloader) = &api.reloader else {
        return Err(no_file());
    };
    match reloader.reload().await {
        Ok(outcome) => Ok(axum::Json(outcome).into_response()),
        Err(ReloadRefused::NoFile) => Err(no_file()),
        Err(error) => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidConfig",
            message: error.to_string(),
        }),
    }
}

fn no_file() -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        code: "NoConfigFile",
        message: ReloadRefused::NoFile.to_string(),
    }
}
