//! `GET /v1/quarantine`: stored rows set aside as unreadable ([`crate::quarantine`]).

use super::{unavailable, AppState};
use crate::destination::rfc3339_ms;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<usize>,
}

/// The quarantine route (behind the API's auth layer).
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/quarantine", get(list))
}

async fn list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).min(10_000);
    let store = s.inner().store.clone();
    match tokio::task::spawn_blocking(move || store.list_quarantine(limit)).await {
        Ok(Ok((rows, total))) => {
            let rows: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "table": r.table,
                        "key": r.key,
                        "reason": r.reason,
                        "bytes": r.bytes,
                        "quarantined_at": rfc3339_ms(r.quarantined_ms),
                    })
                })
                .collect();
            Json(json!({ "total": total, "rows": rows })).into_response()
        }
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(e) => unavailable(e.to_string()),
    }
}
