//! The `alertd` command line: the daemon and the small tools around it.

use crate::config::Config;
use crate::delivery::probe;
use crate::destination::signature;
use crate::event::EventType;
use anyhow::{bail, Context as _};
use axum::body::Bytes;
use axum::http::HeaderMap;
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};

/// `println!` that treats a closed stdout (`alertd check-config | head`) as the end of the
/// output, exiting quietly like other Unix tools, instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::emit(format_args!($($arg)*))
    };
}

#[doc(hidden)]
pub fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|_| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

mod silence;

/// Threads for blocking work (store transactions, large-body parsing).
pub const MAX_BLOCKING_THREADS: usize = 64;

const DEFAULT_CONFIG: &str = "config/alertd.toml";
const DEFAULT_RECEIVE: &str = "127.0.0.1:9000";

/// alertd turns LLM-observability events into alert notifications: threshold rules over sliding
/// windows, debounced groups of events, and webhooks (general JSON, Slack, PagerDuty) delivered
/// with retries from a crash-safe embedded store.
#[derive(Parser, Debug)]
#[command(name = "alertd", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr: `text` for people (coloured only on a terminal, not with
    /// NO_COLOR), `json` for log shippers. Default: `[log] format` of the config, else text.
    /// Level from RUST_LOG, else `[log] level`, else info.
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

