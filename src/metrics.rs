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
    otlp_requests: Family<Labels, Counter>,
    otlp_spans: Counter,
    otlp_root_spans: Family<Labels, Counter>,
    source_up: Family<Labels, Gauge>,
    source_pending: Family<Labels, Gauge>,
    source_messages: Family<Labels, Counter>,
    source_last_error: Family<Labels, Gauge<f64, AtomicU64>>,
    engine: EngineMetrics,
    hardening: HardeningMetrics,
    store_io: StoreIoMetrics,
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
    missed: Counter,
    ids: Gauge,
    ids_early: Counter,
    file_bytes: Gauge,
    live_bytes: Gauge,
}

/// Upper bounds of the tick histogram, in seconds. Powers of two put 257 ms and 497 ms in one
/// bucket, so with a few ticks a run the interpolated p99 read 497 ms for a slowest tick of any
/// length in between, against a 400 ms goal (issue 12). These bounds are fine where a tick's
/// length matters (tens to hundreds of milliseconds against the default 5 s period) and include
/// the values an operator alerts on.
const TICK_BUCKETS: [f64; 24] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5,
    0.65, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

fn engine_metrics(registry: &mut Registry) -> EngineMetrics {
    let tick = Histogram::new(TICK_BUCKETS);
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
    let missed = Counter::default();
    registry.register(
        "ticks_missed",
        "Tick periods skipped because a tick overran its period",
        missed.clone(),
    );
    let ids = Gauge::default();
    registry.register(
        "ingest_ids_remembered",
        "Client event ids remembered for de-duplication",
        ids.clone(),
    );
    let ids_early = Counter::default();
    registry.register(
        "ingest_ids_forgotten_early",
        "Client ids forgotten before their window ended (ingest.max_remembered_ids)",
        ids_early.clone(),
    );
    let file_bytes = Gauge::default();
    registry.register(
        "store_file_bytes",
        "Size of the data file",
        file_bytes.clone(),
    );
    let live_bytes = Gauge::default();
    registry.register(
        "store_live_bytes",
        "Bytes of the data file's live pages (the rest is free space compaction returns)",
        live_bytes.clone(),
    );
    EngineMetrics {
        tick,
        actors,
        restarts,
        failed,
        missed,
        ids,
        ids_early,
        file_bytes,
        live_bytes,
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
    let store_io = store_io_metrics(&mut registry);
    let source_up = Family::<Labels, Gauge>::default();
    registry.register(
        "source_up",
        "Whether an ingest source is connected and consuming",
        source_up.clone(),
    );
    let source_pending = Family::<Labels, Gauge>::default();
    registry.register(
        "source_pending_messages",
        "Messages in a source's consumer not yet delivered to alertd",
        source_pending.clone(),
    );
    let source_messages = Family::<Labels, Counter>::default();
    registry.register(
        "source_messages",
        "Source messages by outcome: delivered (pulled), acked (after the commit), invalid (terminated)",
        source_messages.clone(),
    );
    let source_last_error = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    registry.register(
        "source_last_error_timestamp_seconds",
        "Time of a source's last error (connection lost, set-up or commit failure)",
        source_last_error.clone(),
    );
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
        engine,
        hardening,
        store_io,
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
        source_up,
        source_pending,
        source_messages,
        source_last_error,
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

/// Drops every series labelled with a removed alert, so a reload that renames alerts does not
/// leave the old names behind forever.
pub fn forget_alert(alert: &str) {
    for state in ["firing", "resolved"] {
        M.notifications.remove(&vec![
            ("alert", alert.to_string()),
            ("state", state.to_string()),
        ]);
    }
    let by_alert = vec![("alert", alert.to_string())];
    M.suppressed.remove(&by_alert);
    M.engine.restarts.remove(&by_alert);
}

/// Counts client ids forgotten before their window ended because `ingest.max_remembered_ids`
/// was reached; warns the first time.
pub fn ids_forgotten_early(n: u64) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(ids = n, "ingest.max_remembered_ids reached: the oldest client ids are forgotten before ingest.dedup_window ends (a repeat of one would be counted again); raise the limit or shorten the window");
    }
    M.engine.ids_early.inc_by(n);
}

/// Sets how many client ids are remembered for de-duplication.
pub fn set_ids_remembered(n: u64) {
    M.engine.ids.set(n.min(i64::MAX as u64) as i64);
}

/// Sets the data file's size and live bytes.
pub fn set_store_space(file: u64, live: u64) {
    M.engine.file_bytes.set(file.min(i64::MAX as u64) as i64);
    M.engine.live_bytes.set(live.min(i64::MAX as u64) as i64);
}

