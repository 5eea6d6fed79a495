//! Fault injection for crash tests, off unless an environment variable names it.
//!
//! `TESTHOOK_ALERTD_PANIC=<alert id>` makes that alert's actor panic at its next tick, once per
//! process, so tests can prove the supervisor restarts it from its checkpoint without affecting
//! other alerts. The variable is read once; it costs one atomic load per tick otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;

static TARGET: LazyLock<Option<String>> = LazyLock::new(|| {
    std::env::var("TESTHOOK_ALERTD_PANIC")
        .ok()
        .filter(|s| !s.is_empty())
});
static FIRED: AtomicBool = AtomicBool::new(false);

/// True once for the alert named by `TESTHOOK_ALERTD_PANIC`.
pub fn should_panic(alert_id: &str) -> bool {
    TARGET.as_deref() == Some(alert_id) && !FIRED.swap(true, Ordering::AcqRel)
}

static HOLD_ACKS: LazyLock<bool> =
    LazyLock::new(|| std::env::var("TESTHOOK_ALERTD_HOLD_SOURCE_ACKS").is_ok_and(|v| v == "1"));

/// True when `TESTHOOK_ALERTD_HOLD_SOURCE_ACKS=1`: a source commits its messages' events and then
/// never acks them, so a test can `kill -9` alertd between the commit and the ack and prove
/// that the redelivered messages are counted once.
pub fn hold_source_acks() -> bool {
    *HOLD_ACKS
}
