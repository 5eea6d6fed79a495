use super::*;
use crate::config::Config;
use proptest::prelude::*;
use std::path::Path;

fn spec(toml_alert: &str) -> Arc<AlertSpec> {
    let text = format!("[[alert]]\nid = \"a\"\nurl = \"http://127.0.0.1:1/\"\n{toml_alert}");
    let cfg = Config::from_toml(Path::new("test.toml"), &text, false).expect("valid test config");
    cfg.alerts[0].clone()
}

fn trace(seq: u64, ts: i64, project: &str, error: bool) -> (u64, Event) {
    (
        seq,
        Event {
            id: format!("e{seq}"),
            workspace: "default".into(),
            project: Some(project.into()),
            project_id: None,
            timestamp_ms: ts,
            received_ms: ts,
            user: "u".into(),
            body: EventBody::Trace {
                trace_id: None,
                duration_s: Some(2.0),
                cost: Some(0.5),
                error,
            },
        },
    )
}

fn prompt(seq: u64, ts: i64, user: &str) -> (u64, Event) {
    (
        seq,
        Event {
            id: format!("p{seq}"),
            workspace: "default".into(),
            project: None,
            project_id: None,
            timestamp_ms: ts,
            received_ms: ts,
            user: user.into(),
            body: EventBody::Object {
                event_type: EventType::PromptCreated,
                object: format!("{{\"id\":\"{seq}\"}}"),
            },
        },
    )
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("n{n}")
    }
}

const ERRORS: &str = "[[alert.trigger]]\nevent = \"trace:errors\"\nprojects = [\"p1\"]\nthreshold = 2\nwindow = \"5m\"\n";

#[test]
fn errors_outside_project_scope_do_not_count() {
    let mut s = AlertState::new(spec(ERRORS), 0);
    for i in 1..=3 {
        let (q, e) = trace(i, 1_000, "p2", true);
        s.apply(q, &e);
    }
    assert!(s.tick(2_000, &mut ids()).is_empty());
    for i in 4..=6 {
        let (q, e) = trace(i, 1_000, "p1", true);
        s.apply(q, &e);
    }
    let n = s.tick(2_000, &mut ids());
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].metric.as_ref().unwrap().value, Some(3.0));
}

#[test]
fn replayed_sequences_are_not_counted_twice() {
    let mut s = AlertState::new(spec(ERRORS), 0);
    for i in 1..=3 {
        let (q, e) = trace(i, 1_000, "p1", true);
        s.apply(q, &e);
        s.apply(q, &e);
    }
    let n = s.tick(2_000, &mut ids());
    assert_eq!(n[0].metric.as_ref().unwrap().value, Some(3.0));
}

#[test]
fn checkpoint_and_replay_equal_an_uninterrupted_run() {
    let events: Vec<_> = (1..=6)
        .map(|i| trace(i, i as i64 * 1_000, "p1", true))
        .collect();
    let mut straight = AlertState::new(spec(ERRORS), 0);
    for (q, e) in &events {
        straight.apply(*q, e);
    }
    let mut first = AlertState::new(spec(ERRORS), 0);
    for (q, e) in &events[..3] {
        first.apply(*q, e);
    }
    let bytes = codec::encode(&first.checkpoint());
    let cp = AlertState::decode_checkpoint("a", &bytes).unwrap();
    let mut restored = AlertState::restore(spec(ERRORS), cp, &[]);
    for (q, e) in &events {
        restored.apply(*q, e); // full replay: the first three are skipped by sequence
    }
    let a = straight.tick(10_000, &mut ids());
    let b = restored.tick(10_000, &mut ids());
    // Six errors over a threshold of 2: one notification, counting each error once.
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].metric.as_ref().unwrap().value, Some(6.0));
    assert_eq!(a, b);
}

#[test]
fn reconfigure_keeps_unchanged_trigger_state() {
    let two = format!(
        "{ERRORS}[[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = 100\nwindow = \"1h\"\n"
    );
    let mut s = AlertState::new(spec(&two), 0);
    for i in 1..=3 {
        let (q, e) = trace(i, 1_000, "p1", true);
        s.apply(q, &e);
    }
    let changed = format!(
        "{ERRORS}[[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = 1\nwindow = \"1h\"\n"
    );
    s.reconfigure(spec(&changed));
    let n = s.tick(2_000, &mut ids());
    // errors trigger kept its 3 events; the cost trigger changed and starts empty.
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].event_type, EventType::TraceErrors);
}

#[test]
fn debounce_groups_a_burst_into_one_notification() {
    let s_spec = spec("debounce = \"60s\"\n[[alert.trigger]]\nevent = \"prompt:created\"\n");
    let mut s = AlertState::new(s_spec, 0);
    for (i, u) in [(1, "ann"), (2, "bob"), (3, "ann")] {
        let (q, e) = prompt(i, 1_000 + i as i64, u);
        s.apply(q, &e);
    }
    assert!(s.tick(60_000, &mut ids()).is_empty());
    let n = s.tick(61_001, &mut ids());
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].event_count, 3);
    assert_eq!(n[0].items.len(), 3);
    assert_eq!(n[0].user_names, vec!["ann", "bob"]);
    assert!(s.tick(200_000, &mut ids()).is_empty());
}

