//! Every alert event type end to end: events posted to the real daemon's HTTP ingest, webhooks
//! caught by a loopback receiver, bodies checked against DESIGN §6 and §8. Then the firing
//! episode (repeat, resolve) and restart equivalence.

mod common;

use common::{Daemon, Receiver};
use serde_json::{json, Value};
use std::time::Duration;

/// Several engine ticks at 200 ms: long enough for anything decided to have been delivered, for
/// a debounce bucket (500 ms) to flush, and for a wrongful retry (backoff 200 ms ±50%, set by
/// `DELIVERY`) to arrive — the things an "exactly N webhooks" check rules out.
const A_FEW_TICKS: Duration = Duration::from_millis(1_000);

/// A fast retry schedule, so that a second attempt of a delivered notification would show
/// within `A_FEW_TICKS`.
const DELIVERY: &str = "[delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"300ms\"\n";

/// How long a test waits for a webhook it expects.
const PATIENCE: Duration = Duration::from_secs(10);

const PROJECT_UUID: &str = "0193a000-0000-7000-8000-0000000000aa";

/// A config with a fast tick and one alert `a` named "A" posting to `url`.
fn one_alert(url: &str, alert_keys: &str, trigger: &str) -> String {
    format!(
        "[engine]\ntick = \"200ms\"\ndebounce = \"500ms\"\n{DELIVERY}\
         [[alert]]\nid = \"a\"\nname = \"A\"\nurl = \"{url}\"\n{alert_keys}\n\
         [[alert.trigger]]\n{trigger}\n"
    )
}

/// Starts a daemon with one alert, posts `events` in one batch and returns the only webhook body.
async fn only_webhook(alert_keys: &str, trigger: &str, events: &[Value]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = Daemon::start(
        dir.path(),
        &one_alert(&rx.url("/hook"), alert_keys, trigger),
    )
    .await;
    d.send(events).await;
    let got = rx.wait_for("/hook", 1, PATIENCE).await;
    tokio::time::sleep(A_FEW_TICKS).await;
    let all = rx.requests_to("/hook");
    assert_eq!(all.len(), 1, "exactly one webhook: {all:?}");
    let body = got[0].json();
    assert_eq!(body["alert_id"], "a");
    assert_eq!(body["payload"]["alertId"], "a");
    assert_eq!(body["payload"]["aggregationType"], "consolidated");
    assert_eq!(body["payload"]["eventType"], body["event_type"]);
    body
}

/// Checks the parts every threshold body shares and returns its single metadata object.
fn threshold_metadata(body: &Value, event_type: &str, metadata_name: &str) -> Value {
    assert_eq!(body["event_type"], event_type);
    let p = &body["payload"];
    assert_eq!(p["eventCount"], 1);
    assert_eq!(p["userNames"], json!(["system"]));
    assert_eq!(p["eventIds"].as_array().unwrap().len(), 1);
    assert_eq!(
        p["message"],
        format!("Alert 'A': 1 {event_type} events aggregated")
    );
    let metadata = p["metadata"].as_array().expect("metadata array");
    assert_eq!(metadata.len(), 1);
    let m = metadata[0].clone();
    assert_eq!(m["event_type"], metadata_name);
    assert_eq!(m["metric_name"], event_type);
    assert_eq!(m["state"], "firing");
    m
}

/// Checks the parts every per-event body shares: `n` events, their ids, and their users.
fn per_event_payload(body: &Value, event_type: &str, n: usize, users: Value) -> Value {
    assert_eq!(body["event_type"], event_type);
    let p = &body["payload"];
    assert_eq!(p["eventCount"], n);
    assert_eq!(
        p["message"],
        format!("Alert 'A': {n} {event_type} events aggregated")
    );
    let ids: Vec<&str> = p["eventIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n);
    for id in &ids {
        uuid::Uuid::parse_str(id).expect("event ids are UUIDs");
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), n, "event ids are distinct");
    assert_eq!(p["userNames"], users);
    p["metadata"].clone()
}

fn trace(fields: Value) -> Value {
    let mut e = json!({"kind": "trace", "project": "p1"});
    e.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    e
}

