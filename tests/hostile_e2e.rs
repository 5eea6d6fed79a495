//! Hostile input through the real binary: oversize bodies, too many events, over-long NDJSON
//! lines and malformed events are refused with clear JSON errors and store nothing; slowloris
//! connections are cut after `server.header_timeout` while others are served; a flood of bad
//! requests leaves the daemon responsive with flat memory; a corrupted checkpoint is reported
//! with its alert id and that alert starts fresh; large bodies beyond `server.max_large_bodies`
//! wait for a permit.

mod common;

use common::{error_trace, Daemon, Receiver};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Small limits so the tests stay fast; set through `ALERTD_*` overrides because the harness
/// writes the `[server]` table itself.
const LIMITS_ENV: &[(&str, &str)] = &[
    ("ALERTD_SERVER__MAX_BODY", "64KiB"),
    ("ALERTD_SERVER__MAX_LINE", "1KiB"),
    ("ALERTD_SERVER__HEADER_TIMEOUT", "1s"),
    ("ALERTD_INGEST__MAX_BATCH_EVENTS", "100"),
];

/// An alert on error traces of any project that will not fire during a test.
const QUIET_ALERT: &str = r#"
[engine]
tick = "200ms"
[[alert]]
id = "errors"
url = "http://127.0.0.1:9/unused"
[[alert.trigger]]
event = "trace:errors"
threshold = 1000000
window = "1h"
"#;

async fn start(dir: &std::path::Path) -> Daemon {
    Daemon::start_with_env(dir, QUIET_ALERT, LIMITS_ENV).await
}

/// The `errors` alert's current metric, once a tick has evaluated it.
async fn error_count(d: &Daemon) -> Option<f64> {
    let (s, v) = d.get("/v1/alerts").await;
    assert_eq!(s, 200, "{v}");
    v["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["id"] == "errors")?["triggers"][0]["value"]
        .as_f64()
}

/// Sends `request` on a fresh connection and reads the whole answer (the request asks the
/// server to close). Write errors are ignored: the server may refuse before reading everything.
async fn raw_exchange(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Whether the server closed `s` within `within`: EOF or reset, after reading (and ignoring)
/// anything it sent first, such as a 408 answer.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn oversize_body_is_413_with_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path()).await;
    // A valid array of events, just over 64 KiB.
    let one = error_trace("p").to_string();
    let n = 64 * 1024 / one.len() + 2;
    let body = format!("[{}]", vec![one.as_str(); n].join(","));
    assert!(body.len() > 64 * 1024);
    let (status, v) = d.post_events(&body, "application/json").await;
    assert_eq!(status, 413, "{v}");
    let err = v["error"].as_str().expect("a JSON error");
    assert!(err.contains("server.max_body"), "{err}");

    // Chunked, so the size is only known while reading: still 413.
    let mut req = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for chunk in body.as_bytes().chunks(8 * 1024) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(d.port, &req).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("server.max_body"), "{answer}");

    // Nothing was stored, and the daemon still takes a normal batch.
    d.send(&[error_trace("p")]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while error_count(&d).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the valid event was never counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(error_count(&d).await, Some(1.0));
}

#[tokio::test]
async fn too_many_events_is_413_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path()).await;
    let one = r#"{"kind":"trace"}"#;
    let array = format!("[{}]", vec![one; 101].join(","));
    let (status, v) = d.post_events(&array, "application/json").await;
    assert_eq!(status, 413, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("limit is 100") && err.contains("ingest.max_batch_events"),
        "{err}"
    );

    let nd = vec![one; 101].join("\n");
    let (status, v) = d.post_events(&nd, "application/x-ndjson").await;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("limit is 100"), "{v}");

    // Exactly at the limit is fine.
    let (status, v) = d
        .post_events(&vec![one; 100].join("\n"), "application/x-ndjson")
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["accepted"], 100);
}

#[tokio::test]
async fn ndjson_line_over_max_line_is_413_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path()).await;
    let long = serde_json::json!({"kind": "trace", "trace_id": "x".repeat(2000)}).to_string();
    let body = format!("{}\n{long}\n{}", error_trace("p"), error_trace("p"));
    let (status, v) = d.post_events(&body, "application/x-ndjson").await;
    assert_eq!(status, 413, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("line 2") && err.contains("1024"), "{err}");
}

