//! The HTTP API of DESIGN §10, one file per resource: ingest (`events`), `alerts`,
//! `deliveries`, `reload`, and `health` (health, readiness, metrics).
//!
//! Handlers validate and translate; the work happens in the actors and the store. Every error
//! is a JSON object with an `error` message, and every route but `/healthz` requires the bearer
//! token when `server.auth_token` is set. The console's routes ([`crate::ui`]) are merged beside
//! these, outside the bearer-token layer: a browser logs in once and carries a session cookie. The settings the API uses (token, limits) are read
//! from the running config ([`crate::config::LiveConfig`]), the same value the engine runs.

mod alerts;
pub(crate) mod deliveries;
pub(crate) mod events;
mod health;
mod quarantine;
mod reload;
mod service;
pub(crate) mod silences;

pub use crate::redact::{config_secrets, file_secrets, file_secrets_keys, mask_url, redact};
pub use crate::reload::{reload, ReloadError};
pub use deliveries::delivery_json;
pub use service::Api;

use crate::config::{Config, LiveConfig};
use crate::journal::JournalMsg;
use crate::store::Store;
use crate::supervisor::SupervisorMsg;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ractor::ActorRef;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub supervisor: ActorRef<SupervisorMsg>,
    pub journal: ActorRef<JournalMsg>,
    /// The journal's intake: requests are queued there directly, without a message each.
    pub intake: crate::journal::Intake,
    pub store: Store,
    /// The running config (updated by the supervisor when a reload is applied).
    pub config: LiveConfig,
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
    /// Bounds the large ingest bodies read at once (`server.max_large_bodies`). Here rather
    /// than in a request extension, which costs every request a map and a clone.
    pub body_gate: events::BodyGate,
}

impl AppState {
    pub fn new(inner: Inner) -> AppState {
        AppState(Arc::new(inner))
    }

    pub fn inner(&self) -> &Inner {
        &self.0
    }

    pub(crate) fn config(&self) -> Arc<Config> {
        self.0.config.borrow().clone()
    }
}

/// An error answer: status plus `{"error": message}`.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn unavailable(msg: impl Into<String>) -> Response {
    let mut r = ApiError(StatusCode::SERVICE_UNAVAILABLE, msg.into()).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The router with every route and the auth layer.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/v1/events", post(events::post_events))
        .route("/v1/traces", post(crate::otlp::handler::post_traces))
        .route("/v1/alerts", get(alerts::get_alerts))
        .route("/v1/alerts/{id}/test", post(alerts::test_alert))
        .route("/v1/deliveries", get(deliveries::get_deliveries))
        .route(
            "/v1/deliveries/{id}/retry",
            post(deliveries::retry_delivery),
        )
        .route("/v1/reload", post(reload::post_reload))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::get_metrics))
        .merge(silences::routes())
        .merge(quarantine::routes())
        .layer(ValidateRequestHeaderLayer::custom(Auth(state.clone())));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(protected)
        .merge(crate::ui::routes(state.clone()))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        // Only ingest takes large bodies (it reads and bounds them itself, see `events`); the
        // other routes' bodies are small JSON, so a large one is refused before it is parsed.
        .layer(DefaultBodyLimit::max(events::SMALL_BODY))
        .with_state(state)
}

/// The bearer-token check of every protected route, against the running config's token.
///
/// A plain tower layer rather than `axum::middleware::from_fn`: that boxes every request's
/// future and clones the inner service for it, 2.8 % of alertd's CPU under single-event ingest
/// (`bench/profile.sh single`).
#[derive(Clone)]
struct Auth(AppState);

impl<B> ValidateRequest<B> for Auth {
    type ResponseBody = axum::body::Body;

    fn validate(&mut self, req: &mut axum::http::Request<B>) -> Result<(), Response> {
        let cfg = self.0.config();
        let token = &cfg.server.auth_token;
        if token.is_empty() {
            return Ok(());
        }
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if crate::secrets::token_matches(given, token) {
            Ok(())
        } else {
            Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <server.auth_token>)".into(),
            )
            .into_response())
        }
    }
}