fn score(entity: &str, name: &str, value: f64) -> Value {
    json!({"kind": "feedback_score", "project": "p1", "entity_type": entity,
           "entity_id": "x", "name": name, "value": value})
}

#[tokio::test]
async fn trace_errors_counts_error_traces_by_project_name_or_id() {
    let trigger = format!(
        "event = \"trace:errors\"\nprojects = [\"p1\", \"{PROJECT_UUID}\"]\nthreshold = 2\nwindow = \"1m\""
    );
    let boom = json!({"message": "boom"});
    let events = [
        trace(json!({"error_info": boom})),
        json!({"kind": "trace", "project_id": PROJECT_UUID, "error_info": boom}),
        trace(json!({"error_info": boom})),
        trace(json!({"duration_ms": 5})),
        json!({"kind": "trace", "project": "p2", "error_info": boom}),
    ];
    let body = only_webhook("", &trigger, &events).await;
    let m = threshold_metadata(&body, "trace:errors", "TRACE_ERRORS");
    assert_eq!(m["metric_value"], "3");
    assert_eq!(m["threshold"], "2");
    assert_eq!(m["window_seconds"], 60);
    assert_eq!(m["project_names"], "p1");
    assert_eq!(m["project_ids"], PROJECT_UUID);
    assert!(m.get("feedback_score_name").is_none());
}

#[tokio::test]
async fn trace_cost_sums_cost_with_four_decimals() {
    let trigger = "event = \"trace:cost\"\nthreshold = 100\nwindow = \"1h\"";
    let events = [
        trace(json!({"total_estimated_cost": 100.5})),
        trace(json!({"total_estimated_cost": 50.25, "project": "p2"})),
        trace(json!({"duration_ms": 10})),
    ];
    let body = only_webhook("", trigger, &events).await;
    let m = threshold_metadata(&body, "trace:cost", "TRACE_COST");
    assert_eq!(m["metric_value"], "150.7500");
    assert_eq!(m["threshold"], "100");
    assert_eq!(m["window_seconds"], 3600);
    assert_eq!(m["project_names"], "");
    assert_eq!(m["project_ids"], "");
}

