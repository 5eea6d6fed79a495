//! Configuration validation (DESIGN §7): one test per rule, each checking that the message names
//! the file, the alert, the trigger and the key, so a user can find and fix the line. Then the
//! `alertd check-config` command on good and bad files, and the shipped default config.

use alertd::config::{Config, ConfigError};
use std::path::{Path, PathBuf};
use std::process::Command;

const FILE: &str = "conf/team-alertd.toml";

/// A valid alert to which a test adds or changes keys.
const URL: &str = "url = \"https://hooks.example.com/alertd\"";
const ERRORS: &str =
    "[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 10\nwindow = \"5m\"\n";

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(Path::new(FILE), text, false)
}

/// The error for `text`, which must be refused.
fn error_of(text: &str) -> ConfigError {
    match load(text) {
        Ok(_) => panic!("config was accepted but should not be:\n{text}"),
        Err(e) => e,
    }
}

/// Asserts the message starts with the file and contains every part, in order.
fn assert_message(e: &ConfigError, parts: &[&str]) {
    let msg = e.to_string();
    assert!(msg.starts_with(FILE), "names the file: {msg}");
    let mut rest = msg.as_str();
    for p in parts {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => panic!("{msg:?} does not contain {p:?} (in order)"),
        }
    }
}

/// One alert `prod-errors` with `keys` and `triggers`.
fn alert(keys: &str, triggers: &str) -> String {
    format!("[[alert]]\nid = \"prod-errors\"\n{keys}\n{triggers}")
}

#[test]
fn a_valid_alert_is_accepted() {
    let cfg = load(&alert(URL, ERRORS)).expect("valid");
    assert_eq!(cfg.alerts.len(), 1);
    assert_eq!(cfg.alerts[0].id, "prod-errors");
}

#[test]
fn alert_id_must_use_the_allowed_characters() {
    let e = error_of(&format!(
        "[[alert]]\nid = \"prod errors!\"\n{URL}\n{ERRORS}"
    ));
    assert_message(
        &e,
        &["alert #1", "id must be 1-64 characters", "\"prod errors!\""],
    );
}

#[test]
fn alert_id_must_not_exceed_64_characters() {
    let long = "a".repeat(65);
    let e = error_of(&format!("[[alert]]\nid = \"{long}\"\n{URL}\n{ERRORS}"));
    assert_message(&e, &["alert #1", "id must be 1-64 characters", &long]);
}

#[test]
fn alert_id_is_required() {
    let e = error_of(&format!("[[alert]]\n{URL}\n{ERRORS}"));
    assert_message(&e, &["alert #1", "id is required"]);
}

#[test]
fn alert_ids_must_be_unique() {
    let one = alert(URL, ERRORS);
    let e = error_of(&format!("{one}{one}"));
    assert_message(
        &e,
        &["alert \"prod-errors\"", "id is used by more than one alert"],
    );
}

#[test]
fn url_scheme_must_be_http_or_https() {
    let e = error_of(&alert("url = \"ftp://hooks.example.com/x\"", ERRORS));
    assert_message(
        &e,
        &[
            "alert \"prod-errors\"",
            "url must start with http:// or https://",
            "\"ftp\"",
        ],
    );
}

#[test]
fn url_must_parse() {
    let e = error_of(&alert("url = \"hooks example com\"", ERRORS));
    assert_message(&e, &["alert \"prod-errors\"", "url is not a valid URL"]);
    // The URL is not echoed: Slack and PagerDuty URLs carry secrets.
    assert!(!e.to_string().contains("hooks example com"), "{e}");
}

#[test]
fn url_is_required() {
    let e = error_of(&alert("", ERRORS));
    assert_message(&e, &["alert \"prod-errors\"", "url is required"]);
}

#[test]
fn destination_must_be_known() {
    let e = error_of(&alert(&format!("{URL}\ndestination = \"email\""), ERRORS));
    assert_message(
        &e,
        &["alert \"prod-errors\"", "destination must be", "\"email\""],
    );
}

#[test]
fn pagerduty_requires_a_routing_key() {
    let e = error_of(&alert(
        &format!("{URL}\ndestination = \"pagerduty\""),
        ERRORS,
    ));
    assert_message(
        &e,
        &[
            "alert \"prod-errors\"",
            "routing_key is required",
            "pagerduty",
        ],
    );
    let keyed = format!("{URL}\ndestination = \"pagerduty\"\nrouting_key = \"R0UT1NG\"");
    load(&alert(&keyed, ERRORS)).expect("with a routing key it is valid");
}

