//! Configuration: the TOML file of DESIGN §7, environment overrides, and validation.
//!
//! Loading happens in two passes so that errors are useful. The file is first parsed strictly with
//! `toml` (unknown keys are errors, and every syntax or type error carries a line and column), then
//! re-read through the `config` crate so `ALERTD_SECTION__KEY` variables can override it. The
//! result is validated into [`Config`], whose alerts are typed [`AlertSpec`]s; every validation
//! message names the file, the alert id, the trigger number and the key.

use crate::event::EventType;
use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A configuration problem, formatted as `file[:line:col]: message`.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some((l, c)) => write!(f, "{}:{}:{}: {}", self.file.display(), l, c, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub auth_token: String,
    pub auth_token_file: Option<PathBuf>,
    pub max_body: ByteSize,
    /// Longest accepted NDJSON line; a longer one rejects the batch.
    pub max_line: ByteSize,
    /// Connections served at once; more get `/healthz` only (see [`crate::server`]).
    pub max_connections: usize,
    /// Connections one client address may hold at once.
    pub max_connections_per_ip: usize,
    /// Time a client gets to send a complete request head.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time a client gets to send a request's body, counted from its head.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Bodies over 64 KiB (or of unknown size) read and parsed at once; more wait their turn.
    /// Parsing costs memory and CPU in proportion to the body, so this bounds both.
    pub max_large_bodies: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:7878".into(),
            auth_token: String::new(),
            auth_token_file: None,
            max_body: ByteSize::mib(8),
            max_line: ByteSize::mib(1),
            max_connections: 1024,
            max_connections_per_ip: 64,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_large_bodies: 4,
        }
    }
}

/// `[log]`: what the daemon logs and how. `RUST_LOG` (when set and not empty) wins over `level`,
/// and `--log-format` over `format`, so a one-off debugging run needs no config change. Both
/// apply on reload, without a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, or per module, e.g. `warn,alertd::delivery=debug`.
    pub level: String,
    pub format: crate::logging::LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: crate::logging::LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub path: PathBuf,
    /// Compact the data file at start-up when at least half of it is free space.
    pub compact_at_start: bool,
    /// Compact it (same rule) once no event has been written for this long; `0s` = never.
    #[serde(with = "humantime_serde")]
    pub compact_when_idle: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("data/alertd.redb"),
            compact_at_start: true,
            compact_when_idle: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    #[serde(with = "humantime_serde")]
    pub debounce: Duration,
    pub max_events_per_message: usize,
    /// A threshold crossing is evaluated and committed at once instead of at the next tick.
    pub early_fire: bool,
    /// One event's object (prompt, version, lists) larger than this is replaced by a truncation
    /// marker in notifications (see [`crate::budget`]).
    pub max_object_bytes: ByteSize,
    /// The events' objects one per-event notification lists, in bytes; later events are counted
    /// but not listed.
    pub max_message_bytes: ByteSize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            tick: Duration::from_secs(5),
            debounce: Duration::from_secs(60),
            max_events_per_message: 100,
            early_fire: true,
            max_object_bytes: ByteSize::kib(64),
            max_message_bytes: ByteSize::mib(1),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    pub max_batch_events: usize,
    /// Events waiting for the journal before ingest answers 503.
    pub max_queued_events: usize,
    /// At most this many client ids are remembered (≈ 40 bytes of disk each); past it the
    /// oldest are forgotten before their window ends (counted, warned once).
    pub max_remembered_ids: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            dedup_window: Duration::from_secs(600),
            max_batch_events: 10_000,
            max_queued_events: 200_000,
            max_remembered_ids: 10_000_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub workers: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Requests in flight to one endpoint at once, so one slow receiver cannot hog the pool.
    pub per_endpoint_in_flight: usize,
    /// How many delivered notifications the history keeps.
    pub log_size: usize,
    /// The delivered history's size in bytes; the oldest rows go first.
    pub log_max_bytes: ByteSize,
    /// Dead letters older than this are deleted (see [`crate::retention`]).
    #[serde(with = "humantime_serde")]
    pub dead_letter_max_age: Duration,
    /// Dead letters' total size in bytes; the oldest go first.
    pub dead_letter_max_bytes: ByteSize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            workers: 4,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_retries: 8,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(10),
            per_endpoint_in_flight: 2,
            log_size: 1000,
            log_max_bytes: ByteSize::mib(64),
            dead_letter_max_age: Duration::from_secs(30 * 86_400),
            dead_letter_max_bytes: ByteSize::mib(256),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    event: String,
    #[serde(default)]
    projects: Vec<String>,
    threshold: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    window: Option<Duration>,
    score: Option<String>,
    operator: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    id: Option<String>,
    name: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    destination: Option<String>,
    url: Option<String>,
    #[serde(default)]
    secret_token: String,
    secret_token_file: Option<PathBuf>,
    #[serde(default)]
    signing_secret: String,
    signing_secret_file: Option<PathBuf>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    routing_key: String,
    routing_key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    tls_insecure: bool,
    #[serde(default)]
    base_url: String,
    workspace: Option<String>,
    #[serde(default, with = "humantime_serde")]
    repeat_interval: Option<Duration>,
    send_resolved: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    debounce: Option<Duration>,
    #[serde(default, rename = "trigger")]
    triggers: Vec<RawTrigger>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    storage: StorageConfig,
    #[serde(default)]
    engine: EngineConfig,
    #[serde(default)]
    ingest: IngestConfig,
    #[serde(default)]
    delivery: DeliveryConfig,
    #[serde(default)]
    log: LogConfig,
    #[serde(default, rename = "alert")]
    alerts: Vec<RawAlert>,
    #[serde(default)]
    source: crate::source::RawSources,
}

