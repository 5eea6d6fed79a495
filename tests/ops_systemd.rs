//! systemd integration through the real binary: `Type=notify` readiness, watchdog pings from the
//! engine tick, and the state changes of reload and stop, read from a datagram socket that plays
//! the part of systemd's `NOTIFY_SOCKET`.

mod common;

use common::{error_trace, Daemon, Receiver};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UnixDatagram;

/// Stands in for systemd: a unix datagram socket that records every assignment
/// (`READY=1`, `WATCHDOG=1`, …) the daemon sends, one entry per line.
struct NotifySocket {
    path: String,
    got: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .unwrap()
                    .extend(text.lines().map(str::to_string));
            }
        });
        NotifySocket {
            path: path.display().to_string(),
            got,
        }
    }

    fn count(&self, line: &str) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == line)
            .count()
    }

    fn lines(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `line` has arrived `n` times in total.
    async fn wait_for(&self, line: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count(line) < n {
            assert!(
                Instant::now() < deadline,
                "expected {line} x{n} on NOTIFY_SOCKET, got {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn errors_alert(url: &str) -> String {
    format!(
        "[engine]\ntick = \"100ms\"\n[[alert]]\nid = \"errors\"\nurl = \"{url}\"\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"5m\"\n"
    )
}

#[tokio::test]
async fn ready_is_sent_once_the_listener_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let notify = NotifySocket::bind(dir.path());
    let d = Daemon::start_with_env(
        dir.path(),
        &errors_alert(&rx.url("/hook")),
        &[("NOTIFY_SOCKET", &notify.path)],
    )
    .await;
    notify.wait_for("READY=1", 1, Duration::from_secs(10)).await;
    // Readiness means the API answers, events included.
    let (status, _) = d.get("/readyz").await;
    assert_eq!(status, 200);
    d.send(&[error_trace("p1")]).await;
    assert_eq!(notify.count("READY=1"), 1, "{:?}", notify.lines());
}

#[tokio::test]
async fn watchdog_pings_keep_arriving_from_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let notify = NotifySocket::bind(dir.path());
    // WATCHDOG_PID unset: sd_notify's watchdog_enabled() then trusts WATCHDOG_USEC alone.
    let _d = Daemon::start_with_env(
        dir.path(),
        &errors_alert(&rx.url("/hook")),
        &[
            ("NOTIFY_SOCKET", &notify.path),
            ("WATCHDOG_USEC", "2000000"),
        ],
    )
    .await;
    notify.wait_for("READY=1", 1, Duration::from_secs(10)).await;
    let seen = notify.count("WATCHDOG=1");
    // Keeps arriving: five more pings after the ones seen so far (tick = 100ms).
    notify
        .wait_for("WATCHDOG=1", seen + 5, Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn no_watchdog_pings_when_the_watchdog_belongs_to_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let notify = NotifySocket::bind(dir.path());
    let d = Daemon::start_with_env(
        dir.path(),
        &errors_alert(&rx.url("/hook")),
        &[
            ("NOTIFY_SOCKET", &notify.path),
            ("WATCHDOG_USEC", "2000000"),
            // systemd sets WATCHDOG_PID to the main process; here it names another one.
            ("WATCHDOG_PID", "1"),
        ],
    )
    .await;
    notify.wait_for("READY=1", 1, Duration::from_secs(10)).await;
    // A webhook proves ticks ran; then let a few more ticks pass.
    d.send(&[error_trace("p1")]).await;
    rx.wait_for("/hook", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(notify.count("WATCHDOG=1"), 0, "{:?}", notify.lines());
}

#[tokio::test]
async fn sighup_reports_reloading_then_ready_and_sigterm_reports_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let notify = NotifySocket::bind(dir.path());
    let mut d = Daemon::start_with_env(
        dir.path(),
        &errors_alert(&rx.url("/hook")),
        &[("NOTIFY_SOCKET", &notify.path)],
    )
    .await;
    notify.wait_for("READY=1", 1, Duration::from_secs(10)).await;
    d.signal("HUP");
    notify.wait_for("READY=1", 2, Duration::from_secs(10)).await;
    let lines = notify.lines();
    let reloading = lines.iter().position(|l| l == "RELOADING=1");
    let second_ready = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| *l == "READY=1")
        .nth(1)
        .map(|(i, _)| i);
    assert!(
        matches!((reloading, second_ready), (Some(r), Some(s)) if r < s),
        "RELOADING=1 then READY=1: {lines:?}"
    );
    assert_eq!(d.terminate(), Some(0));
    notify
        .wait_for("STOPPING=1", 1, Duration::from_secs(5))
        .await;
}
