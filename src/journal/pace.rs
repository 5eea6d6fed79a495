//! How long the journal's next commit waits for the clients it just answered.
//!
//! Every commit has a fixed cost beside its rows: the append log's `fdatasync`, the wake-ups of
//! the requests it answers, the hand-over to the router. Under a flood of single-event requests
//! from 64 clients, starting the next commit at once with whatever arrived during the last one
//! made commits of ≈ 14 requests, a third of them of one; that fixed cost was ≈ 4.5 µs of the
//! ≈ 23 µs of CPU a request. The clients just answered mostly send their next request within a
//! commit's time, so the next commit waits for as many requests as the last one answered, on
//! top of those already pending: commits of ≈ 26 requests, 8 % less CPU a request at 64 clients
//! and 17–21 % less at 2 to 16 (README, Performance).
//!
//! Only small commits wait (fewer than [`SMALL_COMMIT`] events): beside a commit of thousands of
//! events the fixed cost is a rounding error, and batch clients, which take milliseconds to send
//! their next body, would only make the wait run out.
//!
//! The wait is bounded and backs off. It ends as soon as the target is pending, and after at
//! most [`WAIT_FACTOR`] × the last commit's duration, never more than [`MAX_WAIT`]. A wait that
//! runs out means the clients are not coming back in step (an open load, a client that stopped):
//! the next one is skipped, after a second run-out the next two, and so on up to [`MAX_SKIP`]
//! commits; a wait that fills starts over. Nothing waits when the last commit answered nobody
//! (the loop's first commit after idling), so a lone request is committed at once, and a request
//! that arrives during a wait for one is committed the moment it is queued.
//!
//! A fixed delay instead (`bench/experiments/commit-linger.patch`) saved 64 clients 10 % of CPU
//! and cost 2 clients 88 % of their rate: it waited for requests that could not come.

use std::time::Duration;

/// The longest a wait may last, in multiples of the last commit's duration.
pub(super) const WAIT_FACTOR: u32 = 4;
/// The longest a wait may last at all, whatever a commit takes.
pub(super) const MAX_WAIT: Duration = Duration::from_millis(1);
/// Commits of at least this many events are followed by no wait.
pub(super) const SMALL_COMMIT: usize = 256;
/// The most commits skipped without a wait after waits that ran out.
pub(super) const MAX_SKIP: u32 = 64;

/// A wait before the next commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wait {
    /// Stop waiting once this many requests are pending.
    pub target: usize,
    /// Stop waiting after this long, whatever is pending.
    pub limit: Duration,
}

/// What the last commit was.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Last {
    /// Requests answered.
    pub answered: usize,
    /// Events they held.
    pub events: usize,
    /// How long it took, answers included.
    pub took: Duration,
}

/// The commit loop's pacing state.
#[derive(Debug, Default)]
pub(super) struct Pace {
    /// Commits still to start without a wait.
    skip: u32,
    /// What the next run-out sets `skip` to, doubled at each one.
    backoff: u32,
}

impl Pace {
    /// The wait before the next commit, given what is pending and the last commit (how many
    /// requests it answered, how many events they held, how long it took); `None` to commit at
    /// once.
    pub fn plan(&mut self, pending: usize, last: Last) -> Option<Wait> {
        let Last {
            answered,
            events,
            took,
        } = last;
        if answered == 0 || events >= SMALL_COMMIT {
            return None;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        Some(Wait {
            target: pending + answered,
            limit: (took * WAIT_FACTOR).min(MAX_WAIT),
        })
    }

    /// Records how a planned wait ended: `filled` when the target was reached.
    pub fn waited(&mut self, filled: bool) {
        if filled {
            self.backoff = 0;
        } else {
            self.backoff = (self.backoff * 2).clamp(1, MAX_SKIP);
            self.skip = self.backoff;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: Duration = Duration::from_micros(170);

    fn last(answered: usize, took: Duration) -> Last {
        Last {
            answered,
            events: answered,
            took,
        }
    }

    #[test]
    fn nothing_waits_when_the_last_commit_answered_nobody() {
        let mut pace = Pace::default();
        assert_eq!(pace.plan(1, last(0, COMMIT)), None);
        assert_eq!(pace.plan(40, last(0, COMMIT)), None);
    }

    #[test]
    fn nothing_waits_after_a_large_commit() {
        let mut pace = Pace::default();
        let batch = Last {
            answered: 4,
            events: 4_000,
            took: Duration::from_millis(3),
        };
        assert_eq!(pace.plan(1, batch), None);
        let small = Last {
            events: SMALL_COMMIT - 1,
            ..batch
        };
        assert!(pace.plan(1, small).is_some());
    }

    #[test]
    fn the_next_commit_waits_for_the_answered_clients_on_top_of_the_pending_ones() {
        let mut pace = Pace::default();
        let wait = pace.plan(7, last(14, COMMIT)).expect("a busy loop waits");
        assert_eq!(wait.target, 21);
        assert_eq!(wait.limit, COMMIT * WAIT_FACTOR);
    }

    #[test]
    fn a_wait_is_bounded_by_the_commit_it_follows_and_by_a_millisecond() {
        let mut pace = Pace::default();
        let short = pace.plan(0, last(1, Duration::from_micros(20))).unwrap();
        assert_eq!(short.limit, Duration::from_micros(80));
        let slow_disk = pace.plan(0, last(1, Duration::from_millis(30))).unwrap();
        assert_eq!(slow_disk.limit, MAX_WAIT);
    }

    /// How many plans in a row return `None` before the next wait.
    fn skipped(pace: &mut Pace) -> u32 {
        let mut n = 0;
        while pace.plan(0, last(5, COMMIT)).is_none() {
            n += 1;
            assert!(n <= MAX_SKIP, "a wait always comes back");
        }
        n
    }

    #[test]
    fn waits_that_run_out_are_skipped_doubling_up_to_the_cap_and_a_filled_one_starts_over() {
        let mut pace = Pace::default();
        let mut seen = Vec::new();
        for _ in 0..9 {
            pace.waited(false);
            seen.push(skipped(&mut pace));
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
        pace.waited(true);
        assert_eq!(skipped(&mut pace), 0, "a filled wait is followed by a wait");
        pace.waited(false);
        assert_eq!(skipped(&mut pace), 1, "and the back-off starts over");
    }
}
