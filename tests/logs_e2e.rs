//! Log output through the real binary: colour (ANSI escape codes) only when stderr is a
//! terminal, never in files or pipes, never with `--log-format json`, and not with `NO_COLOR`;
//! level and format from the config's `[log]`, applied again on reload, with `RUST_LOG` and
//! `--log-format` winning.

mod common;

use common::{config_text, error_trace, free_port, Daemon, Receiver};
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ESC: char = '\u{1b}';

/// A new pseudo-terminal: (master side to read what is written, slave side to hand to alertd).
fn open_pty() -> (std::fs::File, OwnedFd) {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty stores two new descriptors in the two integers; null name, termios and
    // window size pointers are allowed and mean defaults.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    }
}

/// Runs `alertd run` with stderr on a terminal until its log says it is ready; returns what it
/// wrote there.
async fn run_on_a_terminal(args: &[&str], env: &[(&str, &str)], rest: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("alertd.toml");
    std::fs::write(&config, config_text(port, dir.path(), rest)).unwrap();
    let (mut master, slave) = open_pty();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_alertd"));
    cmd.args(args)
        .arg("run")
        .arg("-c")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start alertd");
    drop(cmd); // closes this process's copy of the slave side
    let seen = Arc::new(Mutex::new(String::new()));
    let sink = seen.clone();
    // Reads until the last holder of the slave side (alertd) is gone.
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.lock().unwrap().contains("ready") {
        assert!(
            child.try_wait().unwrap().is_none(),
            "alertd exited:\n{}",
            seen.lock().unwrap()
        );
        assert!(
            Instant::now() < deadline,
            "alertd never logged that it is ready:\n{}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap();
    let out = seen.lock().unwrap().clone();
    out
}

#[tokio::test]
async fn logs_on_a_terminal_are_coloured() {
    // The control for the tests below: the same daemon on a terminal does colour its lines.
    let out = run_on_a_terminal(&[], &[], "").await;
    assert!(out.contains(&format!("{ESC}[")), "no colour:\n{out:?}");
}

#[tokio::test]
async fn no_color_turns_colour_off_on_a_terminal() {
    let out = run_on_a_terminal(&[], &[("NO_COLOR", "1")], "").await;
    assert!(
        !out.contains(ESC),
        "escape codes despite NO_COLOR:\n{out:?}"
    );
}

#[tokio::test]
async fn json_logs_have_no_escape_codes_even_on_a_terminal() {
    let out = run_on_a_terminal(&["--log-format", "json"], &[], "").await;
    assert!(!out.contains(ESC), "escape codes in JSON logs:\n{out:?}");
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line.trim_end_matches('\r'))
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line:?}"));
    }
}

#[tokio::test]
async fn logs_written_to_a_file_have_no_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    // The harness sends stderr to a file, as systemd or `2>log` would.
    let mut d = Daemon::start(dir.path(), "").await;
    assert_eq!(d.terminate(), Some(0));
    let logs = d.logs();
    assert!(logs.contains("ready"), "{logs}");
    assert!(!logs.contains(ESC), "escape codes in a log file:\n{logs:?}");
}

/// An alert that fires on the first error trace, posting to `url`.
fn errors_alert(url: &str) -> String {
    format!(
        "[engine]\ntick = \"100ms\"\n[[alert]]\nid = \"a\"\nurl = \"{url}\"\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"5m\"\n"
    )
}

#[tokio::test]
async fn the_config_sets_level_and_format_and_a_reload_changes_them_live() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let alert = errors_alert(&rx.url("/a"));
    // RUST_LOG empty counts as unset: the config decides.
    let d = Daemon::start_with_env(
        dir.path(),
        &format!("[log]\nlevel = \"warn\"\n{alert}"),
        &[("RUST_LOG", "")],
    )
    .await;
    assert!(
        !d.logs().contains("alertd ready"),
        "info lines at level warn:\n{}",
        d.logs()
    );
    d.rewrite_config(&format!(
        "[log]\nlevel = \"info\"\nformat = \"json\"\n{alert}"
    ));
    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    d.send(&[error_trace("p")]).await;
    rx.wait_for("/a", 1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let decided = d.logs().lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["fields"]["message"] == "notification decided")
        });
        if decided {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no JSON info line after the reload:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rust_log_wins_over_the_configured_level() {
    let dir = tempfile::tempdir().unwrap();
    // The harness sets RUST_LOG=info.
    let d = Daemon::start(dir.path(), "[log]\nlevel = \"error\"\n").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.logs().contains("alertd ready") {
        assert!(
            Instant::now() < deadline,
            "RUST_LOG=info lost:\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_configured_format_applies_and_the_command_line_wins() {
    let json = run_on_a_terminal(&[], &[], "[log]\nformat = \"json\"\n").await;
    let ready = json
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.contains("alertd ready"))
        .unwrap_or_else(|| panic!("{json:?}"));
    let v: serde_json::Value = serde_json::from_str(ready).expect("a JSON line");
    assert_eq!(v["fields"]["message"], "alertd ready");
    assert!(!json.contains(ESC), "{json:?}");
    let text =
        run_on_a_terminal(&["--log-format", "text"], &[], "[log]\nformat = \"json\"\n").await;
    let ready = text
        .lines()
        .find(|l| l.contains("alertd ready"))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(!ready.trim_start().starts_with('{'), "{ready:?}");
    assert!(text.contains(&format!("{ESC}[")), "{text:?}");
}

#[test]
fn an_invalid_level_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertd.toml");
    std::fs::write(
        &config,
        config_text(free_port(), dir.path(), "[log]\nlevel = \"alertd=loud\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(["check-config", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("log: level is not a valid log filter"),
        "{err}"
    );
}