#[tokio::test]
async fn trace_latency_is_mean_duration_in_seconds() {
    let trigger =
        "event = \"trace:latency\"\nprojects = [\"p1\"]\nthreshold = 1.5\nwindow = \"1m\"";
    let events = [
        trace(json!({"duration_ms": 1000})),
        trace(json!({"duration_ms": 2500})),
        trace(json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:03Z"})),
        trace(json!({"duration_ms": 60000, "project": "p2"})),
    ];
    let body = only_webhook("", trigger, &events).await;
    let m = threshold_metadata(&body, "trace:latency", "TRACE_LATENCY");
    // (1.0 + 2.5 + 3.0) / 3 = 2.1666… → half-up to four decimals.
    assert_eq!(m["metric_value"], "2.1667");
    assert_eq!(m["threshold"], "1.5000");
    assert_eq!(m["project_names"], "p1");
}

#[tokio::test]
async fn trace_feedback_score_is_mean_of_named_trace_score() {
    let trigger = "event = \"trace:feedback_score\"\nscore = \"hallucination\"\noperator = \"<\"\nthreshold = 0.5\nwindow = \"15m\"";
    let events = [
        score("trace", "hallucination", 0.2),
        score("trace", "hallucination", 0.3),
        score("trace", "relevance", 0.0),
        score("thread", "hallucination", 0.0),
    ];
    let body = only_webhook("", trigger, &events).await;
    let m = threshold_metadata(&body, "trace:feedback_score", "TRACE_FEEDBACK_SCORE");
    assert_eq!(m["metric_value"], "0.2500");
    assert_eq!(m["threshold"], "0.5000");
    assert_eq!(m["window_seconds"], 900);
    assert_eq!(m["feedback_score_name"], "hallucination");
}

#[tokio::test]
async fn thread_feedback_score_is_mean_of_named_thread_score() {
    let trigger = "event = \"trace_thread:feedback_score\"\nscore = \"helpful\"\noperator = \">\"\nthreshold = 0.8\nwindow = \"15m\"";
    let events = [
        score("thread", "helpful", 0.9),
        score("thread", "helpful", 1.0),
        score("trace", "helpful", 0.0),
        score("thread", "other", 0.0),
    ];
    let body = only_webhook("", trigger, &events).await;
    let m = threshold_metadata(
        &body,
        "trace_thread:feedback_score",
        "TRACE_THREAD_FEEDBACK_SCORE",
    );
    assert_eq!(m["metric_value"], "0.9500");
    assert_eq!(m["threshold"], "0.8000");
    assert_eq!(m["feedback_score_name"], "helpful");
}

#[tokio::test]
async fn guardrails_triggered_groups_failed_guardrails_in_scope() {
    let trigger = "event = \"trace:guardrails_triggered\"\nprojects = [\"p1\"]";
    let guardrail = |user: &str, trace: &str, name: &str, result: &str, project: &str| {
        json!({"kind": "guardrail", "user": user, "project": project, "trace_id": trace,
               "name": name, "result": result, "details": {"matched": name}})
    };
    let events = [
        guardrail("ann", "t1", "pii", "failed", "p1"),
        guardrail("bob", "t2", "topic", "passed", "p1"),
        guardrail("bob", "t3", "toxicity", "failed", "p1"),
        guardrail("cid", "t4", "pii", "failed", "p2"),
    ];
    let body = only_webhook("", trigger, &events).await;
    let metadata = per_event_payload(
        &body,
        "trace:guardrails_triggered",
        2,
        json!(["ann", "bob"]),
    );
    assert_eq!(
        metadata,
        json!([
            {"trace_id": "t1", "name": "pii", "result": "failed", "details": {"matched": "pii"},
             "project_name": "p1", "project_id": null},
            {"trace_id": "t3", "name": "toxicity", "result": "failed",
             "details": {"matched": "toxicity"}, "project_name": "p1", "project_id": null},
        ])
    );
}

#[tokio::test]
async fn prompt_created_echoes_each_prompt_object() {
    let events = [
        json!({"kind": "prompt_created", "user": "ann", "project": "anything",
               "prompt": {"id": "p1", "name": "greeting", "tags": ["a"], "n": 1.5}}),
        json!({"kind": "prompt_created", "user": "ann", "prompt": {"id": 7, "name": "bye"}}),
    ];
    let body = only_webhook("", "event = \"prompt:created\"", &events).await;
    let metadata = per_event_payload(&body, "prompt:created", 2, json!(["ann"]));
    assert_eq!(
        metadata,
        json!([
            {"id": "p1", "name": "greeting", "tags": ["a"], "n": 1.5},
            {"id": 7, "name": "bye"},
        ])
    );
}

#[tokio::test]
async fn prompt_committed_echoes_each_prompt_version() {
    let version =
        json!({"id": "v1", "prompt_id": "p1", "commit": "abc123", "template": "Hi {{name}}"});
    let events = [json!({"kind": "prompt_committed", "user": "dev", "prompt_version": version})];
    let body = only_webhook("", "event = \"prompt:committed\"", &events).await;
    let metadata = per_event_payload(&body, "prompt:committed", 1, json!(["dev"]));
    assert_eq!(metadata, json!([version]));
}

#[tokio::test]
async fn prompt_deleted_echoes_each_list_of_deleted_prompts() {
    let first = json!([{"id": "p1", "name": "a"}, {"id": "p2", "name": "b"}]);
    let second = json!([{"id": "p3", "name": "c"}]);
    let events = [
        json!({"kind": "prompt_deleted", "prompts": first}),
        json!({"kind": "prompt_deleted", "user": "ops", "prompts": second}),
    ];
    let body = only_webhook("", "event = \"prompt:deleted\"", &events).await;
    let metadata = per_event_payload(&body, "prompt:deleted", 2, json!(["system", "ops"]));
    assert_eq!(metadata, json!([first, second]));
}

#[tokio::test]
async fn experiment_finished_echoes_each_list_of_experiments() {
    let experiments = json!([
        {"id": "e1", "name": "baseline", "dataset_id": "d1"},
        {"id": "e2", "name": "candidate", "dataset_id": "d1", "score": 0.75},
    ]);
    let events = [json!({"kind": "experiment_finished", "user": "ci", "experiments": experiments})];
    let body = only_webhook("", "event = \"experiment:finished\"", &events).await;
    let metadata = per_event_payload(&body, "experiment:finished", 1, json!(["ci"]));
    assert_eq!(metadata, json!([experiments]));
}

/// Milliseconds since the epoch of an RFC 3339 `created_at`.
fn created_ms(body: &Value) -> i64 {
    let s = body["created_at"].as_str().expect("created_at");
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("created_at is RFC 3339");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// An alert on any error trace (`count > 0`) over a 2 s window.
fn any_error_alert(url: &str, alert_keys: &str) -> String {
    one_alert(
        url,
        alert_keys,
        "event = \"trace:errors\"\nthreshold = 0\nwindow = \"2s\"",
    )
}

fn error() -> Value {
    trace(json!({"error_info": {"message": "boom"}}))
}

#[tokio::test]
async fn a_trigger_that_keeps_firing_notifies_once_per_repeat_interval() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let config = any_error_alert(&rx.url("/hook"), "repeat_interval = \"1s\"");
    let d = Daemon::start(dir.path(), &config).await;
    // Keep the window non-empty until three repeats have gone out (or PATIENCE ends).
    let deadline = std::time::Instant::now() + PATIENCE;
    while rx.requests_to("/hook").len() < 3 && std::time::Instant::now() < deadline {
        d.send(&[error()]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = rx.wait_for("/hook", 3, Duration::ZERO).await;
    let bodies: Vec<Value> = got.iter().map(|r| r.json()).collect();
    let episode = &bodies[0]["payload"]["eventIds"];
    for b in &bodies {
        assert_eq!(b["payload"]["metadata"][0]["state"], "firing");
        assert_eq!(&b["payload"]["eventIds"], episode, "one firing episode");
    }
    let ids: std::collections::HashSet<&str> =
        bodies.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), bodies.len(), "each repeat is a new notification");
    for pair in bodies.windows(2) {
        let gap = created_ms(&pair[1]) - created_ms(&pair[0]);
        assert!(
            gap >= 1_000,
            "repeats at most every repeat_interval (1 s), got {gap} ms apart: {bodies:#?}"
        );
    }
}

#[tokio::test]
async fn a_trigger_that_recovers_sends_exactly_one_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let config = any_error_alert(&rx.url("/hook"), "send_resolved = true");
    let d = Daemon::start(dir.path(), &config).await;
    d.send(&[error(), error()]).await;
    // Firing, then the 2 s window empties and the trigger recovers.
    let got = rx.wait_for("/hook", 2, PATIENCE).await;
    tokio::time::sleep(A_FEW_TICKS).await;
    let all = rx.requests_to("/hook");
    assert_eq!(all.len(), 2, "one firing and one resolve: {all:?}");
    let firing = got[0].json();
    let resolved = got[1].json();
    assert_eq!(firing["payload"]["metadata"][0]["state"], "firing");
    assert_eq!(firing["payload"]["metadata"][0]["metric_value"], "2");
    let m = &resolved["payload"]["metadata"][0];
    assert_eq!(resolved["event_type"], "trace:errors");
    assert_eq!(m["state"], "resolved");
    assert_eq!(m["threshold"], "0");
    assert_eq!(
        resolved["payload"]["eventIds"], firing["payload"]["eventIds"],
        "the resolve names the episode it closes"
    );
    assert_ne!(resolved["id"], firing["id"]);
}

