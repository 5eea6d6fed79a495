//! Live reload through the real binary (DESIGN §2 ConfigWatcher): SIGHUP, `POST /v1/reload` and
//! saving the config file all reload; an invalid file changes nothing; a valid one is applied by
//! diff on alert id, keeping the window state of whatever did not change.
//!
//! To prove SIGHUP and the API reload on their own, some tests start alertd through a symlink:
//! `dir/alertd.toml -> dir/conf/alertd.toml`. The file watcher watches `dir` (the directory of the
//! configured path), so edits of `dir/conf/alertd.toml` go unnoticed until a reload is asked for.

mod common;

use common::{config_text, error_trace, Daemon, Receiver};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// Several engine ticks at 100 ms: long enough for anything decided to have been delivered.
const A_FEW_TICKS: Duration = Duration::from_millis(1_000);

/// An alert on `trace:errors` of every project: fires when the 5-minute count exceeds `threshold`.
fn errors_alert(id: &str, url: &str, threshold: u32) -> String {
    format!(
        "[[alert]]\nid = \"{id}\"\nurl = \"{url}\"\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = {threshold}\nwindow = \"5m\"\n"
    )
}

const ENGINE: &str = "[engine]\ntick = \"100ms\"\n";

/// Starts alertd with its config reached through a symlink into a directory it does not watch.
async fn start_unwatched(dir: &Path, rest: &str) -> Daemon {
    std::fs::create_dir(dir.join("conf")).unwrap();
    std::fs::write(dir.join("conf/alertd.toml"), "").unwrap();
    std::os::unix::fs::symlink("conf/alertd.toml", dir.join("alertd.toml")).unwrap();
    Daemon::start(dir, rest).await
}

/// Replaces the config of a daemon from [`start_unwatched`] without waking the file watcher.
fn write_unwatched(d: &Daemon, rest: &str) {
    std::fs::write(
        d.dir.join("conf/alertd.toml"),
        config_text(d.port, &d.dir, rest),
    )
    .unwrap();
}

/// The alert ids `GET /v1/alerts` lists.
async fn alert_ids(d: &Daemon) -> Vec<String> {
    let (status, v) = d.get("/v1/alerts").await;
    assert_eq!(status, 200, "{v}");
    v["alerts"]
        .as_array()
        .expect("alerts array")
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `GET /v1/alerts` lists exactly `ids` (in id order).
async fn wait_for_alerts(d: &Daemon, ids: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = alert_ids(d).await;
        if got == ids {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected alerts {ids:?}, got {got:?}\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The API's view of trigger `n` of alert `id`.
async fn trigger(d: &Daemon, id: &str, n: usize) -> Value {
    let (_, v) = d.get("/v1/alerts").await;
    v["alerts"]
        .as_array()
        .expect("alerts array")
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("alert {id} in {v}"))["triggers"][n]
        .clone()
}

/// Waits until trigger `n` of alert `id` shows `value`: the events were routed and applied.
async fn wait_for_value(d: &Daemon, id: &str, n: usize, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = trigger(d, id, n).await;
        if t["value"].as_f64() == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "trigger {n} of {id} never showed {value}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `n` webhooks reached `path`; on timeout the failure shows the daemon's log.
async fn wait_hooks(rx: &Receiver, d: &Daemon, path: &str, n: usize) -> Vec<common::Received> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = rx.requests_to(path);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} webhook(s) at {path}, got {}; log:\n{}",
            got.len(),
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The value of an unlabelled metric line in `GET /metrics`.
async fn metric(d: &Daemon, name: &str) -> Option<f64> {
    let text = d.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn sighup_reloads_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let first = format!("{ENGINE}{}", errors_alert("a", &rx.url("/a"), 100));
    let d = start_unwatched(dir.path(), &first).await;
    write_unwatched(
        &d,
        &format!("{first}{}", errors_alert("b", &rx.url("/b"), 0)),
    );
    tokio::time::sleep(A_FEW_TICKS).await;
    assert_eq!(alert_ids(&d).await, ["a"], "nothing reloads by itself");
    d.signal("HUP");
    wait_for_alerts(&d, &["a", "b"], Duration::from_secs(10)).await;
    d.send(&[error_trace("p1")]).await;
    wait_hooks(&rx, &d, "/b", 1).await;
}

#[tokio::test]
async fn reload_api_applies_alerts_by_diff_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let keep = errors_alert("keep", &rx.url("/keep"), 0);
    let before = format!(
        "{ENGINE}{keep}{}{}",
        errors_alert("change", &rx.url("/change"), 0),
        errors_alert("gone", &rx.url("/gone"), 0)
    );
    let d = start_unwatched(dir.path(), &before).await;
    let after = format!(
        "{ENGINE}{keep}{}{}",
        errors_alert("change", &rx.url("/change"), 0).replace(
            "[[alert.trigger]]",
            "name = \"Changed name\"\n[[alert.trigger]]"
        ),
        errors_alert("new", &rx.url("/new"), 0)
    );
    write_unwatched(&d, &after);
    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "reloaded");
    let report = &v["report"];
    assert_eq!(report["added"], serde_json::json!(["new"]), "{v}");
    assert_eq!(report["removed"], serde_json::json!(["gone"]), "{v}");
    assert_eq!(report["changed"], serde_json::json!(["change"]), "{v}");
    assert_eq!(report["unchanged"], 1, "{v}");
    assert_eq!(report["restart_required"], serde_json::json!([]), "{v}");
    assert_eq!(alert_ids(&d).await, ["change", "keep", "new"]);

    d.send(&[error_trace("p1")]).await;
    for path in ["/keep", "/change", "/new"] {
        wait_hooks(&rx, &d, path, 1).await;
    }
    tokio::time::sleep(A_FEW_TICKS).await;
    assert_eq!(rx.requests_to("/gone").len(), 0, "a removed alert stops");
    let changed = rx.requests_to("/change")[0].json();
    assert_eq!(changed["alert_name"], "Changed name");
}

