//! Reload on change of the config file (the ConfigWatcher of DESIGN §2).
//!
//! Editors save by writing a new file and renaming it over the old one, so the parent directory
//! is watched and events are filtered by file name, then debounced: a burst of events within
//! half a second causes one reload. A change saved between the start-up load and the moment the
//! watch is in place is caught by comparing the file's modification time with the load time.

use crate::api::{self, AppState};
use notify::{RecursiveMode, Watcher};
use std::time::Duration;

const DEBOUNCE: Duration = Duration::from_millis(500);

/// Starts watching the config file, which was read at `loaded_at`; failures are logged (SIGHUP
/// and the API still work).
pub fn spawn(state: AppState, loaded_at: std::time::SystemTime) {
    let path = state.inner().config_path.clone();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_os_string());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let missed = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev.kind.is_access() {
                return;
            }
            if ev
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            {
                let _ = tx.send(());
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or POST /v1/reload");
            return;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the config directory");
        return;
    }
    let modified = std::fs::metadata(&path).and_then(|m| m.modified());
    if modified.is_ok_and(|m| m > loaded_at) {
        let _ = missed.send(());
    }
    tokio::spawn(async move {
        let _keep = watcher;
        while rx.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            tracing::info!("config file changed: reloading");
            let _ = api::reload(&state, "file").await;
        }
    });
}
