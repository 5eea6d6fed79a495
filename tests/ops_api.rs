//! Operating alertd through the real binary: Prometheus metrics, health and readiness, the alerts
//! view, JSON logs, bearer-token auth, and secrets that never leak into logs or API answers.

mod common;

use common::{error_trace, free_port, Answer, Receiver};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// alertd started with a whole config file of the test's own (for `[server]` settings and file
/// modes) and extra arguments such as `--log-format json`.
struct Proc {
    child: Option<Child>,
    base: String,
    log: PathBuf,
    token: Option<String>,
}

impl Proc {
    /// Writes nothing: `config` must already be at `dir/alertd.toml`, listening on `port`.
    async fn start(dir: &Path, port: u16, args: &[&str], token: Option<&str>) -> Proc {
        let log = dir.join("alertd.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_alertd"))
            .args(args)
            .arg("run")
            .arg("-c")
            .arg(dir.join("alertd.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start alertd");
        let mut p = Proc {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
            token: token.map(str::to_string),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/healthz", p.base)).await {
                if r.status().is_success() {
                    break;
                }
            }
            if let Some(s) = p.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("alertd exited early ({s}):\n{}", p.logs());
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", p.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        p
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `method path` with the configured token; returns status and body text.
    async fn call(&self, method: &str, path: &str, body: Option<String>) -> (u16, String) {
        let client = reqwest::Client::new();
        let url = format!("{}{}", self.base, path);
        let mut req = match method {
            "GET" => client.get(url),
            _ => client.post(url),
        };
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/x-ndjson").body(b);
        }
        let r = req.send().await.expect("request");
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn send(&self, events: &[Value]) {
        let body: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        let (status, text) = self.call("POST", "/v1/events", Some(body.join("\n"))).await;
        assert_eq!(status, 202, "{text}");
    }

    /// SIGTERM and wait for the exit code.
    fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(s) = c.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        None
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `[server]` and `[storage]` for `dir`, then `rest`.
fn config(dir: &Path, port: u16, server_extra: &str, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n{server_extra}\n[storage]\npath = \"{}\"\n\
         [engine]\ntick = \"100ms\"\n[delivery]\ninitial_backoff = \"50ms\"\nmax_retries = 1\ntimeout = \"60s\"\n\
         drain_timeout = \"5s\"\n{rest}",
        dir.join("alertd.redb").display()
    )
}

fn write_config(dir: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("alertd.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn errors_alert(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[alert]]\nid = \"{id}\"\nurl = \"{url}\"\n{extra}\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"5m\"\n"
    )
}

/// `GET /metrics` as a map from series (`name{labels}`) to value.
async fn metrics(p: &Proc) -> BTreeMap<String, f64> {
    let (status, text) = p.call("GET", "/metrics", None).await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Polls `GET /metrics` until every `(series, predicate)` holds.
/// A metric series and what its value must satisfy.
type Check<'a> = (&'a str, fn(f64) -> bool);

async fn wait_for_metrics(p: &Proc, checks: &[Check<'_>]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = metrics(p).await;
        let failing: Vec<_> = checks
            .iter()
            .filter(|(k, ok)| !m.get(*k).is_some_and(|v| ok(*v)))
            .map(|(k, _)| (*k, m.get(*k)))
            .collect();
        if failing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "metrics not as expected: {failing:?}\nall: {m:#?}\nlog:\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_cover_ingest_journal_alerts_delivery_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.set_default(Answer::Status(200));
    rx.script("/dead", vec![Answer::Status(400)]);
    let port = free_port();
    let rest = format!(
        "{}{}",
        errors_alert("ok", &rx.url("/ok"), ""),
        errors_alert("dead", &rx.url("/dead"), "")
    );
    write_config(dir.path(), &config(dir.path(), port, "", &rest), 0o600);
    let p = Proc::start(dir.path(), port, &[], None).await;

    let with_id = json!({"kind": "trace", "id": "e-1", "project": "p1", "error_info": {}});
    p.send(std::slice::from_ref(&with_id)).await;
    p.send(&[with_id]).await; // the same client id again: a duplicate
    let (status, _) = p
        .call("POST", "/v1/events", Some(r#"{"kind": "nope"}"#.into()))
        .await;
    assert_eq!(status, 400);
    let old = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let old = old
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    p.send(&[json!({"kind": "trace", "project": "p1", "error_info": {}, "timestamp": old})])
        .await; // older than every window: late

    let positive: fn(f64) -> bool = |v| v > 0.0;
    let one: fn(f64) -> bool = |v| v == 1.0;
    let zero: fn(f64) -> bool = |v| v == 0.0;
    let two: fn(f64) -> bool = |v| v == 2.0;
    let recent: fn(f64) -> bool = |v| v > 1.7e9;
    let build = format!(
        "alertd_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    wait_for_metrics(
        &p,
        &[
            (
                r#"alertd_events_total{kind="trace",outcome="accepted"}"#,
                two,
            ),
            (
                r#"alertd_events_total{kind="trace",outcome="duplicate"}"#,
                one,
            ),
            (
                r#"alertd_events_total{kind="unknown",outcome="rejected"}"#,
                one,
            ),
            (
                r#"alertd_events_total{kind="trace",outcome="late"}"#,
                positive,
            ),
            ("alertd_journal_commit_seconds_count", positive),
            (
                r#"alertd_journal_commit_seconds_bucket{le="+Inf"}"#,
                positive,
            ),
            ("alertd_journal_commit_events_count", positive),
            ("alertd_alerts_firing", two),
            (
                r#"alertd_notifications_total{alert="ok",state="firing"}"#,
                one,
            ),
            (
                r#"alertd_notifications_total{alert="dead",state="firing"}"#,
                one,
            ),
            (
                r#"alertd_delivery_attempts_total{outcome="delivered",destination="general"}"#,
                one,
            ),
            (
                r#"alertd_delivery_attempts_total{outcome="dead",destination="general"}"#,
                one,
            ),
            ("alertd_delivery_latency_seconds_count", one),
            ("alertd_outbox_depth", zero),
            ("alertd_dead_letters", one),
            ("alertd_inbox_events", zero),
            ("alertd_config_last_reload_successful", one),
            (
                "alertd_config_last_reload_success_timestamp_seconds",
                recent,
            ),
            (build.as_str(), one),
        ],
    )
    .await;
    let (_, text) = p.call("GET", "/metrics", None).await;
    for family in [
        "# TYPE alertd_journal_commit_seconds histogram",
        "# TYPE alertd_delivery_latency_seconds histogram",
        "# TYPE alertd_events counter",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
}

#[tokio::test]
async fn healthz_and_readyz_answer_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_config(dir.path(), &config(dir.path(), port, "", ""), 0o600);
    let p = Proc::start(dir.path(), port, &[], None).await;
    let (status, body) = p.call("GET", "/healthz", None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = p.call("GET", "/readyz", None).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
}

#[tokio::test]
async fn readyz_turns_unavailable_while_draining_but_healthz_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.set_default(Answer::Hang);
    let port = free_port();
    let rest = errors_alert("slow", &rx.url("/slow"), "");
    write_config(dir.path(), &config(dir.path(), port, "", &rest), 0o600);
    let p = Proc::start(dir.path(), port, &[], None).await;
    p.send(&[error_trace("p1")]).await;
    rx.wait_for("/slow", 1, Duration::from_secs(10)).await; // in flight, never answered
    p.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let (status, body) = p.call("GET", "/readyz", None).await;
        if status == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "readyz stayed {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = p.call("GET", "/healthz", None).await;
    assert_eq!(status, 200, "alive while draining");
    let (status, _) = p
        .call("POST", "/v1/events", Some(error_trace("p1").to_string()))
        .await;
    assert_eq!(status, 503, "no new events while stopping");
}

#[tokio::test]
async fn alerts_view_shows_masked_config_state_values_buckets_and_last_notification() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let port = free_port();
    let thr = errors_alert(
        "thr",
        &rx.url("/hook/path-secret-77"),
        "secret_token = \"tok-secret-1234\"\n\
         signing_secret = \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\"\n\
         headers = { \"X-Env\" = \"prod\" }",
    );
    let bucket = format!(
        "[[alert]]\nid = \"bucket\"\nurl = \"{}\"\ndebounce = \"1h\"\n\
         [[alert.trigger]]\nevent = \"prompt:created\"\n",
        rx.url("/bucket")
    );
    let off = errors_alert("off", &rx.url("/off"), "enabled = false");
    let rest = format!("{thr}{bucket}{off}");
    write_config(dir.path(), &config(dir.path(), port, "", &rest), 0o600);
    let p = Proc::start(dir.path(), port, &[], None).await;
    p.send(&[error_trace("p1"), error_trace("p1")]).await;
    let prompts: Vec<_> = (0..3)
        .map(|i| json!({"kind": "prompt_created", "prompt": {"id": format!("p{i}"), "name": "x"}}))
        .collect();
    p.send(&prompts).await;
    rx.wait_for("/hook", 1, Duration::from_secs(10)).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let (text, v) = loop {
        let (status, text) = p.call("GET", "/v1/alerts", None).await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let thr_notified = !v["alerts"][2]["last_notified_at"].is_null();
        if v["alerts"][0]["triggers"][0]["bucket_size"] == 3 && thr_notified {
            break (text, v);
        }
        assert!(Instant::now() < deadline, "{v:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ids: Vec<_> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(ids, [json!("bucket"), json!("off"), json!("thr")]);
    let (bucket, off, thr) = (&v["alerts"][0], &v["alerts"][1], &v["alerts"][2]);

    assert_eq!(thr["enabled"], true);
    assert_eq!(thr["firing"], true);
    assert_eq!(thr["triggers"][0]["value"], 2.0);
    assert_eq!(thr["triggers"][0]["firing"], true);
    assert_eq!(thr["triggers"][0]["threshold"], 0.0);
    assert_eq!(thr["url"], format!("http://{}/***", rx.addr));
    assert_eq!(thr["secret_token_set"], true);
    assert_eq!(thr["signing_secret_set"], true);
    assert_eq!(thr["headers"], json!(["X-Env"]));
    let last = thr["last_notified_at"].as_str().expect("a time");
    assert!(
        time::OffsetDateTime::parse(last, &time::format_description::well_known::Rfc3339).is_ok(),
        "{last}"
    );

    assert_eq!(bucket["firing"], false);
    assert_eq!(bucket["triggers"][0]["bucket_size"], 3);
    assert_eq!(bucket["last_notified_at"], Value::Null);

    assert_eq!(off["enabled"], false);
    assert_eq!(off["firing"], false);
    assert_eq!(off["triggers"][0]["value"], Value::Null);

    for secret in ["path-secret-77", "tok-secret-1234", "C2FVsBQIhrscChlQIMV"] {
        assert!(!text.contains(secret), "{secret} shown in {text}");
    }
}

#[tokio::test]
async fn json_log_format_writes_one_object_per_line_with_alert_and_delivery_ids() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let port = free_port();
    let rest = errors_alert("j", &rx.url("/j"), "");
    write_config(dir.path(), &config(dir.path(), port, "", &rest), 0o600);
    let mut p = Proc::start(dir.path(), port, &["--log-format", "json"], None).await;
    p.send(&[error_trace("p1")]).await;
    rx.wait_for("/j", 1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.logs().contains("\"delivered\"") {
        assert!(Instant::now() < deadline, "{}", p.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(p.terminate(), Some(0));

    let lines: Vec<Value> = p
        .logs()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
        assert!(l["fields"]["message"].is_string(), "{l}");
    }
    let find = |msg: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == msg)
            .unwrap_or_else(|| panic!("no {msg:?} line in {lines:#?}"))
            .clone()
    };
    let decided = find("notification decided");
    let delivered = find("delivered");
    assert_eq!(decided["fields"]["alert"], "j");
    assert_eq!(delivered["fields"]["alert"], "j");
    let id = decided["fields"]["delivery"].as_str().expect("delivery id");
    assert_eq!(delivered["fields"]["delivery"], id);
    assert_eq!(rx.requests_to("/j")[0].json()["id"], id);
}

const TOKEN: &str = "s3cret-api-token-0042";

/// Every route but `/healthz`, as (method, path, status with the right token and no body) for a
/// daemon whose only alert is `a`.
const PROTECTED: &[(&str, &str, u16)] = &[
    ("POST", "/v1/events", 400),
    ("GET", "/v1/alerts", 200),
    ("POST", "/v1/alerts/a/test", 200),
    ("GET", "/v1/deliveries", 200),
    (
        "POST",
        "/v1/deliveries/0192f000-0000-7000-8000-000000000000/retry",
        404,
    ),
    ("POST", "/v1/reload", 200),
    ("GET", "/readyz", 200),
    ("GET", "/metrics", 200),
];

async fn check_auth(p: &Proc, token: &str) {
    let client = reqwest::Client::new();
    for (method, path, expected) in PROTECTED {
        let url = format!("{}{}", p.base, path);
        let req = || match *method {
            "GET" => client.get(&url),
            _ => client.post(&url),
        };
        for (what, r) in [
            ("no token", req()),
            ("wrong token", req().bearer_auth("not-the-token")),
            (
                "token as basic auth",
                req().header("authorization", format!("Basic {token}")),
            ),
            ("token prefix", req().bearer_auth(&token[..token.len() - 1])),
        ] {
            let r = r.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{method} {path} with {what}");
            let body: Value = r.json().await.expect("a JSON error");
            assert!(body["error"].is_string(), "{body}");
            assert!(!body.to_string().contains(token), "{body}");
        }
        let r = req().bearer_auth(token).send().await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            *expected,
            "{method} {path} with the token: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let r = client
        .get(format!("{}/healthz", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "healthz needs no token");
}

/// A daemon with the bearer token [`TOKEN`] and one alert, `a`; keep the receiver and the
/// directory while it runs.
async fn start_with_token(dir: &Path) -> (Proc, Receiver) {
    let rx = Receiver::start().await;
    let port = free_port();
    let server = format!("auth_token = \"{TOKEN}\"");
    let rest = errors_alert("a", &rx.url("/a"), "");
    write_config(dir, &config(dir, port, &server, &rest), 0o600);
    (Proc::start(dir, port, &[], Some(TOKEN)).await, rx)
}

#[tokio::test]
async fn every_route_but_healthz_requires_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _rx) = start_with_token(dir.path()).await;
    check_auth(&p, TOKEN).await;
}

/// `POST /v1/events` is served outside axum's router (`src/api/service.rs`); every neighbour of
/// that exact method and path must still answer as the router does.
#[tokio::test]
async fn ingest_served_beside_the_router_answers_like_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _rx) = start_with_token(dir.path()).await;
    let client = reqwest::Client::new();
    let event = json!({"kind": "trace", "project": "p1", "error_info": {}}).to_string();
    let send = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut r = client
            .request(method, format!("{}{path}", p.base))
            .header("content-type", "application/json")
            .body(event.clone());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    use reqwest::Method;
    for (method, path, token, want) in [
        (Method::POST, "/v1/events", Some(TOKEN), 202),
        (Method::POST, "/v1/events?source=x", Some(TOKEN), 202),
        (Method::POST, "/v1/events", None, 401),
        (Method::POST, "/v1/events", Some("wrong"), 401),
        (Method::GET, "/v1/events", Some(TOKEN), 405),
        (Method::PUT, "/v1/events", Some(TOKEN), 405),
        (Method::POST, "/v1/events/", Some(TOKEN), 404),
        (Method::POST, "/V1/EVENTS", Some(TOKEN), 404),
        (Method::POST, "/v1/eventsx", Some(TOKEN), 404),
    ] {
        let r = send(method.clone(), path, token).await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{method} {path} token {token:?}");
        if want != 405 {
            let body: Value = r.json().await.expect("a JSON answer");
            let ok = if want == 202 {
                body["accepted"] == 1
            } else {
                body["error"].is_string()
            };
            assert!(ok, "{method} {path}: {body}");
        }
    }
    // Exactly the two accepted events were stored.
    let m = metrics(&p).await;
    let accepted: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("alertd_events_total{") && k.contains("accepted"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(accepted, 2.0, "{m:?}");
}

#[tokio::test]
async fn auth_token_file_is_enforced_like_an_inline_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rx = Receiver::start().await;
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let rest = errors_alert("a", &rx.url("/a"), "");
    let text = config(dir.path(), port, "auth_token_file = \"token\"", &rest);
    write_config(dir.path(), &text, 0o600);
    let p = Proc::start(dir.path(), port, &[], Some(TOKEN)).await;
    check_auth(&p, TOKEN).await;
}

#[tokio::test]
async fn secrets_never_appear_in_logs_or_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script("/fail", vec![Answer::Status(500), Answer::Status(500)]);
    let port = free_port();
    let auth = "AUTH-7f3a9c-secret";
    let secrets = [
        auth,
        "TOKEN-general-91d2",
        "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "ROUTING-KEY-8842ab",
        "PATH-general-5b1e",
        "SLACKPATH-44e1",
        "PDPATH-0c77",
        "FAILPATH-3391",
        "CONNPATH-6d02",
        "NEWPATH-aa31",
    ];
    let alerts = [
        errors_alert(
            "gen",
            &rx.url("/gen/PATH-general-5b1e"),
            "secret_token = \"TOKEN-general-91d2\"\n\
             signing_secret = \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\"",
        ),
        errors_alert(
            "slack",
            &rx.url("/services/T000/B000/SLACKPATH-44e1"),
            "destination = \"slack\"",
        ),
        errors_alert(
            "pd",
            &rx.url("/pd/PDPATH-0c77"),
            "destination = \"pagerduty\"\nrouting_key = \"ROUTING-KEY-8842ab\"",
        ),
        errors_alert("fail", &rx.url("/fail/FAILPATH-3391"), ""),
        errors_alert("conn", "http://127.0.0.1:9/CONNPATH-6d02", ""),
    ]
    .concat();
    let server = format!("auth_token = \"{auth}\"");
    let good = config(dir.path(), port, &server, &alerts);
    write_config(dir.path(), &good, 0o600);
    let mut p = Proc::start(dir.path(), port, &[], Some(auth)).await;
    let mut answers = Vec::new();

    p.send(&[error_trace("p1")]).await;
    for path in ["/gen", "/services", "/pd"] {
        rx.wait_for(path, 1, Duration::from_secs(10)).await;
    }
    rx.wait_for("/fail", 2, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let (_, text) = p.call("GET", "/v1/deliveries?status=dead", None).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["deliveries"].as_array().unwrap().len() == 2 {
            answers.push(text);
            break v;
        }
        assert!(Instant::now() < deadline, "{v}\n{}", p.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for path in [
        "/v1/alerts",
        "/v1/deliveries?status=pending",
        "/v1/deliveries?status=delivered",
        "/metrics",
        "/readyz",
    ] {
        answers.push(p.call("GET", path, None).await.1);
    }
    for id in ["gen", "slack", "pd", "fail", "conn"] {
        answers.push(
            p.call("POST", &format!("/v1/alerts/{id}/test"), None)
                .await
                .1,
        );
    }
    let dead_id = dead["deliveries"][0]["id"].as_str().unwrap();
    answers.push(
        p.call("POST", &format!("/v1/deliveries/{dead_id}/retry"), None)
            .await
            .1,
    );
    // A rejected reload whose file holds every secret, and an unparsable one.
    // First the URL of a new alert, whose error quotes the URL, then a bad operator.
    let bad_url = good.replace(
        "[[alert]]\nid = \"gen\"",
        "[[alert]]\nid = \"new\"\nurl = \"http://[::1/NEWPATH-aa31\"\n\
         [[alert.trigger]]\nevent = \"prompt:created\"\n[[alert]]\nid = \"gen\"",
    );
    write_config(dir.path(), &bad_url, 0o600);
    let (status, text) = p.call("POST", "/v1/reload", None).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("alert \\\"new\\\": url"), "{text}");
    answers.push(text);
    let bad = good.replace("threshold = 0\n", "threshold = 0\noperator = \"=\"\n");
    write_config(dir.path(), &bad, 0o600);
    let (status, text) = p.call("POST", "/v1/reload", None).await;
    assert_eq!(status, 400, "{text}");
    answers.push(text);
    write_config(dir.path(), &bad.replace("[[alert]]", "[[alert]"), 0o600);
    let (status, text) = p.call("POST", "/v1/reload", None).await;
    assert_eq!(status, 400, "{text}");
    answers.push(text);
    let wrong = reqwest::Client::new()
        .get(format!("{}/v1/alerts", p.base))
        .bearer_auth("AUTH-7f3a9c")
        .send()
        .await
        .unwrap();
    answers.push(wrong.text().await.unwrap());
    write_config(dir.path(), &good, 0o600);
    assert_eq!(p.call("POST", "/v1/reload", None).await.0, 200);
    assert_eq!(p.terminate(), Some(0));

    let logs = p.logs();
    assert!(logs.contains("delivery moved to dead letters"), "{logs}");
    assert!(logs.contains("config reload rejected"), "{logs}");
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
        for a in &answers {
            assert!(!a.contains(secret), "{secret} in an API answer: {a}");
        }
    }
}

/// Starts alertd on a config with mode `mode` and returns its log once it is ready.
async fn start_log(dir: &Path, server_extra: &str, alert_extra: &str, mode: u32) -> String {
    let rx_url = "http://127.0.0.1:9/hook";
    let port = free_port();
    let text = config(
        dir,
        port,
        server_extra,
        &errors_alert("w", rx_url, alert_extra),
    );
    write_config(dir, &text, mode);
    let p = Proc::start(dir, port, &[], None).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.logs().contains("alertd ready") {
        assert!(Instant::now() < deadline, "{}", p.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.logs()
}

const WARNING: &str = "holds secrets and is readable by every user";

#[tokio::test]
async fn warns_at_start_when_a_world_readable_config_holds_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let log = start_log(dir.path(), "", "secret_token = \"tok-w-5150\"", 0o644).await;
    assert!(log.contains(WARNING), "{log}");
    assert!(log.contains("secret_token"), "names the key: {log}");
    assert!(!log.contains("tok-w-5150"), "not the value: {log}");
}

#[tokio::test]
async fn no_warning_when_the_config_is_private_or_secrets_live_in_files() {
    let private = tempfile::tempdir().unwrap();
    let log = start_log(private.path(), "", "secret_token = \"tok-w-5150\"", 0o640).await;
    assert!(!log.contains(WARNING), "{log}");

    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("tok"), "tok-w-5150\n").unwrap();
    let log = start_log(files.path(), "", "secret_token_file = \"tok\"", 0o644).await;
    assert!(!log.contains(WARNING), "{log}");
}

/// `storage.compact_when_idle` shorter than the one-minute housekeeping: a quiet store is
/// compacted within about two of its periods, not at the next minute (issue 21: space comes
/// back after a burst).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_store_is_compacted_after_compact_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let d = common::Daemon::start(
        dir.path(),
        "compact_when_idle = \"2s\"\n[engine]\ntick = \"1s\"\n",
    )
    .await;
    let line = r#"{"kind":"trace","project":"p","error_info":{"m":"x"},"user":"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"}"#;
    let body = format!("{line}\n").repeat(10_000);
    for _ in 0..10 {
        let (s, v) = d.post_events(&body, "application/x-ndjson").await;
        assert_eq!(s, 202, "{v}");
    }
    let file = || {
        std::fs::metadata(dir.path().join("alertd.redb"))
            .unwrap()
            .len()
    };
    let peak = file();
    assert!(peak > 8 << 20, "the burst grew the file to {peak} bytes");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = file();
        if now * 4 < peak {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the file is still {now} bytes (peak {peak}) 30 s after the burst"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
