//! Golden files: the exact Slack and PagerDuty bodies for each of the ten event types.
//!
//! Every body is built from a fixed notification (fixed ids and times) and compared with
//! `tests/golden/{slack,pagerduty}/<event type>.json` (pretty JSON, `:` in the type written as
//! `_`). A missing file fails the test, so a new event type cannot ship without its messages.
//!
//! After an intended format change, regenerate with
//! `UPDATE_GOLDEN=1 cargo nextest run --test destinations_golden` (that run still fails, naming
//! the rewritten files; the variable is ignored on CI), read the diff of `tests/golden/`, and run
//! again without it before committing: the files are the specification a reviewer checks.

use alertd::alert::AlertState;
use alertd::config::{AlertSpec, Config, Operator};
use alertd::destination::{pagerduty, slack, Context};
use alertd::event::{Event, EventBody, EventType};
use alertd::notification::{MetricSnapshot, Notification, NotificationState};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// 2026-11-20T10:00:00.123Z.
const NOW_MS: i64 = 1_795_168_800_123;

#[derive(Clone, Copy, Debug)]
enum Dest {
    Slack,
    PagerDuty,
}

impl Dest {
    fn dir(self) -> &'static str {
        match self {
            Dest::Slack => "slack",
            Dest::PagerDuty => "pagerduty",
        }
    }
}

fn golden_path(dest: Dest, t: EventType) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(dest.dir())
        .join(format!("{}.json", t.as_str().replace(':', "_")))
}

fn spec(destination: &str, extra: &str) -> AlertSpec {
    let text = format!(
        "[[alert]]\nid = \"prod-watch\"\nname = \"Production watch\"\ndestination = \"{destination}\"\nurl = \"https://receiver.example.com/hook\"\nrouting_key = \"R0UTINGKEY0123456789abcdef012345\"\nbase_url = \"https://opik.example.com\"\nworkspace = \"acme\"\n{extra}\n[[alert.trigger]]\nevent = \"prompt:created\"\n"
    );
    let cfg = Config::from_toml(Path::new("golden.toml"), &text, false).expect("valid config");
    (*cfg.alerts[0]).clone()
}

fn ctx() -> Context {
    Context {
        max_retries: 8,
        source: "alertd@golden-host".into(),
    }
}

fn uuid(k: u32) -> String {
    format!("0193a5b0-0000-7000-8000-{k:012}")
}

fn base(t: EventType) -> Notification {
    Notification {
        id: uuid(1),
        alert_id: "prod-watch".into(),
        alert_name: "Production watch".into(),
        workspace: "acme".into(),
        event_type: t,
        state: NotificationState::Firing,
        created_ms: NOW_MS,
        episode_start_ms: NOW_MS,
        event_ids: vec![],
        user_names: vec![],
        event_count: 0,
        metric: None,
        items: vec![],
    }
}

fn threshold(
    t: EventType,
    value: f64,
    threshold: f64,
    operator: Operator,
    window_seconds: u64,
    score: Option<&str>,
    projects: &[&str],
) -> Notification {
    let mut n = base(t);
    // A repeat of an episode that started an hour ago: the dedup key keeps the episode start.
    n.episode_start_ms = NOW_MS - 3_600_000;
    n.event_ids = vec![uuid(100)];
    n.user_names = vec!["system".into()];
    n.event_count = 1;
    n.metric = Some(MetricSnapshot {
        value: Some(value),
        threshold,
        operator,
        window_seconds,
        score: score.map(String::from),
        projects: projects.iter().map(|p| p.to_string()).collect(),
    });
    n
}

fn per_event(t: EventType, users: &[&str], items: Vec<Value>) -> Notification {
    let mut n = base(t);
    // The bucket opened one debounce (60 s) before it was sent.
    n.episode_start_ms = NOW_MS - 60_000;
    n.event_ids = (0..items.len() as u32).map(|i| uuid(200 + i)).collect();
    n.user_names = users.iter().map(|u| u.to_string()).collect();
    n.event_count = items.len() as u64;
    n.items = items.iter().map(Value::to_string).collect();
    n
}

