//! alertd: a crash-safe alerting daemon for LLM-observability events.
//!
//! How an event becomes a webhook, one component a line:
//!
//! - [`api`] receives `POST /v1/events`; [`ingest`] validates the batch (all or nothing).
//!   [`otlp`] receives OpenTelemetry traces (`POST /v1/traces`) and maps root spans to traces.
//! - [`journal`] (actor) appends accepted batches to the redb `inbox` in group commits and answers
//!   `202` only after the fsync; it then hands the events, in sequence order, to
//! - [`router`] (actor), which indexes alerts by (workspace, event type) and forwards each event to
//!   the interested alert actors; it also replays the inbox to alerts that (re)start.
//! - [`alert::actor`] (a fixed set of shard actors, alerts spread by id; each alert isolated by
//!   `catch_unwind` and rebuilt alone on a panic) wraps [`alert::AlertState`]: sliding-window
//!   rings for threshold triggers, debounce buckets for per-event types. Pure logic, unit tested.
//! - [`supervisor`] (root actor) owns the config, restarts crashed alert shards, and runs the
//!   [`scheduler`] tick: every `engine.tick` all alerts evaluate, and one transaction commits their
//!   checkpoints, the new `outbox` rows and the pruning of applied inbox events.
//! - [`delivery::dispatcher`] (actor) sends due outbox rows with bounded concurrency (overall and
//!   per endpoint), formats through [`destination`] (`general`, `slack`, `pagerduty`), retries with
//!   backoff, and records results in groups: delivered log, reschedule, or dead letters.
//! - [`store`] holds every table and transaction; [`codec`] every stored byte format.
//! - [`memory`] returns freed heap to the OS after start-up, reloads and bursts.
//! - [`daemon`] starts it all, signals readiness to systemd, reloads on SIGHUP and stops gracefully.
//!
//! Crash safety follows from the order: events are durable before `202`, notifications are durable
//! before their first attempt, and state is rebuilt from the last checkpoint plus inbox replay.

pub mod alert;
pub mod api;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod destination;
pub mod event;
pub mod ingest;
pub mod journal;
pub mod memory;
pub mod metrics;
pub mod notification;
pub mod otlp;
pub mod router;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod supervisor;
pub mod testhooks;
pub mod watcher;
