//! `alertd run`: start-up, signals, readiness and graceful stop.
//!
//! Order matters for the guarantees: the store is opened (and recovered) before anything listens;
//! readiness (`READY=1`) is sent only once the listener is bound; SIGTERM first makes ingest answer
//! 503, then flushes the journal, runs a final tick and drains deliveries before exiting 0.
//! SIGHUP reloads the config file. Once tokio handles SIGTERM the default action is gone, so
//! stopping is this module's job.

use crate::api::{self, AppState, Inner};
use crate::config::Config;
use crate::store::Store;
use crate::supervisor::{Supervisor, SupervisorArgs, SupervisorMsg, SHUTDOWN_GRACE};
use anyhow::Context as _;
use ractor::Actor;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

/// Tells systemd the engine is alive; called from the tick, so a wedged engine stops pinging.
pub fn watchdog_ping() {
    static ENABLED: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| sd_notify::watchdog_enabled().is_some());
    if *ENABLED {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    // Handlers first: until they exist a SIGHUP (a reload) would kill the process, and a
    // SIGTERM would skip the graceful stop.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let loaded_at = std::time::SystemTime::now();
    let config = Config::load(config_path).map_err(|e| {
        anyhow::anyhow!(
            "{}",
            api::redact(&e.to_string(), &api::file_secrets(config_path))
        )
    })?;
    crate::logging::apply(&config.log);
    crate::metrics::config_reload(true);
    warn_if_secrets_readable(config_path);
    crate::secrets::warn_if_open(&config, "start");
    warn_if_watchdog_too_tight(config.engine.tick);
    let store_path = config.storage.path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&store_path))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(path = %store.path().display(), alerts = config.alerts.len(), "store open");
    if config.storage.compact_at_start {
        let s = store.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || s.compact_if_worthwhile()).await? {
            tracing::warn!(error = %e, "compaction at start-up failed; continuing with the file as it is");
        }
    }
    let config = Arc::new(config);
    let (config_tx, live) = tokio::sync::watch::channel(config.clone());
    let queued = Arc::new(AtomicUsize::new(0));
    let (supervisor, sup_handle) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            config: config_tx,
            store: store.clone(),
            queued: queued.clone(),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start the engine: {e}"))?;
    let journal = ractor::call!(supervisor, SupervisorMsg::Journal)
        .map_err(|e| anyhow::anyhow!("engine: {e}"))?;
    let intake = ractor::call!(journal, crate::journal::JournalMsg::Intake)
        .map_err(|e| anyhow::anyhow!("engine: {e}"))?;
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {} (server.listen)", config.server.listen))?;
    let state = AppState::new(Inner {
        supervisor: supervisor.clone(),
        journal,
        intake,
        store,
        config: live,
        config_path: config_path.to_path_buf(),
        queued,
        accepting: AtomicBool::new(true),
        ready: AtomicBool::new(false),
        reload_lock: tokio::sync::Mutex::new(()),
        body_gate: api::events::BodyGate::new(config.server.max_large_bodies),
    });
    // Watch before serving: a change saved once the API answers must not be missed.
    crate::watcher::spawn(state.clone(), loaded_at);
    crate::retention::spawn(state.inner().store.clone(), state.inner().config.clone());
    let app = api::Api::new(state.clone());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(crate::server::serve(
        listener,
        app,
        config.server.clone(),
        stop_rx.clone(),
    ));
    let sources = crate::source::spawn(
        &config,
        state.inner().journal.clone(),
        state.inner().queued.clone(),
    );
    state.inner().ready.store(true, Ordering::Release);
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("ready"),
    ]);
    tracing::info!(listen = %config.server.listen, "alertd ready");

    let mut engine = sup_handle;
    let reason = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                let status = match api::reload(&state, "sighup").await {
                    Ok(_) => "ready; last reload applied".to_string(),
                    Err(e) => format!("ready; last reload rejected: {e}").replace('\n', " "),
                };
                let _ = sd_notify::notify(&[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status(&status),
                ]);
            }
            r = &mut engine => {
                let _ = stop_tx.send(true);
                anyhow::bail!("the engine stopped unexpectedly: {r:?}");
            }
            _ = stop_rx.changed() => {}
        }
    };
    tracing::info!(
        signal = reason,
        "stopping: no new events, flushing, final tick, draining deliveries"
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    state.inner().accepting.store(false, Ordering::Release);
    sources.stop(crate::source::STOP_GRACE).await;
    let grace = config.delivery.drain_timeout + SHUTDOWN_GRACE;
    match ractor::call_t!(
        supervisor,
        SupervisorMsg::Shutdown,
        grace.as_millis() as u64
    ) {
        Ok(()) => tracing::info!("stopped cleanly"),
        Err(e) => {
            tracing::warn!(error = %e, "graceful stop did not finish; recovery will complete it at next start")
        }
    }
    let _ = stop_tx.send(true);
    supervisor.stop(None);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), engine).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    // Leave the data file holding everything, the append log nothing: a clean stop needs no
    // replay, and a backup of the data file alone is whole.
    let store = state.inner().store.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.sync()).await {
        tracing::warn!(error = %e, "final store commit failed; the append log is replayed at next start");
    }
    Ok(())
}

/// Warns when the config file holds secrets inline and every user can read it. Secrets kept in
/// `*_file` settings do not count: their files have permissions of their own.
fn warn_if_secrets_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let inline = api::file_secrets_keys(path);
    if inline.is_empty() {
        return;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(
                file = %path.display(),
                keys = %inline.join(", "),
                "the config file holds secrets and is readable by every user; \
                 run `chmod 640` on it (owner root, group of the service) or move the secrets \
                 to *_file settings"
            );
        }
    }
}

/// Warns when the watchdog would fire between two ticks: pings come from the tick.
fn warn_if_watchdog_too_tight(tick: std::time::Duration) {
    if let Some(interval) = sd_notify::watchdog_enabled() {
        if tick * 2 > interval {
            tracing::warn!(
                tick = ?tick,
                watchdog = ?interval,
                "engine.tick is more than half of WatchdogSec; systemd may kill a healthy alertd. \
                 Lower engine.tick or raise WatchdogSec"
            );
        }
    }
}