#[tokio::test]
async fn malformed_bodies_are_400_with_details_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path()).await;
    let trace = error_trace("p").to_string();

    let (status, v) = d
        .post_events(r#"[{"kind": "trace""#, "application/json")
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );

    // Wrong type at index 3, after three valid error traces.
    let body = format!("[{trace},{trace},{trace},{{\"kind\":\"trace\",\"duration_ms\":\"5\"}}]");
    let (status, v) = d.post_events(&body, "application/json").await;
    assert_eq!(status, 400, "{v}");
    let details = v["details"].as_array().expect("details");
    assert_eq!(details.len(), 1, "{v}");
    assert_eq!(details[0]["index"], 3);
    assert!(
        details[0]["error"]
            .as_str()
            .unwrap()
            .contains("duration_ms must be a number"),
        "{v}"
    );

    // Unknown kind at index 1 of NDJSON, blank lines not counted.
    let body = format!("{trace}\n\n{{\"kind\":\"span\"}}\r\n{trace}\n");
    let (status, v) = d.post_events(&body, "application/x-ndjson").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["details"][0]["index"], 1, "{v}");
    assert!(
        v["details"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unknown kind \"span\""),
        "{v}"
    );

    // A line that is not JSON, and a non-finite number.
    let body = format!("{trace}\n{{not json\n");
    let (status, v) = d.post_events(&body, "application/x-ndjson").await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["details"][0]["index"], 1, "{v}");
    let (status, v) = d
        .post_events(
            r#"{"kind":"trace","total_estimated_cost":1e999}"#,
            "application/json",
        )
        .await;
    assert_eq!(status, 400, "{v}");

    // Six valid error traces were in refused batches; none of them was stored. One accepted
    // event later, the window counts exactly one (events reach the alert in sequence order).
    d.send(&[error_trace("p")]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while error_count(&d).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the valid event was never counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(error_count(&d).await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_after_header_timeout_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path()).await;
    let port = d.port;

    // Twenty clients send half a request head and stall; one sends nothing at all.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
            .await
            .unwrap();
        stalled.push(s);
    }
    stalled.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());

    // One drips a never-ending header, a byte every 200 ms: it must not keep the connection
    // alive forever either.
    let dripper = tokio::spawn(async move {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if s.write_all(b"a").await.is_err() {
                return true;
            }
            if closed_by_server(&mut s, Duration::from_millis(200)).await {
                return true;
            }
        }
        false
    });

    // Meanwhile, normal clients are served.
    let client = reqwest::Client::new();
    for i in 0..20 {
        let r = client
            .get(format!("{}/healthz", d.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        if i % 5 == 0 {
            d.send(&[serde_json::json!({"kind": "trace"})]).await;
        }
    }

    let t0 = Instant::now();
    for (i, s) in stalled.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, Duration::from_secs(15)).await,
            "stalled connection {i} still open 15 s after a 1 s header timeout"
        );
    }
    eprintln!(
        "stalled connections closed {:?} after the normal requests",
        t0.elapsed()
    );
    assert!(
        dripper.await.unwrap(),
        "a client dripping a header byte every 200 ms kept its connection for 15 s"
    );
    let r = client
        .get(format!("{}/healthz", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path()).await;
    let mut s = TcpStream::connect(("127.0.0.1", d.port)).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Served and kept alive; a client that then says nothing must not hold it forever.
    assert!(
        closed_by_server(&mut s, Duration::from_secs(15)).await,
        "an idle keep-alive connection was still open 15 s after a 1 s header timeout"
    );
}

