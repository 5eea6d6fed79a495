//! `POST /v1/reload`: the HTTP face of [`crate::reload`].

use super::{unavailable, ApiError, AppState};
use crate::reload::{reload, ReloadError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub(super) async fn post_reload(State(s): State<AppState>) -> Response {
    match reload(&s, "api").await {
        Ok(report) => Json(json!({ "status": "reloaded", "report": report })).into_response(),
        Err(ReloadError::Invalid(e)) => ApiError(StatusCode::BAD_REQUEST, e).into_response(),
        Err(ReloadError::Engine(e)) => unavailable(e),
    }
}
