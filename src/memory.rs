//! Giving freed heap back to the operating system.
//!
//! glibc keeps freed memory in its arenas. Start-up (parsing a config of 10,000 alerts takes
//! ~50 MiB transiently) and bursts leave most of it unused but resident, so an idle daemon would
//! report twice the memory it uses. `malloc_trim` returns those pages; it is called after start-up,
//! after a reload and at most once a minute from the tick.

use std::sync::atomic::{AtomicI64, Ordering};

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" {
    fn malloc_trim(pad: usize) -> i32;
}

/// Returns freed heap pages to the OS (glibc only; a no-op elsewhere).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only inspects and shrinks glibc's own arenas; it takes no pointers and
    // is safe to call from any thread at any time.
    unsafe {
        malloc_trim(0);
    }
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