#[test]
fn at_least_one_trigger_is_required() {
    let e = error_of(&alert(URL, ""));
    assert_message(&e, &["alert \"prod-errors\"", "trigger", "at least one"]);
}

#[test]
fn trigger_event_type_must_be_known() {
    let bad = "[[alert.trigger]]\nevent = \"trace:nope\"\n";
    let e = error_of(&alert(URL, &format!("{ERRORS}{bad}")));
    assert_message(
        &e,
        &[
            "alert \"prod-errors\"",
            "trigger 2",
            "event",
            "unknown event type \"trace:nope\"",
        ],
    );
}

#[test]
fn threshold_types_require_a_threshold() {
    let bad = "[[alert.trigger]]\nevent = \"trace:cost\"\nwindow = \"1h\"\n";
    let e = error_of(&alert(URL, &format!("{ERRORS}{bad}")));
    assert_message(
        &e,
        &[
            "alert \"prod-errors\"",
            "trigger 2",
            "threshold is required for trace:cost",
        ],
    );
}

#[test]
fn threshold_types_require_a_window() {
    let bad = "[[alert.trigger]]\nevent = \"trace:latency\"\nthreshold = 2\n";
    let e = error_of(&alert(URL, bad));
    assert_message(
        &e,
        &[
            "alert \"prod-errors\"",
            "trigger 1",
            "window is required for trace:latency",
        ],
    );
}

#[test]
fn feedback_operator_must_be_greater_or_less() {
    let bad = "[[alert.trigger]]\nevent = \"trace:feedback_score\"\nscore = \"hallucination\"\noperator = \"=\"\nthreshold = 0.5\nwindow = \"15m\"\n";
    let e = error_of(&alert(URL, &format!("{ERRORS}{bad}")));
    assert_eq!(
        e.to_string(),
        format!(
            "{FILE}: alert \"prod-errors\": trigger 2: operator must be \">\" or \"<\", got \"=\""
        )
    );
}

#[test]
fn feedback_types_require_an_operator() {
    let bad = "[[alert.trigger]]\nevent = \"trace_thread:feedback_score\"\nscore = \"helpful\"\nthreshold = 0.5\nwindow = \"15m\"\n";
    let e = error_of(&alert(URL, bad));
    assert_message(
        &e,
        &["alert \"prod-errors\"", "trigger 1", "operator is required"],
    );
}

#[test]
fn operator_is_refused_on_non_feedback_types() {
    let bad = "[[alert.trigger]]\nevent = \"trace:cost\"\noperator = \"<\"\nthreshold = 5\nwindow = \"1h\"\n";
    let e = error_of(&alert(URL, bad));
    assert_message(
        &e,
        &[
            "alert \"prod-errors\"",
            "trigger 1",
            "operator applies to feedback score types only",
        ],
    );
}

#[test]
fn feedback_types_require_a_score_name() {
    let bad = "[[alert.trigger]]\nevent = \"trace:feedback_score\"\noperator = \"<\"\nthreshold = 0.5\nwindow = \"15m\"\n";
    let e = error_of(&alert(URL, bad));
    assert_message(
        &e,
        &[
            "alert \"prod-errors\"",
            "trigger 1",
            "score is required for trace:feedback_score",
        ],
    );
}

#[test]
fn per_event_types_refuse_threshold_keys() {
    let bad = "[[alert.trigger]]\nevent = \"prompt:created\"\nwindow = \"5m\"\n";
    let e = error_of(&alert(URL, bad));
    assert_message(
        &e,
        &[
            "alert \"prod-errors\"",
            "trigger 1",
            "window does not apply to prompt:created",
        ],
    );
}

#[test]
fn workspace_wide_types_refuse_projects() {
    let bad = "[[alert.trigger]]\nevent = \"experiment:finished\"\nprojects = [\"p1\"]\n";
    let e = error_of(&alert(URL, bad));
    assert_message(
        &e,
        &[
            "alert \"prod-errors\"",
            "trigger 1",
            "projects",
            "workspace-wide",
        ],
    );
}

#[test]
fn trigger_window_must_be_greater_than_zero() {
    let e = error_of(&alert(URL, &ERRORS.replace("\"5m\"", "\"0s\"")));
    assert_message(
        &e,
        &[
            "alert \"prod-errors\"",
            "trigger 1",
            "window must be greater than 0",
        ],
    );
}

