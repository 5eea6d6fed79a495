//! Time for alertd: wall-clock milliseconds that never run backwards within a process.
//!
//! Window slots, debounce deadlines, retry due times and Slack pacing are all compared against
//! [`now_ms`]. If it followed the wall clock blindly, a clock stepped backwards (a bad NTP
//! server, a VM restored from a snapshot) would make every new event look late and stall every
//! timer for the length of the step. So `now_ms` follows the wall clock forwards, and when the
//! wall clock steps back it keeps advancing at the monotonic clock's pace from where it was,
//! until the wall clock catches up. Logic takes `now` as an argument so tests never sleep; the
//! rule itself is [`advance`], tested with injected readings.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::LazyLock;
use std::time::Instant;

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

static START: LazyLock<Instant> = LazyLock::new(Instant::now);
/// The largest `now - monotonic` seen: how far ahead of the monotonic clock "now" must stay.
static FLOOR: AtomicI64 = AtomicI64::new(i64::MIN);

/// The next reading: the wall clock, unless it went back below `monotonic + floor`.
/// Returns the time and the floor to keep.
pub fn advance(wall_ms: i64, monotonic_ms: i64, floor: i64) -> (i64, i64) {
    let now = if floor == i64::MIN {
        wall_ms
    } else {
        wall_ms.max(monotonic_ms.saturating_add(floor))
    };
    (now, floor.max(now - monotonic_ms))
}

/// Milliseconds since the Unix epoch, never decreasing within the process.
pub fn now_ms() -> i64 {
    let mono = START.elapsed().as_millis() as i64;
    let (now, floor) = advance(wall_ms(), mono, FLOOR.load(Ordering::Acquire));
    FLOOR.fetch_max(floor, Ordering::AcqRel);
    now
}

#[cfg(test)]
mod tests {
    use super::advance;

    #[test]
    fn follows_the_wall_clock_forwards_including_jumps() {
        let (t1, f) = advance(1_000_000, 0, i64::MIN);
        assert_eq!(t1, 1_000_000);
        let (t2, f) = advance(1_000_500, 500, f);
        assert_eq!(t2, 1_000_500);
        // A forward step of an hour is followed at once.
        let (t3, _) = advance(4_600_600, 600, f);
        assert_eq!(t3, 4_600_600);
    }

    #[test]
    fn a_step_back_keeps_time_advancing_at_the_monotonic_pace() {
        let (_, f) = advance(10_000_000, 0, i64::MIN);
        // The wall clock jumps back two hours; 1 s of real time passed.
        let (t, f) = advance(10_000_000 - 7_200_000 + 1_000, 1_000, f);
        assert_eq!(t, 10_001_000, "no step back, one second later");
        let (t, f) = advance(10_000_000 - 7_200_000 + 61_000, 61_000, f);
        assert_eq!(t, 10_061_000, "timers keep running during the step");
        // Once the wall clock is ahead again it is followed.
        let (t, _) = advance(10_062_000 + 5_000, 61_500, f);
        assert_eq!(t, 10_067_000);
    }
}
