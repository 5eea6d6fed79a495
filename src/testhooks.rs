//! Fault injection for crash tests, off unless an environment variable names it.
//!
//! - `TESTHOOK_ALERTD_PANIC=<alert id>` makes that alert's actor panic at its next tick, once per
//!   process, so tests can prove the supervisor restarts it from its checkpoint without affecting
//!   other alerts.
//! - `TESTHOOK_ALERTD_HOLD_TICK=<file>` wedges the engine tick while that file exists: a tick that
//!   starts then waits, logging `test hook: tick held`, until the file is removed. Tests use it to
//!   prove the systemd watchdog pings come from the tick (a wedged engine stops pinging), and to
//!   let events reach an alert before a chosen tick runs.
//!
//! Each variable is read once; when unset a hook costs one atomic load per tick.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

static TARGET: LazyLock<Option<String>> = LazyLock::new(|| {
    std::env::var("TESTHOOK_ALERTD_PANIC")
        .ok()
        .filter(|s| !s.is_empty())
});
static FIRED: AtomicBool = AtomicBool::new(false);

static HOLD: LazyLock<Option<PathBuf>> = LazyLock::new(|| {
    std::env::var_os("TESTHOOK_ALERTD_HOLD_TICK")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
});

/// True once for the alert named by `TESTHOOK_ALERTD_PANIC`.
pub fn should_panic(alert_id: &str) -> bool {
    TARGET.as_deref() == Some(alert_id) && !FIRED.swap(true, Ordering::AcqRel)
}

/// Waits while the file named by `TESTHOOK_ALERTD_HOLD_TICK` exists; returns at once otherwise.
pub async fn hold_tick() {
    let Some(path) = HOLD.as_deref() else {
        return;
    };
    if !path.exists() {
        return;
    }
    tracing::warn!(file = %path.display(), "test hook: tick held until the file is removed");
    while path.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!("test hook: tick released");
}