#[test]
fn alert_durations_must_be_greater_than_zero() {
    for key in ["repeat_interval", "debounce"] {
        let e = error_of(&alert(&format!("{URL}\n{key} = \"0s\""), ERRORS));
        assert_message(
            &e,
            &["alert \"prod-errors\"", key, "must be greater than 0"],
        );
    }
}

#[test]
fn section_durations_must_be_greater_than_zero() {
    for (section, key) in [
        ("engine", "tick"),
        ("engine", "debounce"),
        ("ingest", "dedup_window"),
        ("delivery", "timeout"),
        ("delivery", "connect_timeout"),
        ("delivery", "initial_backoff"),
        ("delivery", "max_backoff"),
    ] {
        let e = error_of(&format!(
            "[{section}]\n{key} = \"0s\"\n{}",
            alert(URL, ERRORS)
        ));
        assert_message(&e, &[section, key, "must be greater than 0"]);
    }
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    // Line 6 holds the misspelt key.
    let text = alert(
        URL,
        "[[alert.trigger]]\nevent = \"trace:errors\"\nthresold = 10\nwindow = \"5m\"\n",
    );
    assert_eq!(text.lines().nth(5), Some("thresold = 10"));
    let e = error_of(&text);
    assert_eq!(e.line.map(|(l, _)| l), Some(6), "{e}");
    assert_message(&e, &[":6:", "unknown field", "thresold"]);
}

#[test]
fn unknown_section_keys_are_refused_with_their_line() {
    let text = format!(
        "[engine]\ntick = \"1s\"\ntik = \"1s\"\n{}",
        alert(URL, ERRORS)
    );
    let e = error_of(&text);
    assert_eq!(e.line.map(|(l, _)| l), Some(3), "{e}");
    assert_message(&e, &[":3:", "unknown field", "tik"]);
}

#[test]
fn toml_syntax_errors_name_their_line() {
    let text = alert(
        URL,
        "[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = = 10\n",
    );
    let e = error_of(&text);
    assert_eq!(e.line.map(|(l, _)| l), Some(6), "{e}");
    assert!(e.to_string().starts_with(&format!("{FILE}:6:")), "{e}");
}

#[test]
fn wrong_value_types_name_their_line() {
    let text = alert(
        URL,
        "[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = \"ten\"\nwindow = \"5m\"\n",
    );
    let e = error_of(&text);
    assert_eq!(e.line.map(|(l, _)| l), Some(6), "{e}");
}

#[test]
fn the_shipped_default_config_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/alertd.toml");
    let text = std::fs::read_to_string(&path).expect("the shipped config exists");
    let cfg = Config::from_toml(&path, &text, false).unwrap_or_else(|e| panic!("{e}"));
    assert!(!cfg.alerts.is_empty(), "the default config ships alerts");
    for a in &cfg.alerts {
        assert!(
            a.url.starts_with("http://127.0.0.1:9000/"),
            "{}: delivers to `alertd receive`",
            a.id
        );
    }
}

fn check_config(path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_alertd"))
        .arg("check-config")
        .arg("-c")
        .arg(path)
        .env("RUST_LOG", "off")
        .output()
        .expect("run alertd check-config")
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("alertd.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_prints_one_line_per_alert_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}[[alert]]\nid = \"prompts\"\n{URL}\n[[alert.trigger]]\nevent = \"prompt:created\"\n",
        alert(URL, ERRORS)
    );
    let out = check_config(&write(dir.path(), &text));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].contains("2 alert(s)"), "{stdout}");
    let alert_lines: Vec<&str> = lines[1..].to_vec();
    assert_eq!(alert_lines.len(), 2, "one line per alert: {stdout}");
    assert!(
        alert_lines[0].contains("prod-errors")
            && alert_lines[0].contains("trace:errors > 10 over 5m")
    );
    assert!(alert_lines[1].contains("prompts") && alert_lines[1].contains("prompt:created"));
}

#[test]
fn check_config_prints_the_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = "[[alert.trigger]]\nevent = \"trace:feedback_score\"\nscore = \"s\"\noperator = \"=\"\nthreshold = 0.5\nwindow = \"15m\"\n";
    let path = write(dir.path(), &alert(URL, &format!("{ERRORS}{bad}")));
    let out = check_config(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: alert \"prod-errors\": trigger 2: operator must be \">\" or \"<\", got \"=\"",
            path.display()
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no summary for a bad file");
}

#[test]
fn check_config_accepts_the_shipped_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/alertd.toml");
    let out = check_config(&path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
