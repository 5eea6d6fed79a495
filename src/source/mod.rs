//! Ingest sources: logs that alertd pulls events from, beside `POST /v1/events` (DESIGN §15).
//!
//! A source feeds the same [`Journal`](crate::journal) as the HTTP handler, with the same
//! validation ([`crate::ingest`]) and the same de-duplication (client ids), and acknowledges a
//! message to its log only after the journal's commit: a crash between the two redelivers the
//! message and de-duplication counts it once. Today the one kind is [`nats`] (JetStream, durable
//! pull consumer); `[[source.nats]]` tables configure it.
//!
//! This module holds what every source shares: the config section and its validation, the
//! status each source reports to `/readyz` and `/metrics`, and [`spawn`]/[`Sources::stop`], the
//! one start call and the one stop call the daemon makes.

pub mod message;
pub mod nats;

use crate::config::Config;
use crate::journal::JournalMsg;
use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

/// Default messages per pull request.
pub const DEFAULT_BATCH: usize = 1000;
/// Largest `batch`: more buys nothing once a group commit is this big, and costs memory.
pub const MAX_BATCH: usize = 10_000;
/// How long a graceful stop waits for a source's appends in flight to commit and be acked.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Default time JetStream waits for an ack before it redelivers.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// The `[source]` section as written: `[[source.nats]]` tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSources {
    #[serde(default)]
    nats: Vec<RawNats>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct RawNats {
    url: Option<String>,
    stream: Option<String>,
    #[serde(default)]
    subjects: Vec<String>,
    consumer: Option<String>,
    batch: Option<usize>,
    credentials_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    ack_wait: Option<Duration>,
}

/// Every validated source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourcesConfig {
    pub nats: Vec<NatsSpec>,
}

/// One validated `[[source.nats]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSpec {
    /// `nats:<stream>/<consumer>`: the name in logs, `/readyz` and metric labels.
    pub name: String,
    /// Server addresses (the `url` key may list several, comma-separated, for a cluster).
    pub urls: Vec<String>,
    pub stream: String,
    /// Subjects the stream is created with when it does not exist, and the consumer's filter.
    pub subjects: Vec<String>,
    /// Durable pull consumer name.
    pub consumer: String,
    /// Messages per pull request.
    pub batch: usize,
    /// NATS credentials (JWT + nkey seed), resolved against the config file's directory.
    pub credentials_file: Option<PathBuf>,
    /// Set on the consumer when alertd creates it: how long an unacked message waits before
    /// JetStream redelivers it.
    pub ack_wait: Duration,
}

/// JetStream stream and consumer names: no whitespace, `.`, `*`, `>`, path separators.
fn valid_name(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || ".*>/\\".contains(c))
}

/// A NATS subject: dot-separated non-empty tokens; `*` a whole token, `>` only the last one.
fn valid_subject(s: &str) -> bool {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let tokens: Vec<&str> = s.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && (!t.contains('*') || *t == "*")
            && (!t.contains('>') || (*t == ">" && i == tokens.len() - 1))
    })
}

/// Validates the `[source]` section; messages name the table and the key, like the rest of
/// the config (the caller adds the file name).
pub fn validate(config_path: &Path, raw: RawSources) -> Result<SourcesConfig, String> {
    let mut nats = Vec::with_capacity(raw.nats.len());
    for (i, n) in raw.nats.into_iter().enumerate() {
        let spec = validate_nats(config_path, i + 1, n)?;
        if let Some(other) = nats.iter().position(|o: &NatsSpec| o.name == spec.name) {
            return Err(format!(
                "source.nats #{}: stream {:?} with consumer {:?} is already used by source.nats #{}; \
                 give each source its own consumer",
                i + 1,
                spec.stream,
                spec.consumer,
                other + 1
            ));
        }
        nats.push(spec);
    }
    Ok(SourcesConfig { nats })
}

