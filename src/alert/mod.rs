//! Alert rule state and evaluation: plain, synchronous logic the alert actor wraps.
//!
//! An [`AlertState`] holds one alert's trigger states: a [`threshold::ThresholdState`] per
//! threshold trigger and one debounce [`Bucket`] per per-event type. Events are applied in inbox
//! sequence order; [`AlertState::tick`] evaluates at `now` and returns the notifications decided.
//! A [`Checkpoint`] is the state to persist; restoring it and re-applying the inbox after its
//! sequence number gives the same state as never stopping.
//!
//! Bucket items are not copied into checkpoints: the events a bucket lists are stored once by
//! the tick commit (`bucket_items`, keyed by inbox sequence, shared by every alert they reach)
//! and a checkpoint's bucket names the sequence they start from ([`StoredBucket`]). Restoring
//! takes those stored events and lists again, with the same rules, the ones the bucket took, so
//! a tick writes a few bytes per alert instead of its whole bucket.

pub mod actor;
pub mod summary;
pub mod supervisor;
pub mod threshold;
pub mod window;

use crate::codec;
use crate::config::{AlertSpec, TriggerSpec};
use crate::event::{Event, EventBody, EventType, ScoreEntity};
use crate::notification::{MetricSnapshot, Notification, NotificationState};
use crate::silence::SilenceSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use summary::{PointBatch, ValueKind};
use threshold::{SilenceMarks, ThresholdState};

/// One event kept in a debounce bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketItem {
    pub id: String,
    pub user: String,
    pub object: String,
}

/// Events of one per-event type grouped since `opened_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub opened_ms: i64,
    /// True number of events, even past the cap on `items`.
    pub count: u64,
    pub items: Vec<BucketItem>,
    /// How many of `items` (the first ones) the checkpoint carries itself: items of a
    /// checkpoint from before stored items, or kept across a reconfigure (whose new scope could
    /// not list them again).
    pub inline: usize,
    /// Inbox sequence of the first item listed after the inline ones: it and every later listed
    /// event are in the `bucket_items` table until the bucket is flushed.
    pub stored_from: Option<u64>,
}

/// A bucket as checkpoints keep it since stored items (data file schema 4): the inline items,
/// and where the stored ones start. The list is rebuilt from the stored events from
/// `stored_from` through the checkpoint's `applied_seq` (see [`AlertState::restore`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBucket {
    pub opened_ms: i64,
    pub count: u64,
    pub inline: Vec<BucketItem>,
    pub stored_from: Option<u64>,
}

/// A bucket as checkpoints kept it before stored items (schemas 1–3): every item inside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InlineBucket {
    pub opened_ms: i64,
    pub count: u64,
    pub items: Vec<BucketItem>,
}

impl From<InlineBucket> for StoredBucket {
    fn from(b: InlineBucket) -> Self {
        StoredBucket {
            opened_ms: b.opened_ms,
            count: b.count,
            inline: b.items,
            stored_from: None,
        }
    }
}

/// What is persisted for an alert at a tick.
///
/// Stored as [`CheckpointWire`]: a layout byte ([`SPARSE_RINGS_LAYOUT`]), then the fields of
/// the stored-items layout with each trigger's window in its sparse form
/// ([`threshold::StoredThreshold`]). Older layouts stay readable
/// ([`AlertState::decode_checkpoint`]): the first release's ([`CheckpointV1`]) is a strict
/// prefix of the silences one ([`CheckpointV2`]: each episode's [`SilenceMarks`] after it;
/// decoding rejects trailing bytes); the stored-items one ([`CheckpointV3`]) and this one
/// start with their layout byte, which neither older layout can start with, so none can be
/// mistaken for another. A data file from before silences keeps its windows and episodes
/// (their firings were all sent: default marks); one from before stored items keeps its
/// buckets with their items inline; one from before sparse windows keeps its dense ones until
/// the alert's next checkpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "CheckpointWire")]
pub struct Checkpoint {
    pub applied_seq: u64,
    /// Threshold trigger states keyed by the trigger's fingerprint.
    pub triggers: Vec<(String, ThresholdState)>,
    pub buckets: Vec<(EventType, StoredBucket)>,
    pub last_notified_ms: Option<i64>,
}

/// The first byte of a checkpoint with sparse windows (data file schema 10). Layouts before
/// [`STORED_ITEMS_LAYOUT`] start with `applied_seq`, a bincode varint, whose first byte is
/// never 254 (the marker of a 128-bit integer) or 255.
pub const SPARSE_RINGS_LAYOUT: u8 = 0xFE;