/// Where an alert's notifications go; each has its own formatter in `destination`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DestinationKind {
    General,
    Slack,
    PagerDuty,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::General => "general",
            DestinationKind::Slack => "slack",
            DestinationKind::PagerDuty => "pagerduty",
        }
    }
}

/// Comparison of a feedback-score mean with its threshold. Other threshold types use `>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operator {
    Above,
    Below,
}

impl Operator {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Operator::Above => value > threshold,
            Operator::Below => value < threshold,
        }
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Operator::Above => ">",
            Operator::Below => "<",
        }
    }
}

/// One validated trigger of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerSpec {
    pub event: EventType,
    /// Project names or ids; empty means every project of the workspace.
    pub projects: Vec<String>,
    /// Set for threshold types only.
    pub threshold: Option<Threshold>,
}

/// The threshold part of a threshold trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub value: f64,
    pub window: Duration,
    pub operator: Operator,
    /// Feedback score name for the feedback types.
    pub score: Option<String>,
}

impl TriggerSpec {
    /// Identity of the trigger's state: a reload keeps the state of a trigger whose fingerprint
    /// is unchanged.
    pub fn fingerprint(&self) -> String {
        format!("{:?}", self)
    }

    /// Whether an event of `project`/`project_id` is in this trigger's scope.
    pub fn in_scope(&self, project: Option<&str>, project_id: Option<&str>) -> bool {
        if self.projects.is_empty() || !self.event.is_project_scoped() {
            return true;
        }
        self.projects
            .iter()
            .any(|p| Some(p.as_str()) == project || Some(p.as_str()) == project_id)
    }
}

/// One validated alert: identity, destination and triggers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSpec {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub destination: DestinationKind,
    pub url: String,
    pub secret_token: String,
    pub signing_secret: String,
    pub headers: BTreeMap<String, String>,
    pub routing_key: String,
    pub base_url: String,
    /// Extra trusted CA certificates (PEM) for this alert's endpoint, e.g. an internal CA.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification; only when set explicitly, and logged loudly at start.
    pub tls_insecure: bool,
    pub workspace: String,
    pub repeat_interval: Duration,
    pub send_resolved: bool,
    pub debounce: Duration,
    pub max_events_per_message: usize,
    /// `engine.max_object_bytes`, in bytes.
    pub max_object_bytes: usize,
    /// `engine.max_message_bytes`, in bytes.
    pub max_message_bytes: usize,
    pub triggers: Vec<TriggerSpec>,
}

