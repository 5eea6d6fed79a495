//! Fault injection for crash tests, off unless an environment variable names it.
//!
//! - `TESTHOOK_ALERTD_PANIC=<alert id>` makes that alert's actor panic at its next tick, once per
//!   process, so tests can prove the supervisor restarts it from its checkpoint without affecting
//!   other alerts.
//! - `TESTHOOK_ALERTD_PANIC_APPLY=<alert id>:<n>` makes that alert's actor panic while applying
//!   every n-th event it receives (counted across its restarts), to test replay under panics and
//!   the restart limit (`n = 1` panics on every event, so the alert ends up `failed`).
//! - `TESTHOOK_ALERTD_SLOW_TICK=<alert id>:<ms>` makes that alert answer every tick `ms` late,
//!   to test that an answer missing the scheduler's deadline is still committed.
//! - `TESTHOOK_ALERTD_SENDER_CRASH=<n>` makes the sender actor that starts the n-th delivery
//!   attempt of the process panic before answering, to test that a crashed sender loses nothing.
//! - `TESTHOOK_ALERTD_HOLD_TICK=<file>` wedges the engine tick while that file exists: a tick that
//!   starts then waits, logging `test hook: tick held`, until the file is removed. Tests use it to
//!   prove the systemd watchdog pings come from the tick (a wedged engine stops pinging), and to
//!   let events reach an alert before a chosen tick runs.
//!
//! Each variable is read once; unset, a hook costs one atomic load or one comparison.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

static TARGET: LazyLock<Option<String>> = LazyLock::new(|| var("TESTHOOK_ALERTD_PANIC"));
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

static APPLY: LazyLock<Option<(String, u64)>> = LazyLock::new(|| {
    let v = var("TESTHOOK_ALERTD_PANIC_APPLY")?;
    let (id, n) = v.rsplit_once(':')?;
    Some((id.to_string(), n.parse().ok().filter(|n| *n > 0)?))
});
static APPLIED: AtomicU64 = AtomicU64::new(0);

/// Whether `TESTHOOK_ALERTD_PANIC_APPLY` names this alert (it then applies events one by one,
/// so the hook can count them).
pub fn panics_on_apply(alert_id: &str) -> bool {
    APPLY.as_ref().is_some_and(|(id, _)| id == alert_id)
}

/// Panics on every n-th event applied by the alert named in `TESTHOOK_ALERTD_PANIC_APPLY`.
pub fn maybe_panic_on_apply(alert_id: &str) {
    if let Some((id, n)) = APPLY.as_ref() {
        if id == alert_id && (APPLIED.fetch_add(1, Ordering::AcqRel) + 1) % n == 0 {
            panic!("test hook: alert {alert_id} panics applying an event");
        }
    }
}

static SENDER_CRASH: LazyLock<Option<u64>> =
    LazyLock::new(|| var("TESTHOOK_ALERTD_SENDER_CRASH").and_then(|v| v.parse().ok()));
static ATTEMPTS: AtomicU64 = AtomicU64::new(0);

/// True when the sender starting this attempt should crash (see `TESTHOOK_ALERTD_SENDER_CRASH`).
pub fn sender_should_crash() -> bool {
    match *SENDER_CRASH {
        Some(n) => ATTEMPTS.fetch_add(1, Ordering::AcqRel) + 1 == n,
        None => false,
    }
}

static SLOW_TICK: LazyLock<Option<(String, u64)>> = LazyLock::new(|| {
    let v = var("TESTHOOK_ALERTD_SLOW_TICK")?;
    let (id, ms) = v.rsplit_once(':')?;
    Some((id.to_string(), ms.parse().ok()?))
});

/// How long the alert named in `TESTHOOK_ALERTD_SLOW_TICK` delays its tick answers.
pub fn tick_delay(alert_id: &str) -> Option<std::time::Duration> {
    match SLOW_TICK.as_ref() {
        Some((id, ms)) if id == alert_id => Some(std::time::Duration::from_millis(*ms)),
        _ => None,
    }
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

static HOLD_ACKS: LazyLock<bool> =
    LazyLock::new(|| std::env::var("TESTHOOK_ALERTD_HOLD_SOURCE_ACKS").is_ok_and(|v| v == "1"));

/// True when `TESTHOOK_ALERTD_HOLD_SOURCE_ACKS=1`: a source commits its messages' events and then
/// never acks them, so a test can `kill -9` alertd between the commit and the ack and prove
/// that the redelivered messages are counted once.
pub fn hold_source_acks() -> bool {
    *HOLD_ACKS
}
