//! A sliding time window kept as a ring of fixed slots.
//!
//! The window is cut into [`SLOTS`] slots of equal width (`window / SLOTS`, rounded up, at
//! least 1 ms). Each slot keeps the count and sum of the values whose timestamp falls in it, so
//! memory per trigger is fixed whatever the event rate. A query at `now` adds the `SLOTS` slots
//! ending with the one that holds `now`; the oldest of them may start up to one slot width after
//! `now - window` (or, from rounding the width up, up to 59 ms before it), so the error is at most
//! one slot (1/60 of the window) at the old edge, never at the new one.

use super::summary::Summary;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Slots per window: error bound 1/60 of the window, 60 × 24 bytes per trigger.
pub const SLOTS: i64 = 60;

/// Bound on stored slot indexes, counts and times (2^61): far beyond any real timestamp in
/// milliseconds or event count, and far enough from the integer limits that sums and
/// differences of a few of them cannot overflow.
pub const MAX_SOUND: u64 = 1 << 61;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Slot {
    index: i64,
    count: u64,
    sum: f64,
}

/// A slot never used.
const EMPTY_SLOT: Slot = Slot {
    index: i64::MIN,
    count: 0,
    sum: 0.0,
};

/// The ring. Slots are allocated on first use so idle triggers cost a few bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ring {
    width_ms: i64,
    /// Newest slot index seen by `add` or `totals`; slots older than `head - SLOTS` are stale.
    head: i64,
    slots: Vec<Slot>,
}

/// A ring as checkpoints store it since data file schema 10: only the slots in use, each with
/// its position. The ring itself (serde-derived, 18 bytes for an unused slot) is how schemas
/// 1–9 stored it, and a trigger that saw one event in its window then wrote 1.1 KB at every
/// checkpoint: at 10,000 alerts the tick after a burst wrote 18 MB and took 300 ms of its own.
#[derive(Debug, Serialize, Deserialize)]
pub struct SparseRing {
    width_ms: i64,
    head: i64,
    /// Whether the slots were allocated (a ring allocates all of them at its first event).
    allocated: bool,
    used: Vec<(u8, Slot)>,
}

impl From<&Ring> for SparseRing {
    fn from(r: &Ring) -> Self {
        SparseRing {
            width_ms: r.width_ms,
            head: r.head,
            allocated: !r.slots.is_empty(),
            used: (0u8..)
                .zip(&r.slots)
                .filter(|(_, s)| **s != EMPTY_SLOT)
                .map(|(i, s)| (i, *s))
                .collect(),
        }
    }
}

impl TryFrom<SparseRing> for Ring {
    type Error = String;
    fn try_from(s: SparseRing) -> Result<Self, String> {
        let mut slots = if s.allocated {
            vec![EMPTY_SLOT; SLOTS as usize]
        } else {
            Vec::new()
        };
        let allocated = slots.len();
        for (i, slot) in s.used {
            *slots
                .get_mut(i as usize)
                .ok_or_else(|| format!("window slot {i} of {allocated} slots"))? = slot;
        }
        Ok(Ring {
            width_ms: s.width_ms,
            head: s.head,
            slots,
        })
    }
}

/// Count and sum of the values in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub count: u64,
    pub sum: f64,
}

impl Totals {
    /// Mean value, `None` when the window holds no data.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

impl Ring {
    /// A ring covering `window`.
    pub fn new(window: Duration) -> Ring {
        let window_ms = window.as_millis().min(i64::MAX as u128 / 2) as i64;
        Ring {
            width_ms: ((window_ms + SLOTS - 1) / SLOTS).max(1),
            head: i64::MIN,
            slots: Vec::new(),
        }
    }

    /// Width of one slot: the error bound at the window's old edge.
    pub fn slot_width_ms(&self) -> i64 {
        self.width_ms
    }

