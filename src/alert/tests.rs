use super::*;
use crate::config::Config;
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
    let mut restored = AlertState::restore(spec(ERRORS), cp);
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
    let mut restored = AlertState::restore(spec(ERRORS), stored);
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
