//! Slack and PagerDuty end to end: events into the real binary, formatted messages out to a
//! loopback receiver standing in for Slack's incoming webhook and PagerDuty's Events API v2.

mod common;

use common::{error_trace, Answer, Daemon, Receiver};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SLACK: &str = "/services/T000/B000/XXXX";
const PAGERDUTY: &str = "/v2/enqueue";
const BASE_URL: &str = "https://opik.example.com";

/// Fast ticks and a short debounce keep the tests quick; retries are quick too.
fn engine() -> String {
    "[engine]\ntick = \"200ms\"\ndebounce = \"300ms\"\n[delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"2s\"\nmax_retries = 3\n".into()
}

fn slack_alert(rx: &Receiver) -> String {
    format!(
        "[[alert]]\nid = \"prompts\"\nname = \"Prompt changes\"\ndestination = \"slack\"\nurl = \"{}\"\nbase_url = \"{BASE_URL}\"\n[[alert.trigger]]\nevent = \"prompt:created\"\n",
        rx.url(SLACK)
    )
}

/// Fires on the first error trace of `chatbot-prod`; the 1 s window empties quickly, so the
/// resolve follows without waiting long.
fn pagerduty_alert(rx: &Receiver, path: &str) -> String {
    format!(
        "[[alert]]\nid = \"prod-errors\"\nname = \"Prod errors\"\ndestination = \"pagerduty\"\nurl = \"{}\"\nrouting_key = \"R0UT1NGKEY\"\nbase_url = \"{BASE_URL}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nprojects = [\"chatbot-prod\"]\nthreshold = 0\nwindow = \"1s\"\n",
        rx.url(path)
    )
}

fn prompt(id: &str, name: &str) -> Value {
    json!({"kind": "prompt_created", "user": "alice", "prompt": {"id": id, "name": name}})
}

/// Waits until `/v1/deliveries?status=<status>` lists at least `n` rows.
async fn wait_deliveries(d: &Daemon, status: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = d.get(&format!("/v1/deliveries?status={status}")).await;
        assert_eq!(s, 200);
        let rows = v["deliveries"].as_array().cloned().unwrap_or_default();
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} {status} deliveries after 20 s: {v}\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn slack_gets_one_block_kit_message_per_burst_with_links() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = Daemon::start(dir.path(), &(engine() + &slack_alert(&rx))).await;
    d.send(&[
        prompt("p-1", "greeting"),
        prompt("p-2", "refunds"),
        prompt("p-3", "summary"),
    ])
    .await;
    let got = rx.wait_for(SLACK, 1, Duration::from_secs(15)).await;
    assert_eq!(
        got[0].header("content-type").as_deref(),
        Some("application/json")
    );
    let v = got[0].json();
    let blocks = v["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], "Prompt changes");
    assert_eq!(
        blocks[1]["text"]["text"], "*3* new Prompt Created events happened",
        "the burst is one message"
    );
    let details = blocks[2]["text"]["text"].as_str().unwrap();
    for (id, name) in [("p-1", "greeting"), ("p-2", "refunds"), ("p-3", "summary")] {
        assert!(
            details.contains(&format!(
                "• Prompt *{name}* (`{id}`) | <{BASE_URL}/default/prompts/{id}|View>"
            )),
            "{details}"
        );
    }
    assert_eq!(blocks.len(), 3, "no fallback when everything fits");
    assert_eq!(
        v["text"],
        "Prompt changes: 3 new Prompt Created events happened"
    );
    let delivered = wait_deliveries(&d, "delivered", 1).await;
    assert_eq!(delivered[0]["destination"], "slack");
}

#[tokio::test]
async fn pagerduty_gets_a_trigger_then_a_resolve_with_the_same_dedup_key() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.set_default(Answer::Status(202)); // what PagerDuty answers on success
    let d = Daemon::start(dir.path(), &(engine() + &pagerduty_alert(&rx, PAGERDUTY))).await;
    d.send(&[error_trace("chatbot-prod")]).await;
    let got = rx.wait_for(PAGERDUTY, 2, Duration::from_secs(20)).await;
    let (trigger, resolve) = (got[0].json(), got[1].json());
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve");
    let key = trigger["dedup_key"].as_str().unwrap();
    assert!(key.starts_with("alertd/prod-errors/trace:errors/"), "{key}");
    assert_eq!(resolve["dedup_key"], key, "the resolve closes the incident");
    for body in [&trigger, &resolve] {
        assert_eq!(body["routing_key"], "R0UT1NGKEY");
    }
    let p = &trigger["payload"];
    assert_eq!(p["severity"], "error");
    assert_eq!(
        p["summary"],
        "Prod errors: Trace Error Alert firing: 1 > 0 over 1 second (chatbot-prod)"
    );
    assert!(p["source"].as_str().unwrap().starts_with("alertd@"));
    assert_eq!(p["custom_details"]["alert_id"], "prod-errors");
    assert_eq!(
        p["custom_details"]["payload"]["metadata"][0]["state"],
        "firing"
    );
    assert_eq!(
        trigger["links"][0]["href"],
        format!("{BASE_URL}/default/projects")
    );
    wait_deliveries(&d, "delivered", 2).await;
}

#[tokio::test]
async fn pagerduty_429_is_retried_with_the_same_dedup_key() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script(PAGERDUTY, vec![Answer::Status(429)]);
    rx.set_default(Answer::Status(202));
    let d = Daemon::start(dir.path(), &(engine() + &pagerduty_alert(&rx, PAGERDUTY))).await;
    d.send(&[error_trace("chatbot-prod")]).await;
    let got = rx.wait_for(PAGERDUTY, 2, Duration::from_secs(15)).await;
    assert_eq!(got[0].body, got[1].body, "a retry sends the same event");
    assert_eq!(got[1].json()["event_action"], "trigger");
    let id = got[0].json()["payload"]["custom_details"]["id"].clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
        let rows = wait_deliveries(&d, "delivered", 1).await;
        if let Some(r) = rows.into_iter().find(|r| r["id"] == id) {
            break r;
        }
        assert!(Instant::now() < deadline, "trigger {id} never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row["attempts"], 2, "one 429, then success");
}

#[tokio::test]
async fn pagerduty_400_is_a_dead_letter_without_retry() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.set_default(Answer::Status(400)); // e.g. an invalid routing key
    let d = Daemon::start(dir.path(), &(engine() + &pagerduty_alert(&rx, PAGERDUTY))).await;
    d.send(&[error_trace("chatbot-prod")]).await;
    let dead = wait_deliveries(&d, "dead", 1).await;
    assert_eq!(dead[0]["destination"], "pagerduty");
    assert_eq!(dead[0]["attempts"], 1);
    assert_eq!(dead[0]["last_status"], 400);
    let sent = rx.requests_to(PAGERDUTY);
    let triggers = sent
        .iter()
        .filter(|r| r.json()["event_action"] == "trigger")
        .count();
    assert_eq!(triggers, 1, "the trigger was not retried");
}