#[test]
fn bucket_keeps_at_most_max_events_but_true_count() {
    let text = "[engine]\nmax_events_per_message = 2\n[[alert]]\nid = \"a\"\nurl = \"http://127.0.0.1:1/\"\n[[alert.trigger]]\nevent = \"prompt:created\"\n";
    let cfg = Config::from_toml(Path::new("t.toml"), text, false).unwrap();
    let mut s = AlertState::new(cfg.alerts[0].clone(), 0);
    for i in 1..=5 {
        let (q, e) = prompt(i, 0, "u");
        s.apply(q, &e);
    }
    let n = s.tick(600_000, &mut ids());
    assert_eq!(n[0].event_count, 5);
    assert_eq!(n[0].items.len(), 2);
}

#[test]
fn a_silent_recovery_is_checkpointed_so_a_restart_keeps_it() {
    let mut s = AlertState::new(spec(ERRORS), 0);
    for i in 1..=3 {
        let (q, e) = trace(i, 1_000, "p1", true);
        s.apply(q, &e);
    }
    assert_eq!(s.tick(2_000, &mut ids()).len(), 1);
    let mut stored = s
        .take_checkpoint_if_dirty()
        .expect("firing is checkpointed");
    // The window empties: the trigger recovers without a resolve (send_resolved is false).
    assert!(s.tick(400_000, &mut ids()).is_empty());
    if let Some(cp) = s.take_checkpoint_if_dirty() {
        stored = cp;
    }
    let mut restored = AlertState::restore(spec(ERRORS), stored, &[]);
    for i in 4..=6 {
        let (q, e) = trace(i, 401_000, "p1", true);
        s.apply(q, &e);
        restored.apply(q, &e);
    }
    let straight = s.tick(402_000, &mut ids());
    assert_eq!(straight.len(), 1, "a new episode notifies");
    assert_eq!(straight[0].episode_start_ms, 402_000);
    assert_eq!(restored.tick(402_000, &mut ids()), straight);
}

#[test]
fn a_clock_stepped_back_neither_drops_events_nor_stalls_debounce_or_repeats() {
    const HOUR: i64 = 3_600_000;
    let t0 = 100 * HOUR;
    let mut a = AlertState::new(
        spec(&format!(
            "repeat_interval = \"10m\"\n{}[[alert.trigger]]\nevent = \"prompt:created\"\n",
            ERRORS.replace("5m", "1h")
        )),
        0,
    );
    let mut id = ids();
    for (seq, e) in [
        trace(1, t0, "p1", true),
        trace(2, t0, "p1", true),
        trace(3, t0, "p1", true),
    ] {
        a.apply(seq, &e);
    }
    assert_eq!(a.tick(t0 + 1_000, &mut id).len(), 1, "fires");
    // The clock goes back two hours (a restart on a reset clock).
    let back = t0 - 2 * HOUR;
    let (seq, e) = trace(4, back, "p1", true);
    assert!(
        a.apply(seq, &e).counted,
        "an event at the new now is not late"
    );
    let (seq, e) = prompt(5, back, "u");
    a.apply(seq, &e);
    let out = a.tick(back + 61_000, &mut id);
    assert!(
        out.iter().any(|n| n.event_type == EventType::PromptCreated),
        "the debounce flushes 60 s after the new now, not two hours later: {out:?}"
    );
    let firing = a.view()[0].clone();
    assert!(
        firing.firing,
        "still firing: what was counted stays counted"
    );
    assert_eq!(firing.value, Some(4.0));
    // The repeat interval runs from the new now, not from a time two hours ahead.
    let out = a.tick(back + 61_000 + 10 * 60_000, &mut id);
    assert!(
        out.iter().any(|n| n.event_type == EventType::TraceErrors),
        "repeat after 10 minutes: {out:?}"
    );
}

// Silences (DESIGN §12) at the level of a whole alert.

use crate::silence::Silence;

fn silence(alert: &str, types: &[EventType], starts: i64, ends: i64) -> SilenceSet {
    SilenceSet::new(vec![Silence {
        id: "0197a000-0000-7000-8000-000000000001".into(),
        alert: alert.into(),
        event_types: types.to_vec(),
        starts_ms: starts,
        ends_ms: ends,
        comment: String::new(),
        created_by: String::new(),
        created_ms: starts,
    }])
}

fn firing_errors() -> AlertState {
    let mut s = AlertState::new(spec(ERRORS), 0);
    for i in 1..=3 {
        let (q, e) = trace(i, 1_000, "p1", true);
        s.apply(q, &e);
    }
    s
}