/// The first byte of a checkpoint with stored items and dense windows (schemas 6–9).
pub const STORED_ITEMS_LAYOUT: u8 = 0xFF;

/// A checkpoint as stored since sparse windows (data file schema 10).
#[derive(Deserialize)]
struct CheckpointWire {
    layout: u8,
    applied_seq: u64,
    triggers: Vec<(String, threshold::StoredThreshold)>,
    buckets: Vec<(EventType, StoredBucket)>,
    last_notified_ms: Option<i64>,
    /// One per entry of `triggers`, in the same order.
    episode_marks: Vec<SilenceMarks>,
}

/// A checkpoint as stored from stored items to sparse windows (data file schemas 6–9).
#[derive(Deserialize)]
struct CheckpointV3 {
    layout: u8,
    applied_seq: u64,
    triggers: Vec<(String, ThresholdState)>,
    buckets: Vec<(EventType, StoredBucket)>,
    last_notified_ms: Option<i64>,
    episode_marks: Vec<SilenceMarks>,
}

/// A checkpoint as stored from silences to stored items (data file schemas 2 and 3).
#[derive(Deserialize)]
struct CheckpointV2 {
    applied_seq: u64,
    triggers: Vec<(String, ThresholdState)>,
    buckets: Vec<(EventType, InlineBucket)>,
    last_notified_ms: Option<i64>,
    episode_marks: Vec<SilenceMarks>,
}

/// A checkpoint as the first release stored it (data file schema 1).
#[derive(Deserialize)]
struct CheckpointV1 {
    applied_seq: u64,
    triggers: Vec<(String, ThresholdState)>,
    buckets: Vec<(EventType, InlineBucket)>,
    last_notified_ms: Option<i64>,
}

impl Serialize for Checkpoint {
    /// Writes the [`CheckpointWire`] layout.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            layout: u8,
            applied_seq: u64,
            triggers: Vec<(&'a str, threshold::StoredThreshold)>,
            buckets: &'a [(EventType, StoredBucket)],
            last_notified_ms: Option<i64>,
            episode_marks: Vec<SilenceMarks>,
        }
        Wire {
            layout: SPARSE_RINGS_LAYOUT,
            applied_seq: self.applied_seq,
            triggers: self
                .triggers
                .iter()
                .map(|(fp, t)| (fp.as_str(), t.into()))
                .collect(),
            buckets: &self.buckets,
            last_notified_ms: self.last_notified_ms,
            episode_marks: self
                .triggers
                .iter()
                .map(|(_, t)| t.episode.map(|e| e.marks).unwrap_or_default())
                .collect(),
        }
        .serialize(s)
    }
}

/// Puts each episode's silence marks back into its trigger state.
fn with_marks(
    mut triggers: Vec<(String, ThresholdState)>,
    marks: Vec<SilenceMarks>,
) -> Result<Vec<(String, ThresholdState)>, String> {
    if marks.len() != triggers.len() {
        return Err(format!(
            "{} episode marks for {} triggers",
            marks.len(),
            triggers.len()
        ));
    }
    for ((_, t), marks) in triggers.iter_mut().zip(marks) {
        if let Some(e) = t.episode.as_mut() {
            e.marks = marks;
        }
    }
    Ok(triggers)
}

impl TryFrom<CheckpointWire> for Checkpoint {
    type Error = String;
    fn try_from(w: CheckpointWire) -> Result<Self, String> {
        if w.layout != SPARSE_RINGS_LAYOUT {
            return Err(format!("unknown checkpoint layout {}", w.layout));
        }
        let triggers = w
            .triggers
            .into_iter()
            .map(|(fp, t)| Ok((fp, ThresholdState::try_from(t)?)))
            .collect::<Result<_, String>>()?;
        Ok(Checkpoint {
            applied_seq: w.applied_seq,
            triggers: with_marks(triggers, w.episode_marks)?,
            buckets: w.buckets,
            last_notified_ms: w.last_notified_ms,
        })
    }
}

impl TryFrom<CheckpointV3> for Checkpoint {
    type Error = String;
    fn try_from(v: CheckpointV3) -> Result<Self, String> {
        if v.layout != STORED_ITEMS_LAYOUT {
            return Err(format!("unknown checkpoint layout {}", v.layout));
        }
        Ok(Checkpoint {
            applied_seq: v.applied_seq,
            triggers: with_marks(v.triggers, v.episode_marks)?,
            buckets: v.buckets,
            last_notified_ms: v.last_notified_ms,
        })
    }
}

