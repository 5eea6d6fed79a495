//! Crash safety through the real binary: kill -9 at random moments loses nothing, a panicking
//! alert is restarted alone, SIGTERM drains, and store problems give clear messages.

mod common;

use common::{error_trace, Answer, Daemon, Receiver};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
max_events_per_message = 100000
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
# The same prompts with a bucket open across several ticks (and kills): its items are stored
# apart from its checkpoint and listed again at every restart.
[[alert]]
id = "prompts_slow"
url = "RX/slow_prompts"
debounce = "3s"
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

/// What the generator is doing, shared with the killer so that kills can be aimed at requests.
#[derive(Default)]
struct Traffic {
    /// Requests written to a connection so far.
    written: AtomicU64,
    /// Kills so far (counted just before each `kill -9`).
    kills: AtomicU64,
    /// Requests written before a kill whose connection then died without a complete answer:
    /// each is a kill that landed mid-request.
    interrupted: AtomicU64,
    /// Connections that died without an answer and without a kill during the request (the
    /// kernel resets connections a dying listener had queued): not counted as mid-request.
    dropped: AtomicU64,
    /// Round-trip time of the last answered request, in microseconds.
    last_rtt_us: AtomicU64,
    /// Events a retried batch found already committed (`duplicates`): the kill came after the
    /// commit and before the answer reached the client.
    duplicates: AtomicU64,
    /// Every batch was accepted.
    done: AtomicBool,
}

/// How one raw HTTP request ended.
enum Sent {
    /// Nothing listened: the daemon was down or not yet bound.
    Refused,
    /// The request was written, then the connection died without a complete answer.
    Interrupted,
    Answered(u16, String),
}

/// `POST /v1/events` over a fresh connection, by hand, so the moment the request is on the wire
/// is known exactly (`traffic.written` moves then).
async fn post_raw(port: u16, body: &str, traffic: &Traffic) -> Sent {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return Sent::Refused;
    };
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: alertd\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    if conn.write_all(request.as_bytes()).await.is_err() {
        return Sent::Refused;
    }
    let kills_before = traffic.kills.load(Ordering::SeqCst);
    traffic.written.fetch_add(1, Ordering::SeqCst);
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
        .await
        .expect("alertd neither answered nor died within 30 s");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok());
    match (read, status) {
        (Ok(_), Some(status)) if !body.is_empty() => {
            traffic
                .last_rtt_us
                .store(started.elapsed().as_micros() as u64, Ordering::SeqCst);
            Sent::Answered(status, body.to_string())
        }
        _ => {
            if traffic.kills.load(Ordering::SeqCst) != kills_before {
                traffic.interrupted.fetch_add(1, Ordering::SeqCst);
            } else {
                traffic.dropped.fetch_add(1, Ordering::SeqCst);
            }
            Sent::Interrupted
        }
    }
}

