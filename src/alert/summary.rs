//! Per-batch summaries of trace points, so a threshold window applies a shared batch in
//! O(time slots) instead of O(events).
//!
//! A batch routed to thousands of alerts without a project filter used to be scanned point by
//! point by every alert. A [`Summary`] is what one ring (one slot width, one value kind) would
//! do with the batch, computed once and shared: the points grouped by the slot they land in,
//! with their count and values in sequence order. An alert applies it to its own ring
//! ([`super::window::Ring::apply_summary`]) when the outcome cannot depend on its state in a way
//! the summary does not capture, and otherwise reads the points one by one as before. The
//! result is the same bit for bit (`alert::tests::summaries_apply_exactly_like_events`):
//!
//! - **Replays and duplicates**: a summary is used only when every point of the batch is new to
//!   the alert (the first sequence is above its `applied_seq`; sequences strictly increase).
//! - **Clock steps**: applying a point first re-anchors every ring to its `received_ms`. The
//!   summary is used only when that moves nothing: the batch itself never puts a ring's head
//!   ahead of a later point's `received_ms` ([`Summary::steady`]), and the alert's head is not
//!   ahead of the batch's earliest one ([`Summary::min_received_index`]). The episodes' last
//!   notification times are clamped to the batch's earliest `received_ms`, as point by point.
//! - **Late points**: a point is late when its slot is at least [`SLOTS`] behind the ring's
//!   head, and the head is the running maximum of the slots seen — the alert's head before the
//!   batch, or the batch's own earlier points. The batch's own part is decided once (those
//!   points are in no group); the alert's part drops whole groups (every point of a slot is
//!   equally old to it).
//! - **Sums**: floating-point addition is not associative, so a slot's sum is the values added
//!   one by one to what the slot held. A group keeps its values and the sum from an empty slot;
//!   continuing a slot whose sum is `s` folds the values onto `s`, and remembers the result for
//!   `s`, so the thousands of alerts that hold the same slot (they saw the same events) fold
//!   once between them.

use super::window::SLOTS;
use crate::event::{EventType, Point};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a trace threshold reads from a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Errors,
    Cost,
    Latency,
}

impl ValueKind {
    /// The kind a threshold on `event` reads; `None` for types that are not trace points.
    pub fn of(event: EventType) -> Option<ValueKind> {
        match event {
            EventType::TraceErrors => Some(ValueKind::Errors),
            EventType::TraceCost => Some(ValueKind::Cost),
            EventType::TraceLatency => Some(ValueKind::Latency),
            _ => None,
        }
    }

    /// The value a point gives a threshold of this kind, as [`super::AlertState::apply_point`]
    /// takes it.
    pub fn value(self, p: &Point) -> Option<f64> {
        match self {
            ValueKind::Errors => p.error.then_some(1.0),
            ValueKind::Cost => p.cost,
            ValueKind::Latency => p.duration_s,
        }
    }
}

/// The points of one slot that no earlier point of the batch makes late.
#[derive(Debug)]
pub struct Group {
    /// The slot index (timestamp divided by the slot width).
    pub index: i64,
    /// Positions of the points in the batch, in order.
    pub positions: Vec<u32>,
    /// Their values, in sequence order.
    pub values: Vec<f64>,
    /// The values added one by one to an empty slot (a sum of 0.0).
    pub from_empty: f64,
    /// Sums folded onto a slot that held something: (starting sum bits, result bits).
    folded: Mutex<Vec<(u64, u64)>>,
}

/// How many starting sums a group remembers: alerts that started at different times hold
/// different sums, but a handful covers them; past that the fold is simply recomputed.
const FOLDS_KEPT: usize = 16;

