//! The HTTP API of DESIGN §10: ingest, alerts, deliveries, reload, health and metrics.
//!
//! Handlers validate and translate; the work happens in the actors and the store. Every error
//! is a JSON object with an `error` message, and every route but `/healthz` requires the bearer
//! token when `server.auth_token` is set.

use crate::clock::now_ms;
use crate::config::{AlertSpec, Config};
use crate::delivery::{parse_key, probe, Delivery, DeliveryStatus};
use crate::destination::rfc3339_ms;
use crate::event::EventType;
use crate::ingest::{self, Limits};
use crate::journal::JournalMsg;
use crate::metrics;
use crate::store::Store;
use crate::supervisor::SupervisorMsg;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub supervisor: ActorRef<SupervisorMsg>,
    pub journal: ActorRef<JournalMsg>,
    pub store: Store,
    pub config: RwLock<Arc<Config>>,
    pub config_path: PathBuf,
    /// Events handed to the journal and not yet committed.
    pub queued: Arc<AtomicUsize>,
    /// False once a graceful stop began: ingest answers 503.
    pub accepting: AtomicBool,
    /// True once the store is open, the actors run and the listener is bound.
    pub ready: AtomicBool,
    /// Serializes reloads (SIGHUP, API and file watcher may race): the file read last is the
    /// one applied last.
    pub reload_lock: tokio::sync::Mutex<()>,
}

impl AppState {
    pub fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }

    pub fn inner(&self) -> &Inner {
        &self.0
    }

    fn config(&self) -> Arc<Config> {
        self.0
            .config
            .read()
            .expect("config lock is never poisoned: writers do not panic")
            .clone()
    }
}

/// An error answer: status plus `{"error": message}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn unavailable(msg: impl Into<String>) -> Response {
    let mut r = ApiError(StatusCode::SERVICE_UNAVAILABLE, msg.into()).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The router with every route and the auth layer.
pub fn router(state: AppState) -> Router {
    let max_body = state.config().server.max_body.as_u64() as usize;
    let protected = Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/traces", post(crate::otlp::handler::post_traces))
        .route("/v1/alerts", get(get_alerts))
        .route("/v1/alerts/{id}/test", post(test_alert))
        .route("/v1/deliveries", get(get_deliveries))
        .route("/v1/deliveries/{id}/retry", post(retry_delivery))
        .route("/v1/reload", post(post_reload))
        .route("/readyz", get(readyz))
        .route("/metrics", get(get_metrics))
        .layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(protected)
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let token = s.config().server.auth_token.clone();
    if !token.is_empty() {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        use subtle::ConstantTimeEq;
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <server.auth_token>)".into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
    duplicates: usize,
}

async fn post_events(
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
    if !s.0.accepting.load(Ordering::Acquire) {
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
    let before = s.0.queued.fetch_add(n, Ordering::AcqRel);
    if before + n > cfg.ingest.max_queued_events && before > 0 {
        s.0.queued.fetch_sub(n, Ordering::AcqRel);
        return unavailable("the journal queue is full; retry shortly");
    }
    let r =
        s.0.journal
            .call(
                |reply| JournalMsg::Append(events, reply),
                Some(Duration::from_secs(60)),
            )
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
        Ok(ractor::rpc::CallResult::Success(Err(e))) => {
            unavailable(format!("the store could not commit the events: {e}"))
        }
        _ => unavailable("the journal did not answer; the events were not acknowledged"),
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

/// A URL with its path hidden: Slack and PagerDuty URLs carry secrets in the path.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let hidden = if u.path().len() > 1 || u.query().is_some() {
                "/***"
            } else {
                "/"
            };
            format!(
                "{}://{}{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                port,
                hidden
            )
        }
        Err(_) => "***".into(),
    }
}