/// Alerts of several kinds whose outcome depends on both halves of `restart_events`.
fn restart_config(url: &str) -> String {
    format!(
        "[engine]\ntick = \"200ms\"\ndebounce = \"3s\"\n{DELIVERY}\
         [[alert]]\nid = \"errors-and-cost\"\nurl = \"{url}\"\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nprojects = [\"p1\"]\nthreshold = 3\nwindow = \"1m\"\n\
         [[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = 100\nwindow = \"1m\"\n\
         [[alert]]\nid = \"latency\"\nurl = \"{url}\"\n\
         [[alert.trigger]]\nevent = \"trace:latency\"\nthreshold = 2\nwindow = \"1m\"\n\
         [[alert]]\nid = \"prompts\"\nurl = \"{url}\"\n\
         [[alert.trigger]]\nevent = \"prompt:created\"\n"
    )
}

/// Two halves: no alert fires on the first alone; together they fire all four notifications.
fn restart_events() -> (Vec<Value>, Vec<Value>) {
    let boom = json!({"message": "boom"});
    let half = |cost: f64, ms: u64, prompt: &str| {
        vec![
            trace(json!({"error_info": boom, "total_estimated_cost": cost, "duration_ms": ms})),
            trace(json!({"error_info": boom, "duration_ms": ms})),
            json!({"kind": "prompt_created", "user": prompt, "prompt": {"id": prompt}}),
        ]
    };
    (half(60.125, 1_000, "ann"), half(50.5, 4_000, "bob"))
}

