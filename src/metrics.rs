//! Prometheus metrics: one registry for the process, small functions to record into it.
//!
//! Metrics are process-global (like a logger) so any stage can record without threading a handle
//! through every actor. `GET /metrics` renders [`render`].

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

type Labels = Vec<(&'static str, String)>;

struct Metrics {
    registry: Registry,
    events: Family<Labels, Counter>,
    journal_commit: Histogram,
    journal_batch: Histogram,
    alerts_firing: Gauge,
    notifications: Family<Labels, Counter>,
    attempts: Family<Labels, Counter>,
    delivery_latency: Histogram,
    outbox_depth: Gauge,
    dead_letters: Gauge,
    inbox_size: Gauge,
    reload_ok: Gauge,
    reload_time: Gauge<f64, AtomicU64>,
    build_info: Family<Labels, Gauge>,
    otlp_requests: Family<Labels, Counter>,
    otlp_spans: Counter,
    otlp_root_spans: Family<Labels, Counter>,
}

static M: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("alertd");
    let events = Family::<Labels, Counter>::default();
    registry.register(
        "events",
        "Events by kind and outcome (accepted, rejected, duplicate, late)",
        events.clone(),
    );
    let journal_commit = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
    registry.register(
        "journal_commit_seconds",
        "Duration of one durable journal commit",
        journal_commit.clone(),
    );
    let journal_batch = Histogram::new(exponential_buckets(1.0, 4.0, 10));
    registry.register(
        "journal_commit_events",
        "Events per journal commit",
        journal_batch.clone(),
    );
    let alerts_firing = Gauge::default();
    registry.register(
        "alerts_firing",
        "Threshold triggers currently firing",
        alerts_firing.clone(),
    );
    let notifications = Family::<Labels, Counter>::default();
    registry.register(
        "notifications",
        "Notifications decided, by alert and state",
        notifications.clone(),
    );
    let attempts = Family::<Labels, Counter>::default();
    registry.register(
        "delivery_attempts",
        "Delivery attempts by outcome and destination",
        attempts.clone(),
    );
    let delivery_latency = Histogram::new(exponential_buckets(0.005, 2.0, 16));
    registry.register(
        "delivery_latency_seconds",
        "Time from decision to successful delivery",
        delivery_latency.clone(),
    );
    let outbox_depth = Gauge::default();
    registry.register(
        "outbox_depth",
        "Deliveries waiting in the outbox",
        outbox_depth.clone(),
    );
    let dead_letters = Gauge::default();
    registry.register(
        "dead_letters",
        "Deliveries in dead letters",
        dead_letters.clone(),
    );
    let inbox_size = Gauge::default();
    registry.register(
        "inbox_events",
        "Events in the inbox not yet applied by every alert",
        inbox_size.clone(),
    );
    let reload_ok = Gauge::default();
    reload_ok.set(1);
    registry.register(
        "config_last_reload_successful",
        "Whether the last config reload succeeded",
        reload_ok.clone(),
    );
    let reload_time = Gauge::<f64, AtomicU64>::default();
    registry.register(
        "config_last_reload_success_timestamp_seconds",
        "Time of the last successful config load",
        reload_time.clone(),
    );
    let build_info = Family::<Labels, Gauge>::default();
    registry.register("build_info", "Build information", build_info.clone());
    build_info
        .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
        .set(1);
    let otlp_requests = Family::<Labels, Counter>::default();
    registry.register(
        "otlp_requests",
        "OTLP/HTTP export requests (POST /v1/traces) by encoding and outcome (ok, partial, bad_request, unsupported_media_type, too_large, unavailable)",
        otlp_requests.clone(),
    );
    let otlp_spans = Counter::default();
    registry.register(
        "otlp_spans_received",
        "Spans in decoded OTLP export requests, root or not",
        otlp_spans.clone(),
    );
    let otlp_root_spans = Family::<Labels, Counter>::default();
    registry.register(
        "otlp_root_spans",
        "OTLP root spans by outcome (accepted, duplicate, rejected, unavailable)",
        otlp_root_spans.clone(),
    );
    Metrics {
        registry,
        events,
        journal_commit,
        journal_batch,
        alerts_firing,
        notifications,
        attempts,
        delivery_latency,
        outbox_depth,
        dead_letters,
        inbox_size,
        reload_ok,
        reload_time,
        build_info,
        otlp_requests,
        otlp_spans,
        otlp_root_spans,
    }
});

/// Counts `n` events of `kind` with `outcome` (accepted, rejected, duplicate, late).
pub fn events(kind: &str, outcome: &'static str, n: u64) {
    M.events
        .get_or_create(&vec![
            ("kind", kind.to_string()),
            ("outcome", outcome.to_string()),
        ])
        .inc_by(n);
}

/// Records one journal commit.
pub fn journal_commit(seconds: f64, events: usize) {
    M.journal_commit.observe(seconds);
    M.journal_batch.observe(events as f64);
}

/// Sets the number of firing threshold triggers.
pub fn set_alerts_firing(n: usize) {
    M.alerts_firing.set(n as i64);
}

/// Counts a decided notification.
pub fn notification(alert: &str, state: &str) {
    M.notifications
        .get_or_create(&vec![
            ("alert", alert.to_string()),
            ("state", state.to_string()),
        ])
        .inc();
}

/// Counts a delivery attempt.
pub fn delivery_attempt(outcome: &'static str, destination: &str) {
    M.attempts
        .get_or_create(&vec![
            ("outcome", outcome.to_string()),
            ("destination", destination.to_string()),
        ])
        .inc();
}

/// Observes decision-to-delivery time.
pub fn delivery_latency(seconds: f64) {
    M.delivery_latency.observe(seconds);
}

pub fn set_outbox_depth(n: usize) {
    M.outbox_depth.set(n as i64);
}

pub fn set_dead_letters(n: u64) {
    M.dead_letters.set(n as i64);
}

pub fn set_inbox_size(n: u64) {
    M.inbox_size.set(n as i64);
}

/// Records a reload attempt's result.
pub fn config_reload(ok: bool) {
    M.reload_ok.set(ok as i64);
    if ok {
        M.reload_time.set(crate::clock::now_ms() as f64 / 1000.0);
    }
}

/// Counts one `POST /v1/traces` request by its encoding (`protobuf`, `json`, `unknown`) and
/// outcome.
pub fn otlp_request(encoding: &'static str, outcome: &'static str) {
    M.otlp_requests
        .get_or_create(&vec![
            ("encoding", encoding.to_string()),
            ("outcome", outcome.to_string()),
        ])
        .inc();
}

/// Counts the spans of one decoded OTLP request.
pub fn otlp_spans_received(n: u64) {
    M.otlp_spans.inc_by(n);
}

/// Counts `n` OTLP root spans with `outcome` (accepted, duplicate, rejected, unavailable).
pub fn otlp_root_spans(outcome: &'static str, n: u64) {
    if n > 0 {
        M.otlp_root_spans
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc_by(n);
    }
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let _ = &M.build_info;
    let mut out = String::new();
    encode(&mut out, &M.registry).expect("writing to a String cannot fail");
    out
}