fn validate_nats(config_path: &Path, index: usize, n: RawNats) -> Result<NatsSpec, String> {
    let ctx = format!("source.nats #{index}");
    let url = n
        .url
        .ok_or_else(|| format!("{ctx}: url is required (e.g. \"nats://127.0.0.1:4222\")"))?;
    let mut urls = Vec::new();
    for part in url.split(',').map(str::trim) {
        part.parse::<async_nats::ServerAddr>().map_err(|e| {
            format!("{ctx}: url: {part:?} is not a NATS server address ({e}); use nats://HOST:PORT or tls://HOST:PORT")
        })?;
        urls.push(part.to_string());
    }
    let stream = n
        .stream
        .ok_or_else(|| format!("{ctx}: stream is required"))?;
    if !valid_name(&stream) {
        return Err(format!(
            "{ctx}: stream must be 1-255 characters without spaces, '.', '*', '>', '/' or '\\', got {stream:?}"
        ));
    }
    let ctx = format!("{ctx} (stream {stream:?})");
    if n.subjects.is_empty() {
        return Err(format!(
            "{ctx}: subjects is required: the subjects the stream holds, e.g. [\"alertd.events.>\"]"
        ));
    }
    for s in &n.subjects {
        if !valid_subject(s) {
            return Err(format!(
                "{ctx}: subjects: {s:?} is not a NATS subject (dot-separated tokens; '*' a whole token, '>' only last)"
            ));
        }
    }
    let consumer = n
        .consumer
        .ok_or_else(|| format!("{ctx}: consumer is required (the durable consumer's name)"))?;
    if !valid_name(&consumer) {
        return Err(format!(
            "{ctx}: consumer must be 1-255 characters without spaces, '.', '*', '>', '/' or '\\', got {consumer:?}"
        ));
    }
    let batch = n.batch.unwrap_or(DEFAULT_BATCH);
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(format!(
            "{ctx}: batch must be 1-{MAX_BATCH} messages, got {batch}"
        ));
    }
    let ack_wait = n.ack_wait.unwrap_or(DEFAULT_ACK_WAIT);
    if ack_wait < Duration::from_secs(1) {
        return Err(format!(
            "{ctx}: ack_wait must be at least 1s, got {}",
            humantime::format_duration(ack_wait)
        ));
    }
    let credentials_file = match n.credentials_file {
        None => None,
        Some(f) => {
            let full = if f.is_relative() {
                config_path.parent().unwrap_or(Path::new(".")).join(f)
            } else {
                f
            };
            let text = std::fs::read_to_string(&full).map_err(|e| {
                format!(
                    "{ctx}: credentials_file: cannot read {}: {e}",
                    full.display()
                )
            })?;
            if !text.contains("NATS USER JWT") || !text.contains("USER NKEY SEED") {
                return Err(format!(
                    "{ctx}: credentials_file: {} is not a NATS credentials file (no user JWT and nkey seed blocks)",
                    full.display()
                ));
            }
            Some(full)
        }
    };
    Ok(NatsSpec {
        name: format!("nats:{stream}/{consumer}"),
        urls,
        stream,
        subjects: n.subjects,
        consumer,
        batch,
        credentials_file,
        ack_wait,
    })
}

/// What one source reports: whether it consumes, its backlog and its last error. Shared between
/// the source's task, `/readyz` and `/metrics`.
#[derive(Debug)]
pub struct SourceStatus {
    pub name: String,
    /// The connection to the log is up (the client's own view; it reconnects by itself).
    connected: AtomicBool,
    /// The stream and consumer are set up and messages are being pulled.
    consuming: AtomicBool,
    /// Pulling is paused because the journal queue is full.
    paused: AtomicBool,
    /// Messages in the consumer not yet delivered to alertd, as last reported by the log.
    pending: AtomicU64,
    last_error: Mutex<Option<(i64, String)>>,
}

