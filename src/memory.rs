//! The allocator, and giving freed heap back to the operating system.
//!
//! The `alertd` binary allocates with jemalloc (`src/main.rs`), not the system's malloc.
//! Single-event ingest allocates and frees a few dozen small objects per request on the HTTP
//! workers, and the events a request parses on one thread are freed on another (the commit
//! thread, the alert actors). glibc's malloc spent 13 % of alertd's CPU on that (`_int_malloc`,
//! `_int_free`, `malloc_consolidate`); with jemalloc's per-thread caches a single-event request
//! costs about 7 % less CPU and batched ingest runs 16–20 % faster (README, "Performance").
//! mimalloc, measured before, was faster still on single events but doubled the RSS of the
//! 2,000-alert fan-out and slowed it.
//!
//! Start-up (parsing a config of 10,000 alerts takes ~50 MiB transiently) and bursts leave
//! freed pages resident until jemalloc's decay returns them, which needs allocator activity; an
//! idle daemon would report more memory than it uses. [`release_free_memory`] purges them at
//! once: after start-up, after a reload and at most once a minute from the tick.

use std::sync::atomic::{AtomicI64, Ordering};

/// `arena.<MALLCTL_ARENAS_ALL>.purge`: 4096 addresses every arena; the call takes no value.
const PURGE_ALL: &std::ffi::CStr = c"arena.4096.purge";

/// Returns freed heap pages of every arena to the OS; false if jemalloc refused.
pub fn release_free_memory() -> bool {
    // SAFETY: the name is a NUL-terminated mallctl name; a purge reads and writes no value, so
    // both value pointers are null and the lengths zero, as jemalloc's manual specifies.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        tracing::debug!(rc, "jemalloc purge failed");
    }
    rc == 0
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a `usize` statistic after refreshing jemalloc's statistics epoch.
    fn stat(name: &std::ffi::CStr) -> usize {
        let mut epoch: u64 = 1;
        let mut value: usize = 0;
        let mut len = std::mem::size_of::<usize>();
        // SAFETY: NUL-terminated names; `epoch` is written as a u64 and the statistic read
        // into a usize of the length given, as jemalloc's manual specifies for both.
        unsafe {
            let rc = tikv_jemalloc_sys::mallctl(
                c"epoch".as_ptr(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                (&mut epoch as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            );
            assert_eq!(rc, 0, "epoch");
            let rc = tikv_jemalloc_sys::mallctl(
                name.as_ptr().cast(),
                (&mut value as *mut usize).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            );
            assert_eq!(rc, 0, "{name:?}");
        }
        value
    }

    #[test]
    fn the_purge_returns_the_pages_a_freed_block_left_dirty() {
        // Directly from jemalloc: the tests' own allocator is the system's (see `src/main.rs`).
        // Blocks under jemalloc's oversize threshold (8 MiB), whose freed pages wait for decay.
        // SAFETY: each 1 MiB block is allocated, filled within its length, and freed once.
        unsafe {
            let blocks: Vec<*mut u8> = (0..4)
                .map(|_| tikv_jemalloc_sys::malloc(1 << 20).cast::<u8>())
                .collect();
            for &p in &blocks {
                assert!(!p.is_null());
                std::ptr::write_bytes(p, 0xA5, 1 << 20);
            }
            for p in blocks {
                tikv_jemalloc_sys::free(p.cast());
            }
        }
        let dirty = c"stats.arenas.4096.pdirty";
        assert!(stat(dirty) > 0, "freed blocks leave dirty pages");
        assert!(release_free_memory());
        assert_eq!(stat(dirty), 0, "the purge returned every dirty page");
    }
}
