//! The NATS JetStream source through real parts: a real `nats-server -js` per test (loopback
//! port, temp store), the real alertd binary, a real webhook receiver.
//!
//! Counts are read from a `trace:cost` alert whose value is the sum of costs in a one-hour
//! window: every published event costs 1, so the value is the number of events counted. To read
//! a final count without timing, a test waits until the consumer has nothing pending or
//! unacked, then posts one marker event of cost 1000 over HTTP: once the marker shows in the
//! value, everything committed before it does too.

mod common;

use async_nats::jetstream;
use common::{free_port, Daemon, Receiver};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STREAM: &str = "ALERTD";
const CONSUMER: &str = "alertd-test";
const SUBJECT: &str = "alertd.events.default";
const MARKER: f64 = 1000.0;

/// The `nats-server` binary: `$NATS_SERVER`, then `PATH`, then Debian's paths. Missing is a
/// failure, not a skip: these tests are the only proof the source works.
fn nats_server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "NATS_SERVER={} is not a file", p.display());
        return p;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server not found in PATH, /usr/sbin or /usr/bin. These tests need a real \
                 JetStream server: `apt-get install nats-server` (Debian; .ci/run does it) or set \
                 NATS_SERVER=/path/to/nats-server"
            )
        })
}

/// A real JetStream server on a loopback port with its store in a temp dir.
struct NatsServer {
    port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    async fn start(dir: &Path) -> NatsServer {
        let mut s = NatsServer {
            port: free_port(),
            store: dir.join("jetstream"),
            log: dir.join("nats-server.log"),
            child: None,
        };
        s.spawn().await;
        s
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process (same port, same store on a restart) and waits until JetStream answers.
    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(nats_server_binary())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(c) = async_nats::connect(self.url()).await {
                if let Ok(reply) = c.request("$JS.API.INFO", "".into()).await {
                    if String::from_utf8_lossy(&reply.payload).contains("account_info_response") {
                        return;
                    }
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nats-server exited ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server not ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no goodbye to the clients.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// alertd's config: a 1 s tick, the source, and the counting alert (fires above `threshold`).
fn config(nats: &NatsServer, rx: &Receiver, threshold: f64) -> String {
    format!(
        r#"
[engine]
tick = "1s"
[delivery]
initial_backoff = "100ms"
max_backoff = "1s"

[[source.nats]]
url = "{url}"
stream = "{STREAM}"
subjects = ["alertd.events.>"]
consumer = "{CONSUMER}"
batch = 50
ack_wait = "2s"

[[alert]]
id = "cost"
url = "{hook}"
repeat_interval = "1h"
[[alert.trigger]]
event = "trace:cost"
threshold = {threshold}
window = "1h"
"#,
        url = nats.url(),
        hook = rx.url("/cost"),
    )
}

fn trace(n: usize) -> Value {
    json!({"kind": "trace", "project": "p", "trace_id": format!("t{n}"), "total_estimated_cost": 1})
}

fn ndjson(events: &[Value]) -> String {
    events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn js(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.url()).await.expect("connect"))
}

/// Publishes and waits for JetStream's ack, retrying (same `Nats-Msg-Id`) until stored, like a
/// careful producer would across a server restart.
async fn publish(js: &jetstream::Context, payload: String, msg_id: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        let sent = js
            .publish_with_headers(SUBJECT, headers, payload.clone().into())
            .await;
        if let Ok(ack) = sent {
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), ack).await {
                return;
            }
        }
        assert!(Instant::now() < deadline, "publish never acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn alert_value(d: &Daemon) -> Option<f64> {
    let (s, v) = d.get("/v1/alerts").await;
    if s != 200 {
        return None;
    }
    v["alerts"].as_array()?.iter().find(|a| a["id"] == "cost")?["triggers"][0]["value"].as_f64()
}

async fn wait_until<F, Fut>(what: &str, d: &Daemon, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; alertd logs:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn consumer_info(js: &jetstream::Context) -> Option<async_nats::jetstream::consumer::Info> {
    let stream = js.get_stream(STREAM).await.ok()?;
    let consumer: jetstream::consumer::PullConsumer = stream.get_consumer(CONSUMER).await.ok()?;
    consumer.get_info().await.ok()
}

/// Waits until the consumer has delivered and acked everything, then proves with a marker event
/// that the alert has applied every committed event, and returns the count of source events.
async fn settled_count(d: &Daemon, js: &jetstream::Context) -> f64 {
    wait_until(
        "the consumer to drain",
        d,
        Duration::from_secs(60),
        || async {
            consumer_info(js)
                .await
                .is_some_and(|i| i.num_pending == 0 && i.num_ack_pending == 0)
        },
    )
    .await;
    let marker = json!({"kind": "trace", "project": "p", "total_estimated_cost": MARKER});
    d.send(&[marker]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let value = loop {
        if let Some(v) = alert_value(d).await.filter(|v| *v >= MARKER) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the marker was never counted; alertd logs:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    value - MARKER
}

async fn metrics(d: &Daemon) -> BTreeMap<String, f64> {
    let text = d.metrics().await;
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Log text without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn series(outcome: &str) -> String {
    format!(
        "alertd_source_messages_total{{source=\"nats:{STREAM}/{CONSUMER}\",outcome=\"{outcome}\"}}"
    )
}

/// A NATS server, a webhook receiver and alertd reading the server's stream, with its source up
/// (dropped in reverse: alertd first).
async fn started(threshold: f64) -> (tempfile::TempDir, NatsServer, Receiver, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path()).await;
    let rx = Receiver::start().await;
    let d = Daemon::start(dir.path(), &config(&nats, &rx, threshold)).await;
    wait_source_up(&d).await;
    (dir, nats, rx, d)
}

async fn wait_source_up(d: &Daemon) {
    wait_until(
        "the source to be up",
        d,
        Duration::from_secs(30),
        || async {
            let (s, v) = d.get("/readyz").await;
            s == 200 && v["sources"][0]["state"] == "up"
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_event_and_ndjson_messages_fire_an_alert_with_exact_counts() {
    // alertd creates the stream (it does not exist yet) and the durable consumer.
    let (_dir, nats, rx, d) = started(12.5).await;
    let (_, ready) = d.get("/readyz").await;
    assert_eq!(ready["sources"][0]["name"], "nats:ALERTD/alertd-test");
    let js = js(&nats).await;
    let info = js.get_stream(STREAM).await.unwrap().cached_info().clone();
    assert_eq!(info.config.subjects, vec!["alertd.events.>".to_string()]);

    publish(&js, trace(1).to_string(), Some("single-1")).await;
    publish(&js, trace(2).to_string(), None).await;
    // A pretty-printed object is one event too.
    publish(&js, serde_json::to_string_pretty(&trace(3)).unwrap(), None).await;
    publish(&js, ndjson(&(4..9).map(trace).collect::<Vec<_>>()), None).await;
    publish(
        &js,
        ndjson(&(9..14).map(trace).collect::<Vec<_>>()),
        Some("batch-2"),
    )
    .await;

    let hooks = rx.wait_for("/cost", 1, Duration::from_secs(30)).await;
    let body = hooks[0].json();
    assert_eq!(body["payload"]["alertId"], "cost", "{body}");
    // The alert fired on the 13 published events alone.
    assert_eq!(
        body["payload"]["metadata"][0]["metric_value"], "13",
        "{body}"
    );
    assert_eq!(settled_count(&d, &js).await, 13.0);
    let m = metrics(&d).await;
    assert_eq!(m.get(&series("acked")), Some(&5.0), "{m:?}");
    assert_eq!(m.get(&series("delivered")), Some(&5.0), "{m:?}");
    assert_eq!(
        m.get(&format!(
            "alertd_source_up{{source=\"nats:{STREAM}/{CONSUMER}\"}}"
        )),
        Some(&1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_between_commit_and_ack_redelivers_and_counts_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path()).await;
    let rx = Receiver::start().await;
    let cfg = config(&nats, &rx, 1e9);
    let mut d = Daemon::start_with_env(
        dir.path(),
        &cfg,
        &[("TESTHOOK_ALERTD_HOLD_SOURCE_ACKS", "1")],
    )
    .await;
    wait_source_up(&d).await;
    let js = js(&nats).await;
    // Multi-event messages first, so the first (necessarily committed) group holds one: each
    // is stored whole under one id (its Nats-Msg-Id, else stream:sequence) and must be
    // recognised whole when it is redelivered.
    publish(
        &js,
        ndjson(&(100..110).map(trace).collect::<Vec<_>>()),
        None,
    )
    .await;
    publish(
        &js,
        ndjson(&(110..120).map(trace).collect::<Vec<_>>()),
        Some("k-batch"),
    )
    .await;
    let mut n = 20;
    for i in 0..30 {
        let id = format!("k-{i}");
        publish(
            &js,
            trace(i).to_string(),
            (i % 2 == 0).then_some(id.as_str()),
        )
        .await;
        n += 1;
    }
    publish(&js, ndjson(&(30..40).map(trace).collect::<Vec<_>>()), None).await;
    n += 10;

    wait_until(
        "a commit whose acks are held",
        &d,
        Duration::from_secs(30),
        || async { d.logs().contains("testhook: committed, holding the acks") },
    )
    .await;
    let before = consumer_info(&js).await.unwrap();
    assert!(
        before.num_ack_pending > 0,
        "nothing is waiting for an ack: {before:?}"
    );
    d.kill9();
    drop(d);

    let d = Daemon::start(dir.path(), &cfg).await;
    wait_source_up(&d).await;
    assert_eq!(settled_count(&d, &js).await, n as f64);
    // The held messages did come back, and were recognised.
    let m = metrics(&d).await;
    let dupes = m
        .get("alertd_events_total{kind=\"trace\",outcome=\"duplicate\"}")
        .copied()
        .unwrap_or(0.0);
    // At least the first message (10 events, committed before any ack was held) came back.
    assert!(
        dupes >= 10.0,
        "the redelivered message was not de-duplicated: {m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_with_their_own_ids_are_deduplicated_inside_messages_and_with_http() {
    let (_dir, nats, _rx, d) = started(1e9).await;
    let js = js(&nats).await;
    let own = |n: usize, id: &str| {
        let mut e = trace(n);
        e["id"] = json!(id);
        e
    };
    // Over HTTP first: event e-1.
    d.send(&[own(1, "e-1")]).await;
    // A message repeating e-1 beside two new events: e-1 is dropped, the others count.
    let message = ndjson(&[own(1, "e-1"), trace(2), trace(3)]);
    publish(&js, message.clone(), None).await;
    // The same bytes published again are another message (another sequence): its events count
    // again, except e-1.
    publish(&js, message, None).await;
    // A one-event message whose Nats-Msg-Id is an id already used over HTTP is that event.
    d.send(&[own(4, "shared-id")]).await;
    publish(&js, trace(4).to_string(), Some("shared-id")).await;

    assert_eq!(settled_count(&d, &js).await, 1.0 + 2.0 + 2.0 + 1.0);
    let m = metrics(&d).await;
    assert_eq!(
        m.get("alertd_events_total{kind=\"trace\",outcome=\"duplicate\"}"),
        Some(&3.0),
        "{m:?}"
    );
    assert_eq!(m.get(&series("acked")), Some(&3.0), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_alertd_is_down_are_consumed_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path()).await;
    let rx = Receiver::start().await;
    let cfg = config(&nats, &rx, 1e9);
    let mut d = Daemon::start(dir.path(), &cfg).await;
    wait_source_up(&d).await;
    let js = js(&nats).await;
    for i in 0..5 {
        publish(&js, trace(i).to_string(), None).await;
    }
    wait_until("5 events counted", &d, Duration::from_secs(30), || async {
        alert_value(&d).await == Some(5.0)
    })
    .await;
    // A graceful stop acks what it committed before exiting.
    assert_eq!(d.terminate(), Some(0), "{}", d.logs());
    let info = consumer_info(&js).await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    drop(d);

    for i in 5..12 {
        publish(&js, trace(i).to_string(), None).await;
    }
    publish(&js, ndjson(&(12..20).map(trace).collect::<Vec<_>>()), None).await;
    let info = consumer_info(&js).await.unwrap();
    assert_eq!(info.num_pending, 8, "{info:?}");

    let d = Daemon::start(dir.path(), &cfg).await;
    wait_source_up(&d).await;
    assert_eq!(settled_count(&d, &js).await, 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_message_is_terminated_counted_and_does_not_block_later_ones() {
    let (_dir, nats, _rx, d) = started(1e9).await;
    let js = js(&nats).await;
    publish(&js, trace(1).to_string(), None).await; // seq 1
    publish(&js, "this is not json".into(), None).await; // seq 2
    publish(&js, json!({"kind": "nope"}).to_string(), None).await; // seq 3
    publish(
        &js,
        ndjson(&[
            trace(2),
            json!({"kind": "trace", "total_estimated_cost": -1}),
        ]),
        None,
    )
    .await; // seq 4: all or nothing
    publish(&js, trace(3).to_string(), None).await; // seq 5
    publish(&js, ndjson(&[trace(4), trace(5)]), None).await; // seq 6

    assert_eq!(settled_count(&d, &js).await, 4.0);
    let m = metrics(&d).await;
    assert_eq!(m.get(&series("invalid")), Some(&3.0), "{m:?}");
    assert_eq!(m.get(&series("acked")), Some(&3.0), "{m:?}");
    // Terminated, not left to be redelivered.
    let info = consumer_info(&js).await.unwrap();
    assert_eq!(info.num_redelivered, 0, "{info:?}");
    let logs = strip_ansi(&d.logs());
    for seq in [2, 3, 4] {
        assert!(
            logs.lines()
                .any(|l| l.contains("invalid message terminated")
                    && l.contains(&format!("sequence={seq}"))),
            "no log line for sequence {seq}:\n{logs}"
        );
    }
    assert!(
        logs.contains("total_estimated_cost must not be negative"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_restart_under_load_reconnects_loses_nothing_and_counts_once() {
    let (_dir, mut nats, _rx, d) = started(1e9).await;

    const TOTAL: usize = 300;
    let url = nats.url();
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let producer = tokio::spawn(async move {
        let js = jetstream::new(
            async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect(url)
                .await
                .unwrap(),
        );
        for i in 0..TOTAL {
            let id = format!("load-{i}");
            publish(&js, trace(i).to_string(), Some(&id)).await;
            let _ = progress_tx.send(i + 1);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    progress.wait_for(|n| *n >= 100).await.unwrap();
    nats.kill9();

    // While the server is away, /readyz names the source.
    wait_until(
        "readyz to report the source down",
        &d,
        Duration::from_secs(30),
        || async {
            let (s, v) = d.get("/readyz").await;
            s == 503
                && v["failing"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "source nats:ALERTD/alertd-test"))
                && v["sources"][0]["state"] == "down"
        },
    )
    .await;
    let m = metrics(&d).await;
    assert_eq!(
        m.get(&format!(
            "alertd_source_up{{source=\"nats:{STREAM}/{CONSUMER}\"}}"
        )),
        Some(&0.0)
    );
    assert!(
        m.contains_key(&format!(
            "alertd_source_last_error_timestamp_seconds{{source=\"nats:{STREAM}/{CONSUMER}\"}}"
        )),
        "{m:?}"
    );

    nats.spawn().await;
    wait_source_up(&d).await;
    producer.await.unwrap();
    let js = js(&nats).await;
    assert_eq!(settled_count(&d, &js).await, TOTAL as f64);
}
