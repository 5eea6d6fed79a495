//! End to end through the real binary: ingest → window → webhook at a loopback receiver.

mod common;

use common::{error_trace, Daemon, Receiver};
use std::time::Duration;

fn errors_alert(url: &str) -> String {
    format!(
        "[engine]\ntick = \"200ms\"\n[delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"300ms\"\n[[alert]]\nid = \"prod-errors\"\nname = \"Prod errors\"\nurl = \"{url}\"\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nprojects = [\"p1\"]\nthreshold = 10\nwindow = \"5m\"\n"
    )
}

#[tokio::test]
async fn eleven_errors_over_threshold_send_exactly_one_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = Daemon::start(dir.path(), &errors_alert(&rx.url("/hook"))).await;
    let events: Vec<_> = (0..11).map(|_| error_trace("p1")).collect();
    d.send(&events).await;
    let got = rx.wait_for("/hook", 1, Duration::from_secs(10)).await;
    // Longer than a few ticks (a repeat) and than the 300 ms retry cap (a wrongful retry).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.requests_to("/hook").len(), 1, "exactly one webhook");
    let body = got[0].json();
    assert_eq!(body["event_type"], "trace:errors");
    assert_eq!(body["alert_id"], "prod-errors");
    assert_eq!(body["alert_name"], "Prod errors");
    assert_eq!(body["workspace_id"], "default");
    assert_eq!(body["workspace_name"], "default");
    assert_eq!(body["max_retries"], 8);
    let p = &body["payload"];
    assert_eq!(p["alertId"], "prod-errors");
    assert_eq!(p["eventType"], "trace:errors");
    assert_eq!(p["eventCount"], 1);
    assert_eq!(p["aggregationType"], "consolidated");
    assert_eq!(
        p["message"],
        "Alert 'Prod errors': 1 trace:errors events aggregated"
    );
    let m = &p["metadata"][0];
    assert_eq!(m["event_type"], "TRACE_ERRORS");
    assert_eq!(m["metric_name"], "trace:errors");
    assert_eq!(m["metric_value"], "11");
    assert_eq!(m["threshold"], "10");
    assert_eq!(m["window_seconds"], 300);
    assert_eq!(m["project_names"], "p1");
    assert_eq!(m["project_ids"], "");
    assert_eq!(m["state"], "firing");
    assert_eq!(
        got[0].header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(got[0].header("user-agent").unwrap().starts_with("alertd/"));
}

/// Several engine ticks at 200 ms: long enough for anything decided to have been delivered.
const A_FEW_TICKS: Duration = Duration::from_millis(1_500);

/// A second alert on the same events with a lower bar, posting to `/control`: when it has fired,
/// the events have been ingested, routed and evaluated, so silence at `/hook` means something.
fn control_alert(url: &str, projects: &str, threshold: u32) -> String {
    format!(
        "[[alert]]\nid = \"control\"\nurl = \"{url}\"\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nprojects = [{projects}]\nthreshold = {threshold}\nwindow = \"5m\"\n"
    )
}

/// The `value` the API shows for the first trigger of alert `id`.
async fn trigger_value(d: &Daemon, id: &str) -> serde_json::Value {
    let (status, v) = d.get("/v1/alerts").await;
    assert_eq!(status, 200, "GET /v1/alerts: {v}");
    let alert = v["alerts"]
        .as_array()
        .expect("alerts array")
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("alert {id} listed in {v}"))
        .clone();
    alert["triggers"][0]["value"].clone()
}

#[tokio::test]
async fn ten_errors_at_threshold_send_no_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let config = format!(
        "{}{}",
        errors_alert(&rx.url("/hook")),
        control_alert(&rx.url("/control"), "\"p1\"", 9)
    );
    let d = Daemon::start(dir.path(), &config).await;
    let events: Vec<_> = (0..10).map(|_| error_trace("p1")).collect();
    d.send(&events).await;
    rx.wait_for("/control", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(A_FEW_TICKS).await;
    assert_eq!(
        rx.requests_to("/hook").len(),
        0,
        "10 errors do not exceed threshold 10"
    );
    assert_eq!(trigger_value(&d, "prod-errors").await, 10.0);
}

