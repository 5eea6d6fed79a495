//! alertd: a crash-safe alerting daemon for LLM-observability events.
//!
//! How an event becomes a webhook, one component a line:
//!
//! - [`api`] receives `POST /v1/events` (one file per resource under `src/api/`); [`ingest`]
//!   validates the batch (all or nothing).
//! - [`source`] pulls the same events from NATS JetStream (`[[source.nats]]`) and appends them
//!   through the journal too, acking each message only after its commit.
//!   [`otlp`] receives OpenTelemetry traces (`POST /v1/traces`) and maps root spans to traces.
//! - [`journal`] (actor) appends accepted batches to the redb `inbox` in group commits and answers
//!   `202` only after the fsync; it then hands the events, in sequence order, to
//! - [`router`] (actor), which indexes alerts by (workspace, event type, project) and sends each
//!   alert its share of a batch in one message; it also replays the inbox to alerts that (re)start.
//! - [`alert::actor`]: one actor per enabled alert, a thin shell around [`alert::AlertState`]
//!   (sliding-window rings, debounce buckets; pure logic, unit tested), supervised by
//!   [`alert::supervisor`], which restarts a dead alert from its checkpoint plus replay and marks
//!   it failed after more than 5 restarts in 60 s.
//! - [`scheduler`] (actor) ticks every `engine.tick`: every alert evaluates in parallel, one
//!   transaction commits their checkpoints and new `outbox` rows, then the deliveries are handed
//!   over and the inbox is pruned in small steps up to what every alert has committed.
//! - [`delivery::dispatcher`] (actor) keeps the due-time queue over the outbox and supervises the
//!   [`delivery::pool`] of sender actors; each attempt goes to the alert's current destination,
//!   formatted by [`destination`] (`general`, `slack`, `pagerduty`); results are recorded in
//!   groups: delivered log, reschedule with backoff, or dead letters.
//! - [`supervisor`] (root actor) starts the tree and publishes the running config
//!   ([`config::LiveConfig`]) that every part reads; [`reload`] validates a new file first.
//! - [`store`] holds every table and transaction; [`codec`] every stored byte format.
//! - [`logging`] sets up the stderr logs (colour only on a terminal).
//! - [`redact`] keeps secrets (tokens, webhook URL paths) out of errors, logs and API answers.
//! - [`silence`] mutes notifications for a while (DESIGN §12): the tick hands every alert the
//!   store's silence snapshot, and what a silence matches is recorded as suppressed, not sent.
//! - [`ui`] is the console under `/ui/` (DESIGN §13): server-rendered pages built from the same
//!   state the API reads, behind a signed session cookie and CSRF tokens.
//! - [`memory`] returns freed heap to the OS after start-up, reloads and bursts.
//! - Hardening (README "Limits and hardening"): [`rawjson`] parses bodies with limits acting
//!   while parsing; [`budget`] caps the bytes a notification carries; [`quarantine`] sets aside
//!   unreadable stored rows at open; [`retention`] bounds dead letters and the delivered log;
//!   [`permissions`] keeps the data file private; [`server`] enforces deadlines and caps.
//! - [`daemon`] starts it all, signals readiness to systemd, reloads on SIGHUP and stops gracefully.
//!
//! Crash safety follows from the order: events are durable before `202`, notifications are durable
//! before their first attempt, and state is rebuilt from the last checkpoint plus inbox replay.

pub mod alert;
pub mod api;
pub mod budget;

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
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod notification;
pub mod otlp;
pub mod permissions;
pub mod quarantine;
pub mod rawjson;
pub mod redact;
pub mod reload;
pub mod retention;
pub mod router;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod silence;
pub mod source;
pub mod store;
pub mod supervisor;
pub mod testhooks;
pub mod ui;
pub mod watcher;