pub use crate::logging::LogFormat;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground (systemd: Type=notify). SIGHUP reloads the config,
    /// SIGTERM stops gracefully.
    Run {
        /// Config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file: prints one line per alert and exits 0, or the error and exits 1.
    CheckConfig {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Send a sample notification for an alert straight to its destination (no daemon needed).
    Test {
        /// The alert's id.
        alert_id: String,
        /// Event type of the sample (default: the alert's first trigger), e.g. trace:errors.
        #[arg(long)]
        event: Option<String>,
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Post NDJSON events (one JSON object per line) from FILE, or stdin with `-`, to a running
    /// daemon. Large files are sent in batches of ingest.max_batch_events.
    Send {
        /// NDJSON file, or `-` for stdin.
        #[arg(default_value = "-")]
        file: String,
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Daemon base URL (default: from server.listen of the config).
        #[arg(long)]
        url: Option<String>,
        /// Bearer token (default: server.auth_token of the config, sent only to its own
        /// address: with a --url elsewhere, no token is sent unless given here).
        #[arg(long, env = "ALERTD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// A local webhook sink that prints every request it gets, for trying alertd out.
    Receive {
        /// Address to listen on.
        #[arg(long, default_value = DEFAULT_RECEIVE)]
        listen: String,
        /// Verify Standard Webhooks signatures with this `whsec_…` secret.
        #[arg(long)]
        signing_secret: Option<String>,
    },
    /// List deliveries of a running daemon as a table.
    Deliveries {
        /// pending, dead, delivered or suppressed.
        #[arg(long, default_value = "pending")]
        status: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        url: Option<String>,
        /// Bearer token (default: server.auth_token of the config, sent only to its own
        /// address: with a --url elsewhere, no token is sent unless given here).
        #[arg(long, env = "ALERTD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Re-queue a dead letter with its original id and body.
    Retry {
        /// The delivery id.
        id: String,
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        url: Option<String>,
        /// Bearer token (default: server.auth_token of the config, sent only to its own
        /// address: with a --url elsewhere, no token is sent unless given here).
        #[arg(long, env = "ALERTD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Mute alerts for a while on a running daemon: add, list, expire.
    Silence {
        #[command(subcommand)]
        command: silence::SilenceCommand,
    },
}

/// Sets up logging on stderr (see [`crate::logging`] for colour and the config's `[log]`).
pub fn init_logging(format: Option<LogFormat>) {
    crate::logging::init(format);
}

/// Runs the parsed command; the exit code is 0 on success.
pub fn main(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Store transactions and large-body parses run here; tokio's default (512 threads)
        // would let a burst of them outgrow the unit's TasksMax= (systemd/alertd.service).
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Run { config } => rt.block_on(async {
            // A write past RLIMIT_FSIZE raises SIGXFSZ, which kills by default. With a handler
            // installed the write fails with EFBIG instead, and the store reports it like a full
            // disk (503 on ingest, retried ticks) rather than the daemon dying.
            #[cfg(target_os = "linux")]
            let _xfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25))
                .context("cannot install the SIGXFSZ handler")?;
            crate::daemon::run(&config).await
        }),
        Command::CheckConfig { config } => check_config(&config),
        Command::Test {
            alert_id,
            event,
            config,
        } => rt.block_on(test(&alert_id, event.as_deref(), &config)),
        Command::Send {
            file,
            config,
            url,
            token,
        } => rt.block_on(send(&file, &config, url, token)),
        Command::Receive {
            listen,
            signing_secret,
        } => rt.block_on(receive(&listen, signing_secret)),
        Command::Deliveries {
            status,
            limit,
            config,
            url,
            token,
        } => rt.block_on(deliveries(&status, limit, &config, url, token)),
        Command::Retry {
            id,
            config,
            url,
            token,
        } => rt.block_on(retry(&id, &config, url, token)),
        Command::Silence { command } => rt.block_on(silence::run(command)),
    }
}

fn load(config: &Path) -> anyhow::Result<Config> {
    Config::load(config).map_err(|e| {
        let secrets = crate::redact::file_secrets(config);
        anyhow::anyhow!("{}", crate::redact::redact(&e.to_string(), &secrets))
    })
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let cfg = load(path)?;
    say!(
        "{}: OK — listen {}, storage {}, {} alert(s)",
        path.display(),
        cfg.server.listen,
        cfg.storage.path.display(),
        cfg.alerts.len()
    );
    for a in &cfg.alerts {
        let triggers: Vec<String> = a
            .triggers
            .iter()
            .map(|t| match &t.threshold {
                Some(th) => format!(
                    "{} {} {} over {}",
                    t.event,
                    th.operator.symbol(),
                    th.value,
                    humantime::format_duration(th.window)
                ),
                None => t.event.to_string(),
            })
            .collect();
        say!(
            "  {} [{}] → {} {}: {}{}",
            a.id,
            if a.enabled { "enabled" } else { "disabled" },
            a.destination.as_str(),
            crate::api::mask_url(&a.url),
            triggers.join("; "),
            if a.signing_secret.is_empty() {
                ""
            } else {
                " (signed)"
            }
        );
    }
    Ok(())
}

async fn test(alert_id: &str, event: Option<&str>, path: &Path) -> anyhow::Result<()> {
    let cfg = load(path)?;
    let Some(alert) = cfg.alert(alert_id) else {
        let ids: Vec<&str> = cfg.alerts.iter().map(|a| a.id.as_str()).collect();
        bail!(
            "{}: no alert {alert_id:?}; configured: {}",
            path.display(),
            ids.join(", ")
        );
    };
    let event = event
        .map(|e| e.parse::<EventType>().map_err(anyhow::Error::msg))
        .transpose()?;
    let r = probe::send_test(alert, event, &cfg.delivery)
        .await
        .map_err(anyhow::Error::msg)?;
    say!("request body:\n{}", pretty(&r.request_body));
    match r.status {
        "success" => {
            say!(
                "success: {} answered {}",
                crate::api::mask_url(&alert.url),
                r.status_code.unwrap_or(0)
            );
            Ok(())
        }
        _ => bail!(
            "failure: {}{}",
            r.status_code
                .map(|c| format!("HTTP {c}: "))
                .unwrap_or_default(),
            r.error_message.unwrap_or_default()
        ),
    }
}

fn pretty(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_string())
}

/// How far a Standard Webhooks timestamp may be from now (the specification's 5 minutes):
/// an older signature is a replay.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 5 * 60;

/// `text` with control characters (other than newline and tab) shown as `\u{..}` escapes, so a
/// webhook body cannot drive the terminal (move the cursor, retitle the window, hide lines).
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

struct Daemon {
    base: String,
    token: String,
    client: reqwest::Client,
}

fn daemon(path: &Path, url: Option<String>, token: Option<String>) -> anyhow::Result<Daemon> {
    let (base, config_token) = match (url, Config::load(path)) {
        (Some(u), Ok(c)) => {
            // The config's token goes only to the daemon that config describes: a --url
            // pointing elsewhere (a typo, a proxy, someone else's host) must not receive it.
            let own = format!("http://{}", c.server.listen);
            let same = same_origin(&u, &own);
            if !same && token.is_none() && !c.server.auth_token.is_empty() {
                eprintln!(
                    "note: {u} is not the configured daemon ({own}); its token is not sent (pass --token to send one)"
                );
            }
            (u, same.then_some(c.server.auth_token))
        }
        (Some(u), Err(_)) => (u, None),
        (None, Ok(c)) => (
            format!("http://{}", c.server.listen),
            Some(c.server.auth_token),
        ),
        (None, Err(e)) => bail!("{e}\n(pass --url to reach a daemon without its config)"),
    };
    Ok(Daemon {
        base: base.trim_end_matches('/').to_string(),
        token: token.or(config_token).unwrap_or_default(),
        client: reqwest::Client::new(),
    })
}

/// Whether two base URLs name the same scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

impl Daemon {
    /// Calls an API route and returns its JSON answer, or the daemon's error message.
    async fn call(&self, method: reqwest::Method, path: &str) -> anyhow::Result<serde_json::Value> {
        let resp = self
            .req(method, path)
            .send()
            .await
            .with_context(|| format!("cannot reach alertd at {}", self.base))?;
        let ok = resp.status().is_success();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if !ok {
            bail!("{}", body["error"].as_str().unwrap_or("request failed"));
        }
        Ok(body)
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if self.token.is_empty() {
            r
        } else {
            r.bearer_auth(&self.token)
        }
    }
}

async fn send(
    file: &str,
    path: &Path,
    url: Option<String>,
    token: Option<String>,
) -> anyhow::Result<()> {
    let d = daemon(path, url, token)?;
    let batch = Config::load(path)
        .map(|c| c.ingest.max_batch_events)
        .unwrap_or(1000);
    let mut text = String::new();
    if file == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    for chunk in lines.chunks(batch.max(1)) {
        let resp = d
            .req(reqwest::Method::POST, "/v1/events")
            .header("content-type", "application/x-ndjson")
            .body(chunk.join("\n"))
            .send()
            .await
            .with_context(|| format!("cannot reach alertd at {}", d.base))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "alertd answered {status}: {}",
                serde_json::to_string_pretty(&body)?
            );
        }
        accepted += body["accepted"].as_u64().unwrap_or(0);
        duplicates += body["duplicates"].as_u64().unwrap_or(0);
    }
    say!("accepted {accepted} event(s), {duplicates} duplicate(s)");
    Ok(())
}