/// Posts every batch, each retried until accepted as a real client would (same client ids).
async fn generate(port: u16, batches: Vec<String>, traffic: Arc<Traffic>, min_kills: usize) {
    let n = batches.len().max(1);
    for (b, body) in batches.into_iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match post_raw(port, &body, &traffic).await {
                Sent::Answered(202, answer) => {
                    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
                    traffic
                        .duplicates
                        .fetch_add(v["duplicates"].as_u64().unwrap(), Ordering::SeqCst);
                    // A steady client, not a flood: ingest spans many kill rounds. It also keeps
                    // pace with the killer (each batch waits up to 300 ms for its share of
                    // `min_kills + 1` kills), so on a machine that accepts batches faster than
                    // it restarts alertd, ingest still lasts for the kills the test asserts.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let want = ((b + 1) * (min_kills + 1) / n) as u64;
                    let until = Instant::now() + Duration::from_millis(300);
                    while traffic.kills.load(Ordering::SeqCst) < want && Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    break;
                }
                Sent::Answered(503, _) | Sent::Refused | Sent::Interrupted => {}
                Sent::Answered(status, answer) => panic!("ingest answered {status}: {answer}"),
            }
            assert!(Instant::now() < deadline, "a batch was never accepted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    traffic.done.store(true, Ordering::SeqCst);
}

/// Readiness of one start, read from its own `NOTIFY_SOCKET` the way systemd reads it: the
/// killer watches the process, not `/healthz`.
struct StartWatch {
    ready: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
    launched: Instant,
}

impl StartWatch {
    fn launch(d: &mut Daemon, n: usize) -> StartWatch {
        let path = d.dir.join(format!("notify-{n}.sock"));
        let sock = tokio::net::UnixDatagram::bind(&path).expect("bind a notify socket");
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf).await {
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
                {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        });
        d.set_env("NOTIFY_SOCKET", path.to_str().unwrap());
        d.launch();
        StartWatch {
            ready,
            reader,
            launched: Instant::now(),
        }
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Waits for `READY=1`; returns how long start-up took.
    async fn wait(&self, d: &mut Daemon) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.is_ready() {
            assert!(
                d.is_running(),
                "alertd exited by itself:\n{}",
                tail(&d.logs())
            );
            assert!(
                Instant::now() < deadline,
                "no READY=1 within 30 s:\n{}",
                tail(&d.logs())
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.launched.elapsed()
    }
}

impl Drop for StartWatch {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn data_file_size(d: &Daemon) -> u64 {
    std::fs::metadata(d.dir.join("alertd.redb"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// The data file may not grow past this for `batches` batches of 40 events. Measured: 2.2 MB
/// after 120 batches (events, their client ids kept for `dedup_window`, checkpoints, outbox and
/// delivery log); the bound is three times that, so space that is never reused — per crash,
/// per recovery or per batch — fails the test instead of being printed.
fn data_file_bound(batches: usize) -> u64 {
    1024 * 1024 + batches as u64 * 48 * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_at_random_moments_loses_no_event_and_no_notification() {
    torture(&[], false).await;
}

// Multi-threaded: the generator and the killer run beside the test thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_with_alert_panics_and_reloads_loses_no_event_and_no_notification() {
    // In every process the cost alert's actor dies at its first tick and is restarted from its
    // checkpoint plus replay, and the config is reloaded between kills: restarts and reloads race
    // kills, replay and ticks.
    torture(&[("TESTHOOK_ALERTD_PANIC", "cost")], true).await;
}

async fn torture(env: &[(&str, &str)], reloads: bool) {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let cfg = TORTURE_ALERTS.replace("RX", &rx.url(""));
    let mut d = Daemon::prepare(dir.path(), &cfg, env);
    let mut starts = 0;
    let mut watch = StartWatch::launch(&mut d, starts);
    let mut startup = watch.wait(&mut d).await;

    // The generator: batches of 40 events with client ids (a quarter prompts, the rest error
    // traces of cost 1), each retried until accepted. scripts/soak.sh raises both numbers.
    let batches: usize = env_or("TORTURE_BATCHES", 120);
    let min_kills: usize = env_or("TORTURE_MIN_KILLS", 20);
    let max_kills: usize = env_or("TORTURE_MAX_KILLS", 4 * batches);
    let mut traces = 0u64;
    let mut prompt_ids = Vec::new();
    let bodies: Vec<String> = (0..batches)
        .map(|b| {
            let lines: Vec<String> = (0..40)
                .map(|i| {
                    let id = format!("b{b}-e{i}");
                    if i % 4 == 0 {
                        prompt_ids.push(id.clone());
                        serde_json::json!({"kind": "prompt_created", "id": id, "prompt": {"id": id, "name": "p"}})
                    } else {
                        traces += 1;
                        serde_json::json!({"kind": "trace", "id": id, "project": "p", "total_estimated_cost": 1, "error_info": {}})
                    }
                    .to_string()
                })
                .collect();
            lines.join("\n")
        })
        .collect();
    let prompts = prompt_ids.len() as u64;
    let traffic = Arc::new(Traffic::default());
    let gen = tokio::spawn(generate(d.port, bodies, traffic.clone(), min_kills));

    // The killer. Each round waits for the daemon to be ready, then kills it either a random
    // moment after the next request went on the wire (0 to 2 round trips: often mid-request)
    // or at a random moment up to 300 ms later; after a third of the kills it also kills the
    // next start at a random moment of its start-up, before READY=1 (store recovery, replay).
    let mut rng = rand::rng();
    let (mut kills, mut during_ingest, mut before_ready) = (0usize, 0usize, 0usize);
    let mut sizes = Vec::new();
    let started = Instant::now();
    while !traffic.done.load(Ordering::SeqCst) && kills < max_kills {
        if rng.random_bool(0.6) {
            let seen = traffic.written.load(Ordering::SeqCst);
            while traffic.written.load(Ordering::SeqCst) == seen
                && !traffic.done.load(Ordering::SeqCst)
            {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let rtt = traffic.last_rtt_us.load(Ordering::SeqCst).max(1000);
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..=2 * rtt))).await;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        }
        if reloads && rng.random_bool(0.5) {
            // A reload racing ticks and ingest (it may also race the kill: errors are fine).
            let _ = reqwest::Client::new()
                .post(format!("{}/v1/reload", d.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
        }
        during_ingest += usize::from(!traffic.done.load(Ordering::SeqCst));
        traffic.kills.fetch_add(1, Ordering::SeqCst);
        d.kill9();
        kills += 1;
        sizes.push(data_file_size(&d));
        starts += 1;
        watch = StartWatch::launch(&mut d, starts);
        if rng.random_bool(1.0 / 3.0) {
            let at = rng.random_range(0..=startup.as_micros() as u64);
            tokio::time::sleep(Duration::from_micros(at)).await;
            before_ready += usize::from(!watch.is_ready());
            traffic.kills.fetch_add(1, Ordering::SeqCst);
            d.kill9();
            kills += 1;
            sizes.push(data_file_size(&d));
            starts += 1;
            watch = StartWatch::launch(&mut d, starts);
        }
        startup = watch.wait(&mut d).await;
    }
    let ingest_time = started.elapsed();
    gen.await.unwrap();
    let mid_request = traffic.interrupted.load(Ordering::SeqCst);
    println!(
        "torture: {kills} kills in {ingest_time:?} ({during_ingest} during ingest, {mid_request} \
         mid-request, {before_ready} before READY=1); {} events found already committed on retry; \
         {} connections reset without a kill in flight",
        traffic.duplicates.load(Ordering::SeqCst),
        traffic.dropped.load(Ordering::SeqCst)
    );
    assert!(
        during_ingest >= min_kills,
        "only {during_ingest} of {kills} kills landed while events were being posted"
    );
    assert!(
        mid_request >= 1,
        "no kill landed while a request was in flight"
    );
    assert!(before_ready >= 1, "no kill landed during start-up");

    // Quiet period: every tick applied, every bucket flushed, every delivery done.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cost = alert_value(&d, "cost").await;
        let errors = alert_value(&d, "errors").await;
        let (_, pending) = d.get("/v1/deliveries?status=pending").await;
        let total = |prefix: &str| -> u64 {
            distinct(&rx.requests_to(prefix))
                .values()
                .map(|b| b["payload"]["eventCount"].as_u64().unwrap())
                .sum()
        };
        let prompt_total = total("/prompts");
        let slow_total = total("/slow_prompts");
        let last_errors = rx.requests_to("/errors").last().map(|r| {
            r.json()["payload"]["metadata"][0]["metric_value"]
                .as_str()
                .unwrap()
                .to_string()
        });
        // A count past the exact one never comes back down: fail at once.
        assert!(
            cost.unwrap_or(0.0) <= traces as f64
                && errors.unwrap_or(0.0) <= traces as f64
                && prompt_total <= prompts
                && slow_total <= prompts,
            "counted twice after {kills} kills: cost {cost:?}, errors {errors:?} of {traces} \
             traces, {prompt_total} and {slow_total} of {prompts} prompts"
        );
        if cost == Some(traces as f64)
            && errors == Some(traces as f64)
            && last_errors == Some(traces.to_string())
            && pending["deliveries"]
                .as_array()
                .is_some_and(|a| a.is_empty())
            && prompt_total == prompts
            && slow_total == prompts
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {kills} kills: cost counted {cost:?} and errors {errors:?} of {traces} traces \
             (last errors webhook: {last_errors:?}), {prompt_total} and {slow_total} of \
             {prompts} prompts, \
             pending {pending}\n{}",
            tail(&d.logs())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Duplicates only ever share an id: same id, same body.
    for prefix in ["/cost", "/prompts", "/slow_prompts", "/errors"] {
        let mut by_id: HashMap<String, String> = HashMap::new();
        for r in rx.requests_to(prefix) {
            let id = r.json()["id"].as_str().unwrap().to_string();
            if let Some(prev) = by_id.insert(id.clone(), r.body.clone()) {
                assert_eq!(prev, r.body, "two bodies for delivery {id}");
            }
        }
    }
    // The cost alert never crossed its threshold: not one webhook.
    assert_eq!(rx.requests_to("/cost").len(), 0, "the cost alert fired");
    // Every prompt is in exactly one notification of each prompt alert.
    prompt_ids.sort();
    for prefix in ["/prompts", "/slow_prompts"] {
        let mut listed: Vec<String> = distinct(&rx.requests_to(prefix))
            .values()
            .flat_map(|b| {
                b["payload"]["metadata"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["id"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        listed.sort();
        assert_eq!(
            listed.len(),
            prompt_ids.len(),
            "prompts listed in {prefix} webhooks"
        );
        assert_eq!(listed, prompt_ids, "{prefix}");
    }
    // Every delivered notification in the history reached the receiver.
    let received: HashSet<String> = rx
        .requests()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    let (_, delivered) = d.get("/v1/deliveries?status=delivered&limit=10000").await;
    let delivered = delivered["deliveries"].as_array().unwrap().clone();
    assert!(!delivered.is_empty());
    for row in &delivered {
        assert!(
            received.contains(row["id"].as_str().unwrap()),
            "delivered but never received: {row}"
        );
    }
    let (_, dead) = d.get("/v1/deliveries?status=dead").await;
    assert_eq!(
        dead["deliveries"].as_array().map(Vec::len),
        Some(0),
        "dead letters: {dead}"
    );
    let logs = d.logs();
    // Panics the test hook causes name themselves; any other is a bug.
    let unexpected = logs
        .lines()
        .zip(logs.lines().skip(1))
        .any(|(l, next)| l.contains("panicked") && !next.contains("test hook"));
    assert!(!unexpected, "a panic in the logs:\n{}", tail(&logs));
    // Small commits are durable only in the append log until a tick: some restarts must have
    // replayed it, or this run did not test it.
    let replays = logs
        .lines()
        .filter(|l| l.contains("restored from the append log"))
        .count();
    println!("torture: {replays} restarts replayed the append log");
    assert!(replays >= 1, "no restart replayed the append log");
    // Every event was applied by every alert, so the inbox was pruned empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = d.metrics().await;
        if m.lines().any(|l| l == "alertd_inbox_events 0") {
            break;
        }
        assert!(Instant::now() < deadline, "inbox not pruned:\n{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sizes.push(data_file_size(&d));
    println!(
        "torture: data file sizes at kills (bytes): first {:?}, middle {:?}, max {:?}, at the end {:?}",
        sizes.first(),
        sizes.get(sizes.len() / 2),
        sizes.iter().max(),
        sizes.last()
    );
    let biggest = *sizes.iter().max().unwrap();
    let bound = data_file_bound(batches);
    assert!(
        biggest <= bound,
        "the data file reached {biggest} bytes (bound {bound}): {sizes:?}"
    );
    if !env.is_empty() {
        assert!(
            d.logs().contains("restarting it from its checkpoint"),
            "the panic hook never killed the alert"
        );
    }
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
    // The first tick is held until the two errors are in: the tick that makes "fragile" panic
    // comes after they were applied, so its restart has to replay them from the inbox.
    let hold = dir.path().join("hold-tick");
    std::fs::write(&hold, "").unwrap();
    let d = Daemon::start_with_env(
        dir.path(),
        &cfg,
        &[
            ("TESTHOOK_ALERTD_PANIC", "fragile"),
            ("TESTHOOK_ALERTD_HOLD_TICK", hold.to_str().unwrap()),
        ],
    )
    .await;
    d.send(&[error_trace("p"), error_trace("p")]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.logs().contains("test hook: tick held") {
        assert!(Instant::now() < deadline, "the first tick never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !d.logs().contains("restarting it from its checkpoint"),
        "the panic came before the errors were applied:\n{}",
        d.logs()
    );
    std::fs::remove_file(&hold).unwrap();
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
    // A clean stop leaves everything in the data file: nothing to replay from the append log.
    assert!(
        !d.logs().contains("restored from the append log"),
        "{}",
        d.logs()
    );
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
