//! The command-line tools against a real daemon and real receivers.

mod common;

use common::{Answer, Daemon, Receiver};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn alertd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn alert(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[alert]]\nid = \"{id}\"\nurl = \"{url}\"\n{extra}\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"5m\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_deliveries_and_retry_work_against_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script("/a", vec![Answer::Status(410)]);
    let d = Daemon::start(
        dir.path(),
        &format!(
            "[engine]\ntick = \"200ms\"\n{}",
            alert("a", &rx.url("/a"), "")
        ),
    )
    .await;
    let cfg = d.config_path.to_str().unwrap().to_string();
    let events = dir.path().join("events.ndjson");
    std::fs::write(
        &events,
        "{\"kind\":\"trace\",\"error_info\":{}}\n\n{\"kind\":\"trace\"}\n",
    )
    .unwrap();
    let (code, out, err) = alertd(&["send", events.to_str().unwrap(), "-c", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("accepted 2 event(s)"), "{out}");

    // The 410 makes a dead letter; the table shows it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let (code, out, err) = alertd(&["deliveries", "--status", "dead", "-c", &cfg]);
        assert_eq!(code, 0, "{err}");
        if let Some(line) = out.lines().nth(1) {
            assert!(
                line.contains("trace:errors") && line.contains("410"),
                "{out}"
            );
            break line.split_whitespace().next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no dead letter listed");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (code, out, _) = alertd(&["retry", &id, "-c", &cfg]);
    assert_eq!(code, 0);
    assert!(out.contains(&id));
    let got = rx.wait_for("/a", 2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json()["id"], id.as_str());
    let (code, _, err) = alertd(&["retry", &id, "-c", &cfg]);
    assert_eq!(code, 1, "a second retry of a delivered id fails");
    assert!(err.contains("no dead letter"), "{err}");
    // A malformed file is refused with the daemon's reason and exit 1.
    std::fs::write(&events, "{\"kind\":\"nope\"}\n").unwrap();
    let (code, _, err) = alertd(&["send", events.to_str().unwrap(), "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown kind"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_command_reports_success_and_failure_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script("/down", vec![Answer::Status(500), Answer::Status(500)]);
    let text = common::config_text(
        common::free_port(),
        dir.path(),
        &(alert("up", &rx.url("/up"), "") + &alert("down", &rx.url("/down"), "")),
    );
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap();
    let (code, out, err) = alertd(&["test", "up", "--event", "prompt:created", "-c", cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("success"), "{out}");
    assert_eq!(
        rx.requests_to("/up")[0].json()["event_type"],
        "prompt:created"
    );
    let (code, _, err) = alertd(&["test", "down", "-c", cfg]);
    assert_eq!(code, 1);
    assert!(err.contains("HTTP 500"), "{err}");
    assert_eq!(rx.requests_to("/down").len(), 2, "one retry");
    let (code, _, err) = alertd(&["test", "missing", "-c", cfg]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no alert \"missing\"") && err.contains("up, down"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_verifies_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let mut sink = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args([
            "receive",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--signing-secret",
            secret,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = sink.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let url = format!("http://127.0.0.1:{port}/hook");
    let d = Daemon::start(
        dir.path(),
        &format!(
            "[engine]\ntick = \"200ms\"\n{}",
            alert("a", &url, &format!("signing_secret = \"{secret}\""))
        ),
    )
    .await;
    d.send(&[common::error_trace("p")]).await;
    let wait_line = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.starts_with(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!("no line with {needle:?}"),
            }
        }
    };
    assert_eq!(wait_line("signature:"), "signature: valid");
    // A forged request is reported as invalid.
    let r = reqwest::Client::new()
        .post(&url)
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", "1649367553")
        .header("webhook-signature", "v1,AAAA")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(wait_line("signature:"), "signature: INVALID");
    let _ = sink.kill();
    let _ = sink.wait();
}

#[test]
fn environment_overrides_apply_and_unrelated_alertd_variables_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, common::config_text(7999, dir.path(), "")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(["check-config", "-c", cfg.to_str().unwrap()])
        .env("ALERTD_SERVER__LISTEN", "127.0.0.1:7001")
        .env("ALERTD_TOKEN", "not-a-config-key")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listen 127.0.0.1:7001"), "{stdout}");
    let out = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(["check-config", "-c", cfg.to_str().unwrap()])
        .env("ALERTD_ENGINE__TICK", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("environment override"));
}
