//! The silences resource of DESIGN §12: `POST`, `GET /v1/silences` and
//! `DELETE /v1/silences/{id}`, plus the two places silences show elsewhere in the API (each
//! alert's active silences in `GET /v1/alerts`, and `GET /v1/deliveries?status=suppressed`).
//!
//! Validation is [`crate::silence`]'s (pure, unit tested); every rejection is a `400` whose
//! `error` starts with the field's name and whose `field` names it for programs.

use crate::alert::AlertState;
use crate::api::{delivery_json, AppState};
use crate::clock::now_ms;
use crate::destination::rfc3339_ms;
use crate::silence::{self, FieldError, Silence, SilenceRequest, SilenceSet};
use crate::store::Store;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The silence routes; merged into the protected part of [`crate::api::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/silences", get(list).post(create))
        .route("/v1/silences/{id}", delete(expire))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn field_error(e: FieldError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": e.to_string(), "field": e.field })),
    )
        .into_response()
}

fn unavailable(message: impl Into<String>) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A silence as the API shows it, with its state at `now_ms`.
pub fn silence_json(s: &Silence, now_ms: i64) -> Value {
    json!({
        "id": s.id,
        "alert": s.alert,
        "event_types": s.event_types,
        "starts_at": rfc3339_ms(s.starts_ms),
        "ends_at": rfc3339_ms(s.ends_ms),
        "comment": s.comment,
        "created_by": s.created_by,
        "created_at": rfc3339_ms(s.created_ms),
        "state": s.state(now_ms).as_str(),
    })
}

/// The silences in force for `alert` at `now_ms`, for its entry in `GET /v1/alerts`.
pub fn active_json(set: &SilenceSet, alert: &str, now_ms: i64) -> Value {
    Value::Array(
        set.active_for(alert, now_ms)
            .into_iter()
            .map(|s| silence_json(s, now_ms))
            .collect(),
    )
}

async fn create(State(s): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return field_error(FieldError {
                field: "body",
                message: format!("invalid JSON: {e}"),
            })
        }
    };
    let req = match SilenceRequest::from_json(&value) {
        Ok(r) => r,
        Err(e) => return field_error(e),
    };
    match create_silence(&s, req).await {
        Ok(silence) => (StatusCode::CREATED, Json(json!({ "id": silence.id }))).into_response(),
        Err(CreateError::Invalid(e)) => field_error(e),
        Err(CreateError::NotStored(e)) => unavailable(e),
    }
}

/// Why [`create_silence`] made no silence.
pub(crate) enum CreateError {
    /// The request names a field that is wrong (a `400`).
    Invalid(FieldError),
    /// The store failed (a `503`).
    NotStored(String),
}

/// Validates `req` against the running config and stores the silence: the one way silences
/// are made, for the API and the console alike.
pub(crate) async fn create_silence(
    s: &AppState,
    req: SilenceRequest,
) -> Result<Silence, CreateError> {
    let config = s.config();
    let store = s.inner().store.clone();
    let now = now_ms();
    let id = uuid::Uuid::now_v7().to_string();
    let created = tokio::task::spawn_blocking(move || {
        let types = |alert: &str| config.alert(alert).map(|a| AlertState::event_types(a));
        let r = store.create_silence(now, |set| {
            req.validate(id, now, &types, set.live_count(now))
        });
        silence::engine::gauge(&store.silences(), now);
        r
    })
    .await;
    match created {
        Ok(Ok(Ok(silence))) => {
            tracing::info!(silence = %silence.id, alert = %silence.alert,
                event_types = ?silence.event_types, starts = %rfc3339_ms(silence.starts_ms),
                ends = %rfc3339_ms(silence.ends_ms), created_by = %silence.created_by,
                "silence created");
            Ok(silence)
        }
        Ok(Ok(Err(e))) => Err(CreateError::Invalid(e)),
        Ok(Err(e)) => Err(CreateError::NotStored(format!(
            "the silence was not stored: {e}"
        ))),
        Err(e) => Err(CreateError::NotStored(format!(
            "the silence was not stored: {e}"
        ))),
    }
}

async fn list(State(s): State<AppState>) -> Response {
    let now = now_ms();
    let set = s.inner().store.silences();
    let rows: Vec<Value> = set.listed(now).map(|x| silence_json(x, now)).collect();
    Json(json!({ "silences": rows })).into_response()
}

async fn expire(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(key) = silence::parse_id(&id) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a silence id (a UUID)"),
        );
    };
    match expire_silence(&s, key).await {
        Ok(Some(silence)) => {
            Json(json!({ "status": "expired", "silence": silence_json(&silence, now_ms()) }))
                .into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no silence with id {id}")),
        Err(e) => unavailable(e),
    }
}

/// Ends silence `key` now (see [`Store::expire_silence`]); `None` for an unknown id. Shared by
/// the API and the console.
pub(crate) async fn expire_silence(s: &AppState, key: u128) -> Result<Option<Silence>, String> {
    let store = s.inner().store.clone();
    let now = now_ms();
    let r = tokio::task::spawn_blocking(move || {
        let r = store.expire_silence(key, now);
        silence::engine::gauge(&store.silences(), now);
        r
    })
    .await;
    match r {
        Ok(Ok(Some(silence))) => {
            tracing::info!(silence = %silence.id, alert = %silence.alert, "silence expired");
            Ok(Some(silence))
        }
        Ok(Ok(None)) => Ok(None),
        Ok(Err(e)) => Err(format!("the silence was not changed: {e}")),
        Err(e) => Err(format!("the silence was not changed: {e}")),
    }
}

/// `GET /v1/deliveries?status=suppressed`: what silences kept from being sent, newest first,
/// each with the silence that matched.
pub async fn suppressed_deliveries(store: Store, limit: usize) -> Response {
    match tokio::task::spawn_blocking(move || store.list_suppressed(limit)).await {
        Ok(Ok(rows)) => {
            let rows: Vec<Value> = rows
                .iter()
                .map(|r| {
                    let mut v = delivery_json(&r.delivery);
                    v["status"] = json!("suppressed");
                    v["silence_id"] = json!(r.silence_id);
                    v
                })
                .collect();
            Json(json!({ "deliveries": rows })).into_response()
        }
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(e) => unavailable(e.to_string()),
    }
}