#[test]
fn a_silenced_firing_is_suppressed_with_the_silence_id_and_sent_when_it_ends() {
    let mut s = firing_errors();
    let quiet = silence("a", &[], 0, 60_000);
    let d = s.tick_silenced(2_000, &mut ids(), &quiet);
    assert!(d.send.is_empty());
    assert_eq!(d.suppressed.len(), 1);
    assert_eq!(
        d.suppressed[0].silence_id,
        "0197a000-0000-7000-8000-000000000001"
    );
    assert_eq!(
        d.suppressed[0].notification.state,
        NotificationState::Firing
    );
    assert_eq!(s.last_notified_ms(), None, "nothing was sent");
    assert_eq!(
        s.tick_silenced(30_000, &mut ids(), &quiet),
        Decided::default()
    );
    // The first tick at or after the end: the firing goes out, same episode.
    let d = s.tick_silenced(60_000, &mut ids(), &quiet);
    assert_eq!(d.send.len(), 1);
    assert_eq!(d.send[0].episode_start_ms, 2_000);
    assert!(d.suppressed.is_empty());
    assert!(s.tick_silenced(65_000, &mut ids(), &quiet).send.is_empty());
}

#[test]
fn silences_of_other_alerts_or_other_event_types_do_not_mute() {
    for quiet in [
        silence("b", &[], 0, 60_000),
        silence("a", &[EventType::TraceCost], 0, 60_000),
        silence("*", &[EventType::PromptCreated], 0, 60_000),
    ] {
        let d = firing_errors().tick_silenced(2_000, &mut ids(), &quiet);
        assert_eq!(d.send.len(), 1);
        assert!(d.suppressed.is_empty());
    }
    for quiet in [
        silence("*", &[], 0, 60_000),
        silence("*", &[EventType::TraceErrors], 0, 60_000),
    ] {
        let d = firing_errors().tick_silenced(2_000, &mut ids(), &quiet);
        assert!(d.send.is_empty());
        assert_eq!(d.suppressed.len(), 1);
    }
}

#[test]
fn the_resolve_of_a_sent_firing_is_sent_through_a_silence() {
    let mut s = AlertState::new(spec(&format!("send_resolved = true\n{ERRORS}")), 0);
    for i in 1..=3 {
        let (q, e) = trace(i, 1_000, "p1", true);
        s.apply(q, &e);
    }
    assert_eq!(s.tick(2_000, &mut ids()).len(), 1);
    let quiet = silence("a", &[], 3_000, 1_000_000);
    let d = s.tick_silenced(400_000, &mut ids(), &quiet);
    assert_eq!(d.send.len(), 1);
    assert_eq!(d.send[0].state, NotificationState::Resolved);
    assert_eq!(d.send[0].episode_start_ms, 2_000);
}

#[test]
fn a_bucket_due_during_a_silence_is_dropped_as_suppressed() {
    let s_spec = spec("debounce = \"60s\"\n[[alert.trigger]]\nevent = \"prompt:created\"\n");
    let mut s = AlertState::new(s_spec, 0);
    let (q, e) = prompt(1, 1_000, "ann");
    s.apply(q, &e);
    let quiet = silence("a", &[], 0, 100_000);
    let d = s.tick_silenced(61_000, &mut ids(), &quiet);
    assert!(d.send.is_empty());
    assert_eq!(d.suppressed[0].notification.event_count, 1);
    // Not held back: nothing comes out after the silence.
    assert_eq!(
        s.tick_silenced(200_000, &mut ids(), &quiet),
        Decided::default()
    );
    // A bucket opened during the silence but due after it is sent.
    let (q, e) = prompt(2, 90_000, "bob");
    s.apply(q, &e);
    let d = s.tick_silenced(150_000, &mut ids(), &quiet);
    assert_eq!(d.send.len(), 1);
    assert_eq!(d.send[0].user_names, vec!["bob"]);
}

#[test]
fn an_owed_firing_survives_a_checkpoint_and_restore() {
    let mut s = firing_errors();
    let quiet = silence("a", &[], 0, 60_000);
    assert_eq!(
        s.tick_silenced(2_000, &mut ids(), &quiet).suppressed.len(),
        1
    );
    let bytes = codec::encode(&s.take_checkpoint_if_dirty().unwrap());
    let cp = AlertState::decode_checkpoint("a", &bytes).unwrap();
    let mut restored = AlertState::restore(spec(ERRORS), cp, &[]);
    let d = restored.tick_silenced(60_000, &mut ids(), &quiet);
    assert_eq!(
        d.send.len(),
        1,
        "the owed firing is remembered across a restart"
    );
    assert_eq!(d.send[0].episode_start_ms, 2_000);
}

/// The checkpoint layout of the first release, before silences.
#[derive(Serialize)]
struct CheckpointV1Layout {
    applied_seq: u64,
    triggers: Vec<(String, ThresholdState)>,
    buckets: Vec<(EventType, InlineBucket)>,
    last_notified_ms: Option<i64>,
}

