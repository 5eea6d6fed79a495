//! `POST /v1/events`: validate a batch (all or nothing), hand it to the journal, answer `202`
//! only after the fsync.

use super::{unavailable, ApiError, AppState};
use crate::clock::now_ms;
use crate::ingest::{self, Limits};
use crate::journal::JournalMsg;
use crate::metrics;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::sync::atomic::Ordering;

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
    duplicates: usize,
}

pub(super) async fn post_events(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            metrics::events("unknown", "rejected", 1);
            return ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "body exceeds server.max_body ({})",
                    s.config().server.max_body
                ),
            )
            .into_response();
        }
        Err(e) => return ApiError(StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    if !s.inner().accepting.load(Ordering::Acquire) {
        return unavailable("alertd is shutting down; retry against the restarted daemon");
    }
    let cfg = s.config();
    let limits = Limits {
        max_events: cfg.ingest.max_batch_events,
        max_line: cfg.server.max_line.as_u64() as usize,
    };
    let ndjson = ingest::is_ndjson(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let now = now_ms();
    let parsed = if body.len() > 64 * 1024 {
        tokio::task::spawn_blocking(move || ingest::parse_body(&body, ndjson, now, limits))
            .await
            .unwrap_or_else(|e| {
                Err(ingest::Rejection {
                    status: 500,
                    error: e.to_string(),
                    details: vec![],
                })
            })
    } else {
        ingest::parse_body(&body, ndjson, now, limits)
    };
    let events = match parsed {
        Ok(e) => e,
        Err(r) => {
            metrics::events("unknown", "rejected", r.details.len().max(1) as u64);
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
            return (status, Json(r)).into_response();
        }
    };
    let n = events.len();
    let batch_kind = single_kind(&events);
    let before = s.inner().queued.fetch_add(n, Ordering::AcqRel);
    if before + n > cfg.ingest.max_queued_events && before > 0 {
        s.inner().queued.fetch_sub(n, Ordering::AcqRel);
        return unavailable("the journal queue is full; retry shortly");
    }
    // No timeout: the journal answers every request once its commit is over, and an answer
    // given before that could not say whether the events were stored.
    let r = s
        .inner()
        .journal
        .call(|reply| JournalMsg::Append(events, reply), None)
        .await;
    match r {
        Ok(ractor::rpc::CallResult::Success(Ok(a))) => {
            if a.duplicates > 0 {
                metrics::events(batch_kind, "duplicate", a.duplicates as u64);
            }
            (
                StatusCode::ACCEPTED,
                Json(Accepted {
                    accepted: a.accepted,
                    duplicates: a.duplicates,
                }),
            )
                .into_response()
        }
        Ok(ractor::rpc::CallResult::Success(Err(e))) => unavailable(e),
        _ => unavailable(
            "the journal stopped while committing: the events may or may not be stored; a retry with client ids is counted once",
        ),
    }
}

/// The kind shared by every event of a batch, or `mixed`: the journal reports duplicates per
/// batch, so a mixed batch cannot attribute them to kinds.
fn single_kind(events: &[crate::store::NewEvent]) -> &'static str {
    let mut kinds = events.iter().map(|e| crate::journal::kind_name(&e.event));
    match kinds.next() {
        Some(first) if kinds.all(|k| k == first) => first,
        _ => "mixed",
    }
}