/// The running configuration, as every long-lived part reads it: one source of truth, replaced
/// as a whole by a reload (`tokio::sync::watch`), so a setting is never applied in one place and
/// stale in another.
pub type LiveConfig = tokio::sync::watch::Receiver<std::sync::Arc<Config>>;

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from, for messages and reloads.
    pub file: PathBuf,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub engine: EngineConfig,
    pub ingest: IngestConfig,
    pub delivery: DeliveryConfig,
    pub log: LogConfig,
    pub alerts: Vec<Arc<AlertSpec>>,
    /// Logs alertd pulls events from (`[[source.nats]]`), beside `POST /v1/events`.
    pub sources: crate::source::SourcesConfig,
}

impl Config {
    /// Reads, overrides from the environment, and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        Config::from_toml(path, &text, true)
    }

    /// Parses and validates `text` as if read from `path`; `env` enables `ALERTD_*` overrides.
    pub fn from_toml(path: &Path, text: &str, env: bool) -> Result<Config, ConfigError> {
        // Only ALERTD_<SECTION>__<KEY> variables are overrides; other ALERTD_* names (test hooks,
        // a client's token) are none of the config's business.
        let overrides: config::Map<String, String> = if env {
            std::env::vars()
                .filter(|(k, _)| {
                    k.strip_prefix("ALERTD_")
                        .is_some_and(|rest| rest.contains("__"))
                })
                .collect()
        } else {
            Default::default()
        };
        Config::from_toml_with_overrides(path, text, overrides)
    }

    /// `from_toml` with the override variables given rather than read from the environment.
    fn from_toml_with_overrides(
        path: &Path,
        text: &str,
        overrides: config::Map<String, String>,
    ) -> Result<Config, ConfigError> {
        let err = |line, message| ConfigError {
            file: path.to_path_buf(),
            line,
            message,
        };
        let strict: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_col(text, s.start));
            err(line, e.message().trim().to_string())
        })?;
        let raw = if !overrides.is_empty() {
            // No `try_parsing`: values stay strings, which the deserializer converts where a
            // number or boolean is wanted, so a token such as "00042" keeps its leading zeros.
            config::Config::builder()
                .add_source(config::File::from_str(text, config::FileFormat::Toml))
                .add_source(
                    config::Environment::with_prefix("ALERTD")
                        .prefix_separator("_")
                        .separator("__")
                        .source(Some(overrides)),
                )
                .build()
                .and_then(|c| c.try_deserialize::<RawConfig>())
                .map_err(|e| err(None, format!("environment override: {e}")))?
        } else {
            strict
        };
        validate(path, raw)
    }

    /// The alert with this id, if configured.
    pub fn alert(&self, id: &str) -> Option<&Arc<AlertSpec>> {
        self.alerts.iter().find(|a| a.id == id)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

fn read_secret(
    base: &Path,
    inline: &str,
    file: &Option<PathBuf>,
    key: &str,
) -> Result<String, String> {
    match file {
        Some(f) if !inline.is_empty() => Err(format!(
            "{key} and {key}_file are both set ({}); keep one",
            f.display()
        )),
        Some(f) => {
            let path = if f.is_relative() {
                base.parent().unwrap_or(Path::new(".")).join(f)
            } else {
                f.clone()
            };
            let secret = std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("{key}_file: cannot read {}: {e}", path.display()))?;
            // An empty file must not silently mean "no secret" (for auth_token: no auth).
            if secret.is_empty() {
                return Err(format!(
                    "{key}_file: {} is empty (or only whitespace); write the secret into it, or remove {key}_file",
                    path.display()
                ));
            }
            Ok(secret)
        }
        None => Ok(inline.to_string()),
    }
}

fn check_duration(d: Duration, key: &str) -> Result<(), String> {
    if d.is_zero() {
        Err(format!("{key} must be greater than 0"))
    } else {
        Ok(())
    }
}