impl TryFrom<CheckpointV2> for Checkpoint {
    type Error = String;
    fn try_from(v: CheckpointV2) -> Result<Self, String> {
        Ok(Checkpoint {
            applied_seq: v.applied_seq,
            triggers: with_marks(v.triggers, v.episode_marks)?,
            buckets: v.buckets.into_iter().map(|(e, b)| (e, b.into())).collect(),
            last_notified_ms: v.last_notified_ms,
        })
    }
}

impl From<CheckpointV1> for Checkpoint {
    fn from(v: CheckpointV1) -> Self {
        Checkpoint {
            applied_seq: v.applied_seq,
            triggers: v.triggers,
            buckets: v.buckets.into_iter().map(|(e, b)| (e, b.into())).collect(),
            last_notified_ms: v.last_notified_ms,
        }
    }
}

impl Checkpoint {
    /// Refuses values no alert could have written (they decode from corrupted bytes), which
    /// would otherwise panic or overflow once the state is used.
    fn check_sound(&self) -> Result<(), String> {
        let time_ok = |ms: i64| ms.unsigned_abs() <= window::MAX_SOUND;
        if let Some(n) = self.triggers.iter().position(|(_, s)| !s.is_sound()) {
            return Err(format!("trigger state {} is inconsistent", n + 1));
        }
        if let Some((e, _)) = self.buckets.iter().find(|(_, b)| {
            !time_ok(b.opened_ms)
                || b.count > window::MAX_SOUND
                || b.inline.len() as u64 > b.count
                || (b.stored_from.is_some_and(|f| f > self.applied_seq))
        }) {
            return Err(format!("the {e} bucket is inconsistent"));
        }
        if !self.last_notified_ms.is_none_or(time_ok) {
            return Err("last notification time is out of range".into());
        }
        Ok(())
    }
}

/// What applying an event did, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    pub counted: bool,
    pub late: bool,
    /// The event was listed in a bucket: the tick commit stores it (see [`StoredBucket`]).
    pub listed: bool,
}

/// What applying a shared batch of points did, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchApplied {
    /// Some point was counted in a window.
    pub counted: bool,
    /// How many points were too old for some window.
    pub late: u64,
}

/// A notification an active silence kept from being sent (DESIGN §12).
#[derive(Debug, Clone, PartialEq)]
pub struct Suppressed {
    pub notification: Notification,
    /// The silence that matched.
    pub silence_id: String,
}

/// What a tick decided: notifications to send, and those silences suppressed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decided {
    pub send: Vec<Notification>,
    pub suppressed: Vec<Suppressed>,
}

/// The live state of one alert.
#[derive(Debug, Clone)]
pub struct AlertState {
    spec: Arc<AlertSpec>,
    /// Index-aligned with `spec.triggers`; `None` for per-event triggers.
    thresholds: Vec<Option<ThresholdState>>,
    buckets: BTreeMap<EventType, Bucket>,
    applied_seq: u64,
    last_notified_ms: Option<i64>,
    dirty: bool,
}

/// A trigger's current view, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerView {
    pub event: EventType,
    pub value: Option<f64>,
    pub firing: bool,
    pub bucket_size: Option<u64>,
    /// When the current firing episode started.
    pub firing_since_ms: Option<i64>,
    /// A threshold trigger's window slots, oldest first (the console's sparkline).
    #[serde(skip)]
    pub slots: Vec<window::Totals>,
}

impl AlertState {
    /// A fresh state that has applied everything up to `applied_seq`.
    pub fn new(spec: Arc<AlertSpec>, applied_seq: u64) -> AlertState {
        let thresholds = spec
            .triggers
            .iter()
            .map(|t| t.threshold.as_ref().map(ThresholdState::new))
            .collect();
        AlertState {
            spec,
            thresholds,
            buckets: BTreeMap::new(),
            applied_seq,
            last_notified_ms: None,
            dirty: true,
        }
    }