/// The fixed notification of each type: realistic values, several items where grouping matters.
fn notification(t: EventType) -> Notification {
    let project_id = "0193a5b0-0000-7000-8000-00000000abcd";
    match t {
        EventType::TraceErrors => {
            threshold(t, 12.0, 10.0, Operator::Above, 300, None, &["chatbot-prod"])
        }
        EventType::TraceCost => threshold(t, 150.75, 100.0, Operator::Above, 3600, None, &[]),
        EventType::TraceLatency => threshold(
            t,
            4.2,
            3.0,
            Operator::Above,
            900,
            None,
            &["chatbot-prod", project_id],
        ),
        EventType::TraceFeedbackScore => threshold(
            t,
            0.35,
            0.5,
            Operator::Below,
            900,
            Some("hallucination"),
            &["chatbot-prod"],
        ),
        EventType::ThreadFeedbackScore => threshold(
            t,
            2.5,
            3.0,
            Operator::Below,
            86_400,
            Some("user_satisfaction"),
            &[],
        ),
        EventType::GuardrailsTriggered => {
            let g = |trace: &str, name: &str, pid: Value| {
                json!({"trace_id": trace, "name": name, "result": "failed",
                       "details": {"entities": ["EMAIL"]}, "project_name": "chatbot-prod",
                       "project_id": pid})
            };
            per_event(
                t,
                &["system"],
                vec![
                    g(&uuid(301), "pii", json!(project_id)),
                    g(&uuid(301), "toxicity", json!(project_id)),
                    g(&uuid(302), "pii", Value::Null),
                ],
            )
        }
        EventType::PromptCreated => per_event(
            t,
            &["alice", "bob"],
            vec![
                json!({"id": uuid(401), "name": "support-greeting", "description": "Greets the customer",
                       "created_at": "2026-11-20T09:59:01.000Z", "created_by": "alice"}),
                json!({"id": uuid(402), "name": "refund-policy", "description": "Answers refund questions",
                       "created_at": "2026-11-20T09:59:30.000Z", "created_by": "bob"}),
            ],
        ),
        EventType::PromptCommitted => per_event(
            t,
            &["alice"],
            vec![
                json!({"id": uuid(411), "prompt_id": uuid(401), "commit": "a1b2c3d4",
                       "template": "Hello {{name}}, how can I help?", "created_at": "2026-11-20T09:59:45.000Z",
                       "created_by": "alice"}),
            ],
        ),
        EventType::PromptDeleted => per_event(
            t,
            &["bob"],
            vec![json!([
                {"id": uuid(421), "name": "old-greeting"},
                {"id": uuid(422), "name": "draft-summary"}
            ])],
        ),
        EventType::ExperimentFinished => per_event(
            t,
            &["system"],
            vec![json!([
                {"id": uuid(501), "name": "gpt-4o-baseline", "dataset_id": uuid(510)},
                {"id": uuid(502), "name": "gpt-4o-mini-candidate", "dataset_id": uuid(510)}
            ])],
        ),
    }
}

fn render(dest: Dest, t: EventType) -> String {
    let n = notification(t);
    let raw = match dest {
        Dest::Slack => slack::body(&n, &spec("slack", "")),
        Dest::PagerDuty => pagerduty::body(&n, &spec("pagerduty", ""), &ctx()),
    };
    let v: Value = serde_json::from_str(&raw).expect("the body is JSON");
    serde_json::to_string_pretty(&v).expect("a JSON value serialises") + "\n"
}

/// True when `UPDATE_GOLDEN=1` asks for the golden files to be rewritten. Never on CI (`CI` set
/// and not `false`/`0`): there the files are only compared, so the variable cannot turn a
/// failing run green.
fn update_requested() -> bool {
    let on_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    let asked = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    if asked && on_ci {
        eprintln!("UPDATE_GOLDEN=1 is ignored on CI: golden files are only compared there");
    }
    asked && !on_ci
}

/// Compares every type's body with its golden file. With `UPDATE_GOLDEN=1` (not on CI) a file
/// that differs is rewritten, and the test still fails naming it, so that an update is always
/// reviewed and then confirmed by a plain run.
fn check(dest: Dest) {
    let update = update_requested();
    let mut failures = Vec::new();
    for t in EventType::ALL {
        let path = golden_path(dest, t);
        let got = render(dest, t);
        let problem = match std::fs::read_to_string(&path) {
            Err(e) => format!("{}: missing ({e})", path.display()),
            Ok(want) if want != got => format!(
                "{}: differs\n--- golden\n{want}\n--- got\n{got}",
                path.display()
            ),
            Ok(_) => continue,
        };
        if update {
            std::fs::create_dir_all(path.parent().expect("golden files live in a directory"))
                .expect("create the golden directory");
            std::fs::write(&path, &got).expect("write a golden file");
            failures.push(format!("{}: rewritten", path.display()));
        } else {
            failures.push(problem);
        }
    }
    assert!(
        failures.is_empty(),
        "{} {} golden file(s) do not match{}; if the change is intended, run \
         UPDATE_GOLDEN=1 cargo nextest run --test destinations_golden, review the diff and run \
         again without it:\n\n{}",
        failures.len(),
        dest.dir(),
        if update { " (now rewritten)" } else { "" },
        failures.join("\n\n")
    );
}