fn validate(path: &Path, raw: RawConfig) -> Result<Config, ConfigError> {
    let err = |message: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        message,
    };
    let mut server = raw.server;
    server.auth_token = read_secret(
        path,
        &server.auth_token,
        &server.auth_token_file,
        "auth_token",
    )
    .map_err(|m| err(format!("server: {m}")))?;
    server.listen.parse::<std::net::SocketAddr>().map_err(|e| {
        err(format!(
            "server: listen must be IP:PORT, got {:?}: {e}",
            server.listen
        ))
    })?;
    if server.max_body.as_u64() == 0 {
        return Err(err("server: max_body must be greater than 0".into()));
    }
    crate::logging::check_level(&raw.log.level).map_err(|m| err(format!("log: level {m}")))?;
    check_duration(server.request_timeout, "server: request_timeout").map_err(err)?;
    for (n, key) in [
        (server.max_connections, "max_connections"),
        (server.max_connections_per_ip, "max_connections_per_ip"),
        (server.max_large_bodies, "max_large_bodies"),
    ] {
        if n == 0 {
            return Err(err(format!("server: {key} must be at least 1")));
        }
    }
    check_duration(raw.engine.tick, "engine: tick").map_err(err)?;
    check_duration(raw.engine.debounce, "engine: debounce").map_err(err)?;
    check_duration(raw.ingest.dedup_window, "ingest: dedup_window").map_err(err)?;
    check_duration(raw.delivery.timeout, "delivery: timeout").map_err(err)?;
    check_duration(raw.delivery.connect_timeout, "delivery: connect_timeout").map_err(err)?;
    check_duration(raw.delivery.initial_backoff, "delivery: initial_backoff").map_err(err)?;
    check_duration(raw.delivery.max_backoff, "delivery: max_backoff").map_err(err)?;
    check_duration(
        raw.delivery.dead_letter_max_age,
        "delivery: dead_letter_max_age",
    )
    .map_err(err)?;
    if raw.engine.max_object_bytes.as_u64() < 256 {
        return Err(err("engine: max_object_bytes must be at least 256B".into()));
    }
    if raw.engine.max_message_bytes < raw.engine.max_object_bytes {
        return Err(err(
            "engine: max_message_bytes must be at least max_object_bytes".into(),
        ));
    }
    if raw.engine.max_events_per_message == 0 {
        return Err(err(
            "engine: max_events_per_message must be at least 1".into()
        ));
    }
    if raw.delivery.workers == 0 {
        return Err(err("delivery: workers must be at least 1".into()));
    }
    if raw.delivery.per_endpoint_in_flight == 0 {
        return Err(err(
            "delivery: per_endpoint_in_flight must be at least 1".into()
        ));
    }
    if raw.ingest.max_batch_events == 0 {
        return Err(err("ingest: max_batch_events must be at least 1".into()));
    }

    let mut seen = HashSet::new();
    let mut alerts = Vec::with_capacity(raw.alerts.len());
    for (i, a) in raw.alerts.into_iter().enumerate() {
        let spec = validate_alert(path, i + 1, a, &raw.engine).map_err(err)?;
        if !seen.insert(spec.id.clone()) {
            return Err(err(format!(
                "alert {:?}: id is used by more than one alert; ids must be unique",
                spec.id
            )));
        }
        alerts.push(Arc::new(spec));
    }
    let sources = crate::source::validate(path, raw.source).map_err(err)?;
    Ok(Config {
        file: path.to_path_buf(),
        server,
        storage: raw.storage,
        engine: raw.engine,
        ingest: raw.ingest,
        delivery: raw.delivery,
        log: raw.log,
        alerts,
        sources,
    })
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate_alert(
    path: &Path,
    index: usize,
    a: RawAlert,
    engine: &EngineConfig,
) -> Result<AlertSpec, String> {
    let id =
        a.id.ok_or_else(|| format!("alert #{index}: id is required"))?;
    if !valid_id(&id) {
        return Err(format!(
            "alert #{index}: id must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_', got {id:?}"
        ));
    }
    let ctx = format!("alert {id:?}");
    let name = a.name.unwrap_or_else(|| id.clone());
    if name.is_empty() || name.chars().count() > 255 {
        return Err(format!("{ctx}: name must be 1-255 characters"));
    }
    let destination = match a.destination.as_deref().unwrap_or("general") {
        "general" => DestinationKind::General,
        "slack" => DestinationKind::Slack,
        "pagerduty" => DestinationKind::PagerDuty,
        other => {
            return Err(format!(
                "{ctx}: destination must be \"general\", \"slack\" or \"pagerduty\", got {other:?}"
            ))
        }
    };
    let url = a.url.ok_or_else(|| format!("{ctx}: url is required"))?;
    check_url(&url).map_err(|m| format!("{ctx}: url {m}"))?;
    if !a.base_url.is_empty() {
        check_url(&a.base_url).map_err(|m| format!("{ctx}: base_url {m}"))?;
    }
    let secret_token = read_secret(path, &a.secret_token, &a.secret_token_file, "secret_token")
        .map_err(|m| format!("{ctx}: {m}"))?;
    let signing_secret = read_secret(
        path,
        &a.signing_secret,
        &a.signing_secret_file,
        "signing_secret",
    )
    .map_err(|m| format!("{ctx}: {m}"))?;
    if !signing_secret.is_empty() {
        crate::destination::signature::decode_secret(&signing_secret)
            .map_err(|m| format!("{ctx}: signing_secret {m}"))?;
    }
    let ca_file = match &a.ca_file {
        None => None,
        Some(f) => {
            let full = if f.is_relative() {
                path.parent().unwrap_or(Path::new(".")).join(f)
            } else {
                f.clone()
            };
            let pem = std::fs::read(&full)
                .map_err(|e| format!("{ctx}: ca_file: cannot read {}: {e}", full.display()))?;
            match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certs) if !certs.is_empty() => {}
                _ => {
                    return Err(format!(
                        "{ctx}: ca_file: {} holds no PEM certificate",
                        full.display()
                    ))
                }
            }
            Some(full)
        }
    };
    let routing_key = read_secret(path, &a.routing_key, &a.routing_key_file, "routing_key")
        .map_err(|m| format!("{ctx}: {m}"))?;
    if destination == DestinationKind::PagerDuty && routing_key.is_empty() {
        return Err(format!(
            "{ctx}: routing_key is required when destination is \"pagerduty\""
        ));
    }
    for (k, v) in &a.headers {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(v).is_err()
        {
            return Err(format!("{ctx}: headers: {k:?} is not a valid HTTP header"));
        }
    }
    let workspace = a.workspace.unwrap_or_else(|| "default".into());
    if workspace.is_empty() {
        return Err(format!("{ctx}: workspace must not be empty"));
    }
    let repeat_interval = a.repeat_interval.unwrap_or(Duration::from_secs(3600));
    check_duration(repeat_interval, "repeat_interval").map_err(|m| format!("{ctx}: {m}"))?;
    let debounce = a.debounce.unwrap_or(engine.debounce);
    check_duration(debounce, "debounce").map_err(|m| format!("{ctx}: {m}"))?;
    if a.triggers.is_empty() {
        return Err(format!(
            "{ctx}: trigger: at least one [[alert.trigger]] is required"
        ));
    }
    let mut triggers = Vec::with_capacity(a.triggers.len());
    for (n, t) in a.triggers.into_iter().enumerate() {
        let tctx = format!("{ctx}: trigger {}", n + 1);
        triggers.push(validate_trigger(t).map_err(|m| format!("{tctx}: {m}"))?);
    }
    Ok(AlertSpec {
        id,
        name,
        enabled: a.enabled,
        destination,
        url,
        secret_token,
        signing_secret,
        headers: a.headers,
        routing_key,
        base_url: a.base_url.trim_end_matches('/').to_string(),
        ca_file,
        tls_insecure: a.tls_insecure,
        workspace,
        repeat_interval,
        send_resolved: a
            .send_resolved
            .unwrap_or(destination == DestinationKind::PagerDuty),
        debounce,
        max_events_per_message: engine.max_events_per_message,
        max_object_bytes: engine.max_object_bytes.as_u64() as usize,
        max_message_bytes: engine.max_message_bytes.as_u64() as usize,
        triggers,
    })
}

