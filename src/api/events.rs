//! `POST /v1/events`: validate a batch (all or nothing), hand it to the journal, answer `202`
//! only after the fsync.

use super::{unavailable, ApiError, AppState};
use crate::clock::now_ms;
use crate::ingest::{self, Limits};
use crate::metrics;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A body up to this size is read and parsed without waiting for the [`BodyGate`].
pub const SMALL_BODY: usize = 64 * 1024;

/// Bounds how many large bodies are read and parsed at once (`server.max_large_bodies`):
/// without it, a dozen concurrent 8 MiB bodies hold a dozen buffers and parses at once.
#[derive(Clone)]
pub struct BodyGate(Arc<Semaphore>);

impl BodyGate {
    /// A gate with `n` permits.
    pub fn new(n: usize) -> BodyGate {
        BodyGate(Arc::new(Semaphore::new(n.max(1))))
    }
}

/// Why a body could not be read: too large (413), too slow (408), or broken (400).
fn read_error(e: axum::Error, max_body: impl std::fmt::Display) -> Response {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            metrics::events("unknown", "rejected", 1);
            return ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body exceeds server.max_body ({max_body})"),
            )
            .into_response();
        }
        cur = err.source();
    }
    if crate::server::is_deadline(&e) {
        let mut r = ApiError(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive within server.request_timeout".into(),
        )
        .into_response();
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return r;
    }
    ApiError(
        StatusCode::BAD_REQUEST,
        format!("cannot read the body: {e}"),
    )
    .into_response()
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
    duplicates: usize,
}

pub(super) async fn post_events(
    State(s): State<AppState>,
    req: axum::extract::Request,
) -> Response {
    // The request itself rather than a `HeaderMap` extractor, which clones every header.
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let cfg = s.config();
    let max_body = cfg.server.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body.as_u64()) {
        metrics::events("unknown", "rejected", 1);
        return ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body exceeds server.max_body ({max_body})"),
        )
        .into_response();
    }
    // Large or unknown-size bodies take a permit for reading and parsing; the events they
    // become are smaller than the body, and the permit is returned before the journal wait.
    let permit = match declared {
        Some(n) if n as usize <= SMALL_BODY => None,
        _ => Some(
            s.inner()
                .body_gate
                .0
                .clone()
                .acquire_owned()
                .await
                .expect("the body gate is never closed"),
        ),
    };
    let body: Bytes = match axum::body::to_bytes(body, max_body.as_u64() as usize).await {
        Ok(b) => b,
        Err(e) => return read_error(e, max_body),
    };
    if !s.inner().accepting.load(Ordering::Acquire) {
        return unavailable("alertd is shutting down; retry against the restarted daemon");
    }
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
    let max_object = cfg.engine.max_object_bytes.as_u64() as usize;
    let parsed = if body.len() > SMALL_BODY {
        tokio::task::spawn_blocking(move || {
            ingest::parse_body(&body, ndjson, now, limits)
                .map(|events| ingest::fit_objects(events, max_object))
        })
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
            .map(|events| ingest::fit_objects(events, max_object))
    };
    drop(permit);
    let events = match parsed {
        Ok(e) => e,
        Err(r) => {
            metrics::events("unknown", "rejected", r.details.len().max(1) as u64);
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
            return (status, Json(r)).into_response();
        }
    };
    let batch_kind = single_kind(&events);
    match append(&s, &cfg, events).await {
        Ok(a) => {
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
        Err(e) => unavailable(e),
    }
}

/// Events a request may hold and still be prepared for the journal on the async worker:
/// above this, encoding and probing take long enough (≈ 0.1 ms per 256 events) to delay the
/// worker's other requests.
const PREPARE_INLINE: usize = 256;

/// Hands validated events to the journal and waits for their commit; shared by every ingest
/// route (`/v1/events`, `/v1/traces`). Refuses at once when the journal queue is full. No
/// timeout: the journal answers every request once its commit is over, and an answer given
/// before that could not say whether the events were stored. The error is the 503's message.
pub(crate) async fn append(
    s: &AppState,
    cfg: &crate::config::Config,
    events: Vec<crate::store::NewEvent>,
) -> Result<crate::journal::Appended, String> {
    let inner = s.inner();
    let n = events.len();
    let before = inner.queued.fetch_add(n, Ordering::AcqRel);
    if before + n > cfg.ingest.max_queued_events && before > 0 {
        inner.queued.fetch_sub(n, Ordering::AcqRel);
        return Err("the journal queue is full; retry shortly".into());
    }
    // Off the single commit thread: see `store::id_probe` and `store::Prepared`. A large batch
    // is prepared on a blocking thread, as it was parsed, so the async workers stay free.
    let prepare = |store: &crate::store::Store, mut events: Vec<crate::store::NewEvent>| {
        store.probe_ids(&mut events);
        crate::store::Prepared::new(None, events)
    };
    let request = if n > PREPARE_INLINE {
        let store = inner.store.clone();
        match tokio::task::spawn_blocking(move || prepare(&store, events)).await {
            Ok(r) => r,
            Err(e) => {
                inner.queued.fetch_sub(n, Ordering::AcqRel);
                return Err(format!("preparing the events failed: {e}"));
            }
        }
    } else {
        prepare(&inner.store, events)
    };
    let (reply, answer) = ractor::concurrency::oneshot();
    inner.intake.append(request, reply.into());
    match answer.await {
        Ok(r) => r,
        Err(_) => Err("the journal stopped while committing: the events may or may not be stored; a retry with client ids is counted once".into()),
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
