//! `POST /config:reload`: reads the config file again and applies what changed
//! ([`crate::reload`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{Api, ApiError};
use crate::reload::ReloadError;

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
        Err(ReloadError::NoFile) => Err(no_file()),
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
        message: ReloadError::NoFile.to_string(),
    }
}
