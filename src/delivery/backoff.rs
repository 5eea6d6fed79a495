//! The retry schedule: `initial × 2^(attempt−1)`, ±50% jitter, capped at `max`.

use std::time::Duration;

/// The un-jittered delay before retry number `attempt` (1 = the first retry), capped.
pub fn base_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
    initial.saturating_mul(factor).min(max)
}

/// The delay with jitter: `jitter` in `[0, 1)` maps onto `[-50%, +50%)` of the base delay; the
/// result never exceeds `max`.
pub fn delay(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let base = base_delay(attempt, initial, max);
    let factor = 0.5 + jitter.clamp(0.0, 1.0);
    base.mul_f64(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_then_caps() {
        let s = Duration::from_secs(1);
        let cap = Duration::from_secs(10);
        let got: Vec<u64> = (1..=6).map(|a| base_delay(a, s, cap).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(base_delay(500, s, cap), cap);
    }

    proptest! {
        #[test]
        fn schedule_is_monotone_and_jitter_stays_within_half(
            initial_ms in 1u64..10_000, cap_ms in 1u64..1_000_000, attempt in 1u32..64, j in 0.0f64..1.0,
        ) {
            let (i, c) = (Duration::from_millis(initial_ms), Duration::from_millis(cap_ms));
            prop_assert!(base_delay(attempt + 1, i, c) >= base_delay(attempt, i, c));
            let b = base_delay(attempt, i, c);
            let d = delay(attempt, i, c, j);
            prop_assert!(d >= b.mul_f64(0.5) && d <= b.mul_f64(1.5).min(c));
        }
    }
}