fn alert_json(spec: &AlertSpec, view: Option<crate::alert::actor::AlertView>) -> serde_json::Value {
    let triggers: Vec<serde_json::Value> = spec
        .triggers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = view.as_ref().and_then(|v| v.triggers.get(i));
            json!({
                "event": t.event,
                "projects": t.projects,
                "threshold": t.threshold.as_ref().map(|th| th.value),
                "window_seconds": t.threshold.as_ref().map(|th| th.window.as_secs()),
                "operator": t.threshold.as_ref().filter(|_| t.event.is_feedback()).map(|th| th.operator.symbol()),
                "score": t.threshold.as_ref().and_then(|th| th.score.clone()),
                "value": v.and_then(|v| v.value),
                "firing": v.is_some_and(|v| v.firing),
                "bucket_size": v.and_then(|v| v.bucket_size),
            })
        })
        .collect();
    json!({
        "id": spec.id,
        "name": spec.name,
        "enabled": spec.enabled,
        "destination": spec.destination.as_str(),
        "url": mask_url(&spec.url),
        "workspace": spec.workspace,
        "secret_token_set": !spec.secret_token.is_empty(),
        "signing_secret_set": !spec.signing_secret.is_empty(),
        "routing_key_set": !spec.routing_key.is_empty(),
        "headers": spec.headers.keys().collect::<Vec<_>>(),
        "repeat_interval_seconds": spec.repeat_interval.as_secs(),
        "send_resolved": spec.send_resolved,
        "debounce_seconds": spec.debounce.as_secs_f64(),
        "firing": triggers.iter().any(|t| t["firing"] == true),
        "last_notified_at": view.as_ref().and_then(|v| v.last_notified_ms).map(rfc3339_ms),
        "triggers": triggers,
    })
}

async fn get_alerts(State(s): State<AppState>) -> Response {
    match ractor::call_t!(s.0.supervisor, SupervisorMsg::Alerts, 10_000) {
        Ok(list) => {
            let alerts: Vec<_> = list
                .into_iter()
                .map(|(spec, v)| alert_json(&spec, v))
                .collect();
            Json(json!({ "alerts": alerts })).into_response()
        }
        Err(e) => unavailable(format!("the engine did not answer: {e}")),
    }
}

#[derive(Deserialize, Default)]
struct TestBody {
    event_type: Option<String>,
}

async fn test_alert(State(s): State<AppState>, Path(id): Path<String>, body: Bytes) -> Response {
    let cfg = s.config();
    let Some(spec) = cfg.alert(&id).cloned() else {
        return ApiError(StatusCode::NOT_FOUND, format!("no alert with id {id:?}")).into_response();
    };
    let req: TestBody = if body.iter().all(|b| b.is_ascii_whitespace()) {
        TestBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"))
                    .into_response()
            }
        }
    };
    let event_type = match req.event_type.as_deref().map(str::parse::<EventType>) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return ApiError(StatusCode::BAD_REQUEST, e).into_response(),
    };
    let secrets = spec_secrets(&spec);
    match probe::send_test(&spec, event_type, &cfg.delivery).await {
        Ok(mut r) => {
            // A PagerDuty body carries the routing key: the API never shows secrets.
            r.request_body = redact(&r.request_body, &secrets);
            r.error_message = r.error_message.map(|m| redact(&m, &secrets));
            Json(r).into_response()
        }
        Err(e) => ApiError(StatusCode::BAD_REQUEST, redact(&e, &secrets)).into_response(),
    }
}

#[derive(Deserialize)]
struct ListQuery {
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
        "last_error": d.last_error,
        "next_attempt_at": rfc3339_ms(d.next_attempt_ms),
        "created_at": rfc3339_ms(d.created_ms),
        "finished_at": d.finished_ms.map(rfc3339_ms),
    })
}

async fn get_deliveries(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let status: DeliveryStatus = match q.status.as_deref().unwrap_or("pending").parse() {
        Ok(st) => st,
        Err(e) => return ApiError(StatusCode::BAD_REQUEST, e).into_response(),
    };
    let limit = q.limit.unwrap_or(100).min(10_000);
    let store = s.0.store.clone();
    match tokio::task::spawn_blocking(move || store.list_deliveries(status, limit)).await {
        Ok(Ok(rows)) => {
            let rows: Vec<_> = rows.iter().map(delivery_json).collect();
            Json(json!({ "deliveries": rows })).into_response()
        }
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(e) => unavailable(e.to_string()),
    }
}

