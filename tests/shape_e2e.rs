//! The actor shape's promises, through the real binary: an alert that dies is restarted alone and
//! counts exactly what its twin counts; one that keeps dying is marked failed; a crashed sender
//! loses nothing; a tick answer that misses the deadline is still committed; reloads racing ticks
//! neither lose nor duplicate a notification.

mod common;

use common::{error_trace, Daemon, Receiver};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The first trigger's current value of every alert, and each alert's run state and restarts.
async fn alerts(d: &Daemon) -> HashMap<String, (Option<f64>, String, u64)> {
    let (status, v) = d.get("/v1/alerts").await;
    assert_eq!(status, 200, "{v}");
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                (
                    a["triggers"][0]["value"].as_f64(),
                    a["state"].as_str().unwrap().to_string(),
                    a["restarts"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn cost_trace(cost: f64) -> serde_json::Value {
    json!({"kind": "trace", "project": "p", "total_estimated_cost": cost})
}

fn twin_config(rx: &Receiver) -> String {
    let mut cfg = String::from("[engine]\ntick = \"200ms\"\n");
    for id in ["twin", "fragile"] {
        cfg.push_str(&format!(
            "[[alert]]\nid = \"{id}\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = 1000000\nwindow = \"1h\"\n",
            rx.url(&format!("/{id}"))
        ));
    }
    cfg
}

async fn wait_equal_counts(
    d: &Daemon,
    expected: f64,
) -> HashMap<String, (Option<f64>, String, u64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = alerts(d).await;
        if a["twin"].0 == Some(expected) && a["fragile"].0 == Some(expected) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "counts differ or are incomplete (expected {expected}): {a:?}\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_panicking_under_continuous_ingest_counts_exactly_what_its_twin_counts() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    // "fragile" panics on every 700th event it applies (replays included), so it dies a few
    // times while events keep arriving, and must rebuild from checkpoint + replay each time.
    let mut d = Daemon::start_with_env(
        dir.path(),
        &twin_config(&rx),
        &[("TESTHOOK_ALERTD_PANIC_APPLY", "fragile:700")],
    )
    .await;
    let mut sent = 0u32;
    let started = Instant::now();
    while sent < 3000 {
        let batch: Vec<_> = (0..20).map(|_| cost_trace(1.0)).collect();
        d.send(&batch).await;
        sent += 20;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let elapsed = started.elapsed();
    let a = wait_equal_counts(&d, sent as f64).await;
    assert!(
        a["fragile"].2 >= 2,
        "the hook must have killed the alert several times during ingest ({elapsed:?}): {a:?}"
    );
    assert_eq!(a["fragile"].1, "running");
    assert_eq!(a["twin"].2, 0, "the twin never restarted");
    // What was counted is durable: a kill -9 and a restart recover the same totals.
    d.kill9();
    d.spawn().await;
    wait_equal_counts(&d, sent as f64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_dying_more_than_five_times_a_minute_is_failed_and_the_others_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = format!(
        "[engine]\ntick = \"200ms\"\n\
         [[alert]]\nid = \"bad\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 2\nwindow = \"1h\"\n\
         [[alert]]\nid = \"good\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 2\nwindow = \"1h\"\n",
        rx.url("/bad"),
        rx.url("/good")
    );
    // "bad" panics on every event, replay included: each restart dies again at once.
    let d = Daemon::start_with_env(
        dir.path(),
        &cfg,
        &[("TESTHOOK_ALERTD_PANIC_APPLY", "bad:1")],
    )
    .await;
    d.send(&[error_trace("p"), error_trace("p"), error_trace("p")])
        .await;
    let good = rx.wait_for("/good", 1, Duration::from_secs(10)).await;
    assert_eq!(
        good[0].json()["payload"]["metadata"][0]["metric_value"],
        "3"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let a = loop {
        let a = alerts(&d).await;
        if a["bad"].1 == "failed" {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "never failed: {a:?}\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        a["bad"].2, 6,
        "failed on the sixth restart in a minute: {a:?}"
    );
    assert_eq!(a["good"].1, "running");
    assert!(rx.requests_to("/bad").is_empty());
    let metrics = d.metrics().await;
    assert!(metrics.contains("alertd_alerts_failed 1"), "{metrics}");
    assert!(
        metrics.contains("alertd_alert_restarts_total{alert=\"bad\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("alertd_actors{kind=\"alert\"} 1"),
        "{metrics}"
    );
    // A reload retries a failed alert.
    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["report"]["retried"], json!(["bad"]), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_crashing_mid_attempt_delivers_later_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = format!(
        "[engine]\ntick = \"200ms\"\n[delivery]\ninitial_backoff = \"100ms\"\n\
         [[alert]]\nid = \"a\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"1h\"\n",
        rx.url("/a")
    );
    let d =
        Daemon::start_with_env(dir.path(), &cfg, &[("TESTHOOK_ALERTD_SENDER_CRASH", "1")]).await;
    d.send(&[error_trace("p")]).await;
    let got = rx.wait_for("/a", 1, Duration::from_secs(10)).await;
    let id = got[0].json()["id"].as_str().unwrap().to_string();
    let row = d.newest_delivered().await;
    assert_eq!(
        row["id"],
        id.as_str(),
        "same id as the crashed attempt's delivery"
    );
    assert_eq!(
        row["attempts"], 2,
        "the crash counted as a failed attempt: {row}"
    );
    assert!(d.logs().contains("sender crashed during an attempt"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.requests_to("/a").len(), 1, "sent exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_answer_missing_the_deadline_is_committed_with_the_next_tick() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    // tick 300 ms → the scheduler waits 1 s; "slow" answers every tick 1.5 s late.
    let cfg = format!(
        "[engine]\ntick = \"300ms\"\n\
         [[alert]]\nid = \"slow\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"1h\"\n\
         [[alert]]\nid = \"quick\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"1h\"\n",
        rx.url("/slow"),
        rx.url("/quick")
    );
    let mut d = Daemon::start_with_env(
        dir.path(),
        &cfg,
        &[("TESTHOOK_ALERTD_SLOW_TICK", "slow:1500")],
    )
    .await;
    d.send(&[error_trace("p")]).await;
    rx.wait_for("/quick", 1, Duration::from_secs(10)).await;
    let slow = rx.wait_for("/slow", 1, Duration::from_secs(15)).await;
    assert!(
        d.logs().contains("did not answer the tick in time"),
        "{}",
        d.logs()
    );
    // Its checkpoint was committed too: after a kill -9 it does not fire the episode again.
    d.kill9();
    d.spawn().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // At-least-once: a kill between the send and the record of its success sends the same
    // notification again, with the same id; a second firing would carry another id.
    let all = rx.requests_to("/slow");
    for r in &all {
        assert_eq!(
            r.json()["id"],
            slow[0].json()["id"],
            "one firing per episode: {all:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_racing_ticks_neither_lose_nor_duplicate_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let config = |n: usize| {
        let mut c = format!(
            "[engine]\ntick = \"100ms\"\nmax_events_per_message = 1000\n\
             [[alert]]\nid = \"errors\"\nname = \"Errors {}\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 30\nwindow = \"1h\"\n\
             [[alert]]\nid = \"prompts\"\nurl = \"{}\"\ndebounce = \"300ms\"\n[[alert.trigger]]\nevent = \"prompt:created\"\n",
            n % 2,
            rx.url("/errors"),
            rx.url("/prompts")
        );
        if n % 3 == 0 {
            c.push_str(&format!(
                "[[alert]]\nid = \"churn\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 1000\nwindow = \"1h\"\n",
                rx.url("/churn")
            ));
        }
        c
    };
    let d = Daemon::start(dir.path(), &config(1)).await;
    let mut prompts = 0;
    for round in 0..40 {
        let mut batch = vec![error_trace("p")];
        for _ in 0..3 {
            prompts += 1;
            batch.push(
                json!({"kind": "prompt_created", "id": format!("pc-{prompts}"),
                "prompt": {"id": format!("prompt-{prompts}"), "name": "p"}}),
            );
        }
        d.send(&batch).await;
        d.rewrite_config(&config(round));
        let (status, v) = d.post("/v1/reload", None).await;
        assert_eq!(status, 200, "{v}");
        tokio::time::sleep(Duration::from_millis(20 + (round as u64 * 37) % 90)).await;
    }
    // 40 errors > 30: one episode, one firing notification.
    let fired = rx.wait_for("/errors", 1, Duration::from_secs(10)).await;
    assert_eq!(fired[0].json()["payload"]["metadata"][0]["state"], "firing");
    // Every prompt exactly once over all per-event messages.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen: usize = rx
            .requests_to("/prompts")
            .iter()
            .map(|r| r.json()["payload"]["eventCount"].as_u64().unwrap() as usize)
            .sum();
        if seen >= prompts {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {seen} of {prompts} prompts notified"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ids: Vec<String> = rx
        .requests_to("/prompts")
        .iter()
        .flat_map(|r| {
            r.json()["payload"]["metadata"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ids.len(), prompts, "no prompt notified twice");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), prompts, "no prompt notified twice");
    assert_eq!(rx.requests_to("/errors").len(), 1, "one firing per episode");
    assert!(rx.requests_to("/churn").is_empty());
}
