//! A threshold trigger: its window and its firing episode.
//!
//! Evaluation is a pure function of the window contents and `now`: a trigger notifies when it
//! starts firing, repeats at most every `repeat_interval` while it keeps firing, and on recovery
//! produces a resolve if the alert asks for one.

use super::window::{Ring, Totals};
use crate::config::{Threshold, TriggerSpec};
use crate::event::EventType;
use crate::notification::NotificationState;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A firing episode: started at `start_ms`, last notified at `last_notified_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    pub start_ms: i64,
    pub last_notified_ms: i64,
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

/// What one evaluation decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub state: NotificationState,
    pub value: Option<f64>,
    pub episode_start_ms: i64,
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

    /// Adds a value at `ts_ms`; false if it was too old for the window.
    pub fn add(&mut self, ts_ms: i64, value: f64) -> bool {
        self.ring.add(ts_ms, value)
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
    /// be sent.
    pub fn evaluate(
        &mut self,
        trigger: &TriggerSpec,
        now_ms: i64,
        repeat: Duration,
        send_resolved: bool,
    ) -> Option<Decision> {
        let t = trigger
            .threshold
            .as_ref()
            .expect("threshold state exists only for threshold triggers");
        let value = Self::metric(trigger.event, self.ring.totals(now_ms));
        self.last_value = value;
        let firing = value.is_some_and(|v| t.operator.holds(v, t.value));
        let repeat_ms = repeat.as_millis() as i64;
        match (self.episode.as_mut(), firing) {
            (None, true) => {
                self.episode = Some(Episode {
                    start_ms: now_ms,
                    last_notified_ms: now_ms,
                });
                Some(Decision {
                    state: NotificationState::Firing,
                    value,
                    episode_start_ms: now_ms,
                })
            }
            (Some(ep), true) if now_ms - ep.last_notified_ms >= repeat_ms => {
                ep.last_notified_ms = now_ms;
                Some(Decision {
                    state: NotificationState::Firing,
                    value,
                    episode_start_ms: ep.start_ms,
                })
            }
            (Some(_), true) | (None, false) => None,
            (Some(ep), false) => {
                let start = ep.start_ms;
                self.episode = None;
                send_resolved.then_some(Decision {
                    state: NotificationState::Resolved,
                    value,
                    episode_start_ms: start,
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
        let d = s.evaluate(&t, 2_000, HOUR, false).unwrap();
        assert_eq!(d.state, NotificationState::Firing);
        assert_eq!(d.value, Some(3.0));
        // Still firing within the window, before the repeat interval: silent.
        assert_eq!(
            s.evaluate(&t, 3_000, Duration::from_secs(1), false)
                .unwrap()
                .episode_start_ms,
            2_000
        );
        assert!(s
            .evaluate(&t, 3_500, Duration::from_secs(1), false)
            .is_none());
    }

    #[test]
    fn threshold_is_strict_and_empty_window_never_fires() {
        let t = trigger(EventType::TraceErrors, 2.0, Operator::Above);
        let mut s = ThresholdState::new(t.threshold.as_ref().unwrap());
        assert!(s.evaluate(&t, 0, HOUR, true).is_none());
        s.add(10, 1.0);
        s.add(11, 1.0);
        assert!(s.evaluate(&t, 100, HOUR, true).is_none());
    }

    #[test]
    fn recovery_sends_exactly_one_resolve_when_asked() {
        let t = trigger(EventType::TraceLatency, 1.0, Operator::Above);
        let mut s = ThresholdState::new(t.threshold.as_ref().unwrap());
        s.add(0, 5.0);
        assert!(s.evaluate(&t, 1_000, HOUR, true).is_some());
        let r = s.evaluate(&t, 400_000, HOUR, true).unwrap();
        assert_eq!(r.state, NotificationState::Resolved);
        assert_eq!(r.episode_start_ms, 1_000);
        assert!(s.evaluate(&t, 500_000, HOUR, true).is_none());
    }

    #[test]
    fn feedback_below_operator_uses_mean() {
        let t = trigger(EventType::TraceFeedbackScore, 0.5, Operator::Below);
        let mut s = ThresholdState::new(t.threshold.as_ref().unwrap());
        s.add(0, 0.2);
        s.add(0, 0.6);
        let d = s.evaluate(&t, 10, HOUR, false).unwrap();
        assert!((d.value.unwrap() - 0.4).abs() < 1e-9);
    }
}