async fn receive(listen: &str, secret: Option<String>) -> anyhow::Result<()> {
    let key = match &secret {
        Some(s) => {
            Some(signature::decode_secret(s).map_err(|e| anyhow::anyhow!("--signing-secret {e}"))?)
        }
        None => None,
    };
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let key = key.clone();
            async move {
                say!("──── {} {} ────", method, escape_controls(&uri.to_string()));
                for (k, v) in &headers {
                    let v = String::from_utf8_lossy(v.as_bytes());
                    say!("{}: {}", k, escape_controls(&v));
                }
                if let Some(key) = &key {
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
                    let now = crate::clock::now_ms() / 1000;
                    let verdict = match h("webhook-timestamp").parse::<i64>() {
                        Err(_) => "INVALID (no webhook-timestamp)".to_string(),
                        Ok(ts) if !signature::verify(key, h("webhook-id"), ts, &body, h("webhook-signature")) => {
                            "INVALID".to_string()
                        }
                        Ok(ts) if (now - ts).abs() > SIGNATURE_TOLERANCE_SECS => format!(
                            "INVALID (timestamp {ts} is {}s from now; the tolerance is {SIGNATURE_TOLERANCE_SECS}s: a replay?)",
                            now - ts
                        ),
                        Ok(_) => "valid".to_string(),
                    };
                    say!("signature: {verdict}");
                }
                say!("{}\n", escape_controls(&pretty(&String::from_utf8_lossy(&body))));
                axum::http::StatusCode::OK
            }
        },
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("alertd receive: listening on http://{listen}/ (Ctrl-C to stop)");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn deliveries(
    status: &str,
    limit: usize,
    path: &Path,
    url: Option<String>,
    token: Option<String>,
) -> anyhow::Result<()> {
    let d = daemon(path, url, token)?;
    let path = format!("/v1/deliveries?status={status}&limit={limit}");
    let body = d.call(reqwest::Method::GET, &path).await?;
    let rows = body["deliveries"].as_array().cloned().unwrap_or_default();
    say!(
        "{:<36}  {:<20}  {:<28}  {:>8}  {:>6}  {:<24}  LAST ERROR",
        "ID",
        "ALERT",
        "EVENT TYPE",
        "ATTEMPTS",
        "STATUS",
        "NEXT/FINISHED"
    );
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let when = if r["finished_at"].is_string() {
            s("finished_at")
        } else {
            s("next_attempt_at")
        };
        say!(
            "{:<36}  {:<20}  {:<28}  {:>8}  {:>6}  {:<24}  {}",
            s("id"),
            s("alert_id"),
            s("event_type"),
            r["attempts"].as_u64().unwrap_or(0),
            r["last_status"]
                .as_u64()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            when,
            if r["silence_id"].is_string() {
                format!("suppressed by silence {}", s("silence_id"))
            } else {
                s("last_error").chars().take(80).collect::<String>()
            }
        );
    }
    eprintln!(
        "{} {status} deliver{}",
        rows.len(),
        if rows.len() == 1 { "y" } else { "ies" }
    );
    Ok(())
}

async fn retry(
    id: &str,
    path: &Path,
    url: Option<String>,
    token: Option<String>,
) -> anyhow::Result<()> {
    let d = daemon(path, url, token)?;
    d.call(reqwest::Method::POST, &format!("/v1/deliveries/{id}/retry"))
        .await?;
    say!("re-queued {id}");
    Ok(())
}