    /// Restores from a stored checkpoint. Triggers whose fingerprint is unchanged keep their
    /// state; new or changed ones start empty. `stored` holds the stored bucket items from the
    /// lowest `stored_from` of the checkpoint's buckets on (more is fine), in sequence order:
    /// each bucket lists again, by the same rules, the ones it took from its `stored_from`
    /// through the checkpoint's `applied_seq`. A stored item that is missing (deleted while
    /// the alert was not running, or unreadable) is not listed; the bucket's count keeps it.
    pub fn restore(spec: Arc<AlertSpec>, cp: Checkpoint, stored: &[(u64, Event)]) -> AlertState {
        let mut state = AlertState::new(spec, cp.applied_seq);
        let buckets = cp
            .buckets
            .into_iter()
            .map(|(e, b)| {
                let inline = b.inline.len();
                let bucket = Bucket {
                    opened_ms: b.opened_ms,
                    count: b.count,
                    items: b.inline,
                    inline,
                    stored_from: b.stored_from,
                };
                (e, bucket)
            })
            .collect();
        state.adopt(cp.triggers, buckets);
        state.last_notified_ms = cp.last_notified_ms;
        state.relist(stored);
        state
    }

    /// Lists again the stored items each bucket took (see [`AlertState::restore`]).
    fn relist(&mut self, stored: &[(u64, Event)]) {
        let spec = self.spec.clone();
        let through = self.applied_seq;
        for (et, b) in self.buckets.iter_mut() {
            let Some(from) = b.stored_from else { continue };
            let start = stored.partition_point(|(s, _)| *s < from);
            for (seq, event) in &stored[start..] {
                if *seq > through {
                    break;
                }
                if let Some(object) = bucket_object(&spec, *et, event) {
                    list(&spec, b, event, object);
                }
            }
        }
    }

    /// A stored checkpoint rewritten with all its bucket items inline, for an alert that stops
    /// running (its stored items are not kept for it); `None` if it cannot be read.
    pub fn inline_checkpoint(
        spec: Arc<AlertSpec>,
        bytes: &[u8],
        stored: &[(u64, Event)],
    ) -> Option<Vec<u8>> {
        let cp = AlertState::decode_checkpoint(&spec.id, bytes).ok()?;
        let mut state = AlertState::restore(spec, cp, stored);
        state.keep_items_inline();
        Some(codec::encode(&state.checkpoint()))
    }

    /// Moves every bucket's items into the checkpoint: they no longer depend on stored items.
    fn keep_items_inline(&mut self) {
        for b in self.buckets.values_mut() {
            b.inline = b.items.len();
            b.stored_from = None;
        }
    }

    /// The lowest inbox sequence of the stored items the buckets list, if any.
    pub fn item_floor(&self) -> Option<u64> {
        self.buckets.values().filter_map(|b| b.stored_from).min()
    }

    /// Decodes a stored checkpoint, naming the alert when it cannot be read.
    pub fn decode_checkpoint(alert_id: &str, bytes: &[u8]) -> Result<Checkpoint, String> {
        let unreadable = |e: String| {
            format!("alert {alert_id:?}: stored state is unreadable ({e}); starting it fresh")
        };
        // The layout byte names the two newest layouts; the older two are told apart by
        // decoding (see [`Checkpoint`]).
        let cp: Checkpoint = match bytes.get(1) {
            Some(&SPARSE_RINGS_LAYOUT) => {
                codec::decode::<Checkpoint>(bytes).map_err(|e| unreadable(e.to_string()))?
            }
            Some(&STORED_ITEMS_LAYOUT) => codec::decode::<CheckpointV3>(bytes)
                .map_err(|e| e.to_string())
                .and_then(Checkpoint::try_from)
                .map_err(unreadable)?,
            _ => match codec::decode::<CheckpointV2>(bytes) {
                Ok(v2) => Checkpoint::try_from(v2).map_err(unreadable)?,
                Err(v2) => codec::decode::<CheckpointV1>(bytes)
                    .map(Checkpoint::from)
                    .map_err(|_| unreadable(v2.to_string()))?,
            },
        };
        cp.check_sound().map_err(unreadable)?;
        Ok(cp)
    }

    fn adopt(&mut self, mut old: Vec<(String, ThresholdState)>, buckets: Vec<(EventType, Bucket)>) {
        for (t, slot) in self.spec.triggers.iter().zip(self.thresholds.iter_mut()) {
            if slot.is_none() {
                continue;
            }
            let fp = t.fingerprint();
            let th = t.threshold.as_ref().expect("threshold trigger");
            if let Some(pos) = old
                .iter()
                .position(|(f, s)| *f == fp && s.is_sound() && s.fits(th))
            {
                *slot = Some(old.swap_remove(pos).1);
            }
        }
        let wanted: Vec<EventType> = self.spec.triggers.iter().map(|t| t.event).collect();
        self.buckets = buckets
            .into_iter()
            .filter(|(e, _)| wanted.contains(e))
            .collect();
    }