async fn retry_delivery(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(key) = parse_key(&id) else {
        return ApiError(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a delivery id (a UUID)"),
        )
        .into_response();
    };
    let store = s.0.store.clone();
    match tokio::task::spawn_blocking(move || store.requeue_dead(key, now_ms())).await {
        Ok(Ok(Some(d))) => {
            let body = delivery_json(&d);
            let _ = s.0.supervisor.cast(SupervisorMsg::Requeue(Box::new(d)));
            (
                StatusCode::ACCEPTED,
                Json(json!({ "status": "queued", "delivery": body })),
            )
                .into_response()
        }
        Ok(Ok(None)) => ApiError(
            StatusCode::NOT_FOUND,
            format!("no dead letter with id {id}"),
        )
        .into_response(),
        Ok(Err(e)) => unavailable(e.to_string()),
        Err(e) => unavailable(e.to_string()),
    }
}

/// Why a reload was not applied.
#[derive(Debug)]
pub enum ReloadError {
    /// The file is unreadable or invalid; the message names the file, alert and key.
    Invalid(String),
    /// The engine did not take the new config.
    Engine(String),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Invalid(m) | ReloadError::Engine(m) => f.write_str(m),
        }
    }
}

/// The engine's report of a reload, with `restart_required` narrowed to the settings that are
/// read only at start (the rest of `[server]` and `[ingest]` applies at once).
fn restart_required(old: &Config, new: &Config) -> Vec<String> {
    let (o, n) = (&old.server, &new.server);
    let mut keys = Vec::new();
    let mut check = |changed: bool, key: &str| {
        if changed {
            keys.push(key.to_string());
        }
    };
    check(o.listen != n.listen, "server.listen");
    check(o.max_body != n.max_body, "server.max_body");
    check(
        o.max_connections != n.max_connections,
        "server.max_connections",
    );
    check(
        o.header_timeout != n.header_timeout,
        "server.header_timeout",
    );
    check(old.storage.path != new.storage.path, "storage.path");
    check(
        old.ingest.dedup_window != new.ingest.dedup_window,
        "ingest.dedup_window",
    );
    keys
}

/// Reloads the config file; shared by `POST /v1/reload`, SIGHUP and the file watcher.
///
/// An invalid file changes nothing: the error is logged (with secrets redacted), the
/// `alertd_config_last_reload_successful` gauge drops to 0, and the error is returned.
pub async fn reload(
    s: &AppState,
    trigger: &'static str,
) -> Result<crate::supervisor::ReloadReport, ReloadError> {
    let _serial = s.0.reload_lock.lock().await;
    let path = s.0.config_path.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let secrets = file_secrets(&path);
        (Config::load(&path), secrets)
    })
    .await
    .map_err(|e| ReloadError::Engine(format!("the config loader failed: {e}")))?;
    let old = s.config();
    let new = match loaded {
        (Ok(c), _) => c,
        (Err(e), mut secrets) => {
            secrets.extend(config_secrets(&old));
            let msg = redact(&e.to_string(), &secrets);
            metrics::config_reload(false);
            tracing::error!(trigger, error = %msg, "config reload rejected; the running config stays");
            return Err(ReloadError::Invalid(msg));
        }
    };
    let mut report = match ractor::call_t!(
        s.0.supervisor,
        SupervisorMsg::Reload,
        60_000,
        Box::new(new.clone())
    ) {
        Ok(r) => r,
        Err(e) => {
            metrics::config_reload(false);
            tracing::error!(trigger, error = %e, "the engine did not apply the reloaded config; the running config stays");
            return Err(ReloadError::Engine(format!(
                "the engine did not apply the config: {e}"
            )));
        }
    };
    report.restart_required = restart_required(&old, &new);
    *s.0.config.write().expect("config lock is never poisoned") = Arc::new(new);
    metrics::config_reload(true);
    if report.restart_required.is_empty() {
        tracing::info!(trigger, added = ?report.added, removed = ?report.removed,
            changed = ?report.changed, unchanged = report.unchanged, "config reloaded");
    } else {
        tracing::warn!(trigger, added = ?report.added, removed = ?report.removed,
            changed = ?report.changed, unchanged = report.unchanged,
            restart_required = ?report.restart_required,
            "config reloaded; some changed settings take effect only after a restart");
    }
    Ok(report)
}

async fn post_reload(State(s): State<AppState>) -> Response {
    match reload(&s, "api").await {
        Ok(report) => Json(json!({ "status": "reloaded", "report": report })).into_response(),
        Err(ReloadError::Invalid(e)) => ApiError(StatusCode::BAD_REQUEST, e).into_response(),
        Err(ReloadError::Engine(e)) => unavailable(e),
    }
}