#[test]
fn a_checkpoint_from_before_silences_decodes_with_its_episode_notified() {
    let mut s = AlertState::new(spec(&format!("send_resolved = true\n{ERRORS}")), 0);
    for i in 1..=3 {
        let (q, e) = trace(i, 1_000, "p1", true);
        s.apply(q, &e);
    }
    assert_eq!(s.tick(2_000, &mut ids()).len(), 1);
    let cp = s.checkpoint();
    let old = codec::encode(&CheckpointV1Layout {
        applied_seq: cp.applied_seq,
        triggers: cp.triggers.clone(),
        buckets: Vec::new(),
        last_notified_ms: cp.last_notified_ms,
    });
    assert_ne!(old, codec::encode(&cp), "the layouts differ");
    let decoded = AlertState::decode_checkpoint("a", &old).unwrap();
    assert_eq!(
        codec::encode(&decoded),
        codec::encode(&cp),
        "same state, marks as sent"
    );
    // Its episode counts as notified: the resolve passes a silence.
    let mut restored = AlertState::restore(
        spec(&format!("send_resolved = true\n{ERRORS}")),
        decoded,
        &[],
    );
    let quiet = silence("a", &[], 0, 1_000_000);
    let d = restored.tick_silenced(400_000, &mut ids(), &quiet);
    assert_eq!(d.send.len(), 1);
    assert_eq!(d.send[0].state, NotificationState::Resolved);
}

#[test]
fn a_checkpoint_with_marks_that_do_not_fit_its_triggers_is_refused() {
    #[derive(Serialize)]
    struct Bad {
        applied_seq: u64,
        triggers: Vec<(String, ThresholdState)>,
        buckets: Vec<(EventType, InlineBucket)>,
        last_notified_ms: Option<i64>,
        episode_marks: Vec<SilenceMarks>,
    }
    let cp = firing_errors().checkpoint();
    let bytes = codec::encode(&Bad {
        applied_seq: cp.applied_seq,
        triggers: cp.triggers,
        buckets: Vec::new(),
        last_notified_ms: cp.last_notified_ms,
        episode_marks: vec![SilenceMarks::default(); 3],
    });
    let err = AlertState::decode_checkpoint("a", &bytes).unwrap_err();
    assert!(err.contains("alert \"a\""), "{err}");
}

/// Alerts that read shared batches as points must end exactly where reading the events ends:
/// same applied results, same checkpoint, same notifications — including late events, replays of
/// applied sequences, clock steps back and events without cost or duration.
#[test]
fn points_apply_exactly_like_events() {
    let triggers = "[[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = 3\nwindow = \"1m\"\n\
        [[alert.trigger]]\nevent = \"trace:latency\"\nthreshold = 1.5\nwindow = \"5m\"\n\
        [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 4\nwindow = \"30s\"\n";
    let s = spec(triggers);
    let mut by_event = AlertState::new(s.clone(), 0);
    let mut by_point = AlertState::new(s, 0);
    assert!(by_point.reads_points());
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut ids_a, mut ids_b) = (ids(), ids());
    let mut now = 1_780_000_000_000i64;
    let mut seq = 0u64;
    for round in 0..400 {
        let r = next();
        now += (r % 3_000) as i64;
        if round % 97 == 96 {
            now -= 120_000; // a clock stepped back
        }
        // Mostly new sequences; now and then an applied one comes again (replay).
        let s = if r % 11 == 0 && seq > 3 {
            seq - 2
        } else {
            seq += 1;
            seq
        };
        let (_, mut e) = trace(s, now - (r >> 20) as i64 % 400_000, "p1", r % 3 == 0);
        e.received_ms = now;
        if let EventBody::Trace {
            cost, duration_s, ..
        } = &mut e.body
        {
            *cost = (r % 5 != 0).then(|| (r >> 8) as f64 % 2.0);
            *duration_s = (r % 7 != 0).then(|| (r >> 16) as f64 % 3.0);
        }
        let a = by_event.apply(s, &e);
        let b = by_point.apply_point(&crate::event::Point::of(s, &e).unwrap());
        assert_eq!((a.counted, a.late), (b.counted, b.late), "round {round}");
        if round % 10 == 0 {
            let na = by_event.tick(now, &mut ids_a);
            let nb = by_point.tick(now, &mut ids_b);
            assert_eq!(
                serde_json::to_string(&na).unwrap(),
                serde_json::to_string(&nb).unwrap(),
                "round {round}"
            );
        }
    }
    assert_eq!(
        codec::encode(&by_event.checkpoint()),
        codec::encode(&by_point.checkpoint())
    );
}

#[test]
fn only_trace_thresholds_over_one_scope_read_points() {
    assert_eq!(
        AlertState::new(spec(ERRORS), 0).points_scope(),
        Some(Some("p1"))
    );
    let every = "[[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = 3\nwindow = \"1m\"\n";
    assert_eq!(AlertState::new(spec(every), 0).points_scope(), Some(None));
    let two = "[[alert.trigger]]\nevent = \"trace:errors\"\nprojects = [\"p1\", \"p2\"]\nthreshold = 2\nwindow = \"5m\"\n";
    assert!(
        !AlertState::new(spec(two), 0).reads_points(),
        "two projects"
    );
    let mixed = format!("{ERRORS}{every}");
    assert!(
        !AlertState::new(spec(&mixed), 0).reads_points(),
        "one project and every project"
    );
    let per_event = "[[alert.trigger]]\nevent = \"trace:guardrails_triggered\"\n";
    assert!(!AlertState::new(spec(per_event), 0).reads_points());
    let score = "[[alert.trigger]]\nevent = \"trace:feedback_score\"\nscore = \"q\"\nthreshold = 0.5\noperator = \"<\"\nwindow = \"1m\"\n";
    assert!(!AlertState::new(spec(score), 0).reads_points());
}

