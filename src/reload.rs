//! Reloading the config file: shared by `POST /v1/reload`, SIGHUP and the file watcher.
//!
//! The file is read and validated here; an invalid one changes nothing. A valid one goes to the
//! supervisor, which publishes it as the running config (one value every part reads: API limits
//! and token, journal, scheduler, delivery) and then applies it to the alerts. If the caller gives
//! up waiting, the supervisor still applies it whole, and the API follows, because it reads the
//! same running config — no part can be left on the old settings.

use crate::api::AppState;
use crate::config::Config;
use crate::metrics;
use crate::redact::{config_secrets, file_secrets, redact};
use crate::supervisor::SupervisorMsg;

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
    check(
        o.max_connections_per_ip != n.max_connections_per_ip,
        "server.max_connections_per_ip",
    );
    check(
        o.request_timeout != n.request_timeout,
        "server.request_timeout",
    );
    check(
        o.max_large_bodies != n.max_large_bodies,
        "server.max_large_bodies",
    );
    check(old.storage.path != new.storage.path, "storage.path");
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
    let _serial = s.inner().reload_lock.lock().await;
    let path = s.inner().config_path.clone();
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
        s.inner().supervisor,
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
    crate::logging::apply(&new.log);
    crate::secrets::warn_if_open(&new, "reload");
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