#[tokio::test]
async fn saving_the_config_file_reloads_it() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let first = format!("{ENGINE}{}", errors_alert("a", &rx.url("/a"), 100));
    let d = Daemon::start(dir.path(), &first).await;
    // Saved the way editors do: a new file renamed over the old one.
    d.rewrite_config(&format!("{first}{}", errors_alert("b", &rx.url("/b"), 0)));
    wait_for_alerts(&d, &["a", "b"], Duration::from_secs(10)).await;
    d.send(&[error_trace("p1")]).await;
    wait_hooks(&rx, &d, "/b", 1).await;
    assert!(d.logs().contains("config file changed"), "{}", d.logs());
}

/// Saved in place (`cat > alertd.toml`, or an editor that overwrites the file): the watch sees
/// the file closed after writing, not each write, so a file half written is not what it reads.
/// Meanwhile the store, in the same directory, writes on every commit without causing a reload.
#[tokio::test]
async fn saving_the_config_file_in_place_reloads_it_and_store_writes_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let first = format!("{ENGINE}{}", errors_alert("a", &rx.url("/a"), 100));
    let d = Daemon::start(dir.path(), &first).await;
    for _ in 0..20 {
        d.send(&[error_trace("p1")]).await;
    }
    tokio::time::sleep(A_FEW_TICKS).await;
    assert!(!d.logs().contains("config file changed"), "{}", d.logs());
    {
        use std::io::Write;
        let text = config_text(
            d.port,
            &d.dir,
            &format!("{first}{}", errors_alert("b", &rx.url("/b"), 0)),
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(d.dir.join("alertd.toml"))
            .unwrap();
        let (head, tail) = text.as_bytes().split_at(text.len() / 2);
        f.write_all(head).unwrap();
        f.sync_all().unwrap();
        // Half a file for longer than the debounce: nothing may be read yet.
        std::thread::sleep(Duration::from_millis(800));
        assert!(!d.logs().contains("config file changed"), "{}", d.logs());
        f.write_all(tail).unwrap();
    }
    wait_for_alerts(&d, &["a", "b"], Duration::from_secs(10)).await;
    assert!(d.logs().contains("config file changed"), "{}", d.logs());
    assert!(!d.logs().contains("config reload rejected"), "{}", d.logs());
}

/// An alert whose trigger 1 has an operator the contract does not know.
const BAD_ALERT: &str = "[[alert]]\nid = \"bad\"\nurl = \"http://127.0.0.1:9/x\"\n\
    [[alert.trigger]]\nevent = \"trace:feedback_score\"\nscore = \"s\"\noperator = \"=\"\n\
    threshold = 0.5\nwindow = \"5m\"\n";

#[tokio::test]
async fn invalid_file_is_rejected_and_the_running_config_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let good = format!("{ENGINE}{}", errors_alert("a", &rx.url("/a"), 0));
    let d = start_unwatched(dir.path(), &good).await;
    assert_eq!(
        metric(&d, "alertd_config_last_reload_successful").await,
        Some(1.0)
    );
    write_unwatched(&d, &format!("{good}{BAD_ALERT}"));

    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 400, "{v}");
    let error = v["error"].as_str().expect("error message");
    let file = d.config_path.display().to_string();
    for part in [file.as_str(), "alert \"bad\"", "trigger 1", "operator"] {
        assert!(error.contains(part), "{part:?} missing from {error:?}");
    }
    assert!(
        d.logs().contains(error),
        "the error is logged:\n{}",
        d.logs()
    );
    assert_eq!(
        metric(&d, "alertd_config_last_reload_successful").await,
        Some(0.0)
    );
    // SIGHUP with the same file: rejected too, and logged again.
    d.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.logs().matches(error).count() < 2 {
        assert!(Instant::now() < deadline, "{}", d.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The running config stays: alert a still fires, bad is not there.
    assert_eq!(alert_ids(&d).await, ["a"]);
    d.send(&[error_trace("p1")]).await;
    wait_hooks(&rx, &d, "/a", 1).await;

    // Fixed file: applied, and the gauge recovers.
    write_unwatched(&d, &good);
    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        metric(&d, "alertd_config_last_reload_successful").await,
        Some(1.0)
    );
}

