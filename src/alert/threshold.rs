//! A threshold trigger: its window and its firing episode.
//!
//! Evaluation is a pure function of the window contents and `now`: a trigger notifies when it
//! starts firing, repeats at most every `repeat_interval` while it keeps firing, and on recovery
//! produces a resolve if the alert asks for one.

use super::summary::Summary;
use super::window::{Ring, SparseRing, Totals};
use crate::config::{Threshold, TriggerSpec};
use crate::event::EventType;
use crate::notification::NotificationState;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A firing episode: started at `start_ms`, last notified at `last_notified_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    pub start_ms: i64,
    /// The last firing notification decided, sent or suppressed: repeats count from here.
    pub last_notified_ms: i64,
    /// Not stored with the trigger state but after all of them in the checkpoint (see
    /// [`super::Checkpoint`]), so checkpoints written before silences existed still decode.
    #[serde(skip)]
    pub marks: SilenceMarks,
}

/// What silences did to an episode (DESIGN §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceMarks {
    /// A firing notification of this episode was sent: its resolve is sent even if silenced,
    /// so a PagerDuty incident never stays open.
    pub delivered: bool,
    /// The latest firing notification was suppressed and none was sent since: one is sent at
    /// the first tick no silence covers the trigger, without waiting for `repeat_interval`.
    pub owed: bool,
}

impl Default for SilenceMarks {
    /// An episode from before silences existed was notified.
    fn default() -> Self {
        SilenceMarks {
            delivered: true,
            owed: false,
        }
    }
}

/// The state of one threshold trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdState {
    ring: Ring,
    pub episode: Option<Episode>,
    /// Last evaluated metric value, for `GET /v1/alerts`; not checkpointed.
    #[serde(skip)]
    pub last_value: Option<f64>,
}

/// A trigger state as checkpoints store it since data file schema 10: its window in the
/// sparse form ([`SparseRing`]). [`ThresholdState`]'s own serde form is how schemas 1–9 stored it.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredThreshold {
    ring: SparseRing,
    episode: Option<Episode>,
}

impl From<&ThresholdState> for StoredThreshold {
    fn from(t: &ThresholdState) -> Self {
        StoredThreshold {
            ring: SparseRing::from(&t.ring),
            episode: t.episode,
        }
    }
}

impl TryFrom<StoredThreshold> for ThresholdState {
    type Error = String;
    fn try_from(t: StoredThreshold) -> Result<Self, String> {
        Ok(ThresholdState {
            ring: Ring::try_from(t.ring)?,
            episode: t.episode,
            last_value: None,
        })
    }
}

/// What one evaluation decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub state: NotificationState,
    pub value: Option<f64>,
    pub episode_start_ms: i64,
    /// An active silence covers the trigger: record the notification, do not send it.
    pub suppressed: bool,
}

impl ThresholdState {
    pub fn new(t: &Threshold) -> Self {
        ThresholdState {
            ring: Ring::new(t.window),
            episode: None,
            last_value: None,
        }
    }

    /// Whether a state read back from storage is safe to use (see [`Ring::is_sound`]).
    pub fn is_sound(&self) -> bool {
        let time_ok = |ms: i64| ms.unsigned_abs() <= super::window::MAX_SOUND;
        self.ring.is_sound()
            && self
                .episode
                .is_none_or(|e| time_ok(e.start_ms) && time_ok(e.last_notified_ms))
    }

    /// The width of one window slot (summaries are built per width).
    pub fn slot_width_ms(&self) -> i64 {
        self.ring.slot_width_ms()
    }

    /// Whether this state's ring has the slot width of `t`'s window. Always true for a state
    /// whose trigger fingerprint matches, unless the stored bytes were corrupted.
    pub fn fits(&self, t: &Threshold) -> bool {
        self.ring.slot_width_ms() == Ring::new(t.window).slot_width_ms()
    }

    /// Re-anchors to a clock stepped back (see [`Ring::reanchor`]): the last notification time
    /// is clamped to now, so the repeat interval is not stretched by the step. The episode's
    /// start is kept: it names the episode (PagerDuty's `dedup_key`), and a resolve must close
    /// the incident its firing opened.
    pub fn reanchor(&mut self, now_ms: i64) {
        self.ring.reanchor(now_ms);
        if let Some(ep) = &mut self.episode {
            ep.last_notified_ms = ep.last_notified_ms.min(now_ms);
        }
    }

    /// Whether [`ThresholdState::apply_summary`] may stand for adding the points one by one
    /// (see [`Ring::takes_summary`]).
    pub fn takes_summary(&self, s: &Summary) -> bool {
        self.ring.takes_summary(s)
    }

    /// Applies a batch through its summary, exactly as re-anchoring to each point's
    /// `received_ms` (`min_received_ms` is the earliest) and adding its value would; see
    /// [`Ring::apply_summary`] for what it returns.
    pub fn apply_summary(
        &mut self,
        s: &Summary,
        min_received_ms: i64,
        late_at: Option<&mut Vec<u32>>,
    ) -> (bool, u64) {
        if let Some(ep) = &mut self.episode {
            ep.last_notified_ms = ep.last_notified_ms.min(min_received_ms);
        }
        self.ring.apply_summary(s, late_at)
    }

    /// The window's slots, oldest first (see [`super::window::Ring::slots`]), for the console.
    pub fn slots(&self) -> Vec<Totals> {
        self.ring.slots()
    }

    /// Adds a value at `ts_ms`; false if it was too old for the window.
    pub fn add(&mut self, ts_ms: i64, value: f64) -> bool {
        self.ring.add(ts_ms, value)
    }

    /// True when the trigger is not firing but its window, evaluated at `now_ms`, now holds the
    /// condition: the next evaluation will open an episode. Changes no episode.
    pub fn would_start_firing(&mut self, trigger: &TriggerSpec, now_ms: i64) -> bool {
        let Some(t) = trigger.threshold.as_ref() else {
            return false;
        };
        self.episode.is_none()
            && Self::metric(trigger.event, self.ring.totals(now_ms))
                .is_some_and(|v| t.operator.holds(v, t.value))
    }

    /// The metric of the event type over the window, `None` without data.
    pub fn metric(event: EventType, totals: Totals) -> Option<f64> {
        if totals.count == 0 {
            return None;
        }
        Some(match event {
            EventType::TraceErrors => totals.count as f64,
            EventType::TraceCost => totals.sum,
            _ => totals.sum / totals.count as f64,
        })
    }

    /// Evaluates at `now_ms` and moves the episode on. Returns a decision when something should
    /// be sent, or recorded as suppressed when `silenced` (an active silence covers the trigger).
    ///
    /// Silences change three things: a firing decided while silenced is marked suppressed and
    /// owed, and goes out at the first unsilenced tick while the episode lasts; a resolve is
    /// sent whenever a firing of the episode was sent, silenced or not; and a resolve of an
    /// episode nobody heard of is only recorded (when silenced) or dropped.
    pub fn evaluate(
        &mut self,
        trigger: &TriggerSpec,
        now_ms: i64,
        repeat: Duration,
        send_resolved: bool,
        silenced: bool,
    ) -> Option<Decision> {
        let t = trigger
            .threshold
            .as_ref()
            .expect("threshold state exists only for threshold triggers");
        let value = Self::metric(trigger.event, self.ring.totals(now_ms));
        self.last_value = value;
        let firing = value.is_some_and(|v| t.operator.holds(v, t.value));
        let repeat_ms = repeat.as_millis() as i64;
        let fire = move |start: i64| Decision {
            state: NotificationState::Firing,
            value,
            episode_start_ms: start,
            suppressed: silenced,
        };
        match (self.episode.as_mut(), firing) {
            (None, true) => {
                self.episode = Some(Episode {
                    start_ms: now_ms,
                    last_notified_ms: now_ms,
                    marks: SilenceMarks {
                        delivered: !silenced,
                        owed: silenced,
                    },
                });
                Some(fire(now_ms))
            }
            (Some(ep), true)
                if (ep.marks.owed && !silenced) || now_ms - ep.last_notified_ms >= repeat_ms =>
            {
                ep.last_notified_ms = now_ms;
                if silenced {
                    ep.marks.owed = true;
                } else {
                    ep.marks = SilenceMarks {
                        delivered: true,
                        owed: false,
                    };
                }
                Some(fire(ep.start_ms))
            }
            (Some(_), true) | (None, false) => None,
            (Some(ep), false) => {
                let (start, delivered) = (ep.start_ms, ep.marks.delivered);
                self.episode = None;
                (send_resolved && (delivered || silenced)).then_some(Decision {
                    state: NotificationState::Resolved,
                    value,
                    episode_start_ms: start,
                    suppressed: !delivered,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Operator;

    fn trigger(event: EventType, threshold: f64, op: Operator) -> TriggerSpec {
        TriggerSpec {
            event,
            projects: vec![],
            threshold: Some(Threshold {
                value: threshold,
                window: Duration::from_secs(300),
                operator: op,
                score: None,
            }),
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn count_above_threshold_fires_once_then_repeats_after_interval() {
        let t = trigger(EventType::TraceErrors, 2.0, Operator::Above);
        let mut s = ThresholdState::new(t.threshold.as_ref().unwrap());
        for i in 0..3 {
            s.add(1_000 + i, 1.0);
        }
        let d = s.evaluate(&t, 2_000, HOUR, false, false).unwrap();
        assert_eq!(d.state, NotificationState::Firing);
        assert_eq!(d.value, Some(3.0));
        // Still firing within the window, before the repeat interval: silent.
        assert_eq!(
            s.evaluate(&t, 3_000, Duration::from_secs(1), false, false)
                .unwrap()
                .episode_start_ms,
            2_000
        );
        assert!(s
            .evaluate(&t, 3_500, Duration::from_secs(1), false, false)
            .is_none());
    }

    #[test]
    fn threshold_is_strict_and_empty_window_never_fires() {
        let t = trigger(EventType::TraceErrors, 2.0, Operator::Above);
        let mut s = ThresholdState::new(t.threshold.as_ref().unwrap());
        assert!(s.evaluate(&t, 0, HOUR, true, false).is_none());
        s.add(10, 1.0);
        s.add(11, 1.0);
        assert!(s.evaluate(&t, 100, HOUR, true, false).is_none());
    }

    #[test]
    fn recovery_sends_exactly_one_resolve_when_asked() {
        let t = trigger(EventType::TraceLatency, 1.0, Operator::Above);
        let mut s = ThresholdState::new(t.threshold.as_ref().unwrap());
        s.add(0, 5.0);
        assert!(s.evaluate(&t, 1_000, HOUR, true, false).is_some());
        let r = s.evaluate(&t, 400_000, HOUR, true, false).unwrap();
        assert_eq!(r.state, NotificationState::Resolved);
        assert_eq!(r.episode_start_ms, 1_000);
        assert!(s.evaluate(&t, 500_000, HOUR, true, false).is_none());
    }

    #[test]
    fn feedback_below_operator_uses_mean() {
        let t = trigger(EventType::TraceFeedbackScore, 0.5, Operator::Below);
        let mut s = ThresholdState::new(t.threshold.as_ref().unwrap());
        s.add(0, 0.2);
        s.add(0, 0.6);
        let d = s.evaluate(&t, 10, HOUR, false, false).unwrap();
        assert!((d.value.unwrap() - 0.4).abs() < 1e-9);
    }

    // Silences (DESIGN §12): the five ways an episode meets one.

    const MIN: i64 = 60_000;

    fn errors_over_zero() -> (TriggerSpec, ThresholdState) {
        let t = trigger(EventType::TraceErrors, 0.0, Operator::Above);
        let mut s = ThresholdState::new(t.threshold.as_ref().unwrap());
        s.add(0, 1.0);
        (t, s)
    }

    #[test]
    fn a_firing_suppressed_by_a_silence_is_sent_at_the_first_tick_after_it_ends() {
        let (t, mut s) = errors_over_zero();
        let d = s.evaluate(&t, 1_000, HOUR, true, true).unwrap();
        assert!(d.suppressed);
        assert_eq!(d.state, NotificationState::Firing);
        // Still silenced: nothing, not even a suppressed repeat before the interval.
        assert!(s.evaluate(&t, 1_000 + MIN, HOUR, true, true).is_none());
        // The silence ended: the owed firing goes out now, not an hour after the first one.
        let d = s.evaluate(&t, 1_000 + 2 * MIN, HOUR, true, false).unwrap();
        assert_eq!(d.state, NotificationState::Firing);
        assert!(!d.suppressed);
        assert_eq!(
            d.episode_start_ms, 1_000,
            "same episode, same PagerDuty dedup key"
        );
        // And then the normal repeat rule again.
        assert!(s.evaluate(&t, 1_000 + 3 * MIN, HOUR, true, false).is_none());
    }

    #[test]
    fn a_repeat_suppressed_by_a_silence_is_owed_too() {
        let (t, mut s) = errors_over_zero();
        let repeat = Duration::from_secs(60);
        assert!(
            !s.evaluate(&t, 1_000, repeat, false, false)
                .unwrap()
                .suppressed
        );
        let d = s.evaluate(&t, 1_000 + MIN, repeat, false, true).unwrap();
        assert!(d.suppressed, "the repeat falls in the silence");
        let d = s
            .evaluate(&t, 1_000 + MIN + 5_000, repeat, false, false)
            .unwrap();
        assert!(
            !d.suppressed,
            "sent once the silence is over, before the next repeat"
        );
        assert!(s
            .evaluate(&t, 1_000 + MIN + 10_000, repeat, false, false)
            .is_none());
    }

    #[test]
    fn the_resolve_of_a_delivered_episode_passes_a_silence() {
        let (t, mut s) = errors_over_zero();
        assert!(!s.evaluate(&t, 1_000, HOUR, true, false).unwrap().suppressed);
        let r = s.evaluate(&t, 400_000, HOUR, true, true).unwrap();
        assert_eq!(r.state, NotificationState::Resolved);
        assert!(!r.suppressed, "an open incident must be closed");
        assert_eq!(r.episode_start_ms, 1_000);
    }

    #[test]
    fn the_resolve_of_an_episode_nobody_heard_of_is_suppressed_or_dropped() {
        let (t, mut s) = errors_over_zero();
        assert!(s.evaluate(&t, 1_000, HOUR, true, true).unwrap().suppressed);
        let r = s.evaluate(&t, 400_000, HOUR, true, true).unwrap();
        assert_eq!(r.state, NotificationState::Resolved);
        assert!(r.suppressed);

        // Silence and episode end at the same tick: no resolve for a firing never sent.
        let (t, mut s) = errors_over_zero();
        assert!(s.evaluate(&t, 1_000, HOUR, true, true).unwrap().suppressed);
        assert!(s.evaluate(&t, 400_000, HOUR, true, false).is_none());
        assert!(s.episode.is_none());

        // Without send_resolved nothing is recorded either.
        let (t, mut s) = errors_over_zero();
        assert!(s.evaluate(&t, 1_000, HOUR, false, true).is_some());
        assert!(s.evaluate(&t, 400_000, HOUR, false, true).is_none());
    }

    #[test]
    fn a_silence_that_never_met_a_firing_changes_nothing() {
        let (t, mut s) = errors_over_zero();
        assert!(!s.evaluate(&t, 1_000, HOUR, true, false).unwrap().suppressed);
        // Silenced while firing, before the repeat is due: nothing is owed at its end.
        assert!(s.evaluate(&t, 1_000 + MIN, HOUR, true, true).is_none());
        assert!(s.evaluate(&t, 1_000 + 2 * MIN, HOUR, true, false).is_none());
    }
}
