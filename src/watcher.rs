//! Reload on change of the config file (the ConfigWatcher of DESIGN §2).
//!
//! Editors save by writing a new file and renaming it over the old one, so the parent directory
//! is watched and events are filtered by file name, then debounced: a burst of events within
//! half a second causes one reload. A change saved between the start-up load and the moment the
//! watch is in place is caught by comparing the file's modification time with the load time.
//!
//! On Linux the watch asks the kernel only for the events that end a save (a file closed after
//! writing, renamed in, created, deleted, or its attributes changed), not for every write: when
//! the store lives in the config's directory, as in a one-directory layout, every store commit
//! would otherwise wake the watcher's thread (2.3 % of alertd's CPU under single-event ingest,
//! `bench/profile.sh single`). `notify` 8 always asks for all of them, so Linux uses the
//! `inotify` crate `notify` itself builds on; other systems keep `notify`.
//!
//! Only Linux waits for a file written in place to be closed. The `notify` branch reacts to
//! every change it reports, writes included, so there a file saved in place can be read half
//! written (and rejected, or applied until the rest arrives); save by rename there. That branch
//! is built and tested on Linux by forcing its `cfg`: it passes `tests/ops_reload.rs` except
//! `saving_the_config_file_in_place_reloads_it_and_store_writes_do_not`, for that reason.

use crate::api::{self, AppState};
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

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
    let watch = match watch(&dir, name, tx.clone()) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the config file; reload with SIGHUP or POST /v1/reload");
            return;
        }
    };
    let modified = std::fs::metadata(&path).and_then(|m| m.modified());
    if modified.is_ok_and(|m| m > loaded_at) {
        let _ = tx.send(());
    }
    tokio::spawn(async move {
        let _keep = watch;
        while rx.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            tracing::info!("config file changed: reloading");
            let _ = api::reload(&state, "file").await;
        }
    });
}

/// What keeps a watch alive; dropped with the reload task.
type Keep = Box<dyn Send>;

/// Sends on `tx` whenever the file `name` in `dir` may have changed.
#[cfg(target_os = "linux")]
fn watch(dir: &Path, name: Option<OsString>, tx: UnboundedSender<()>) -> std::io::Result<Keep> {
    use futures_util::StreamExt;
    use inotify::{EventMask, Inotify, WatchMask};
    let inotify = Inotify::init()?;
    inotify.watches().add(
        dir,
        WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::ATTRIB,
    )?;
    let mut events = inotify.into_event_stream(vec![0u8; 4096])?;
    let task = tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            match ev {
                // An overflow lost events, possibly ours: reloading an unchanged file is harmless.
                Ok(ev) if ev.mask.contains(EventMask::Q_OVERFLOW) || ev.name == name => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the config file watch failed; reload with SIGHUP or POST /v1/reload");
                    return;
                }
            }
        }
    });
    Ok(Box::new(AbortOnDrop(task)))
}

/// Stops the watch's reading task with the reload task.
#[cfg(target_os = "linux")]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

#[cfg(target_os = "linux")]
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends on `tx` whenever the file `name` in `dir` may have changed.
#[cfg(not(target_os = "linux"))]
fn watch(dir: &Path, name: Option<OsString>, tx: UnboundedSender<()>) -> std::io::Result<Keep> {
    use notify::{RecursiveMode, Watcher};
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !ev.kind.is_access()
                && ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
            {
                let _ = tx.send(());
            }
        }
    })
    .map_err(std::io::Error::other)?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(std::io::Error::other)?;
    Ok(Box::new(watcher))
}