// Shared batches applied through summaries (alert::summary) must end exactly where applying the
// events one by one ends.

/// One generated point: `(received step ms, how far the timestamp is behind received (negative:
/// ahead), cost, duration, error)`; a received step below zero is a clock stepped back (by less
/// than a slot, it moves no window but still pulls back a firing episode's last notification).
type GenPoint = (i64, i64, Option<u16>, Option<u16>, bool);

/// One generated batch: how far its sequences start behind the highest one so far (0: new
/// ones; more: a replay that overlaps applied ones), whether a sequence repeats inside it, and
/// its points.
type GenBatch = (u64, bool, Vec<GenPoint>);

fn gen_point() -> impl Strategy<Value = GenPoint> {
    (
        prop_oneof![
            16 => 0i64..400,
            2 => 400i64..20_000,
            1 => -3_000i64..-1,
            1 => -150_000i64..-1,
        ],
        prop_oneof![6 => 0i64..2_000, 2 => 2_000i64..400_000, 1 => -10_000i64..0],
        proptest::option::weighted(0.8, 0u16..1_000),
        proptest::option::weighted(0.8, 0u16..1_000),
        proptest::bool::weighted(0.2),
    )
}

fn gen_batch() -> impl Strategy<Value = GenBatch> {
    (
        prop_oneof![6 => Just(0u64), 1 => 1u64..30],
        proptest::bool::weighted(0.05),
        proptest::collection::vec(gen_point(), 1..40),
    )
}

/// Alerts whose triggers all read points: several windows at once (their late points must not
/// be counted twice), the bench's single 5-minute cost window, a 1-second window (17 ms slots:
/// many slots, rounding, slots reused inside one batch), and one project (every generated event
/// is in it, as in the router's list of that project).
const POINT_ALERTS: [&str; 4] = [
    "[[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = 3\nwindow = \"1m\"\n\
     [[alert.trigger]]\nevent = \"trace:latency\"\nthreshold = 1.5\nwindow = \"5m\"\n\
     [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 4\nwindow = \"30s\"\n",
    "[[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = 20\nwindow = \"5m\"\n",
    "[[alert.trigger]]\nevent = \"trace:latency\"\nthreshold = 0.5\nwindow = \"1s\"\n",
    "[[alert.trigger]]\nevent = \"trace:errors\"\nprojects = [\"p1\"]\nthreshold = 2\nwindow = \"2m\"\n",
];

/// Values whose sums round differently in a different order.
fn odd(v: u16) -> f64 {
    f64::from(v) / 7.0
}

/// Applies the batches to pairs of alerts — one reading the events one by one, its twin the
/// shared [`PointBatch`] — that join at different batches (so the twins of different pairs
/// hold different sums when they share a summary) and one pair restored from a checkpoint
/// midway; after every batch both of a pair have the same applied result, the same checkpoint
/// bytes and the same notifications. Returns how many batches went through summaries.
fn summaries_against_events(alert: &str, batches: &[GenBatch]) -> usize {
    let s = spec(alert);
    let joins = [0, batches.len() / 3, batches.len() / 2];
    let mut pairs: Vec<Option<(AlertState, AlertState)>> = vec![None; joins.len()];
    let mut id_makers: Vec<_> = (0..joins.len()).map(|_| (ids(), ids())).collect();
    let mut now = 1_780_000_000_000i64;
    let mut top = 0u64;
    let mut summarized = 0;
    for (b, (back, repeat, points)) in batches.iter().enumerate() {
        for (pair, join) in pairs.iter_mut().zip(joins) {
            if b == join {
                let fresh = AlertState::new(s.clone(), top);
                *pair = Some((fresh.clone(), fresh));
            }
        }
        if b == batches.len() * 2 / 3 {
            if let Some((by_event, _)) = &pairs[0] {
                let cp = reload(by_event);
                let restored = AlertState::restore(s.clone(), cp, &[]);
                pairs[0] = Some((restored.clone(), restored));
            }
        }
        let mut seq = top.saturating_sub(*back);
        let mut events = Vec::new();
        for (i, &(step, behind, cost, duration, error)) in points.iter().enumerate() {
            if !(*repeat && i == 1) {
                seq += 1;
            }
            now += step;
            let (_, mut e) = trace(seq, now - behind, "p1", error);
            e.received_ms = now;
            e.body = EventBody::Trace {
                trace_id: None,
                cost: cost.map(odd),
                duration_s: duration.map(odd),
                error,
            };
            events.push((seq, e));
        }
        top = top.max(seq);
        let batch = PointBatch::new(
            events
                .iter()
                .map(|(q, e)| crate::event::Point::of(*q, e).unwrap())
                .collect(),
        );
        for (k, pair) in pairs.iter_mut().enumerate() {
            let Some((by_event, by_summary)) = pair else {
                continue;
            };
            let mut want = BatchApplied::default();
            for (q, e) in &events {
                let a = by_event.apply(*q, e);
                want.counted |= a.counted;
                want.late += u64::from(a.late);
            }
            let got = match by_summary.apply_summaries(&batch) {
                Some(done) => {
                    summarized += 1;
                    done
                }
                None => by_summary.apply_points(&batch),
            };
            assert_eq!(want, got, "batch {b}, pair {k}");
            assert_eq!(
                codec::encode(&by_event.checkpoint()),
                codec::encode(&by_summary.checkpoint()),
                "batch {b}, pair {k}"
            );
            let (ids_a, ids_b) = &mut id_makers[k];
            let na = by_event.tick(now, ids_a);
            let nb = by_summary.tick(now, ids_b);
            assert_eq!(
                serde_json::to_string(&na).unwrap(),
                serde_json::to_string(&nb).unwrap(),
                "batch {b}, pair {k}"
            );
        }
    }
    summarized
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Summaries give exactly what the events give, whatever the batches hold: late points,
    /// timestamps ahead of receipt, replays overlapping applied sequences, repeated sequences,
    /// clocks stepped back between and inside batches, points without cost or duration.
    #[test]
    fn summaries_apply_exactly_like_events(
        alert in 0usize..POINT_ALERTS.len(),
        batches in proptest::collection::vec(gen_batch(), 1..24),
    ) {
        summaries_against_events(POINT_ALERTS[alert], &batches);
    }
}

