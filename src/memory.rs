//! The allocator, and giving freed heap back to the operating system.
//!
//! The `alertd` binary allocates with jemalloc (`src/main.rs`), not the system's malloc. Single-event ingest allocates and
//! frees a few dozen small objects per request on the HTTP workers, and the events a request
//! parses on one thread are freed on another (the commit thread, the alert actors). glibc's
//! malloc spent 13 % of alertd's CPU on that (`_int_malloc`, `_int_free`, `malloc_consolidate`);
//! jemalloc's per-thread caches cut alertd's CPU per single-event request by about 7 % and
//! raised batched ingest by about 20 % (README, "Performance"). mimalloc, measured before, was
//! faster still on single events but doubled the RSS of the 2,000-alert fan-out and slowed it.
//!
//! Start-up (parsing a config of 10,000 alerts takes ~50 MiB transiently) and bursts leave
//! freed pages resident until jemalloc's decay returns them, which needs allocator activity; an
//! idle daemon would report more memory than it uses. [`release_free_memory`] purges them at
//! once: after start-up, after a reload and at most once a minute from the tick.

/// Returns freed heap pages of every arena to the OS.
pub fn release_free_memory() {
    // `arena.<MALLCTL_ARENAS_ALL>.purge`: 4096 addresses every arena; the call takes no value.
    const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
    // SAFETY: the name is a NUL-terminated mallctl name; a purge reads and writes no value, so
    // both value pointers are null and the lengths zero, as jemalloc's manual specifies.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        tracing::debug!(rc, "jemalloc purge failed");
    }
}

use std::sync::atomic::{AtomicI64, Ordering};

static LAST_MS: AtomicI64 = AtomicI64::new(0);

/// [`release_free_memory`], at most once a minute.
pub fn release_free_memory_now_and_then(now_ms: i64) {
    let last = LAST_MS.load(Ordering::Relaxed);
    if now_ms - last >= 60_000
        && LAST_MS
            .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    {
        release_free_memory();
    }
}