    /// Switches to a new spec of the same alert id, keeping unchanged triggers' state. Open
    /// buckets keep their items inline from now on: the new spec's scope and limits could not
    /// list them again from the stored items.
    pub fn reconfigure(&mut self, spec: Arc<AlertSpec>) {
        self.keep_items_inline();
        let cp = self.checkpoint();
        let buckets = std::mem::take(&mut self.buckets).into_iter().collect();
        let applied = self.applied_seq;
        let last = self.last_notified_ms;
        *self = AlertState::new(spec, applied);
        self.adopt(cp.triggers, buckets);
        self.last_notified_ms = last;
    }

    pub fn spec(&self) -> &Arc<AlertSpec> {
        &self.spec
    }

    pub fn applied_seq(&self) -> u64 {
        self.applied_seq
    }

    /// Marks everything up to `seq` as applied (the router has delivered all of it).
    pub fn applied_through(&mut self, seq: u64) {
        self.applied_seq = self.applied_seq.max(seq);
    }

    /// The event types this alert listens to, for the router's index.
    pub fn event_types(spec: &AlertSpec) -> Vec<EventType> {
        let mut v: Vec<EventType> = spec.triggers.iter().map(|t| t.event).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Whether [`AlertState::apply_point`] may stand for [`AlertState::apply`] on a shared
    /// batch of the right scope (see [`AlertState::points_scope`]).
    pub fn reads_points(&self) -> bool {
        self.points_scope().is_some()
    }

    /// The shared batches this alert may read as points, without checking any event's scope:
    /// every trigger is a threshold on a trace type (errors, cost, latency), and all of them
    /// take every project (`Some(None)`) or all the same one (`Some(Some(project))`), so the
    /// router's list of that scope holds exactly their events. `None` otherwise.
    pub fn points_scope(&self) -> Option<Option<&str>> {
        let first = self.spec.triggers.first()?;
        let scope = first.projects.first().map(String::as_str);
        let same_scope = |t: &TriggerSpec| match scope {
            None => t.projects.is_empty(),
            Some(p) => !t.projects.is_empty() && t.projects.iter().all(|q| q == p),
        };
        self.spec
            .triggers
            .iter()
            .all(|t| {
                t.threshold.is_some()
                    && same_scope(t)
                    && matches!(
                        t.event,
                        EventType::TraceErrors | EventType::TraceCost | EventType::TraceLatency
                    )
            })
            .then_some(scope)
    }

    /// [`AlertState::apply`] for a trace event of this alert's workspace given as a [`Point`];
    /// only for alerts that [`AlertState::reads_points`]. Same result, without touching the
    /// event.
    pub fn apply_point(&mut self, p: &crate::event::Point) -> Applied {
        let mut applied = Applied::default();
        if p.seq <= self.applied_seq && p.seq != 0 {
            return applied;
        }
        self.applied_seq = self.applied_seq.max(p.seq);
        let ts = p.timestamp_ms.min(p.received_ms);
        for s in self.thresholds.iter_mut().flatten() {
            s.reanchor(p.received_ms);
        }
        for (t, state) in self.spec.triggers.iter().zip(self.thresholds.iter_mut()) {
            let value = match t.event {
                EventType::TraceErrors => p.error.then_some(1.0),
                EventType::TraceCost => p.cost,
                EventType::TraceLatency => p.duration_s,
                _ => None,
            };
            if let (Some(s), Some(v)) = (state, value) {
                if s.add(ts, v) {
                    applied.counted = true;
                } else {
                    applied.late = true;
                }
            }
        }
        if applied.counted {
            self.dirty = true;
        }
        applied
    }

    /// Applies a shared batch of points, as [`AlertState::apply_point`] on each of them would
    /// (only for alerts that [`AlertState::reads_points`]): through the batch's summaries when
    /// this alert's state allows (see [`summary`]), point by point otherwise.
    pub fn apply_points(&mut self, batch: &PointBatch) -> BatchApplied {
        if let Some(done) = self.apply_summaries(batch) {
            return done;
        }
        let mut done = BatchApplied::default();
        for p in &batch.points {
            let applied = self.apply_point(p);
            done.counted |= applied.counted;
            done.late += u64::from(applied.late);
        }
        done
    }

    /// [`AlertState::apply_points`] through summaries; `None` (and nothing changed) when a
    /// point could be a replay or could re-anchor a window.
    fn apply_summaries(&mut self, batch: &PointBatch) -> Option<BatchApplied> {
        let last = batch.points.last()?;
        if !batch.increasing || batch.points[0].seq <= self.applied_seq {
            return None;
        }
        let mut summaries = Vec::with_capacity(self.thresholds.len());
        for (t, state) in self.spec.triggers.iter().zip(self.thresholds.iter()) {
            let state = state.as_ref()?;
            let kind = ValueKind::of(t.event)?;
            let s = batch.summary(state.slot_width_ms(), kind);
            if !state.takes_summary(&s) {
                return None;
            }
            summaries.push(s);
        }
        self.applied_seq = last.seq;
        let mut done = BatchApplied::default();
        // A point late to several windows is one late point, as point by point.
        let mut late_at = (summaries.len() > 1).then(Vec::new);
        for (state, s) in self.thresholds.iter_mut().flatten().zip(&summaries) {
            let (counted, late) = state.apply_summary(s, batch.min_received_ms, late_at.as_mut());
            done.counted |= counted;
            done.late += late;
        }
        if let Some(mut at) = late_at {
            at.sort_unstable();
            at.dedup();
            done.late = at.len() as u64;
        }
        if done.counted {
            self.dirty = true;
        }
        Some(done)
    }

    /// Applies the event with inbox sequence `seq`; already applied sequences are ignored.
    pub fn apply(&mut self, seq: u64, event: &Event) -> Applied {
        let mut applied = Applied::default();
        if seq <= self.applied_seq && seq != 0 {
            return applied;
        }
        self.applied_seq = self.applied_seq.max(seq);
        if event.workspace != self.spec.workspace {
            return applied;
        }
        // A timestamp ahead of our clock (clock skew, at most 5 min) counts as received now.
        let ts = event.timestamp_ms.min(event.received_ms);
        for s in self.thresholds.iter_mut().flatten() {
            s.reanchor(event.received_ms);
        }
        let feeds = event.feeds();
        let project = event.project.as_deref();
        let project_id = event.project_id.as_deref();
        let mut per_event = Vec::new();
        for (t, state) in self.spec.triggers.iter().zip(self.thresholds.iter_mut()) {
            if !feeds.contains(&t.event) || !t.in_scope(project, project_id) {
                continue;
            }
            match state {
                Some(s) => {
                    if let Some(v) = threshold_value(t, event) {
                        if s.add(ts, v) {
                            applied.counted = true;
                        } else {
                            applied.late = true;
                        }
                    }
                }
                None => {
                    if !per_event.contains(&t.event) {
                        per_event.push(t.event);
                    }
                }
            }
        }
        for et in per_event {
            let Some(object) = event_object(event) else {
                continue;
            };
            let bucket = self.buckets.entry(et).or_insert_with(|| Bucket {
                opened_ms: event.received_ms,
                count: 0,
                items: Vec::new(),
                inline: 0,
                stored_from: None,
            });
            bucket.count += 1;
            if list(&self.spec, bucket, event, object) {
                bucket.stored_from.get_or_insert(seq);
                applied.listed = true;
            }
            applied.counted = true;
        }
        if applied.counted {
            self.dirty = true;
        }
        applied
    }

    /// Evaluates every trigger at `now_ms` with no silence in force and returns what to send.
    /// `new_id` mints notification ids (UUIDv7 in the daemon, deterministic in tests).
    pub fn tick(&mut self, now_ms: i64, new_id: &mut dyn FnMut() -> String) -> Vec<Notification> {
        self.tick_silenced(now_ms, new_id, &SilenceSet::default())
            .send
    }

    /// Evaluates every trigger at `now_ms` and splits what was decided into notifications to
    /// send and notifications an active silence of `silences` suppresses. Evaluation itself
    /// does not change under a silence: windows fill and episodes open and close; see
    /// [`ThresholdState::evaluate`] for what is owed when the silence ends. Per-event buckets
    /// due during a silence are dropped as suppressed, not held back.
    pub fn tick_silenced(
        &mut self,
        now_ms: i64,
        new_id: &mut dyn FnMut() -> String,
        silences: &SilenceSet,
    ) -> Decided {
        let mut out = Vec::new();
        let mut suppressed = Vec::new();
        let spec = self.spec.clone();
        // A clock stepped back (across a restart): deadlines move back with it.
        for b in self.buckets.values_mut() {
            b.opened_ms = b.opened_ms.min(now_ms);
        }
        let silence_of = |event: EventType| {
            if silences.is_empty() {
                return None;
            }
            silences.matching(&spec.id, event, now_ms)
        };
        for (t, state) in spec.triggers.iter().zip(self.thresholds.iter_mut()) {
            let Some(s) = state else { continue };
            let th = t.threshold.as_ref().expect("threshold trigger");
            s.reanchor(now_ms);
            let episode_before = s.episode;
            let silence = silence_of(t.event);
            let decision = s.evaluate(
                t,
                now_ms,
                spec.repeat_interval,
                spec.send_resolved,
                silence.is_some(),
            );
            // A silent recovery (no resolve asked for) changes the episode without notifying; it
            // must still be checkpointed, or a restart would resurrect the old episode and swallow
            // the next one's first notification.
            if s.episode != episode_before {
                self.dirty = true;
            }
            let Some(d) = decision else {
                continue;
            };
            let episode_id = uuid_from_ms(d.episode_start_ms, &spec.id, t.event);
            let n = Notification {
                id: new_id(),
                alert_id: spec.id.clone(),
                alert_name: spec.name.clone(),
                workspace: spec.workspace.clone(),
                event_type: t.event,
                state: d.state,
                created_ms: now_ms,
                episode_start_ms: d.episode_start_ms,
                event_ids: vec![episode_id],
                user_names: vec!["system".into()],
                event_count: 1,
                metric: Some(MetricSnapshot {
                    value: d.value,
                    threshold: th.value,
                    operator: th.operator,
                    window_seconds: th.window.as_secs(),
                    score: th.score.clone(),
                    projects: t.projects.clone(),
                }),
                items: Vec::new(),
            };
            match silence.filter(|_| d.suppressed) {
                Some(silence) => suppressed.push(Suppressed {
                    notification: n,
                    silence_id: silence.id.clone(),
                }),
                None => out.push(n),
            }
            self.dirty = true;
        }
        let debounce_ms = spec.debounce.as_millis() as i64;
        let due: Vec<EventType> = self
            .buckets
            .iter()
            .filter(|(_, b)| now_ms >= b.opened_ms + debounce_ms)
            .map(|(e, _)| *e)
            .collect();
        for et in due {
            let b = self.buckets.remove(&et).expect("due bucket exists");
            let mut users: Vec<String> = Vec::new();
            for i in &b.items {
                if !users.contains(&i.user) {
                    users.push(i.user.clone());
                }
            }
            let n = Notification {
                id: new_id(),
                alert_id: spec.id.clone(),
                alert_name: spec.name.clone(),
                workspace: spec.workspace.clone(),
                event_type: et,
                state: NotificationState::Firing,
                created_ms: now_ms,
                episode_start_ms: b.opened_ms,
                event_ids: b.items.iter().map(|i| i.id.clone()).collect(),
                user_names: users,
                event_count: b.count,
                metric: None,
                items: b.items.into_iter().map(|i| i.object).collect(),
            };
            match silence_of(et) {
                Some(silence) => suppressed.push(Suppressed {
                    notification: n,
                    silence_id: silence.id.clone(),
                }),
                None => out.push(n),
            }
            self.dirty = true;
        }
        if !out.is_empty() {
            self.last_notified_ms = Some(now_ms);
        }
        Decided {
            send: out,
            suppressed,
        }
    }

    /// True when some threshold trigger is not firing but would start firing if evaluated at
    /// `now_ms` (what early firing asks the scheduler for).
    pub fn crossed(&mut self, now_ms: i64) -> bool {
        let spec = self.spec.clone();
        spec.triggers
            .iter()
            .zip(self.thresholds.iter_mut())
            .any(|(t, s)| s.as_mut().is_some_and(|s| s.would_start_firing(t, now_ms)))
    }

    /// The checkpoint to persist, if anything changed since the last one was taken.
    pub fn take_checkpoint_if_dirty(&mut self) -> Option<Checkpoint> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(self.checkpoint())
    }