/// Ordinary live traffic (new sequences, receipt times moving forward, a few late points) goes
/// through summaries, not point by point: the property above is not met by falling back.
#[test]
fn live_batches_are_applied_through_summaries() {
    let batches: Vec<GenBatch> = (0..20u16)
        .map(|b| {
            let points = (0..30u16)
                .map(|i| {
                    let behind = if i % 13 == 0 {
                        350_000
                    } else {
                        i64::from(i) * 37
                    };
                    (120, behind, Some(b * 31 + i), Some(i * 7), i % 5 == 0)
                })
                .collect();
            (0, false, points)
        })
        .collect();
    for alert in POINT_ALERTS {
        // Three pairs, the first restored midway: all but the restore's batch and the first
        // batch of each (an empty window takes a summary too) go through summaries.
        let summarized = summaries_against_events(alert, &batches);
        assert!(
            summarized >= 20 + 14 + 10 - 1,
            "{summarized} batches summarized"
        );
    }
}

// Bucket items stored once (`bucket_items`): checkpoints reference them, restores list them again.

const PROMPTS: &str = "debounce = \"60s\"\n[[alert.trigger]]\nevent = \"prompt:created\"\n";

/// An alert under an `[engine]` section (where `max_events_per_message` is set).
fn engine_spec(engine: &str, toml_alert: &str) -> Arc<AlertSpec> {
    let text = format!(
        "[engine]\n{engine}[[alert]]\nid = \"a\"\nurl = \"http://127.0.0.1:1/\"\n{toml_alert}"
    );
    let cfg = Config::from_toml(Path::new("test.toml"), &text, false).expect("valid test config");
    cfg.alerts[0].clone()
}

/// The stored items as the tick commits would have kept them: every listed event, by sequence.
fn stored(events: &[(u64, Event)]) -> Vec<(u64, Event)> {
    events.to_vec()
}

/// A round trip through the stored bytes.
fn reload(s: &AlertState) -> Checkpoint {
    AlertState::decode_checkpoint("a", &codec::encode(&s.checkpoint())).unwrap()
}

#[test]
fn a_checkpoint_names_where_stored_items_start_instead_of_carrying_them() {
    let mut s = AlertState::new(spec(PROMPTS), 0);
    let events: Vec<_> = (1..=50)
        .map(|i| prompt(i, 1_000 + i as i64, "ann"))
        .collect();
    for (q, e) in &events {
        assert!(s.apply(*q, e).listed);
    }
    assert_eq!(s.item_floor(), Some(1));
    let bytes = codec::encode(&s.checkpoint());
    assert!(
        bytes.len() < 64,
        "a bucket of 50 items costs {} bytes in the checkpoint",
        bytes.len()
    );
    let cp = AlertState::decode_checkpoint("a", &bytes).unwrap();
    assert_eq!(cp.buckets[0].1.stored_from, Some(1));
    assert_eq!(cp.buckets[0].1.count, 50);
    assert!(cp.buckets[0].1.inline.is_empty());
}