#[tokio::test]
async fn errors_of_another_project_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let config = format!(
        "{}{}",
        errors_alert(&rx.url("/hook")),
        control_alert(&rx.url("/control"), "", 10)
    );
    let d = Daemon::start(dir.path(), &config).await;
    let events: Vec<_> = (0..11).map(|_| error_trace("p2")).collect();
    d.send(&events).await;
    rx.wait_for("/control", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(A_FEW_TICKS).await;
    assert_eq!(
        rx.requests_to("/hook").len(),
        0,
        "p2 errors are outside the p1 scope"
    );
    assert_eq!(
        trigger_value(&d, "prod-errors").await,
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn three_prompts_in_one_debounce_window_send_one_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let config = format!(
        "[engine]\ntick = \"200ms\"\n[[alert]]\nid = \"prompts\"\nname = \"New prompts\"\nurl = \"{}\"\n\
         debounce = \"1s\"\n[[alert.trigger]]\nevent = \"prompt:created\"\n",
        rx.url("/hook")
    );
    let d = Daemon::start(dir.path(), &config).await;
    for (i, user) in [(1, "ann"), (2, "bob"), (3, "ann")] {
        d.send(&[serde_json::json!({
            "kind": "prompt_created",
            "user": user,
            "prompt": {"id": format!("p{i}"), "name": format!("prompt {i}")},
        })])
        .await;
    }
    let got = rx.wait_for("/hook", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(A_FEW_TICKS).await;
    assert_eq!(
        rx.requests_to("/hook").len(),
        1,
        "one webhook for the burst"
    );
    let body = got[0].json();
    assert_eq!(body["event_type"], "prompt:created");
    let p = &body["payload"];
    assert_eq!(p["eventCount"], 3);
    assert_eq!(
        p["message"],
        "Alert 'New prompts': 3 prompt:created events aggregated"
    );
    assert_eq!(p["eventIds"].as_array().unwrap().len(), 3);
    assert_eq!(p["userNames"], serde_json::json!(["ann", "bob"]));
    assert_eq!(
        p["metadata"],
        serde_json::json!([
            {"id": "p1", "name": "prompt 1"},
            {"id": "p2", "name": "prompt 2"},
            {"id": "p3", "name": "prompt 3"},
        ])
    );
}

#[tokio::test]
async fn batch_with_one_malformed_event_is_refused_whole_naming_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = Daemon::start(dir.path(), &errors_alert(&rx.url("/hook"))).await;
    let mut batch: Vec<_> = (0..11).map(|_| error_trace("p1")).collect();
    batch[5] = serde_json::json!({"kind": "trace", "project": "p1", "total_estimated_cost": -1});
    let body = serde_json::Value::Array(batch).to_string();
    let (status, answer) = d.post_events(&body, "application/json").await;
    assert_eq!(status, 400, "{answer}");
    let details = answer["details"].as_array().expect("details array");
    assert_eq!(details.len(), 1, "{answer}");
    assert_eq!(details[0]["index"], 5);
    assert!(
        details[0]["error"]
            .as_str()
            .unwrap()
            .contains("total_estimated_cost"),
        "{answer}"
    );
    // Had the ten valid events of the batch been counted, one more would cross the threshold.
    d.send(&[error_trace("p1")]).await;
    tokio::time::sleep(A_FEW_TICKS).await;
    assert_eq!(
        rx.requests_to("/hook").len(),
        0,
        "nothing of the batch counted"
    );
    assert_eq!(trigger_value(&d, "prod-errors").await, 1.0);
    // Control: ten more valid errors make eleven and do fire.
    let more: Vec<_> = (0..10).map(|_| error_trace("p1")).collect();
    d.send(&more).await;
    let got = rx.wait_for("/hook", 1, Duration::from_secs(10)).await;
    assert_eq!(
        got[0].json()["payload"]["metadata"][0]["metric_value"],
        "11"
    );
}

#[tokio::test]
async fn acknowledged_events_survive_kill9_before_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    // Tick-only evaluation, so nothing is decided before the kill and recovery must count it all.
    let config = errors_alert(&rx.url("/hook"))
        .replace("tick = \"200ms\"", "tick = \"3s\"\nearly_fire = false");
    let mut d = Daemon::start(dir.path(), &config).await;
    let events: Vec<_> = (0..11).map(|_| error_trace("p1")).collect();
    let answer = d.send(&events).await;
    assert_eq!(answer["accepted"], 11);
    d.kill9();
    assert!(
        !d.logs().contains("notification decided"),
        "the kill must come before the first tick:\n{}",
        d.logs()
    );
    d.spawn().await;
    let got = rx.wait_for("/hook", 1, Duration::from_secs(15)).await;
    assert_eq!(
        got[0].json()["payload"]["metadata"][0]["metric_value"],
        "11"
    );
}