impl SourceStatus {
    fn new(name: &str) -> SourceStatus {
        SourceStatus {
            name: name.to_string(),
            connected: AtomicBool::new(false),
            consuming: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            pending: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Up = connected and consuming.
    pub fn is_up(&self) -> bool {
        self.connected.load(Ordering::Acquire) && self.consuming.load(Ordering::Acquire)
    }

    fn publish_up(&self) {
        crate::metrics::source_up(&self.name, self.is_up());
    }

    pub(crate) fn set_connected(&self, v: bool) {
        self.connected.store(v, Ordering::Release);
        self.publish_up();
    }

    pub(crate) fn set_consuming(&self, v: bool) {
        self.consuming.store(v, Ordering::Release);
        self.publish_up();
    }

    pub(crate) fn set_paused(&self, v: bool) {
        self.paused.store(v, Ordering::Release);
    }

    pub(crate) fn set_pending(&self, n: u64) {
        self.pending.store(n, Ordering::Release);
        crate::metrics::source_pending(&self.name, n);
    }

    /// Records an error for `/readyz` and the last-error metric.
    pub(crate) fn error(&self, message: impl Into<String>) {
        let now = crate::clock::now_ms();
        *self
            .last_error
            .lock()
            .expect("status lock is never poisoned") = Some((now, message.into()));
        crate::metrics::source_error(&self.name, now);
    }

    fn report(&self) -> serde_json::Value {
        let state = if self.is_up() {
            "up"
        } else if self.connected.load(Ordering::Acquire) {
            "starting"
        } else {
            "down"
        };
        let last = self
            .last_error
            .lock()
            .expect("status lock is never poisoned")
            .clone();
        serde_json::json!({
            "name": self.name,
            "state": state,
            "paused": self.paused.load(Ordering::Acquire),
            "pending": self.pending.load(Ordering::Acquire),
            "last_error": last.as_ref().map(|l| l.1.clone()),
            "last_error_at": last.map(|l| crate::destination::rfc3339_ms(l.0)),
        })
    }
}

/// The statuses of the running sources. Process-global like the metrics registry, so
/// `/readyz` reads them without the HTTP state knowing about sources.
static STATUSES: LazyLock<RwLock<Vec<Arc<SourceStatus>>>> = LazyLock::new(Default::default);

/// The names of sources that are not consuming, as `/readyz` failures (`source nats:S/C`).
pub fn not_ready() -> Vec<String> {
    STATUSES
        .read()
        .expect("status list lock is never poisoned")
        .iter()
        .filter(|s| !s.is_up())
        .map(|s| format!("source {}", s.name))
        .collect()
}

/// `body` (a `/readyz` answer) with a `sources` array giving every source's state, backlog and
/// last error; unchanged when no source is configured.
pub fn with_report(mut body: serde_json::Value) -> serde_json::Value {
    let statuses = STATUSES.read().expect("status list lock is never poisoned");
    if !statuses.is_empty() {
        body["sources"] = statuses.iter().map(|s| s.report()).collect();
    }
    body
}

/// What a source needs from the daemon to append through the journal.
#[derive(Clone)]
pub struct JournalHandle {
    pub journal: ActorRef<JournalMsg>,
    /// The journal's queue counter, shared with the HTTP handler: a source adds its events
    /// before appending (the journal subtracts them on commit) and pauses while it is full.
    pub queued: Arc<AtomicUsize>,
    pub max_queued: usize,
    pub limits: crate::ingest::Limits,
    /// `engine.max_object_bytes`: larger objects are cut to their marker, as over HTTP.
    pub max_object: usize,
}

impl JournalHandle {
    /// True while the journal holds as many uncommitted events as ingest allows.
    pub fn full(&self) -> bool {
        self.queued.load(Ordering::Acquire) >= self.max_queued
    }
}

/// The running sources; [`Sources::stop`] ends them.
pub struct Sources {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts every configured source. Called once at start-up, after the journal exists; sources
/// configured later by a reload start at the next restart.
pub fn spawn(config: &Config, journal: ActorRef<JournalMsg>, queued: Arc<AtomicUsize>) -> Sources {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let handle = JournalHandle {
        journal,
        queued,
        max_queued: config.ingest.max_queued_events,
        limits: crate::ingest::Limits {
            max_events: config.ingest.max_batch_events,
            max_line: config.server.max_line.as_u64() as usize,
        },
        max_object: config.engine.max_object_bytes.as_u64() as usize,
    };
    let mut tasks = Vec::new();
    let mut statuses = STATUSES
        .write()
        .expect("status list lock is never poisoned");
    statuses.clear();
    for spec in &config.sources.nats {
        let status = Arc::new(SourceStatus::new(&spec.name));
        status.publish_up();
        statuses.push(status.clone());
        tasks.push(tokio::spawn(nats::run(
            spec.clone(),
            handle.clone(),
            status,
            stop_rx.clone(),
        )));
        tracing::info!(source = %spec.name, urls = %spec.urls.join(","), subjects = ?spec.subjects, "source started");
    }
    Sources { stop, tasks }
}

impl Sources {
    /// Stops pulling, waits (up to `grace`) for appends in flight to commit and be acked, and
    /// closes the connections. Called on graceful stop before the journal is flushed.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            if tokio::time::timeout(grace, t).await.is_err() {
                tracing::warn!(
                    "a source did not stop in time; its unacked messages will be redelivered"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SourcesConfig, String> {
        #[derive(Deserialize)]
        struct W {
            source: RawSources,
        }
        let w: W = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(Path::new("/etc/alertd/alertd.toml"), w.source)
    }

    const OK: &str = r#"
[[source.nats]]
url = "nats://127.0.0.1:4222"
stream = "ALERTD"
subjects = ["alertd.events.>"]
consumer = "alertd-1"
"#;

    #[test]
    fn defaults_fill_batch_and_ack_wait() {
        let c = parse(OK).unwrap();
        let n = &c.nats[0];
        assert_eq!(n.name, "nats:ALERTD/alertd-1");
        assert_eq!(n.batch, DEFAULT_BATCH);
        assert_eq!(n.ack_wait, DEFAULT_ACK_WAIT);
        assert_eq!(n.urls, vec!["nats://127.0.0.1:4222"]);
    }

    #[test]
    fn errors_name_the_table_and_key() {
        let cases = [
            (OK.replace("url = \"nats://127.0.0.1:4222\"\n", ""), "source.nats #1: url is required"),
            (OK.replace("ALERTD\"", "AL.ERTD\""), "source.nats #1: stream must be"),
            (OK.replace("[\"alertd.events.>\"]", "[]"), "(stream \"ALERTD\"): subjects is required"),
            (OK.replace("alertd.events.>", "alertd.>.events"), "subjects: \"alertd.>.events\" is not a NATS subject"),
            (OK.replace("alertd-1", "a b"), "consumer must be"),
            (format!("{OK}batch = 0\n"), "batch must be 1-10000 messages, got 0"),
            (format!("{OK}ack_wait = \"10ms\"\n"), "ack_wait must be at least 1s"),
            (format!("{OK}credentials_file = \"missing.creds\"\n"), "credentials_file: cannot read /etc/alertd/missing.creds"),
            (format!("{OK}bogus = 1\n"), "unknown field `bogus`"),
            (format!("{OK}{OK}"), "source.nats #2: stream \"ALERTD\" with consumer \"alertd-1\" is already used by source.nats #1"),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn several_urls_are_a_cluster() {
        let c = parse(&OK.replace(
            "nats://127.0.0.1:4222",
            "nats://10.0.0.1:4222, nats://10.0.0.2:4222",
        ))
        .unwrap();
        assert_eq!(c.nats[0].urls.len(), 2);
    }

    #[test]
    fn subjects_follow_nats_rules() {
        for ok in ["a", "a.b", "a.*.c", "a.>", ">", "alertd.events.acme"] {
            assert!(valid_subject(ok), "{ok}");
        }
        for bad in ["", "a..b", ".a", "a.", "a.>.b", "a.b*", "a b", "a.>x"] {
            assert!(!valid_subject(bad), "{bad}");
        }
    }
}