#[test]
fn a_restore_lists_the_stored_items_again_like_an_uninterrupted_run() {
    // Two per-event types, a project scope, and events the alert does not take in between.
    let text = "debounce = \"60s\"\n[[alert.trigger]]\nevent = \"prompt:created\"\n[[alert.trigger]]\nevent = \"trace:guardrails_triggered\"\nprojects = [\"p1\"]\n";
    let guard = |seq: u64, project: &str| {
        (
            seq,
            Event {
                id: format!("g{seq}"),
                workspace: "default".into(),
                project: Some(project.into()),
                project_id: None,
                timestamp_ms: 1_000,
                received_ms: 1_000 + seq as i64,
                user: "bob".into(),
                body: EventBody::Guardrail {
                    trace_id: None,
                    failed: true,
                    object: format!("{{\"g\":{seq}}}"),
                },
            },
        )
    };
    let events: Vec<(u64, Event)> = (1..=12)
        .map(|i| match (i, i % 3) {
            // A passed guardrail and another workspace's prompt: neither is taken.
            (2, _) => {
                let (q, mut e) = guard(i, "p1");
                e.body = EventBody::Guardrail {
                    trace_id: None,
                    failed: false,
                    object: "{}".into(),
                };
                (q, e)
            }
            (5, _) => {
                let (q, mut e) = prompt(i, 1_000 + i as i64, "ann");
                e.workspace = "other".into();
                (q, e)
            }
            (_, 0) => prompt(i, 1_000 + i as i64, "ann"),
            (_, 1) => guard(i, "p1"),
            _ => guard(i, "p2"),
        })
        .collect();
    let spec = || engine_spec("max_events_per_message = 3\n", text);
    let mut straight = AlertState::new(spec(), 0);
    let mut first = AlertState::new(spec(), 0);
    let mut listed = Vec::new();
    for (q, e) in &events {
        straight.apply(*q, e);
        if *q <= 8 && first.apply(*q, e).listed {
            listed.push((*q, e.clone()));
        }
    }
    // Only what the alert listed is stored; the others' events may be there too (another
    // alert listed them): both must give the same state.
    for store in [stored(&listed), stored(&events)] {
        let mut restored = AlertState::restore(spec(), reload(&first), &store);
        for (q, e) in &events {
            restored.apply(*q, e);
        }
        let a = straight.clone().tick(100_000, &mut ids());
        let b = restored.tick(100_000, &mut ids());
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].event_count, 4, "past the cap of 3, still counted");
        assert_eq!(a, b);
    }
}

#[test]
fn a_missing_stored_item_is_left_out_but_still_counted() {
    let mut s = AlertState::new(spec(PROMPTS), 0);
    let events: Vec<_> = (1..=3).map(|i| prompt(i, 1_000, "ann")).collect();
    for (q, e) in &events {
        s.apply(*q, e);
    }
    let mut restored = AlertState::restore(spec(PROMPTS), reload(&s), &events[1..]);
    let n = restored.tick(100_000, &mut ids());
    assert_eq!(n[0].event_count, 3);
    assert_eq!(n[0].event_ids, vec!["p2", "p3"]);
}

#[test]
fn a_bucket_from_before_stored_items_keeps_its_items_and_takes_new_ones_as_stored() {
    let mut s = AlertState::new(spec(PROMPTS), 0);
    for i in 1..=2 {
        let (q, e) = prompt(i, 1_000, "ann");
        s.apply(q, &e);
    }
    // Schemas 2–3: the silences layout with every item inside the bucket.
    #[derive(Serialize)]
    struct V2 {
        applied_seq: u64,
        triggers: Vec<(String, ThresholdState)>,
        buckets: Vec<(EventType, InlineBucket)>,
        last_notified_ms: Option<i64>,
        episode_marks: Vec<SilenceMarks>,
    }
    let b = &s.buckets[&EventType::PromptCreated];
    let old = codec::encode(&V2 {
        applied_seq: 2,
        triggers: Vec::new(),
        buckets: vec![(
            EventType::PromptCreated,
            InlineBucket {
                opened_ms: b.opened_ms,
                count: b.count,
                items: b.items.clone(),
            },
        )],
        last_notified_ms: None,
        episode_marks: Vec::new(),
    });
    assert!(
        codec::decode::<Checkpoint>(&old).is_err(),
        "an old checkpoint is never read as a new one"
    );
    let cp = AlertState::decode_checkpoint("a", &old).unwrap();
    assert_eq!(cp.buckets[0].1.inline.len(), 2);
    assert_eq!(cp.buckets[0].1.stored_from, None);
    let mut restored = AlertState::restore(spec(PROMPTS), cp, &[]);
    let (q, e) = prompt(3, 1_000, "bob");
    assert!(restored.apply(q, &e).listed);
    assert_eq!(restored.item_floor(), Some(3));
    // The next checkpoint keeps the two old items inline and stores the new one.
    let again = reload(&restored);
    assert_eq!(again.buckets[0].1.inline.len(), 2);
    assert_eq!(again.buckets[0].1.stored_from, Some(3));
    let n = AlertState::restore(spec(PROMPTS), again, &[(q, e)]).tick(100_000, &mut ids());
    assert_eq!(n[0].event_ids, vec!["p1", "p2", "p3"]);
    assert_eq!(n[0].user_names, vec!["ann", "bob"]);
}

