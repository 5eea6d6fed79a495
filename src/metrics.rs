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
    suppressed: Family<Labels, Counter>,
    silences_active: Gauge,
    attempts: Family<Labels, Counter>,
    delivery_latency: Histogram,
    outbox_depth: Gauge,
    dead_letters: Gauge,
    inbox_size: Gauge,
    reload_ok: Gauge,
    reload_time: Gauge<f64, AtomicU64>,
    build_info: Family<Labels, Gauge>,
    engine: EngineMetrics,
    hardening: HardeningMetrics,
}

/// What the store set aside or pruned to stay bounded and startable.
struct HardeningMetrics {
    quarantined: Gauge,
    pruned: Family<Labels, Counter>,
}

fn hardening_metrics(registry: &mut Registry) -> HardeningMetrics {
    let quarantined = Gauge::default();
    registry.register(
        "quarantined_rows",
        "Stored rows set aside as unreadable (GET /v1/quarantine lists them)",
        quarantined.clone(),
    );
    let pruned = Family::<Labels, Counter>::default();
    registry.register(
        "retention_pruned_rows",
        "Dead letters and delivered-log rows deleted by retention, by table and reason",
        pruned.clone(),
    );
    HardeningMetrics {
        quarantined,
        pruned,
    }
}

/// The actor tree's own health.
struct EngineMetrics {
    tick: Histogram,
    actors: Family<Labels, Gauge>,
    restarts: Family<Labels, Counter>,
    failed: Gauge,
}

fn engine_metrics(registry: &mut Registry) -> EngineMetrics {
    let tick = Histogram::new(exponential_buckets(0.001, 2.0, 16));
    registry.register(
        "tick_seconds",
        "Duration of one scheduler tick: fan-out, gathering, commit",
        tick.clone(),
    );
    let actors = Family::<Labels, Gauge>::default();
    registry.register(
        "actors",
        "Running actors by kind (alert, sender, scheduler)",
        actors.clone(),
    );
    let restarts = Family::<Labels, Counter>::default();
    registry.register(
        "alert_restarts",
        "Restarts of an alert's actor after it died",
        restarts.clone(),
    );
    let failed = Gauge::default();
    registry.register(
        "alerts_failed",
        "Alerts stopped after too many restarts (retried at the next reload)",
        failed.clone(),
    );
    EngineMetrics {
        tick,
        actors,
        restarts,
        failed,
    }
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
    let suppressed = Family::<Labels, Counter>::default();
    registry.register(
        "notifications_suppressed",
        "Notifications an active silence kept from being sent, by alert",
        suppressed.clone(),
    );
    let silences_active = Gauge::default();
    registry.register(
        "silences_active",
        "Silences in force now (pending and expired ones not counted)",
        silences_active.clone(),
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
    let engine = engine_metrics(&mut registry);
    let hardening = hardening_metrics(&mut registry);
    Metrics {
        engine,
        hardening,
        registry,
        events,
        journal_commit,
        journal_batch,
        alerts_firing,
        notifications,
        suppressed,
        silences_active,
        attempts,
        delivery_latency,
        outbox_depth,
        dead_letters,
        inbox_size,
        reload_ok,
        reload_time,
        build_info,
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

/// Counts a notification a silence suppressed.
pub fn notification_suppressed(alert: &str) {
    M.suppressed
        .get_or_create(&vec![("alert", alert.to_string())])
        .inc();
}

/// Sets the number of silences in force.
pub fn set_silences_active(n: usize) {
    M.silences_active.set(n as i64);
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

/// Observes one scheduler tick.
pub fn tick_seconds(seconds: f64) {
    M.engine.tick.observe(seconds);
}

/// Sets the number of running actors of one kind.
pub fn set_actors(kind: &'static str, n: usize) {
    M.engine
        .actors
        .get_or_create(&vec![("kind", kind.to_string())])
        .set(n as i64);
}

/// Counts a restart of an alert's actor.
pub fn alert_restart(alert: &str) {
    M.engine
        .restarts
        .get_or_create(&vec![("alert", alert.to_string())])
        .inc();
}

/// Sets the number of failed alerts.
pub fn set_alerts_failed(n: usize) {
    M.engine.failed.set(n as i64);
}

/// Sets the number of rows in quarantine.
pub fn set_quarantined(n: u64) {
    M.hardening.quarantined.set(n as i64);
}

/// Counts rows retention deleted from `table` because of `reason` (age or bytes).
pub fn retention_pruned(table: &'static str, reason: &'static str, n: u64) {
    M.hardening
        .pruned
        .get_or_create(&vec![
            ("table", table.to_string()),
            ("reason", reason.to_string()),
        ])
        .inc_by(n);
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let _ = &M.build_info;
    let mut out = String::new();
    encode(&mut out, &M.registry).expect("writing to a String cannot fail");
    out
}