    /// Whether a ring read back from storage is one this code could have built: a positive slot
    /// width, no slots or all of them, and indexes and counts in the range real timestamps and
    /// event rates produce, so no arithmetic on them can divide by zero, index out of bounds or
    /// overflow. Corrupted bytes can decode into anything.
    pub fn is_sound(&self) -> bool {
        let index_ok = |i: i64| i == i64::MIN || i.unsigned_abs() <= MAX_SOUND;
        self.width_ms >= 1
            && (self.slots.is_empty() || self.slots.len() == SLOTS as usize)
            && index_ok(self.head)
            && self
                .slots
                .iter()
                .all(|s| index_ok(s.index) && s.count <= MAX_SOUND / SLOTS as u64)
    }

    fn index_of(&self, ts_ms: i64) -> i64 {
        // Nearly every timestamp falls in the newest slot: check that with a multiplication
        // before paying for a division (this runs for every event in every alert).
        if self.head != i64::MIN {
            let offset = self
                .head
                .checked_mul(self.width_ms)
                .and_then(|start| ts_ms.checked_sub(start));
            if offset.is_some_and(|d| (0..self.width_ms).contains(&d)) {
                return self.head;
            }
        }
        ts_ms.div_euclid(self.width_ms)
    }

    /// Adds `value` at `ts_ms`. Returns false (and counts nothing) when the timestamp is already
    /// older than the window as of the newest time the ring has seen.
    pub fn add(&mut self, ts_ms: i64, value: f64) -> bool {
        let index = self.index_of(ts_ms);
        if self.head != i64::MIN && index <= self.head - SLOTS {
            return false;
        }
        self.head = self.head.max(index);
        if self.slots.is_empty() {
            self.slots = vec![EMPTY_SLOT; SLOTS as usize];
        }
        let slot = &mut self.slots[index.rem_euclid(SLOTS) as usize];
        if slot.index != index {
            *slot = Slot {
                index,
                count: 0,
                sum: 0.0,
            };
        }
        slot.count += 1;
        slot.sum += value;
        true
    }

    /// Whether [`Ring::apply_summary`] may stand for adding the summary's points one by one:
    /// same slot width, and no point would re-anchor the ring (see [`super::summary`]).
    pub fn takes_summary(&self, s: &Summary) -> bool {
        s.steady
            && s.width_ms == self.width_ms
            && (self.head == i64::MIN || self.head <= s.min_received_index)
    }

    /// Adds a batch's points through their [`Summary`], exactly as [`Ring::add`] one by one
    /// would, when [`Ring::takes_summary`]. Returns whether any point was counted and how many
    /// were late; with `late_at`, the batch positions of the late points are pushed there.
    pub fn apply_summary(
        &mut self,
        s: &Summary,
        mut late_at: Option<&mut Vec<u32>>,
    ) -> (bool, u64) {
        let h0 = self.head;
        let mut late = s.late.len() as u64;
        if let Some(at) = late_at.as_deref_mut() {
            at.extend_from_slice(&s.late);
        }
        let mut counted = false;
        for g in &s.groups {
            if h0 != i64::MIN && g.index <= h0 - SLOTS {
                late += g.values.len() as u64;
                if let Some(at) = late_at.as_deref_mut() {
                    at.extend_from_slice(&g.positions);
                }
                continue;
            }
            counted = true;
            if self.slots.is_empty() {
                self.slots = vec![EMPTY_SLOT; SLOTS as usize];
            }
            let slot = &mut self.slots[g.index.rem_euclid(SLOTS) as usize];
            if slot.index == g.index {
                slot.count += g.values.len() as u64;
                slot.sum = g.fold_onto(slot.sum);
            } else {
                *slot = Slot {
                    index: g.index,
                    count: g.values.len() as u64,
                    sum: g.from_empty,
                };
            }
        }
        if let Some(m) = s.max_index {
            self.head = self.head.max(m);
        }
        (counted, late)
    }

    /// Re-anchors the ring when `now_ms` is behind its newest slot: the clock was stepped back
    /// (across a restart; within a process [`crate::clock::now_ms`] never goes back). Every slot
    /// moves back by the step, so what was counted stays counted and new events are not taken
    /// for late ones. A ring whose newest slot is not ahead of `now_ms` is unchanged.
    pub fn reanchor(&mut self, now_ms: i64) {
        let now_index = self.index_of(now_ms);
        if self.head == i64::MIN || self.head <= now_index {
            return;
        }
        let shift = self.head - now_index;
        for s in &mut self.slots {
            if s.index != i64::MIN {
                s.index -= shift;
            }
        }
        self.head = now_index;
    }

