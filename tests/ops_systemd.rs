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
    /// With `bind_probing`: what the daemon's port answered the moment each `READY=1` arrived.
    probes: Arc<Mutex<Vec<Result<u16, String>>>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        Self::bind_inner(dir, None)
    }

    /// Like `bind`, and on every `READY=1` connects to `port` at once (before reading the next
    /// datagram) and asks `GET /readyz`: readiness must mean the API already answers.
    fn bind_probing(dir: &Path, port: u16) -> NotifySocket {
        Self::bind_inner(dir, Some(port))
    }

    fn bind_inner(dir: &Path, probe_port: Option<u16>) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        let got = Arc::new(Mutex::new(Vec::new()));
        let probes = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let probe_sink = probes.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let (Some(port), true) = (probe_port, text.lines().any(|l| l == "READY=1")) {
                    let answer = probe_readyz(port).await;
                    probe_sink.lock().unwrap().push(answer);
                }
                sink.lock()
                    .unwrap()
                    .extend(text.lines().map(str::to_string));
            }
        });
        NotifySocket {
            path: path.display().to_string(),
            got,
            probes,
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

/// `GET /readyz` over a fresh connection to `port`: the status code, or why there was none.
async fn probe_readyz(port: u16) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    conn.write_all(b"GET /readyz HTTP/1.1\r\nHost: alertd\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))
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
    let mut d = Daemon::prepare(dir.path(), &errors_alert(&rx.url("/hook")), &[]);
    let notify = NotifySocket::bind_probing(dir.path(), d.port);
    d.set_env("NOTIFY_SOCKET", &notify.path);
    // Started without waiting for /healthz: only READY=1 tells the test the daemon is up.
    d.launch();
    notify.wait_for("READY=1", 1, Duration::from_secs(20)).await;
    // The port was asked at the moment READY=1 arrived: the store is open and the API answers.
    let deadline = Instant::now() + Duration::from_secs(15);
    while notify.probes.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the probe never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probes = notify.probes.lock().unwrap().clone();
    assert_eq!(
        probes,
        vec![Ok(200)],
        "GET /readyz at READY=1\n{}",
        d.logs()
    );
    d.send(&[error_trace("p1")]).await;
    rx.wait_for("/hook", 1, Duration::from_secs(10)).await;
    assert_eq!(notify.count("READY=1"), 1, "{:?}", notify.lines());
}

#[tokio::test]
async fn watchdog_pings_come_from_the_tick_and_stop_when_it_is_wedged() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let notify = NotifySocket::bind(dir.path());
    let hold = dir.path().join("hold-tick");
    // WATCHDOG_PID unset: sd_notify's watchdog_enabled() then trusts WATCHDOG_USEC alone. With
    // a 1 s watchdog, a ping on a timer of its own would come at least once a second.
    let d = Daemon::start_with_env(
        dir.path(),
        &errors_alert(&rx.url("/hook")),
        &[
            ("NOTIFY_SOCKET", &notify.path),
            ("WATCHDOG_USEC", "1000000"),
            ("TESTHOOK_ALERTD_HOLD_TICK", hold.to_str().unwrap()),
        ],
    )
    .await;
    notify.wait_for("READY=1", 1, Duration::from_secs(10)).await;
    let seen = notify.count("WATCHDOG=1");
    // Keeps arriving: five more pings after the ones seen so far (tick = 100ms).
    notify
        .wait_for("WATCHDOG=1", seen + 5, Duration::from_secs(10))
        .await;
    // Wedge the tick: the next tick waits for the file to go away.
    std::fs::write(&hold, "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.logs().contains("test hook: tick held") {
        assert!(Instant::now() < deadline, "the tick was never held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_hold = notify.count("WATCHDOG=1");
    // Twice the watchdog interval: systemd would have killed this process by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        notify.count("WATCHDOG=1"),
        at_hold,
        "a wedged tick must stop the watchdog pings"
    );
    std::fs::remove_file(&hold).unwrap();
    notify
        .wait_for("WATCHDOG=1", at_hold + 3, Duration::from_secs(10))
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
    // A webhook proves ticks ran; then let more ticks pass than a 2 s watchdog allows between
    // pings, so neither a ping per tick nor one on a timer of its own would go unseen.
    d.send(&[error_trace("p1")]).await;
    rx.wait_for("/hook", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
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