#[test]
fn slack_bodies_match_the_golden_files() {
    check(Dest::Slack);
}

#[test]
fn pagerduty_bodies_match_the_golden_files() {
    check(Dest::PagerDuty);
}

#[test]
fn every_event_type_has_a_golden_file_for_each_destination() {
    let missing: Vec<String> = EventType::ALL
        .into_iter()
        .flat_map(|t| [golden_path(Dest::Slack, t), golden_path(Dest::PagerDuty, t)])
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "missing golden files: {missing:?}");
    let files = |d: Dest| {
        std::fs::read_dir(golden_path(d, EventType::TraceErrors).parent().unwrap())
            .expect("golden directory")
            .count()
    };
    assert_eq!(
        files(Dest::Slack),
        EventType::ALL.len(),
        "stray Slack golden files"
    );
    assert_eq!(
        files(Dest::PagerDuty),
        EventType::ALL.len(),
        "stray PagerDuty golden files"
    );
}

#[test]
fn golden_bodies_respect_the_services_limits() {
    for t in EventType::ALL {
        let s: Value = serde_json::from_str(&render(Dest::Slack, t)).unwrap();
        let blocks = s["blocks"].as_array().expect("blocks");
        assert_eq!(blocks[0]["type"], "header", "{t}");
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        for b in &blocks[1..] {
            assert_eq!(b["type"], "section", "{t}");
            assert!(
                b["text"]["text"].as_str().unwrap().chars().count() <= 3000,
                "{t}"
            );
        }
        assert!(!s["text"].as_str().unwrap().is_empty(), "{t}: plain text");
        let p: Value = serde_json::from_str(&render(Dest::PagerDuty, t)).unwrap();
        assert!(p["payload"]["summary"].as_str().unwrap().chars().count() <= 1024);
        assert_eq!(
            p["dedup_key"],
            format!("alertd/prod-watch/{t}/{}", notification(t).episode_start_ms)
        );
    }
}

fn prompt_event(seq: u64, received_ms: i64) -> Event {
    Event {
        id: format!("0193a5b0-0000-7000-8000-{seq:012}"),
        workspace: "acme".into(),
        project: None,
        project_id: None,
        timestamp_ms: received_ms,
        received_ms,
        user: "alice".into(),
        body: EventBody::Object {
            event_type: EventType::PromptCreated,
            object: json!({"id": format!("0193a5b0-0000-7000-9000-{seq:012}"),
                           "name": format!("prompt-number-{seq}")})
            .to_string(),
        },
    }
}

#[test]
fn five_hundred_prompts_in_one_bucket_are_cut_to_3000_chars_with_a_fallback() {
    let mut alert = spec("slack", "debounce = \"60s\"");
    alert.max_events_per_message = 500;
    let alert = Arc::new(alert);
    let mut state = AlertState::new(alert.clone(), 0);
    for seq in 1..=500 {
        state.apply(seq, &prompt_event(seq, NOW_MS + seq as i64));
    }
    let mut k = 0;
    let sent = state.tick(NOW_MS + 61_000, &mut || {
        k += 1;
        uuid(k)
    });
    assert_eq!(sent.len(), 1, "one bucket, one message");
    assert_eq!(sent[0].items.len(), 500);
    let v: Value = serde_json::from_str(&slack::body(&sent[0], &alert)).unwrap();
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(
        blocks[1]["text"]["text"],
        "*500* new Prompt Created events happened"
    );
    let details = blocks[2]["text"]["text"].as_str().unwrap();
    assert!(details.chars().count() <= 3000, "{}", details.len());
    let shown = details.lines().filter(|l| l.starts_with("• ")).count();
    assert!(shown > 0 && shown < 500);
    assert_eq!(blocks.len(), 4, "a fallback section follows the details");
    assert_eq!(
        blocks[3]["text"]["text"],
        format!(
            "*{}* more prompts not shown. <https://opik.example.com/acme/prompts|View all prompts>",
            500 - shown
        )
    );
}
