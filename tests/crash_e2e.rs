//! Crash safety through the real binary: kill -9 at random moments loses nothing, a panicking
//! alert is restarted alone, SIGTERM drains, and store problems give clear messages.

mod common;

use common::{error_trace, Answer, Daemon, Receiver};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Posts `body` until it gets a 202, as a real client would; returns the answer.
async fn post_until_accepted(
    client: &reqwest::Client,
    base: &str,
    body: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .post(format!("{base}/v1/events"))
            .header("content-type", "application/x-ndjson")
            .timeout(Duration::from_secs(5))
            .body(body.to_string())
            .send()
            .await;
        if let Ok(r) = r {
            if r.status().as_u16() == 202 {
                return r.json().await.unwrap();
            }
            assert!(
                r.status().as_u16() == 503,
                "unexpected status {} from ingest",
                r.status()
            );
        }
        assert!(Instant::now() < deadline, "batch never accepted");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn alert_value(d: &Daemon, id: &str) -> Option<f64> {
    let (s, v) = d.get("/v1/alerts").await;
    if s != 200 {
        return None;
    }
    v["alerts"].as_array()?.iter().find(|a| a["id"] == id)?["triggers"][0]["value"].as_f64()
}

const TORTURE_ALERTS: &str = r#"
[engine]
tick = "1s"
[delivery]
initial_backoff = "200ms"
max_backoff = "1s"
max_retries = 50
[[alert]]
id = "cost"
url = "RX/cost"
repeat_interval = "1h"
[[alert.trigger]]
event = "trace:cost"
threshold = 1000000
window = "1h"
[[alert]]
id = "prompts"
url = "RX/prompts"
debounce = "1s"
[[alert.trigger]]
event = "prompt:created"
[[alert]]
id = "errors"
url = "RX/errors"
repeat_interval = "1s"
[[alert.trigger]]
event = "trace:errors"
threshold = 5
window = "1h"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_random_moments_loses_no_event_and_no_notification() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = TORTURE_ALERTS.replace("RX", &rx.url(""));
    let mut d = Daemon::start(dir.path(), &cfg).await;
    let base = d.base.clone();

    // The generator: batches of 40 events with client ids, each retried until accepted.
    // scripts/soak.sh raises both numbers for long runs outside CI.
    let batches: usize = env_or("TORTURE_BATCHES", 120);
    let min_kills: usize = env_or("TORTURE_MIN_KILLS", 20);
    let gen = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut sent_traces = 0u64;
        let mut sent_prompts = 0u64;
        for b in 0..batches {
            let mut lines = Vec::new();
            for i in 0..40 {
                let id = format!("b{b}-e{i}");
                let v = if i % 4 == 0 {
                    sent_prompts += 1;
                    serde_json::json!({"kind": "prompt_created", "id": id, "prompt": {"id": id, "name": "p"}})
                } else {
                    sent_traces += 1;
                    serde_json::json!({"kind": "trace", "id": id, "project": "p", "total_estimated_cost": 1, "error_info": {}})
                };
                lines.push(v.to_string());
            }
            post_until_accepted(&client, &base, &lines.join("\n")).await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        (sent_traces, sent_prompts)
    });

    // The killer: at least 20 kill -9s at random moments while the generator runs.
    let mut kills = 0;
    let mut rng = rand::rng();
    let mut sizes = Vec::new();
    while !gen.is_finished() || kills < min_kills {
        let wait = rng.random_range(50..900);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        d.kill9();
        kills += 1;
        sizes.push(
            std::fs::metadata(dir.path().join("alertd.redb"))
                .map(|m| m.len())
                .unwrap_or(0),
        );
        d.spawn().await;
    }
    let (traces, prompts) = gen.await.unwrap();
    assert!(kills >= min_kills);

    // Quiet period: every tick applied, every bucket flushed, every delivery done.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let counted = alert_value(&d, "cost").await;
        let (_, pending) = d.get("/v1/deliveries?status=pending").await;
        let prompt_total: u64 = distinct(&rx.requests_to("/prompts"))
            .values()
            .map(|b| b["payload"]["eventCount"].as_u64().unwrap())
            .sum();
        if counted == Some(traces as f64)
            && pending["deliveries"]
                .as_array()
                .is_some_and(|a| a.is_empty())
            && prompt_total == prompts
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {kills} kills: counted {counted:?} of {traces} traces, {prompt_total} of {prompts} prompts, pending {pending}\n{}",
            tail(&d.logs())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Duplicates only ever share an id: same id, same body.
    for prefix in ["/cost", "/prompts", "/errors"] {
        let mut by_id: HashMap<String, String> = HashMap::new();
        for r in rx.requests_to(prefix) {
            let id = r.json()["id"].as_str().unwrap().to_string();
            if let Some(prev) = by_id.insert(id.clone(), r.body.clone()) {
                assert_eq!(prev, r.body, "two bodies for delivery {id}");
            }
        }
    }
    // Every delivered notification in the history reached the receiver.
    let received: HashSet<String> = rx
        .requests()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    let (_, delivered) = d.get("/v1/deliveries?status=delivered&limit=10000").await;
    for row in delivered["deliveries"].as_array().unwrap() {
        assert!(
            received.contains(row["id"].as_str().unwrap()),
            "delivered but never received: {row}"
        );
    }
    assert!(
        !rx.requests_to("/errors").is_empty(),
        "the errors alert fired"
    );
    let (_, dead) = d.get("/v1/deliveries?status=dead").await;
    assert!(
        dead["deliveries"].as_array().unwrap().is_empty(),
        "dead letters: {dead}"
    );
    let logs = d.logs();
    assert!(
        !logs.contains("panicked"),
        "a panic in the logs:\n{}",
        tail(&logs)
    );
    // Every event was applied by every alert, so the inbox was pruned empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = reqwest::get(format!("{}/metrics", d.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.lines().any(|l| l == "alertd_inbox_events 0") {
            break;
        }
        assert!(Instant::now() < deadline, "inbox not pruned:\n{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "torture: {kills} kills, {traces} traces and {prompts} prompts each counted once; data file sizes at kills (bytes): first {:?}, middle {:?}, last {:?}",
        sizes.first(),
        sizes.get(sizes.len() / 2),
        sizes.last()
    );
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn distinct(reqs: &[common::Received]) -> HashMap<String, serde_json::Value> {
    reqs.iter()
        .map(|r| (r.json()["id"].as_str().unwrap().to_string(), r.json()))
        .collect()
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test]
async fn a_repeated_client_id_is_a_duplicate_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = format!(
        "[engine]\ntick = \"200ms\"\n[[alert]]\nid = \"cost\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = 1000\nwindow = \"1h\"\n",
        rx.url("/c")
    );
    let mut d = Daemon::start(dir.path(), &cfg).await;
    let e = |id: &str| serde_json::json!({"kind": "trace", "id": id, "total_estimated_cost": 2});
    let a = d.send(&[e("x1"), e("x2")]).await;
    assert_eq!(
        (a["accepted"].as_u64(), a["duplicates"].as_u64()),
        (Some(2), Some(0))
    );
    let a = d.send(&[e("x1"), e("x3")]).await;
    assert_eq!(
        (a["accepted"].as_u64(), a["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    d.kill9();
    d.spawn().await;
    let a = d.send(&[e("x1"), e("x2"), e("x3"), e("x4")]).await;
    assert_eq!(
        (a["accepted"].as_u64(), a["duplicates"].as_u64()),
        (Some(1), Some(3))
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while alert_value(&d, "cost").await != Some(8.0) {
        assert!(
            Instant::now() < deadline,
            "expected 4 distinct events × 2 = 8, got {:?}",
            alert_value(&d, "cost").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_panicking_alert_is_restarted_from_its_checkpoint_and_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = format!(
        "[engine]\ntick = \"300ms\"\n\
         [[alert]]\nid = \"fragile\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 3\nwindow = \"1h\"\n\
         [[alert]]\nid = \"steady\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 3\nwindow = \"1h\"\n",
        rx.url("/fragile"),
        rx.url("/steady")
    );
    let d = Daemon::start_with_env(dir.path(), &cfg, &[("TESTHOOK_ALERTD_PANIC", "fragile")]).await;
    // Two errors are applied before the first tick; that tick makes "fragile" panic.
    d.send(&[error_trace("p"), error_trace("p")]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.logs().contains("restarting it from its checkpoint") {
        assert!(
            Instant::now() < deadline,
            "no restart logged:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two more: both alerts now hold 4 > 3 — the restarted one recovered the first two by replay.
    d.send(&[error_trace("p"), error_trace("p")]).await;
    let f = rx.wait_for("/fragile", 1, Duration::from_secs(10)).await;
    let s = rx.wait_for("/steady", 1, Duration::from_secs(10)).await;
    assert_eq!(f[0].json()["payload"]["metadata"][0]["metric_value"], "4");
    assert_eq!(s[0].json()["payload"]["metadata"][0]["metric_value"], "4");
}

// Multi-threaded: the receiver must answer while the test thread waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_pending_deliveries_resume_at_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script("/a", vec![Answer::Status(503)]);
    let cfg = format!(
        "[engine]\ntick = \"5s\"\n[delivery]\ninitial_backoff = \"30s\"\nmax_backoff = \"30s\"\ndrain_timeout = \"2s\"\n\
         [[alert]]\nid = \"a\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"1h\"\n",
        rx.url("/a")
    );
    let mut d = Daemon::start(dir.path(), &cfg).await;
    d.send(&[error_trace("p")]).await;
    // The final tick at SIGTERM decides the notification (the 5 s tick has not come yet).
    assert_eq!(
        d.terminate(),
        Some(0),
        "graceful stop exits 0:\n{}",
        d.logs()
    );
    let first = rx.wait_for("/a", 1, Duration::from_secs(1)).await;
    assert!(d.logs().contains("stopped cleanly"));
    assert!(
        !d.logs().contains("still in flight"),
        "the drain finished before its timeout"
    );
    d.spawn().await;
    // The 503 during the drain put it in backoff for 30 s; the restart keeps it pending.
    let (_, v) = d.get("/v1/deliveries?status=pending").await;
    let rows = v["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "pending after restart: {v}\n{}", d.logs());
    assert_eq!(rows[0]["id"], first[0].json()["id"]);
    assert_eq!(rows[0]["attempts"], 1);
}

#[tokio::test]
async fn ingest_answers_503_while_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let slow = Receiver::start().await;
    slow.set_default(Answer::Hang);
    let cfg = format!(
        "[engine]\ntick = \"200ms\"\n[delivery]\ndrain_timeout = \"3s\"\ntimeout = \"30s\"\n\
         [[alert]]\nid = \"a\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"1h\"\n",
        slow.url("/a")
    );
    let d = Daemon::start(dir.path(), &cfg).await;
    d.send(&[error_trace("p")]).await;
    slow.wait_for("/a", 1, Duration::from_secs(10)).await;
    // A hanging send keeps the daemon draining for up to 3 s: ingest must refuse meanwhile.
    d.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut saw_503 = false;
    while Instant::now() < deadline && !saw_503 {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/events", d.base))
            .body(error_trace("p").to_string())
            .send()
            .await;
        if let Ok(r) = r {
            saw_503 = r.status().as_u16() == 503;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_503, "ingest kept accepting during the graceful stop");
}

#[tokio::test]
async fn a_data_file_of_a_newer_schema_is_refused_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alertd.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let t = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            t.open_table(def)
                .unwrap()
                .insert("schema_version", 99)
                .unwrap();
        }
        t.commit().unwrap();
    }
    let port = common::free_port();
    std::fs::write(
        dir.path().join("c.toml"),
        common::config_text(port, dir.path(), ""),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(["run", "-c"])
        .arg(dir.path().join("c.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("schema version 99")
            && err.contains(&format!("supports up to {}", alertd::store::SCHEMA_VERSION)),
        "{err}"
    );
}

#[tokio::test]
async fn a_data_file_in_use_by_another_alertd_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _running = Daemon::start(dir.path(), "").await;
    let port = common::free_port();
    std::fs::write(
        dir.path().join("c2.toml"),
        common::config_text(port, dir.path(), ""),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(["run", "-c"])
        .arg(dir.path().join("c2.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another running alertd"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_keeps_running_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = format!(
        "[engine]\ntick = \"300ms\"\n[[alert]]\nid = \"cost\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = 1000000000\nwindow = \"1h\"\n",
        rx.url("/c")
    );
    let d = Daemon::start(dir.path(), &cfg).await;
    let file = dir.path().join("alertd.redb");
    let size = std::fs::metadata(&file).unwrap().len();
    // The data file may not grow any more: the next growth fails like a full disk.
    let set_limit = |limit: &str| {
        let ok = std::process::Command::new("prlimit")
            .args(["--pid", &d.pid().to_string(), &format!("--fsize={limit}:")])
            .status()
            .unwrap()
            .success();
        assert!(ok, "prlimit failed");
    };
    set_limit(&size.to_string());
    let batch: Vec<String> = (0..2000)
        .map(|i| serde_json::json!({"kind": "trace", "total_estimated_cost": 1, "trace_id": format!("{i:0>200}")}).to_string())
        .collect();
    let body = batch.join("\n");
    let mut accepted = 0u64;
    let mut refused = None;
    for _ in 0..200 {
        let (s, v) = d.post_events(&body, "application/x-ndjson").await;
        match s {
            202 => accepted += v["accepted"].as_u64().unwrap(),
            503 => {
                refused = Some(v);
                break;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    let refused = refused.expect("the store never filled up");
    assert!(
        refused["error"].as_str().unwrap().contains("store"),
        "{refused}"
    );
    let (s, _) = d.get("/healthz").await;
    assert_eq!(s, 200, "the daemon stays up");
    // Space returns: ingest works again and nothing accepted earlier was lost.
    set_limit("unlimited");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = d
            .post_events(&batch[..10].join("\n"), "application/x-ndjson")
            .await;
        if s == 202 {
            accepted += v["accepted"].as_u64().unwrap();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ingest did not recover: {s} {v}\n{}",
            tail(&d.logs())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while alert_value(&d, "cost").await != Some(accepted as f64) {
        assert!(
            Instant::now() < deadline,
            "counted {:?}, accepted {accepted}\n{}",
            alert_value(&d, "cost").await,
            tail(&d.logs())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        d.logs().contains("data file reopened"),
        "recovery went through a reopen"
    );
}
