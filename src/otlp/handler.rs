//! `POST /v1/traces`: the OTLP/HTTP receiver (DESIGN §14), a thin shell over [`super::decode`]
//! and [`super::map`].
//!
//! Order of checks, cheapest first: content type and encoding (`415`) before reading the body;
//! the body bounded by `server.max_body` while reading (`413`) and again while inflating gzip
//! (`413`); decoding (`400`); then the mapped events go through the journal exactly as
//! `POST /v1/events` batches do — the same queue bound (`503` + `Retry-After`, which OTLP
//! exporters honour), the same group commit — and `200` is sent only after the fsync. Every error
//! body is a `google.rpc.Status` in the request's encoding, as the OTLP/HTTP spec asks.

use super::decode::{self, code, BodyError, Compression, Encoding};
use super::map::{self, Context, Mapping};
use crate::api::AppState;
use crate::clock::now_ms;
use crate::metrics;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;
use std::sync::LazyLock;
use tokio::sync::Semaphore;

/// Bodies above this size are decoded on a blocking thread, like large `/v1/events` batches.
const INLINE_DECODE: usize = 64 * 1024;

/// Decoded requests can be tens of times larger than their bytes (an empty span is 2 bytes on
/// the wire and a few hundred in memory). Decoding more bodies at once than there are cores
/// gains no throughput, so large decodes take a permit: peak memory stays a small multiple of
/// `max_body` however many exporters send at once.
static DECODERS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// How long an exporter is asked to wait when the journal queue is full or the daemon stops.
const RETRY_AFTER_SECONDS: &str = "1";

/// The handler for `POST /v1/traces`.
pub async fn post_traces(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let inner = s.inner();
    let cfg = inner.config.borrow().clone();
    let max_body = cfg.server.max_body.as_u64() as usize;

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let Some(enc) = Encoding::from_content_type(content_type) else {
        metrics::otlp_request("unknown", "unsupported_media_type");
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_ARGUMENT,
            format!(
                "Content-Type must be application/x-protobuf or application/json (OTLP/HTTP), got {:?}",
                content_type.unwrap_or("")
            ),
            Encoding::Json,
        );
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("(not ASCII)"));
    let Some(compression) = Compression::from_header(content_encoding) else {
        metrics::otlp_request(enc.label(), "unsupported_media_type");
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_ARGUMENT,
            format!(
                "Content-Encoding must be gzip or absent, got {:?}",
                content_encoding.unwrap_or("")
            ),
            enc,
        );
    };
    let (project_header, workspace_header) = match (
        header_text(&headers, "projectName"),
        header_text(&headers, "Comet-Workspace"),
    ) {
        (Ok(p), Ok(w)) => (p, w),
        (Err(e), _) | (_, Err(e)) => {
            metrics::otlp_request(enc.label(), "bad_request");
            return status(StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT, e, enc);
        }
    };

    let raw = match read_limited(body, max_body).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(m)) => return too_large(m, enc),
        Err(BodyError::Invalid(m)) => {
            metrics::otlp_request(enc.label(), "bad_request");
            return status(StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT, m, enc);
        }
    };
    if !inner.accepting.load(Ordering::Acquire) {
        metrics::otlp_request(enc.label(), "unavailable");
        return unavailable(
            "alertd is shutting down; retry against the restarted daemon",
            enc,
        );
    }

    let now = now_ms();
    // Small plain bodies decode inline: a thread hop costs more than the decode. Gzip always
    // goes to a blocking thread: a few KiB may inflate to `max_body`.
    let inline = compression == Compression::Identity && raw.len() <= INLINE_DECODE;
    let work = move || -> Result<Mapping, BodyError> {
        let req = decode::decode_body(&raw, enc, compression, max_body)?;
        let ctx = Context {
            project_header: project_header.as_deref(),
            workspace_header: workspace_header.as_deref(),
            now_ms: now,
        };
        Ok(map::map_request(&req, &ctx))
    };
    let mapped = if inline {
        work()
    } else {
        let _permit = DECODERS
            .acquire()
            .await
            .expect("the decoder semaphore is never closed");
        tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
            Err(BodyError::Invalid(format!(
                "decoding the body failed unexpectedly: {e}"
            )))
        })
    };
    let mapping = match mapped {
        Ok(m) => m,
        Err(BodyError::TooLarge(m)) => return too_large(m, enc),
        Err(BodyError::Invalid(m)) => {
            metrics::otlp_request(enc.label(), "bad_request");
            return status(StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT, m, enc);
        }
    };

    metrics::otlp_spans_received(mapping.spans);
    let rejected = mapping.rejected.len();
    metrics::otlp_root_spans("rejected", rejected as u64);
    let message = mapping.error_message();
    if rejected > 0 {
        tracing::debug!(rejected, reasons = %message, "OTLP root spans rejected");
    }
    for t in mapping.traces.iter().filter(|t| t.error.is_some()) {
        let msg = t.error.as_ref().and_then(|e| e.message.as_deref());
        tracing::debug!(trace_id = %t.trace_id, project = ?t.project, message = ?msg, "OTLP error trace");
    }
    let events = mapping.into_events(now);
    if !events.is_empty() {
        let n = events.len() as u64;
        match crate::api::events::append(&s, &cfg, events).await {
            Ok(a) => {
                metrics::otlp_root_spans("accepted", a.accepted as u64);
                metrics::otlp_root_spans("duplicate", a.duplicates as u64);
                if a.duplicates > 0 {
                    metrics::events("trace", "duplicate", a.duplicates as u64);
                }
            }
            Err(m) => {
                metrics::otlp_root_spans("unavailable", n);
                metrics::otlp_request(enc.label(), "unavailable");
                return unavailable(&m, enc);
            }
        }
    }
    metrics::otlp_request(enc.label(), if rejected > 0 { "partial" } else { "ok" });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, enc.content_type())],
        decode::encode_response(rejected as i64, &message, enc),
    )
        .into_response()
}

/// Hands events to the journal the way `POST /v1/events` does: counted against
/// `ingest.max_queued_events` first, answered only after the durable commit.
/// Reads the whole body, refusing more than `max` bytes.
async fn read_limited(body: Body, max: usize) -> Result<Bytes, BodyError> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            BodyError::TooLarge(format!("the body exceeds server.max_body ({max} bytes)"))
        } else {
            BodyError::Invalid(format!("reading the body failed: {inner}"))
        }
    })
}

/// A header as UTF-8 text (absent → `None`), or the `400` message naming it.
fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v.as_bytes())
            .map(|s| Some(s.to_string()))
            .map_err(|_| format!("the {name} header must be UTF-8 text")),
    }
}

/// An error answer: `google.rpc.Status` in `enc`.
fn status(http: StatusCode, rpc_code: i32, message: impl Into<String>, enc: Encoding) -> Response {
    (
        http,
        [(header::CONTENT_TYPE, enc.content_type())],
        decode::encode_status(rpc_code, &message.into(), enc),
    )
        .into_response()
}

fn too_large(message: String, enc: Encoding) -> Response {
    metrics::otlp_request(enc.label(), "too_large");
    status(
        StatusCode::PAYLOAD_TOO_LARGE,
        code::RESOURCE_EXHAUSTED,
        format!("{message}; send smaller batches (Collector: sending_queue/batch size) or raise server.max_body"),
        enc,
    )
}

fn unavailable(message: &str, enc: Encoding) -> Response {
    let mut r = status(
        StatusCode::SERVICE_UNAVAILABLE,
        code::UNAVAILABLE,
        message,
        enc,
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    r
}