#[tokio::test]
async fn ten_thousand_malformed_requests_leave_the_daemon_responsive_with_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path()).await;
    let bad: Vec<(&str, String)> =
        vec![
        ("application/json", "{".into()),
        ("application/json", "[1, 2".into()),
        ("application/json", r#"{"kind":"nope"}"#.into()),
        (
            "application/json",
            r#"[{"kind":"trace","duration_ms":"x"},{"kind":"trace","total_estimated_cost":-1}]"#
                .into(),
        ),
        ("application/x-ndjson", "{\"kind\":\"trace\"}\n{oops\n".into()),
        ("application/json", "null".into()),
        ("application/json", String::new()),
        ("text/plain", "\u{0}\u{1}\u{2}garbage".into()),
        (
            "application/x-ndjson",
            format!("{{\"kind\":\"trace\",\"trace_id\":\"{}\"}}", "y".repeat(1500)),
        ),
    ];
    // One keep-alive client, four requests in flight at a time.
    let client = reqwest::Client::new();
    let url = format!("{}/v1/events", d.base);
    let flood = |rounds: usize| {
        let client = client.clone();
        let url = url.clone();
        let bad = bad.clone();
        async move {
            let mut tasks = Vec::new();
            for t in 0..4 {
                let client = client.clone();
                let url = url.clone();
                let bad = bad.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..rounds / 4 {
                        let (ct, body) = &bad[(t + i * 4) % bad.len()];
                        let r = client
                            .post(&url)
                            .header("content-type", *ct)
                            .body(body.clone())
                            .send()
                            .await
                            .expect("the daemon answers");
                        let s = r.status().as_u16();
                        assert!(s == 400 || s == 413, "malformed body {body:?} got {s}");
                        let v: serde_json::Value = r.json().await.expect("a JSON error");
                        assert!(v["error"].is_string());
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };

    // Warm up allocator pools and connection state, then measure across the 10,000.
    flood(1_000).await;
    let before = rss_kib(d.pid());
    flood(10_000).await;
    let after = rss_kib(d.pid());
    eprintln!("VmRSS {before} KiB after warm-up, {after} KiB after 10,000 bad requests");
    assert!(
        after <= before + 30 * 1024,
        "resident memory grew from {before} KiB to {after} KiB over 10,000 bad requests"
    );

    let r = client
        .get(format!("{}/healthz", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = d.send(&[error_trace("p")]).await;
    assert_eq!(v["accepted"], 1);
}

#[tokio::test]
async fn corrupted_checkpoint_is_reported_with_the_alert_id_and_the_alert_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    // Before the first start, plant undecodable checkpoints: bincode garbage behind the right
    // format byte, and a format byte from the future.
    {
        let db = redb::Database::create(dir.path().join("alertd.redb")).unwrap();
        let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("alert_state");
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            t.insert(
                "flaky",
                [1u8, 0xff, 0xff, 0xff, 0xff, 0xfe, 7, 7].as_slice(),
            )
            .unwrap();
            t.insert("future", [9u8, 1, 2, 3].as_slice()).unwrap();
            // Decodable, but inconsistent: found by fuzzing, it used to panic on first use.
            let skewed: &[u8] =
                include_bytes!("../fuzz/regressions/checkpoint_decode/ring_head_near_min.bin");
            t.insert("skewed", skewed).unwrap();
        }
        txn.commit().unwrap();
    }
    let cfg = format!(
        r#"
[engine]
tick = "200ms"
[[alert]]
id = "flaky"
url = "{flaky}"
[[alert.trigger]]
event = "trace:errors"
threshold = 2
window = "1h"
[[alert]]
id = "skewed"
url = "{skewed}"
[[alert.trigger]]
event = "trace:errors"
threshold = 1
window = "5m"
[[alert]]
id = "future"
url = "{future}"
debounce = "1s"
[[alert.trigger]]
event = "prompt:created"
"#,
        flaky = rx.url("/flaky"),
        future = rx.url("/future"),
        skewed = rx.url("/skewed"),
    );
    let d = Daemon::start(dir.path(), &cfg).await;

    // Both alerts work from a fresh state.
    d.send(&[error_trace("p"), error_trace("p"), error_trace("p")])
        .await;
    d.send(&[
        serde_json::json!({"kind": "prompt_created", "prompt": {"id": "p1", "name": "greeting"}}),
    ])
    .await;
    let got = rx.wait_for("/flaky", 1, Duration::from_secs(15)).await;
    let body = got[0].json();
    assert_eq!(body["alert_id"], "flaky");
    assert_eq!(body["payload"]["metadata"][0]["metric_value"], "3");
    let got = rx.wait_for("/skewed", 1, Duration::from_secs(15)).await;
    assert_eq!(got[0].json()["payload"]["metadata"][0]["metric_value"], "3");
    let got = rx.wait_for("/future", 1, Duration::from_secs(15)).await;
    assert_eq!(got[0].json()["payload"]["eventCount"], 1);

    let logs = d.logs();
    for (id, why) in [
        ("flaky", "undecodable"),
        ("future", "unknown value format 9"),
        ("skewed", "inconsistent"),
    ] {
        let quoted = format!("alert \"{id}\"");
        let line = logs
            .lines()
            .find(|l| l.contains("unreadable") && l.contains(&quoted))
            .unwrap_or_else(|| panic!("no log line reports alert {id:?} unreadable:\n{logs}"));
        assert!(
            line.contains(why) && line.contains("starting it fresh"),
            "{line}"
        );
        assert!(line.contains("ERROR"), "reported as an error: {line}");
    }
    assert!(!logs.contains("panicked"), "{logs}");
}

/// `server.max_large_bodies` bounds the large bodies read and parsed at once: with one permit,
/// a second large request waits while a first one's body is still arriving, and both are
/// accepted once it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_waits_while_another_holds_the_only_permit() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with_env(
        dir.path(),
        QUIET_ALERT,
        &[("ALERTD_SERVER__MAX_LARGE_BODIES", "1")],
    )
    .await;
    // 2,000 error traces: ≈ 130 KB, over the 64 KiB a body may have without a permit.
    let body = serde_json::to_vec(&vec![error_trace("big"); 2000]).unwrap();
    assert!(body.len() > 64 * 1024, "{} bytes", body.len());

    // The first request sends its head and half its body, then stalls holding the permit.
    let mut first = TcpStream::connect(("127.0.0.1", d.port)).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    first.write_all(head.as_bytes()).await.unwrap();
    let half = body.len() / 2;
    first.write_all(&body[..half]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = {
        let (url, body) = (format!("{}/v1/events", d.base), body.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !second.is_finished(),
        "the second large body was read while the first held the only permit"
    );

    first.write_all(&body[half..]).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), first.read_to_end(&mut answer))
        .await
        .expect("the first request is answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let status = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second request is answered once the permit is free")
        .unwrap();
    assert_eq!(status, 202);
}