/// A webhook body without what legitimately differs between runs: ids and times.
fn comparable(mut body: Value) -> Value {
    let o = body.as_object_mut().unwrap();
    o.remove("id");
    o.remove("created_at");
    let p = o["payload"].as_object_mut().unwrap();
    let n = p.remove("eventIds").unwrap().as_array().unwrap().len();
    p.insert("eventIds.len".into(), json!(n));
    body
}

/// Posts both halves, with a `kill -9` and restart between them when `restart` is set, and
/// returns the comparable bodies of the four webhooks, sorted.
async fn run_restart_scenario(restart: bool) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let mut d = Daemon::start(dir.path(), &restart_config(&rx.url("/hook"))).await;
    let (first, second) = restart_events();
    d.send(&first).await;
    if restart {
        d.kill9();
        d.spawn().await;
    }
    d.send(&second).await;
    rx.wait_for("/hook", 4, PATIENCE).await;
    tokio::time::sleep(A_FEW_TICKS).await;
    let mut bodies: Vec<Value> = rx
        .requests_to("/hook")
        .iter()
        .map(|r| comparable(r.json()))
        .collect();
    bodies.sort_by_key(|b| b.to_string());
    bodies
}

#[tokio::test]
async fn a_restart_between_events_gives_the_same_webhooks() {
    let (straight, restarted) =
        tokio::join!(run_restart_scenario(false), run_restart_scenario(true));
    assert_eq!(straight.len(), 4, "{straight:#?}");
    assert_eq!(straight, restarted);
    let values: Vec<&Value> = straight
        .iter()
        .filter_map(|b| b["payload"]["metadata"][0].get("metric_value"))
        .collect();
    assert_eq!(values.len(), 3, "three threshold webhooks: {straight:#?}");
    for want in ["4", "110.6250", "2.5000"] {
        assert!(values.iter().any(|v| *v == want), "{want} in {values:?}");
    }
}

/// Whether the API shows alert `a`'s first trigger as firing.
async fn firing(d: &Daemon) -> bool {
    let (status, v) = d.get("/v1/alerts").await;
    assert_eq!(status, 200, "{v}");
    v["alerts"][0]["triggers"][0]["firing"] == true
}

#[tokio::test]
async fn a_recovery_without_resolve_is_not_undone_by_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let config = any_error_alert(&rx.url("/hook"), "send_resolved = false")
        .replace("tick = \"200ms\"", "tick = \"1s\"");
    let mut d = Daemon::start(dir.path(), &config).await;
    d.send(&[error()]).await;
    rx.wait_for("/hook", 1, PATIENCE).await;
    let deadline = std::time::Instant::now() + PATIENCE;
    while firing(&d).await {
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A new burst starts a new episode; a crash before the next tick must not hide it.
    d.send(&[error()]).await;
    d.kill9();
    d.spawn().await;
    let got = rx.wait_for("/hook", 2, PATIENCE).await;
    let (first, second) = (got[0].json(), got[1].json());
    assert_eq!(second["payload"]["metadata"][0]["state"], "firing");
    assert_ne!(
        second["payload"]["eventIds"], first["payload"]["eventIds"],
        "a new firing episode"
    );
}