#[tokio::test]
async fn saving_an_invalid_file_keeps_the_running_config() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let good = format!("{ENGINE}{}", errors_alert("a", &rx.url("/a"), 0));
    let d = Daemon::start(dir.path(), &good).await;
    d.rewrite_config(&format!("{good}{BAD_ALERT}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&d, "alertd_config_last_reload_successful").await != Some(0.0) {
        assert!(Instant::now() < deadline, "{}", d.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(d.logs().contains("config reload rejected"), "{}", d.logs());
    assert_eq!(alert_ids(&d).await, ["a"]);
    d.send(&[error_trace("p1")]).await;
    wait_hooks(&rx, &d, "/a", 1).await;
}

#[tokio::test]
async fn unchanged_alert_keeps_its_window_across_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let ten = format!("{ENGINE}{}", errors_alert("ten", &rx.url("/ten"), 10));
    let d = start_unwatched(dir.path(), &ten).await;
    let six: Vec<_> = (0..6).map(|_| error_trace("p1")).collect();
    d.send(&six).await;
    wait_for_value(&d, "ten", 0, 6.0).await;

    write_unwatched(
        &d,
        &format!("{ten}{}", errors_alert("other", &rx.url("/other"), 100)),
    );
    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["report"]["unchanged"], 1, "{v}");
    assert_eq!(rx.requests_to("/ten").len(), 0, "6 errors do not fire");

    let five: Vec<_> = (0..5).map(|_| error_trace("p1")).collect();
    d.send(&five).await;
    let got = wait_hooks(&rx, &d, "/ten", 1).await;
    assert_eq!(
        got[0].json()["payload"]["metadata"][0]["metric_value"],
        "11",
        "6 before the reload + 5 after"
    );
}

#[tokio::test]
async fn changed_alert_keeps_the_state_of_its_unchanged_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let alert = |cost_threshold: u32| {
        format!(
            "{ENGINE}[[alert]]\nid = \"two\"\nurl = \"{}\"\n\
             [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 10\nwindow = \"5m\"\n\
             [[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = {cost_threshold}\nwindow = \"5m\"\n",
            rx.url("/two")
        )
    };
    let d = start_unwatched(dir.path(), &alert(100)).await;
    let six: Vec<_> = (0..6)
        .map(|_| {
            serde_json::json!({"kind": "trace", "project": "p1",
                "error_info": {"message": "boom"}, "total_estimated_cost": 1.5})
        })
        .collect();
    d.send(&six).await;
    wait_for_value(&d, "two", 0, 6.0).await;
    wait_for_value(&d, "two", 1, 9.0).await;

    write_unwatched(&d, &alert(200));
    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["report"]["changed"], serde_json::json!(["two"]), "{v}");
    assert_eq!(
        trigger(&d, "two", 0).await["value"],
        6.0,
        "unchanged trigger"
    );
    assert_eq!(
        trigger(&d, "two", 1).await["value"],
        Value::Null,
        "a changed trigger starts afresh"
    );

    let five: Vec<_> = (0..5).map(|_| error_trace("p1")).collect();
    d.send(&five).await;
    let got = wait_hooks(&rx, &d, "/two", 1).await;
    let body = got[0].json();
    assert_eq!(body["event_type"], "trace:errors");
    assert_eq!(body["payload"]["metadata"][0]["metric_value"], "11");
}

#[tokio::test]
async fn listener_and_storage_changes_are_reported_as_restart_required() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let rest = format!("{ENGINE}{}", errors_alert("a", &rx.url("/a"), 0));
    let d = start_unwatched(dir.path(), &rest).await;
    let moved = format!(
        "[server]\nlisten = \"127.0.0.1:{}\"\n[storage]\npath = \"{}\"\n{rest}",
        common::free_port(),
        dir.path().join("elsewhere.redb").display()
    );
    std::fs::write(dir.path().join("conf/alertd.toml"), moved).unwrap();
    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["report"]["restart_required"],
        serde_json::json!(["server.listen", "storage.path"]),
        "{v}"
    );
    assert!(
        d.logs().contains("take effect only after a restart"),
        "{}",
        d.logs()
    );
    // Still serving on the old listener, from the old store.
    d.send(&[error_trace("p1")]).await;
    wait_hooks(&rx, &d, "/a", 1).await;
    assert!(!dir.path().join("elsewhere.redb").exists());
}