#[test]
fn a_new_checkpoint_is_never_read_as_an_old_layout() {
    let mut s = AlertState::new(spec(PROMPTS), 0);
    let (q, e) = prompt(1, 1_000, "ann");
    s.apply(q, &e);
    let bytes = codec::encode(&s.checkpoint());
    assert_eq!(bytes[1], SPARSE_RINGS_LAYOUT);
    assert!(codec::decode::<CheckpointV3>(&bytes)
        .map_err(|e| e.to_string())
        .and_then(Checkpoint::try_from)
        .is_err());
    assert!(codec::decode::<CheckpointV2>(&bytes).is_err());
    assert!(codec::decode::<CheckpointV1>(&bytes).is_err());
}

#[test]
fn a_dense_window_of_schema_9_reads_back_and_is_stored_sparse() {
    let th = spec("[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 1\nwindow = \"1h\"\n");
    let mut s = AlertState::new(th.clone(), 0);
    for seq in 1..=3 {
        let (q, e) = trace(seq, 60_000 * seq as i64, "p", true);
        s.apply(q, &e);
    }
    assert_eq!(s.tick(200_000, &mut ids()).len(), 1, "3 errors > 1: firing");
    let cp = s.checkpoint();
    // Schemas 6–9: the stored-items layout, each trigger state (and so its window) dense.
    #[derive(Serialize)]
    struct V3<'a> {
        layout: u8,
        applied_seq: u64,
        triggers: &'a [(String, ThresholdState)],
        buckets: &'a [(EventType, StoredBucket)],
        last_notified_ms: Option<i64>,
        episode_marks: Vec<SilenceMarks>,
    }
    let old = codec::encode(&V3 {
        layout: STORED_ITEMS_LAYOUT,
        applied_seq: cp.applied_seq,
        triggers: &cp.triggers,
        buckets: &cp.buckets,
        last_notified_ms: cp.last_notified_ms,
        episode_marks: vec![cp.triggers[0].1.episode.unwrap().marks],
    });
    assert!(
        codec::decode::<Checkpoint>(&old).is_err(),
        "never read as the new layout"
    );
    // What is checkpointed is the same (`last_value` is not: compare what is stored).
    let back = AlertState::decode_checkpoint("a", &old).unwrap();
    let new = codec::encode(&back);
    assert_eq!(new, codec::encode(&cp));
    assert_eq!(
        codec::encode(&AlertState::decode_checkpoint("a", &new).unwrap()),
        new
    );
    assert!(
        new.len() * 5 < old.len(),
        "{} bytes against {}",
        new.len(),
        old.len()
    );
    // The restored window still counts the three errors: the episode goes on, nothing resolves.
    let mut restored = AlertState::restore(th, back, &[]);
    assert!(restored.tick(205_000, &mut ids()).is_empty());
    assert_eq!(codec::encode(&restored.checkpoint()), new);
}

#[test]
fn a_reconfigured_bucket_keeps_its_items_inline() {
    let mut s = AlertState::new(spec(PROMPTS), 0);
    let events: Vec<_> = (1..=2).map(|i| prompt(i, 1_000, "ann")).collect();
    for (q, e) in &events {
        s.apply(*q, e);
    }
    s.reconfigure(engine_spec("max_events_per_message = 1\n", PROMPTS));
    assert_eq!(s.item_floor(), None, "nothing stored is needed any more");
    let cp = reload(&s);
    assert_eq!(cp.buckets[0].1.inline.len(), 2);
    let n = AlertState::restore(s.spec().clone(), cp, &[]).tick(100_000, &mut ids());
    assert_eq!(n[0].event_ids, vec!["p1", "p2"]);
}

#[test]
fn a_stopped_alerts_checkpoint_takes_its_stored_items_inside() {
    let mut s = AlertState::new(spec(PROMPTS), 0);
    let events: Vec<_> = (1..=2).map(|i| prompt(i, 1_000, "ann")).collect();
    for (q, e) in &events {
        s.apply(*q, e);
    }
    let bytes = codec::encode(&s.checkpoint());
    let inlined = AlertState::inline_checkpoint(spec(PROMPTS), &bytes, &events).unwrap();
    let cp = AlertState::decode_checkpoint("a", &inlined).unwrap();
    assert_eq!(cp.buckets[0].1.stored_from, None);
    let n = AlertState::restore(spec(PROMPTS), cp, &[]).tick(100_000, &mut ids());
    assert_eq!(n[0].event_ids, vec!["p1", "p2"]);
    assert!(AlertState::inline_checkpoint(spec(PROMPTS), b"junk", &events).is_none());
}

#[test]
fn a_flushed_bucket_needs_no_stored_items() {
    let mut s = AlertState::new(spec(PROMPTS), 0);
    let (q, e) = prompt(1, 1_000, "ann");
    s.apply(q, &e);
    assert_eq!(s.tick(61_000, &mut ids()).len(), 1);
    assert_eq!(s.item_floor(), None);
    assert!(reload(&s).buckets.is_empty());
}
