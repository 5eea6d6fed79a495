//! Silences (DESIGN §12) through the real binary and a loopback receiver: what is muted is not
//! sent but listed as suppressed, what was owed goes out at the first tick after the end, a
//! resolve of a delivered episode always goes out, and silences survive `kill -9` and reload.

mod common;

use common::{error_trace, Answer, Daemon, Receiver};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn engine() -> &'static str {
    "[engine]\ntick = \"200ms\"\n[delivery]\ninitial_backoff = \"200ms\"\n"
}

/// Alert `id`: errors of any project over 0 in 5 min, plus per-event `prompt:created` (1 s
/// debounce). One repeat an hour, so any second firing seen in a test comes from a silence.
fn alert(id: &str, url: &str) -> String {
    format!(
        "[[alert]]\nid = \"{id}\"\nurl = \"{url}\"\ndebounce = \"1s\"\nrepeat_interval = \"1h\"\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"5m\"\n\
         [[alert.trigger]]\nevent = \"prompt:created\"\n"
    )
}

fn prompt(id: &str) -> Value {
    json!({"kind": "prompt_created", "prompt": {"id": id, "name": "p"}})
}

async fn silence(d: &Daemon, body: Value) -> String {
    let (s, v) = d.post("/v1/silences", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().expect("an id").to_string()
}

async fn expire(d: &Daemon, id: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/silences/{id}", d.base))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn silences(d: &Daemon) -> Vec<Value> {
    let (s, v) = d.get("/v1/silences").await;
    assert_eq!(s, 200);
    v["silences"].as_array().cloned().unwrap()
}

async fn suppressed(d: &Daemon) -> Vec<Value> {
    let (s, v) = d.get("/v1/deliveries?status=suppressed&limit=1000").await;
    assert_eq!(s, 200, "{v}");
    v["deliveries"].as_array().cloned().unwrap()
}

/// Waits until at least `n` suppressed rows match `pred`.
async fn wait_suppressed(d: &Daemon, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows: Vec<Value> = suppressed(d).await.into_iter().filter(&pred).collect();
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} suppressed rows: {rows:?}\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lets a few ticks pass (tick = 200 ms) so that anything that would be sent is sent.
async fn some_ticks() {
    tokio::time::sleep(Duration::from_millis(1_000)).await;
}

fn is(event_type: &'static str, state: &'static str) -> impl Fn(&Value) -> bool {
    move |r| r["event_type"] == event_type && r["state"] == state
}

#[tokio::test]
async fn a_silenced_alert_sends_nothing_lists_suppressed_and_fires_at_the_next_tick_after_expire() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = Daemon::start(
        dir.path(),
        &(engine().to_string() + &alert("a", &rx.url("/a"))),
    )
    .await;
    let id = silence(
        &d,
        json!({"alert": "a", "duration": "1h", "comment": "deploy", "created_by": "ops"}),
    )
    .await;
    let listed = silences(&d).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["state"], "active");
    assert_eq!(listed[0]["alert"], "a");
    assert_eq!(listed[0]["event_types"], json!([]));
    assert_eq!(listed[0]["comment"], "deploy");
    assert_eq!(listed[0]["created_by"], "ops");
    let (_, alerts) = d.get("/v1/alerts").await;
    assert_eq!(alerts["alerts"][0]["silences"][0]["id"], id.as_str());

    d.send(&[error_trace("p"), prompt("1")]).await;
    let rows = wait_suppressed(&d, 1, is("trace:errors", "firing")).await;
    assert_eq!(rows[0]["silence_id"], id.as_str());
    assert_eq!(rows[0]["status"], "suppressed");
    wait_suppressed(&d, 1, is("prompt:created", "firing")).await;
    // Errors keep coming; evaluation goes on, nothing is sent.
    d.send(&[error_trace("p")]).await;
    some_ticks().await;
    assert!(rx.requests().is_empty(), "{:?}", rx.requests());
    let (_, alerts) = d.get("/v1/alerts").await;
    assert_eq!(alerts["alerts"][0]["firing"], true, "the episode is open");
    let metrics = d.metrics().await;
    assert!(metrics.contains("alertd_silences_active 1"), "{metrics}");
    assert!(
        metrics.contains("alertd_notifications_suppressed_total{alert=\"a\"} 2"),
        "{metrics}"
    );

    let (s, v) = expire(&d, &id).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["silence"]["state"], "expired");
    // repeat_interval is an hour: only the end of the silence can send this.
    let got = rx.wait_for("/a", 1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["event_type"], "trace:errors");
    assert_eq!(body["payload"]["metadata"][0]["state"], "firing");
    some_ticks().await;
    assert_eq!(
        rx.requests().len(),
        1,
        "one firing, and the prompt was dropped"
    );
    assert_eq!(
        silences(&d).await[0]["state"],
        "expired",
        "kept in the list"
    );
    let (s, _) = expire(&d, &id).await;
    assert_eq!(s, 200, "expiring twice is harmless");
    let (s, v) = expire(&d, "0197a000-0000-7000-8000-000000000001").await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test]