    /// The [`SLOTS`] slots ending with the newest one seen (the last tick's or event's), oldest
    /// first, empty ones as zero; no slots before the first event. For the console's sparkline:
    /// read-only, so looking never moves the window.
    pub fn slots(&self) -> Vec<Totals> {
        if self.head == i64::MIN || self.slots.is_empty() {
            return Vec::new();
        }
        (self.head - SLOTS + 1..=self.head)
            .map(|index| {
                let s = &self.slots[index.rem_euclid(SLOTS) as usize];
                if s.index == index {
                    Totals {
                        count: s.count,
                        sum: s.sum,
                    }
                } else {
                    Totals::default()
                }
            })
            .collect()
    }

    /// Count and sum over the window ending at `now_ms`; moves the ring's head forward.
    pub fn totals(&mut self, now_ms: i64) -> Totals {
        self.reanchor(now_ms);
        let now_index = self.index_of(now_ms);
        self.head = self.head.max(now_index);
        let oldest = now_index - SLOTS + 1;
        let mut totals = Totals::default();
        for s in &self.slots {
            if s.index >= oldest && s.index <= now_index {
                totals.count += s.count;
                totals.sum += s.sum;
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_inside_and_forgets_outside_the_window() {
        let mut r = Ring::new(Duration::from_secs(60));
        assert!(r.add(10_000, 1.0));
        assert!(r.add(20_000, 2.0));
        assert_eq!(r.totals(30_000), Totals { count: 2, sum: 3.0 });
        // At 71 s the 10 s event is older than the window, the 20 s one is not.
        assert_eq!(r.totals(71_000), Totals { count: 1, sum: 2.0 });
        assert_eq!(r.totals(200_000), Totals::default());
    }

    #[test]
    fn a_clock_stepped_back_keeps_the_counts_and_counts_new_events() {
        let mut r = Ring::new(Duration::from_secs(60));
        assert!(r.add(10_000_000, 1.0));
        assert!(r.add(10_030_000, 1.0));
        // The clock is now two hours earlier (e.g. after a restart on a reset clock).
        let back = 10_030_000 - 7_200_000;
        r.reanchor(back);
        assert!(r.add(back, 1.0), "an event at the new now is not late");
        assert_eq!(r.totals(back).count, 3, "what was counted stays counted");
        // The window keeps sliding from the new anchor.
        assert_eq!(r.totals(back + 61_000).count, 0);
    }

    #[test]
    fn slots_list_the_window_oldest_first_and_add_up_to_its_totals() {
        let mut r = Ring::new(Duration::from_secs(60));
        assert!(r.slots().is_empty(), "no slots before the first event");
        assert!(r.add(10_000, 1.0));
        assert!(r.add(10_500, 2.0));
        assert!(r.add(30_000, 4.0));
        let totals = r.totals(40_000);
        let slots = r.slots();
        assert_eq!(slots.len(), SLOTS as usize);
        // 1 s slots: the newest is 40 s, so 10 s is slot 29 and 30 s slot 49.
        assert_eq!(slots[SLOTS as usize - 1], Totals::default());
        assert_eq!(slots[29], Totals { count: 2, sum: 3.0 });
        assert_eq!(slots[49], Totals { count: 1, sum: 4.0 });
        let count: u64 = slots.iter().map(|s| s.count).sum();
        let sum: f64 = slots.iter().map(|s| s.sum).sum();
        assert_eq!(Totals { count, sum }, totals);
        // Once the window slid past them, old slots read as empty.
        r.totals(75_000);
        assert_eq!(r.slots().iter().map(|s| s.count).sum::<u64>(), 1);
    }

    #[test]
    fn rejects_events_already_older_than_the_window() {
        let mut r = Ring::new(Duration::from_secs(60));
        r.totals(1_000_000);
        assert!(!r.add(1_000_000 - 61_000, 1.0));
        assert!(r.add(1_000_000 - 30_000, 1.0));
        assert_eq!(r.totals(1_000_000).count, 1);
    }

    #[test]
    fn empty_window_has_no_mean() {
        assert_eq!(Totals::default().mean(), None);
        assert_eq!(Totals { count: 4, sum: 2.0 }.mean(), Some(0.5));
    }

    #[test]
    fn the_stored_form_keeps_the_ring_and_only_the_slots_in_use() {
        let fresh = Ring::new(Duration::from_secs(3_600));
        let mut r = fresh.clone();
        assert!(r.add(10_000, 1.0));
        assert!(r.add(70_000, 2.5));
        r.totals(200_000);
        for ring in [fresh, r.clone()] {
            let sparse = SparseRing::from(&ring);
            assert_eq!(Ring::try_from(sparse).unwrap(), ring);
        }
        let (dense, sparse) = (
            crate::codec::encode(&r),
            crate::codec::encode(&SparseRing::from(&r)),
        );
        assert!(
            sparse.len() * 20 < dense.len(),
            "{} against {}",
            sparse.len(),
            dense.len()
        );
        let bad = SparseRing {
            used: vec![(SLOTS as u8, EMPTY_SLOT)],
            ..SparseRing::from(&r)
        };
        assert!(Ring::try_from(bad).is_err(), "a slot past the ring");
        let unallocated = SparseRing {
            allocated: false,
            ..SparseRing::from(&r)
        };
        assert!(
            Ring::try_from(unallocated).is_err(),
            "slots in use, none allocated"
        );
    }

    proptest! {
        /// A ring in any state, stored and read back, is the same ring.
        #[test]
        fn any_ring_survives_its_stored_form(
            window_s in 1u64..7_200,
            events in proptest::collection::vec((0i64..20_000_000, -1e6f64..1e6), 0..200),
            now in proptest::option::of(0i64..40_000_000),
        ) {
            let mut ring = Ring::new(Duration::from_secs(window_s));
            for (ts, v) in events {
                ring.add(ts, v);
            }
            if let Some(now) = now {
                ring.totals(now);
            }
            let bytes = crate::codec::encode(&SparseRing::from(&ring));
            let back = Ring::try_from(crate::codec::decode::<SparseRing>(&bytes).unwrap()).unwrap();
            prop_assert_eq!(back, ring);
        }

        /// The ring equals a brute-force recount, except for events within one slot width of the
        /// window's old edge, which it may leave out (or, from rounding, include slightly early).
        #[test]
        fn ring_matches_brute_force_within_one_slot(
            window_s in 1u64..3_600,
            mut events in proptest::collection::vec((0i64..7_200_000, 0.0f64..1_000.0), 0..300),
            query_gap in 0i64..7_200_000,
        ) {
            events.sort_by_key(|e| e.0);
            let mut ring = Ring::new(Duration::from_secs(window_s));
            let window_ms = window_s as i64 * 1000;
            let w = ring.slot_width_ms();
            let mut accepted = Vec::new();
            for &(ts, v) in &events {
                if ring.add(ts, v) {
                    accepted.push((ts, v));
                }
            }
            let now = events.last().map(|e| e.0).unwrap_or(0) + query_gap;
            let got = ring.totals(now);
            let in_range = |lo: i64| -> Vec<(i64, f64)> {
                accepted.iter().copied().filter(|(t, _)| *t >= lo && *t <= now).collect()
            };
            let exact = in_range(now - window_ms);
            let sure = in_range(now - window_ms + w);
            let maybe = in_range(now - SLOTS * w);
            prop_assert!(got.count >= sure.len() as u64 && got.count <= maybe.len() as u64,
                "count {} not in [{}, {}]", got.count, sure.len(), maybe.len());
            let sum = |v: &[(i64, f64)]| v.iter().map(|e| e.1).sum::<f64>();
            prop_assert!(got.sum >= sum(&sure) - 1e-6 && got.sum <= sum(&maybe) + 1e-6);
            if sure.len() == maybe.len() {
                prop_assert_eq!(got.count, exact.len() as u64);
                if let Some(m) = got.mean() {
                    prop_assert!((m - sum(&exact) / exact.len() as f64).abs() < 1e-6);
                }
            }
        }
    }
}