fn check_url(url: &str) -> Result<(), String> {
    // The URL itself is not quoted: Slack and PagerDuty URLs carry secrets in their path.
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a valid URL ({e})"))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(format!(
            "must start with http:// or https://, got {:?}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(|h| h.is_empty()) {
        return Err("has no host".into());
    }
    Ok(())
}

fn validate_trigger(t: RawTrigger) -> Result<TriggerSpec, String> {
    let event: EventType = t.event.parse().map_err(|m| format!("event: {m}"))?;
    if t.projects.iter().any(|p| p.is_empty()) {
        return Err("projects: names must not be empty".into());
    }
    if !event.is_project_scoped() && !t.projects.is_empty() {
        return Err(format!(
            "projects: {event} is workspace-wide; remove projects from this trigger"
        ));
    }
    let threshold = if event.is_threshold() {
        let value = t
            .threshold
            .ok_or_else(|| format!("threshold is required for {event}"))?;
        if !value.is_finite() {
            return Err("threshold must be a finite number".into());
        }
        let window = t
            .window
            .ok_or_else(|| format!("window is required for {event}"))?;
        check_duration(window, "window")?;
        let (operator, score) = if event.is_feedback() {
            let op = match t.operator.as_deref() {
                Some(">") => Operator::Above,
                Some("<") => Operator::Below,
                Some(other) => {
                    return Err(format!("operator must be \">\" or \"<\", got {other:?}"))
                }
                None => return Err(format!("operator is required for {event} (\">\" or \"<\")")),
            };
            let score = t.score.filter(|s| !s.is_empty()).ok_or_else(|| {
                format!("score is required for {event} (the feedback score name)")
            })?;
            (op, Some(score))
        } else {
            if t.operator.is_some() {
                return Err(format!(
                    "operator applies to feedback score types only, not {event}"
                ));
            }
            if t.score.is_some() {
                return Err(format!(
                    "score applies to feedback score types only, not {event}"
                ));
            }
            (Operator::Above, None)
        };
        Some(Threshold {
            value,
            window,
            operator,
            score,
        })
    } else {
        for (key, set) in [
            ("threshold", t.threshold.is_some()),
            ("window", t.window.is_some()),
            ("operator", t.operator.is_some()),
            ("score", t.score.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{key} does not apply to {event}, which notifies per event"
                ));
            }
        }
        None
    };
    Ok(TriggerSpec {
        event,
        projects: t.projects,
        threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERT: &str = "[[alert]]\nid = \"a\"\nurl = \"http://127.0.0.1:9/\"\n[[alert.trigger]]\nevent = \"prompt:created\"\n";

    fn with_overrides(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_toml_with_overrides(Path::new("t.toml"), ALERT, map)
    }

    #[test]
    fn overrides_keep_string_values_verbatim() {
        let cfg = with_overrides(&[
            ("ALERTD_SERVER__AUTH_TOKEN", "00042"),
            ("ALERTD_STORAGE__PATH", "1e3"),
        ])
        .unwrap();
        assert_eq!(cfg.server.auth_token, "00042");
        assert_eq!(cfg.storage.path, PathBuf::from("1e3"));
    }

    #[test]
    fn overrides_convert_numbers_durations_and_sizes() {
        let cfg = with_overrides(&[
            ("ALERTD_SERVER__LISTEN", "127.0.0.1:9999"),
            ("ALERTD_ENGINE__TICK", "250ms"),
            ("ALERTD_DELIVERY__WORKERS", "3"),
            ("ALERTD_DELIVERY__MAX_RETRIES", "2"),
            ("ALERTD_SERVER__MAX_BODY", "1MiB"),
        ])
        .unwrap();
        assert_eq!(cfg.server.listen, "127.0.0.1:9999");
        assert_eq!(cfg.engine.tick, Duration::from_millis(250));
        assert_eq!(cfg.delivery.workers, 3);
        assert_eq!(cfg.delivery.max_retries, 2);
        assert_eq!(cfg.server.max_body, ByteSize::mib(1));
        assert_eq!(cfg.alerts.len(), 1, "the file's alerts are kept");
    }

    #[test]
    fn a_misspelt_override_is_refused_naming_the_key() {
        let e = with_overrides(&[("ALERTD_SERVER__LISTN", "127.0.0.1:1")]).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
    }
}