impl Group {
    /// The values added one by one to `start`: exactly what applying the points does.
    pub fn fold_onto(&self, start: f64) -> f64 {
        let key = start.to_bits();
        if let Some((_, r)) = self.lock().iter().find(|(k, _)| *k == key) {
            return f64::from_bits(*r);
        }
        let mut sum = start;
        for v in &self.values {
            sum += v;
        }
        let mut kept = self.lock();
        if kept.len() < FOLDS_KEPT {
            kept.push((key, sum.to_bits()));
        }
        sum
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u64)>> {
        // A fold never panics while holding the lock; a poisoned list is still consistent.
        self.folded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one ring (slot width, value kind) would do with a batch of points; see the module doc.
#[derive(Debug)]
pub struct Summary {
    pub width_ms: i64,
    pub kind: ValueKind,
    /// No point of the batch re-anchors a ring the batch itself moved forward: the batch's
    /// slots never run ahead of its later points' `received_ms`. Without it the summary is not
    /// used.
    pub steady: bool,
    /// The lowest slot of any point's `received_ms`: a ring whose head is above it would be
    /// re-anchored, and reads the points one by one.
    pub min_received_index: i64,
    /// The highest slot of the points with a value: the ring's head after the batch.
    pub max_index: Option<i64>,
    /// Groups of the points not late to the batch itself, by ascending slot index.
    pub groups: Vec<Group>,
    /// Positions of the points late to the batch itself, whatever the ring held.
    pub late: Vec<u32>,
}

impl Summary {
    /// Summarises `points` (in sequence order) for a ring of `width_ms` reading `kind`.
    pub fn build(points: &[Point], width_ms: i64, kind: ValueKind) -> Summary {
        let index = |ms: i64| ms.div_euclid(width_ms);
        let mut steady = true;
        let mut min_received_index = i64::MAX;
        let mut head: Option<i64> = None;
        let mut groups: Vec<Group> = Vec::new();
        let mut late = Vec::new();
        let mut by_index: HashMap<i64, usize> = HashMap::new();
        let mut last: Option<(i64, usize)> = None;
        for (pos, p) in points.iter().enumerate() {
            let received = index(p.received_ms);
            min_received_index = min_received_index.min(received);
            if head.is_some_and(|h| h > received) {
                steady = false;
            }
            let Some(v) = kind.value(p) else { continue };
            let i = index(p.timestamp_ms.min(p.received_ms));
            if head.is_some_and(|h| i <= h - SLOTS) {
                late.push(pos as u32);
                continue;
            }
            head = Some(head.map_or(i, |h| h.max(i)));
            // Nearly every point falls in the slot of the one before.
            let at = match last.filter(|&(index, _)| index == i) {
                Some((_, at)) => at,
                None => *by_index.entry(i).or_insert_with(|| {
                    groups.push(Group {
                        index: i,
                        positions: Vec::new(),
                        values: Vec::new(),
                        from_empty: 0.0,
                        folded: Mutex::new(Vec::new()),
                    });
                    groups.len() - 1
                }),
            };
            last = Some((i, at));
            let g = &mut groups[at];
            g.positions.push(pos as u32);
            g.values.push(v);
            g.from_empty += v;
        }
        groups.sort_by_key(|g| g.index);
        Summary {
            width_ms,
            kind,
            steady,
            min_received_index,
            max_index: head,
            groups,
            late,
        }
    }
}

/// A shared batch's trace points, with the summaries built from them so far (each on first
/// use, by whichever alert needs it first; every other alert reuses it).
#[derive(Debug)]
pub struct PointBatch {
    pub points: Vec<Point>,
    /// Sequence numbers strictly increase (a live batch): no point repeats an earlier one.
    pub increasing: bool,
    /// The earliest `received_ms`: what the points clamp an episode's last notification to.
    pub min_received_ms: i64,
    summaries: Mutex<Vec<Arc<Summary>>>,
}

impl PointBatch {
    pub fn new(points: Vec<Point>) -> PointBatch {
        PointBatch {
            increasing: points.windows(2).all(|w| w[0].seq < w[1].seq),
            min_received_ms: points
                .iter()
                .map(|p| p.received_ms)
                .min()
                .unwrap_or(i64::MAX),
            points,
            summaries: Mutex::new(Vec::new()),
        }
    }

    /// The summary for a ring of `width_ms` reading `kind`, built now if no alert asked yet.
    pub fn summary(&self, width_ms: i64, kind: ValueKind) -> Arc<Summary> {
        // Built under the lock: alerts asking for the same summary wait instead of building it
        // twice. Building never panics, so a poisoned list is still consistent.
        let mut all = self.summaries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = all
            .iter()
            .find(|s| s.width_ms == width_ms && s.kind == kind)
        {
            return s.clone();
        }
        let s = Arc::new(Summary::build(&self.points, width_ms, kind));
        all.push(s.clone());
        s
    }
}