    /// The full state as a checkpoint.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            applied_seq: self.applied_seq,
            triggers: self
                .spec
                .triggers
                .iter()
                .zip(self.thresholds.iter())
                .filter_map(|(t, s)| s.as_ref().map(|s| (t.fingerprint(), s.clone())))
                .collect(),
            buckets: self
                .buckets
                .iter()
                .map(|(e, b)| {
                    let bucket = StoredBucket {
                        opened_ms: b.opened_ms,
                        count: b.count,
                        inline: b.items[..b.inline].to_vec(),
                        stored_from: b.stored_from,
                    };
                    (*e, bucket)
                })
                .collect(),
            last_notified_ms: self.last_notified_ms,
        }
    }

    /// The current view of each trigger, for `GET /v1/alerts`.
    pub fn view(&self) -> Vec<TriggerView> {
        self.spec
            .triggers
            .iter()
            .zip(self.thresholds.iter())
            .map(|(t, s)| TriggerView {
                event: t.event,
                value: s.as_ref().and_then(|s| s.last_value),
                firing: s.as_ref().is_some_and(|s| s.episode.is_some()),
                bucket_size: s
                    .is_none()
                    .then(|| self.buckets.get(&t.event).map(|b| b.count).unwrap_or(0)),
                firing_since_ms: s.as_ref().and_then(|s| s.episode.map(|e| e.start_ms)),
                slots: s.as_ref().map(ThresholdState::slots).unwrap_or_default(),
            })
            .collect()
    }

    pub fn last_notified_ms(&self) -> Option<i64> {
        self.last_notified_ms
    }
}