/// Counts ticks that started late because the previous one overran its period.
pub fn ticks_missed(n: u64) {
    M.engine.missed.inc_by(n);
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

fn source_label(source: &str) -> Labels {
    vec![("source", source.to_string())]
}

/// Sets whether `source` is consuming.
pub fn source_up(source: &str, up: bool) {
    M.source_up
        .get_or_create(&source_label(source))
        .set(up as i64);
}

/// Sets the backlog `source`'s log reports.
pub fn source_pending(source: &str, n: u64) {
    M.source_pending
        .get_or_create(&source_label(source))
        .set(n.min(i64::MAX as u64) as i64);
}

/// Counts `n` messages of `source` with `outcome` (delivered, acked, invalid).
pub fn source_messages(source: &str, outcome: &'static str, n: u64) {
    M.source_messages
        .get_or_create(&vec![
            ("source", source.to_string()),
            ("outcome", outcome.to_string()),
        ])
        .inc_by(n);
}

/// Records the time (epoch ms) of `source`'s last error.
pub fn source_error(source: &str, at_ms: i64) {
    M.source_last_error
        .get_or_create(&source_label(source))
        .set(at_ms as f64 / 1000.0);
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

/// The data file's write volume and what per-event alerts keep in it (issue 21).
struct StoreIoMetrics {
    written: Counter,
    commit_bytes: Family<Labels, Counter>,
    row_bytes: Family<Labels, Counter>,
    bucket_items: Gauge,
}

fn store_io_metrics(registry: &mut Registry) -> StoreIoMetrics {
    let written = Counter::default();
    registry.register(
        "store_bytes_written",
        "Bytes written to the data file (pages and headers redb writes; fsyncs not counted)",
        written.clone(),
    );
    let commit_bytes = Family::<Labels, Counter>::default();
    registry.register(
        "store_commit_bytes",
        "Bytes written to the store's files, by what they were written for: append (events committed to the data file), append_log, tick, delivery_results, ids (sealing client ids), housekeeping (pruning, retention, compaction), other",
        commit_bytes.clone(),
    );
    let row_bytes = Family::<Labels, Counter>::default();
    registry.register(
        "store_row_bytes",
        "Bytes of the values inserted into each table (before redb's page overhead): which data the disk writes follow",
        row_bytes.clone(),
    );
    let bucket_items = Gauge::default();
    registry.register(
        "bucket_items",
        "Events kept once for the open buckets of per-event alerts (items of the bucket_item_blocks table)",
        bucket_items.clone(),
    );
    StoreIoMetrics {
        written,
        commit_bytes,
        row_bytes,
        bucket_items,
    }
}

/// Counts bytes written to the store's files, for the kind of `commit` that wrote them.
pub fn store_bytes_written(n: u64, commit: &'static str) {
    M.store_io.written.inc_by(n);
    thread_local!(static BY_COMMIT: LabelCache = LabelCache::default());
    BY_COMMIT.with(|c| c.inc(&M.store_io.commit_bytes, "commit", commit, n));
}

/// Counts the bytes of values inserted into one table.
pub fn store_row_bytes(table: &'static str, n: u64) {
    thread_local!(static BY_TABLE: LabelCache = LabelCache::default());
    BY_TABLE.with(|c| c.inc(&M.store_io.row_bytes, "table", table, n));
}

/// One family's counters by label value, looked up once per thread. The store counts on its
/// commit thread, the single writer batched ingest waits for; a label `Vec` built and hashed per
/// page written would be work on that path for nothing.
#[derive(Default)]
struct LabelCache(std::cell::RefCell<Vec<(&'static str, Counter)>>);

impl LabelCache {
    fn inc(
        &self,
        family: &Family<Labels, Counter>,
        label: &'static str,
        value: &'static str,
        n: u64,
    ) {
        let mut known = self.0.borrow_mut();
        if let Some((_, c)) = known.iter().find(|(v, _)| *v == value) {
            c.inc_by(n);
            return;
        }
        let c = family
            .get_or_create(&vec![(label, value.to_string())])
            .clone();
        c.inc_by(n);
        known.push((value, c));
    }
}

/// Sets how many events the open buckets of per-event alerts keep.
pub fn set_bucket_items(n: u64) {
    M.store_io.bucket_items.set(n.min(i64::MAX as u64) as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of one series in the rendered text.
    fn series(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn cached_store_counters_land_in_their_labelled_series() {
        let row = "alertd_store_row_bytes_total{table=\"metrics_test_table\"}";
        let commit = "alertd_store_commit_bytes_total{commit=\"metrics_test_commit\"}";
        for _ in 0..2 {
            store_row_bytes("metrics_test_table", 5);
            store_bytes_written(7, "metrics_test_commit");
        }
        // Another thread has its own cache and the same series.
        std::thread::spawn(|| store_row_bytes("metrics_test_table", 1))
            .join()
            .unwrap();
        let text = render();
        assert_eq!(series(&text, row), 11.0, "{text}");
        assert_eq!(series(&text, commit), 14.0, "{text}");
    }

    #[test]
    fn a_tick_just_over_a_quarter_second_is_told_from_one_near_half_a_second() {
        let bucket = |text: &str, le: &str| {
            series(text, &format!("alertd_tick_seconds_bucket{{le=\"{le}\"}}"))
        };
        let before = render();
        tick_seconds(0.26);
        tick_seconds(0.49);
        let after = render();
        let added = |le: &str| bucket(&after, le) - bucket(&before, le);
        assert_eq!(added("0.25"), 0.0, "{after}");
        assert_eq!(added("0.3"), 1.0, "{after}");
        assert_eq!(added("0.4"), 1.0, "{after}");
        assert_eq!(added("0.5"), 2.0, "{after}");
    }
}
