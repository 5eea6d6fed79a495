//! Secrets are masked where they are printed, and nothing else is: an alert whose id contains
//! part of its webhook URL keeps its name in config errors (check-config, start, reload), in log
//! lines and in API answers, while the URL's path stays hidden wherever the URL itself appears.

mod common;

use common::{config_text, free_port, Daemon, Receiver};
use std::process::Command;

/// An alert `u-count` whose URL path is `/count` and whose host is not valid.
const BAD_URL_ALERT: &str = "[[alert]]\nid = \"u-count\"\nurl = \"http://exa mple.com/count\"\n\
     [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 1\nwindow = \"5m\"\n";

fn alertd(args: &[&str], config: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(args)
        .arg("-c")
        .arg(config)
        .output()
        .expect("run alertd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_config_error_names_an_alert_whose_id_contains_its_url_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertd.toml");
    std::fs::write(&config, config_text(free_port(), dir.path(), BAD_URL_ALERT)).unwrap();
    for cmd in ["check-config", "run"] {
        let (code, err) = alertd(&[cmd], &config);
        assert_eq!(code, Some(1), "{cmd}: {err}");
        assert!(
            err.contains("alert \"u-count\": url is not a valid URL"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn check_config_shows_the_id_whole_and_the_url_masked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertd.toml");
    let text = "[[alert]]\nid = \"hook-count\"\n\
                url = \"https://hooks.example.com/services/T0/B0/hook-count\"\n\
                [[alert.trigger]]\nevent = \"prompt:created\"\n";
    std::fs::write(&config, config_text(free_port(), dir.path(), text)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(["check-config", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("hook-count"))
        .unwrap_or_else(|| panic!("the alert is not listed: {stdout}"));
    assert!(line.contains("https://hooks.example.com/***"), "{line}");
    assert!(!line.contains("services"), "{line}");
}

#[tokio::test]
async fn a_rejected_reload_names_the_alert_in_the_api_answer_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), "").await;
    d.rewrite_config(BAD_URL_ALERT);
    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 400, "{v}");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("alert \"u-count\": url is not a valid URL"),
        "{v}"
    );
    let logs = d.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("config reload rejected"))
        .unwrap_or_else(|| panic!("no rejection logged:\n{logs}"));
    assert!(
        line.contains("alert \\\"u-count\\\"") || line.contains("alert \"u-count\""),
        "{line}"
    );
}

#[tokio::test]
async fn a_test_send_shows_the_alert_id_even_when_its_url_path_is_the_same_text() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let alert = format!(
        "[[alert]]\nid = \"hook-count\"\nurl = \"{}\"\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 1\nwindow = \"5m\"\n",
        rx.url("/hook-count")
    );
    let d = Daemon::start(dir.path(), &alert).await;
    let (status, v) = d.post("/v1/alerts/hook-count/test", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "success", "{v}");
    let sent: serde_json::Value =
        serde_json::from_str(v["request_body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["alert_id"], "hook-count", "{v}");
    assert_eq!(sent["payload"]["alertId"], "hook-count", "{v}");
    // Where the URL itself is shown, its path is hidden.
    let (_, alerts) = d.get("/v1/alerts").await;
    let url = alerts["alerts"][0]["url"].as_str().unwrap().to_string();
    assert!(
        url.ends_with("/***") && !url.contains("hook-count"),
        "{url}"
    );
}