async fn a_silence_that_ends_by_time_releases_the_firing_at_the_first_tick_after_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = Daemon::start(
        dir.path(),
        &(engine().to_string() + &alert("a", &rx.url("/a"))),
    )
    .await;
    silence(&d, json!({"alert": "a", "duration": "3s"})).await;
    d.send(&[error_trace("p")]).await;
    wait_suppressed(&d, 1, is("trace:errors", "firing")).await;
    assert!(rx.requests().is_empty());
    let ends_at = silences(&d).await[0]["ends_at"]
        .as_str()
        .unwrap()
        .to_string();
    let got = rx.wait_for("/a", 1, WAIT).await;
    let created = got[0].json()["created_at"].as_str().unwrap().to_string();
    assert!(
        created >= ends_at,
        "sent at {created}, the silence ended {ends_at}"
    );
    assert_eq!(silences(&d).await[0]["state"], "expired");
}

#[tokio::test]
async fn pagerduty_resolve_of_a_delivered_episode_passes_the_silence_with_its_dedup_key() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.set_default(Answer::Status(202));
    let cfg = format!(
        "{}[[alert]]\nid = \"pd\"\ndestination = \"pagerduty\"\nurl = \"{}\"\nrouting_key = \"R0UT1NGKEY\"\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"3s\"\n",
        engine(),
        rx.url("/pd")
    );
    let d = Daemon::start(dir.path(), &cfg).await;
    d.send(&[error_trace("p")]).await;
    let trigger = rx.wait_for("/pd", 1, WAIT).await[0].json();
    assert_eq!(trigger["event_action"], "trigger");
    silence(&d, json!({"alert": "pd", "duration": "1h"})).await;
    let got = rx.wait_for("/pd", 2, WAIT).await;
    let resolve = got[1].json();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(
        resolve["dedup_key"], trigger["dedup_key"],
        "the incident is closed"
    );
    // A new episode inside the silence: its firing and its resolve are both only recorded.
    d.send(&[error_trace("p")]).await;
    wait_suppressed(&d, 1, is("trace:errors", "resolved")).await;
    let rows = suppressed(&d).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rx.requests().len(), 2);
}

#[tokio::test]
async fn an_active_silence_survives_kill_9_and_reload_and_still_suppresses() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = engine().to_string() + &alert("a", &rx.url("/a")) + &alert("b", &rx.url("/b"));
    let mut d = Daemon::start(dir.path(), &cfg).await;
    let id = silence(&d, json!({"alert": "a", "duration": "1h"})).await;
    let id_b = silence(&d, json!({"alert": "b", "duration": "1h"})).await;
    d.send(&[error_trace("p")]).await;
    // Both alerts see the error; b's firing is suppressed too.
    wait_suppressed(&d, 2, is("trace:errors", "firing")).await;

    d.kill9();
    d.spawn().await;
    let listed = silences(&d).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|s| s["state"] == "active"), "{listed:?}");
    assert_eq!(suppressed(&d).await.len(), 2, "the record survives too");
    d.send(&[prompt("after-restart")]).await;
    wait_suppressed(&d, 2, is("prompt:created", "firing")).await;
    assert!(rx.requests().is_empty(), "{:?}", rx.requests());

    // Reload without alert b: both silences stay listed, a's still mutes.
    d.rewrite_config(&(engine().to_string() + &alert("a", &rx.url("/a"))));
    let (s, v) = d.post("/v1/reload", None).await;
    assert_eq!(s, 200, "{v}");
    let listed = silences(&d).await;
    assert!(listed.iter().any(|s| s["id"] == id_b.as_str()));
    d.send(&[prompt("after-reload")]).await;
    wait_suppressed(&d, 3, is("prompt:created", "firing")).await;
    assert!(rx.requests().is_empty());

    // The firing owed before the crash is sent once the silence is over.
    assert_eq!(expire(&d, &id).await.0, 200);
    let got = rx.wait_for("/a", 1, WAIT).await;
    assert_eq!(got[0].json()["event_type"], "trace:errors");
}

