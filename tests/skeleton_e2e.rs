//! End to end through the real binary: ingest → window → webhook at a loopback receiver.

mod common;

use common::{error_trace, Daemon, Receiver};
use std::time::Duration;

fn errors_alert(url: &str) -> String {
    format!(
        "[engine]\ntick = \"200ms\"\n[[alert]]\nid = \"prod-errors\"\nname = \"Prod errors\"\nurl = \"{url}\"\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nprojects = [\"p1\"]\nthreshold = 10\nwindow = \"5m\"\n"
    )
}

#[tokio::test]
async fn eleven_errors_over_threshold_send_exactly_one_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = Daemon::start(dir.path(), &errors_alert(&rx.url("/hook"))).await;
    let events: Vec<_> = (0..11).map(|_| error_trace("p1")).collect();
    d.send(&events).await;
    let got = rx.wait_for("/hook", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.requests_to("/hook").len(), 1, "exactly one webhook");
    let body = got[0].json();
    assert_eq!(body["event_type"], "trace:errors");
    assert_eq!(body["alert_id"], "prod-errors");
    assert_eq!(body["alert_name"], "Prod errors");
    assert_eq!(body["workspace_id"], "default");
    assert_eq!(body["workspace_name"], "default");
    assert_eq!(body["max_retries"], 8);
    let p = &body["payload"];
    assert_eq!(p["alertId"], "prod-errors");
    assert_eq!(p["eventType"], "trace:errors");
    assert_eq!(p["eventCount"], 1);
    assert_eq!(p["aggregationType"], "consolidated");
    assert_eq!(
        p["message"],
        "Alert 'Prod errors': 1 trace:errors events aggregated"
    );
    let m = &p["metadata"][0];
    assert_eq!(m["event_type"], "TRACE_ERRORS");
    assert_eq!(m["metric_name"], "trace:errors");
    assert_eq!(m["metric_value"], "11");
    assert_eq!(m["threshold"], "10");
    assert_eq!(m["window_seconds"], 300);
    assert_eq!(m["project_names"], "p1");
    assert_eq!(m["project_ids"], "");
    assert_eq!(m["state"], "firing");
    assert_eq!(
        got[0].header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(got[0].header("user-agent").unwrap().starts_with("alertd/"));
}
