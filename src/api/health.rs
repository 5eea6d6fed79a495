//! `GET /readyz` and `GET /metrics` (`/healthz` is answered without auth in the route table).

use super::AppState;
use crate::metrics;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::atomic::Ordering;

/// Ready = the store is open, the engine's actors run, the listener is bound, the daemon is
/// not stopping and every ingest source consumes (`sources` lists their states). A load
/// balancer should send events only to a ready daemon.
pub(super) async fn readyz(State(s): State<AppState>) -> Response {
    use ractor::ActorStatus;
    let running = |st: ActorStatus| st == ActorStatus::Running;
    let checks = [
        ("listener", s.inner().ready.load(Ordering::Acquire)),
        ("accepting", s.inner().accepting.load(Ordering::Acquire)),
        ("engine", running(s.inner().supervisor.get_status())),
        ("journal", running(s.inner().journal.get_status())),
    ];
    let mut failing: Vec<String> = checks.iter().filter(|c| !c.1).map(|c| c.0.into()).collect();
    failing.extend(crate::source::not_ready());
    if failing.is_empty() {
        Json(crate::source::with_report(json!({"status": "ready"}))).into_response()
    } else {
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(crate::source::with_report(json!({"status": "not ready", "error": format!("not ready: {}", failing.join(", ")), "failing": failing}))),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    }
}

pub(super) async fn get_metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
        .into_response()
}
