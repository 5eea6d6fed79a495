//! `GET /v1/deliveries` (pending, dead, delivered) and `POST /v1/deliveries/{id}/retry`.

use super::{mask_url, unavailable, ApiError, AppState};
use crate::clock::now_ms;
use crate::delivery::{parse_key, Delivery, DeliveryStatus};
use crate::destination::rfc3339_ms;
use crate::supervisor::SupervisorMsg;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

/// A delivery as the API lists it.
pub fn delivery_json(d: &Delivery) -> serde_json::Value {
    json!({
        "id": d.id,
        "alert_id": d.alert_id,
        "event_type": d.event_type,
        "state": d.state.as_str(),
        "destination": d.destination.as_str(),
        "url": mask_url(&d.url),
        "attempts": d.attempts,
        "last_status": d.last_status,
        // Scrubbed again: rows stored by an older alertd may hold an echoed secret.
        "last_error": d.last_error.as_deref().map(|e| crate::redact::redact(e, &crate::secrets::delivery_secrets(d))),
        "next_attempt_at": rfc3339_ms(d.next_attempt_ms),
        "created_at": rfc3339_ms(d.created_ms),
        "finished_at": d.finished_ms.map(rfc3339_ms),
    })
}

pub(super) async fn get_deliveries(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Response {
    if q.status.as_deref() == Some("suppressed") {
        let limit = q.limit.unwrap_or(100).min(10_000);
        return super::silences::suppressed_deliveries(s.inner().store.clone(), limit).await;
    }
    let status: DeliveryStatus = match q.status.as_deref().unwrap_or("pending").parse() {
        Ok(st) => st,
        Err(e) => return ApiError(StatusCode::BAD_REQUEST, e).into_response(),
    };
    let limit = q.limit.unwrap_or(100).min(10_000);
    let store = s.inner().store.clone();
    match tokio::task::spawn_blocking(move || store.list_deliveries(status, limit)).await {
        Ok(Ok(rows)) => {
            let rows: Vec<_> = rows.iter().map(delivery_json).collect();
            Json(json!({ "deliveries": rows })).into_response()
        }
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(e) => unavailable(e.to_string()),
    }
}

pub(super) async fn retry_delivery(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(key) = parse_key(&id) else {
        return ApiError(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a delivery id (a UUID)"),
        )
        .into_response();
    };
    match requeue_dead(&s, key).await {
        Ok(Some(d)) => (
            StatusCode::ACCEPTED,
            Json(json!({ "status": "queued", "delivery": delivery_json(&d) })),
        )
            .into_response(),
        Ok(None) => ApiError(
            StatusCode::NOT_FOUND,
            format!("no dead letter with id {id}"),
        )
        .into_response(),
        Err(e) => unavailable(e),
    }
}

/// Moves dead letter `key` back to the outbox and hands it to the dispatcher; `None` when there
/// is no such dead letter. Shared by the API and the console.
pub(crate) async fn requeue_dead(s: &AppState, key: u128) -> Result<Option<Delivery>, String> {
    let store = s.inner().store.clone();
    match tokio::task::spawn_blocking(move || store.requeue_dead(key, now_ms())).await {
        Ok(Ok(Some(d))) => {
            let _ = s
                .inner()
                .supervisor
                .cast(SupervisorMsg::Requeue(Box::new(d.clone())));
            tracing::info!(delivery = %d.id, alert = %d.alert_id, "dead letter re-queued");
            Ok(Some(d))
        }
        Ok(Ok(None)) => Ok(None),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}