/// The object a per-event event carries (what a bucket lists).
fn event_object(event: &Event) -> Option<&str> {
    match &event.body {
        EventBody::Guardrail { object, .. } | EventBody::Object { object, .. } => Some(object),
        _ => None,
    }
}

/// The object `event` adds to the bucket of per-event type `et` of the alert `spec`, if it
/// goes there: the same test [`AlertState::apply`] makes, for listing stored items again.
/// Restarts list every stored item for every alert, so this test allocates nothing.
fn bucket_object<'e>(spec: &AlertSpec, et: EventType, event: &'e Event) -> Option<&'e str> {
    // `Event::feeds` for the bodies that carry an object, without its Vec.
    let feeds = match &event.body {
        EventBody::Guardrail { failed, .. } => *failed && et == EventType::GuardrailsTriggered,
        EventBody::Object { event_type, .. } => *event_type == et,
        _ => false,
    };
    if !feeds || event.workspace != spec.workspace {
        return None;
    }
    let (project, project_id) = (event.project.as_deref(), event.project_id.as_deref());
    spec.triggers
        .iter()
        .any(|t| t.event == et && t.threshold.is_none() && t.in_scope(project, project_id))
        .then(|| event_object(event))
        .flatten()
}

/// Lists `event` in `bucket` unless the bucket is full; true if it was listed. Byte budgets
/// (crate::budget): an oversized object becomes a marker, and objects past the message budget
/// are counted but not listed, like those past the cap. The decision depends only on the
/// items already listed, so listing the same events again gives the same list.
fn list(spec: &AlertSpec, bucket: &mut Bucket, event: &Event, object: &str) -> bool {
    if bucket.items.len() >= spec.max_events_per_message {
        return false;
    }
    let object = crate::budget::fit_object(object, spec.max_object_bytes);
    let used: usize = bucket.items.iter().map(|i| i.object.len() + 1).sum();
    if used + object.len() >= spec.max_message_bytes {
        return false;
    }
    bucket.items.push(BucketItem {
        id: event.id.clone(),
        user: event.user.clone(),
        object: object.into_owned(),
    });
    true
}