/// The secrets of one alert, and its URL's path (Slack and PagerDuty keep secrets there).
fn spec_secrets(spec: &AlertSpec) -> Vec<String> {
    let mut out = vec![
        spec.secret_token.clone(),
        spec.signing_secret.clone(),
        spec.routing_key.clone(),
    ];
    out.extend(url_secret(&spec.url));
    out.retain(|s| !s.is_empty());
    out
}

/// Every secret of a validated config.
pub fn config_secrets(cfg: &Config) -> Vec<String> {
    let mut out = vec![cfg.server.auth_token.clone()];
    for a in &cfg.alerts {
        out.extend(spec_secrets(a));
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The path and query of a URL, the part [`mask_url`] hides.
fn url_secret(url: &str) -> Option<String> {
    let tail = match url::Url::parse(url) {
        Ok(u) => {
            let mut tail = u.path().trim_start_matches('/').to_string();
            if let Some(q) = u.query() {
                tail.push('?');
                tail.push_str(q);
            }
            tail
        }
        // An invalid URL still names its secret path in the validation error: cut by hand.
        Err(_) => {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            rest.split_once('/').map_or("", |(_, t)| t).to_string()
        }
    };
    (tail.len() > 1).then_some(tail)
}

/// Secrets written inline in a config file that may not validate, as (key, value): read
/// leniently as TOML so messages about that file can be scrubbed of them. URL paths count
/// (Slack and PagerDuty keep secrets there), under the key `url`.
fn inline_secrets(path: &std::path::Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return vec![];
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return vec![];
    };
    let mut out = Vec::new();
    if let Some(t) = doc
        .get("server")
        .and_then(|s| s.get("auth_token"))
        .and_then(|v| v.as_str())
    {
        out.push(("server.auth_token".to_string(), t.to_string()));
    }
    for alert in doc
        .get("alert")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        let id = alert.get("id").and_then(|v| v.as_str()).unwrap_or("?");
        for key in ["secret_token", "signing_secret", "routing_key"] {
            if let Some(v) = alert.get(key).and_then(|v| v.as_str()) {
                out.push((format!("alert {id:?}: {key}"), v.to_string()));
            }
        }
        if let Some(u) = alert.get("url").and_then(|v| v.as_str()) {
            if let Some(tail) = url_secret(u) {
                out.push((format!("alert {id:?}: url"), tail));
            }
        }
    }
    out.retain(|(_, v)| !v.is_empty());
    out
}

/// Every secret value written inline in the config file at `path`.
pub fn file_secrets(path: &std::path::Path) -> Vec<String> {
    inline_secrets(path).into_iter().map(|(_, v)| v).collect()
}

/// Which settings of the file at `path` hold a secret inline (webhook URLs of the general
/// destination are not counted: their paths are usually not secret).
pub fn file_secrets_keys(path: &std::path::Path) -> Vec<String> {
    let general_urls: Vec<String> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|d| d.get("alert").and_then(|a| a.as_array()).cloned())
        .into_iter()
        .flatten()
        .filter(|a| {
            a.get("destination")
                .and_then(|d| d.as_str())
                .is_none_or(|d| d == "general")
        })
        .map(|a| {
            let id = a.get("id").and_then(|v| v.as_str()).unwrap_or("?");
            format!("alert {id:?}: url")
        })
        .collect();
    inline_secrets(path)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !general_urls.contains(k))
        .collect()
}

/// `text` with every occurrence of a secret replaced by `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| s.len() >= 4).collect();
    // Longest first, so a secret containing another is hidden whole.
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in sorted {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// Ready = the store is open, the engine's actors run, the listener is bound and the daemon is
/// not stopping. A load balancer should send events only to a ready daemon.
async fn readyz(State(s): State<AppState>) -> Response {
    use ractor::ActorStatus;
    let running = |st: ActorStatus| st == ActorStatus::Running;
    let checks = [
        ("listener", s.0.ready.load(Ordering::Acquire)),
        ("accepting", s.0.accepting.load(Ordering::Acquire)),
        ("engine", running(s.0.supervisor.get_status())),
        ("journal", running(s.0.journal.get_status())),
    ];
    let failing: Vec<&str> = checks.iter().filter(|c| !c.1).map(|c| c.0).collect();
    if failing.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "error": format!("not ready: {}", failing.join(", ")), "failing": failing})),
        )
            .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    }
}

async fn get_metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
        .into_response()
}