#[tokio::test]
async fn wildcard_silences_filter_by_event_type() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = engine().to_string() + &alert("a", &rx.url("/a")) + &alert("b", &rx.url("/b"));
    let d = Daemon::start(dir.path(), &cfg).await;
    let id = silence(
        &d,
        json!({"alert": "*", "event_types": ["prompt:created"], "duration": "1h"}),
    )
    .await;
    d.send(&[error_trace("p"), prompt("1")]).await;
    rx.wait_for("/a", 1, WAIT).await;
    rx.wait_for("/b", 1, WAIT).await;
    let rows = wait_suppressed(&d, 2, is("prompt:created", "firing")).await;
    assert!(rows.iter().all(|r| r["silence_id"] == id.as_str()));
    let mut alerts: Vec<&str> = rows
        .iter()
        .map(|r| r["alert_id"].as_str().unwrap())
        .collect();
    alerts.sort();
    assert_eq!(alerts, ["a", "b"]);
    some_ticks().await;
    let sent: Vec<Value> = rx.requests().iter().map(|r| r.json()).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|b| b["event_type"] == "trace:errors"));
    let (_, alerts) = d.get("/v1/alerts").await;
    for a in alerts["alerts"].as_array().unwrap() {
        assert_eq!(a["silences"][0]["alert"], "*", "{a}");
    }
}

#[tokio::test]
async fn bad_requests_get_a_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        dir.path(),
        &(engine().to_string() + &alert("a", "http://127.0.0.1:9/")),
    )
    .await;
    for (body, field) in [
        (json!({"alert": "nope", "duration": "1h"}), "alert"),
        (
            json!({"alert": "a", "duration": "1h", "event_types": ["trace:cost"]}),
            "event_types",
        ),
        (
            json!({"alert": "a", "duration": "1h", "event_types": ["nope"]}),
            "event_types",
        ),
        (json!({"alert": "a"}), "duration"),
        (json!({"alert": "a", "duration": "-1h"}), "duration"),
        (json!({"alert": "a", "duration": "0s"}), "duration"),
        (
            json!({"alert": "a", "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}),
            "ends_at",
        ),
    ] {
        let (s, v) = d.post("/v1/silences", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap().starts_with(field),
            "{body}: {v}"
        );
    }
    let r = reqwest::Client::new()
        .post(format!("{}/v1/silences", d.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(silences(&d).await.is_empty());
    let (s, _) = expire(&d, "not-a-uuid").await;
    assert_eq!(s, 400);
    let (s, v) = d.get("/v1/deliveries?status=nope").await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("suppressed"), "{v}");
}

fn alertd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(args)
        .env("USER", "tester")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_adds_lists_and_expires_silences() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = Daemon::start(
        dir.path(),
        &(engine().to_string() + &alert("a", &rx.url("/a"))),
    )
    .await;
    let cfg = d.config_path.to_str().unwrap().to_string();
    let (code, out, err) = alertd(&[
        "silence",
        "add",
        "a",
        "--event",
        "trace:errors",
        "--for",
        "2h",
        "--comment",
        "deploy",
        "-c",
        &cfg,
    ]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_string();
    assert!(uuid_like(&id), "{out}");
    assert!(
        err.contains(&format!("alertd silence expire {id}")),
        "{err}"
    );

    let (code, out, err) = alertd(&["silence", "list", "-c", &cfg]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with(&id)).expect(&out);
    for word in ["active", "trace:errors", "tester", "deploy", " a "] {
        assert!(line.contains(word), "{word:?} missing in {line:?}");
    }
    // The API sees what the CLI made.
    let listed = silences(&d).await;
    assert_eq!(listed[0]["event_types"], json!(["trace:errors"]));

    let (code, out, err) = alertd(&["silence", "expire", &id, "-c", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("expired {id}")), "{out}");
    let (_, out, _) = alertd(&["silence", "list", "-c", &cfg]);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&id) && l.contains("expired")),
        "{out}"
    );

    // --until with an RFC 3339 time, and the daemon's 400 shown as the error.
    let until = (time::OffsetDateTime::now_utc() + time::Duration::hours(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (code, out, err) = alertd(&["silence", "add", "*", "--until", &until, "-c", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(uuid_like(out.trim()), "{out}");
    let (code, _, err) = alertd(&["silence", "add", "nope", "--for", "1h", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(err.contains("alert: no alert with id \"nope\""), "{err}");
    let (code, _, err) = alertd(&["silence", "add", "a", "-c", &cfg]);
    assert_ne!(code, 0);
    assert!(err.contains("--for"), "{err}");
    let (code, _, err) = alertd(&[
        "silence",
        "expire",
        "0197a000-0000-7000-8000-000000000001",
        "-c",
        &cfg,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no silence"), "{err}");

    // Suppressed deliveries in the deliveries table name their silence.
    let (code, out, _) = alertd(&["deliveries", "--status", "suppressed", "-c", &cfg]);
    assert_eq!(code, 0);
    assert!(out.lines().count() >= 1, "{out}");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}