/// The value a threshold trigger takes from an event, if the event feeds it.
fn threshold_value(t: &TriggerSpec, event: &Event) -> Option<f64> {
    match (&event.body, t.event) {
        (EventBody::Trace { error: true, .. }, EventType::TraceErrors) => Some(1.0),
        (EventBody::Trace { cost: Some(c), .. }, EventType::TraceCost) => Some(*c),
        (
            EventBody::Trace {
                duration_s: Some(d),
                ..
            },
            EventType::TraceLatency,
        ) => Some(*d),
        (
            EventBody::FeedbackScore {
                entity,
                name,
                value,
                ..
            },
            EventType::TraceFeedbackScore | EventType::ThreadFeedbackScore,
        ) => {
            let want = if t.event == EventType::TraceFeedbackScore {
                ScoreEntity::Trace
            } else {
                ScoreEntity::Thread
            };
            let score = t.threshold.as_ref().and_then(|th| th.score.as_deref());
            (*entity == want && Some(name.as_str()) == score).then_some(*value)
        }
        _ => None,
    }
}

/// A stable id for a firing episode, used as its `eventIds` entry.
fn uuid_from_ms(ms: i64, alert: &str, event: EventType) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (alert, event.as_str()).hash(&mut h);
    let rand = h.finish();
    let mut b = [0u8; 16];
    b[0..6].copy_from_slice(&(ms as u64).to_be_bytes()[2..8]);
    b[6] = 0x70;
    b[8..16].copy_from_slice(&rand.to_be_bytes());
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

#[cfg(test)]
mod tests;
