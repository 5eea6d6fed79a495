//! Shared batches (issue 21): alerts of one trace type taking every project, or one project, are
//! sent one list per batch shared by all of them (and read it through per-slot summaries); each
//! must still count exactly the events of its own scope, by project name or id, next to alerts
//! sent lists of their own.

mod common;

use common::{Daemon, Receiver};
use serde_json::json;
use std::time::Duration;

fn cost(project: &str, project_id: Option<&str>, cost: f64) -> serde_json::Value {
    let mut e = json!({"kind": "trace", "project": project, "total_estimated_cost": cost});
    if let Some(id) = project_id {
        e["project_id"] = json!(id);
    }
    e
}

fn alert(id: &str, rx: &Receiver, projects: &str, threshold: f64) -> String {
    format!(
        "[[alert]]\nid = \"{id}\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:cost\"\n{projects}threshold = {threshold}\nwindow = \"1h\"\n",
        rx.url(&format!("/{id}/"))
    )
}

fn value(rx: &Receiver, id: &str) -> Vec<String> {
    rx.requests_to(&format!("/{id}/"))
        .iter()
        .map(|r| {
            r.json()["payload"]["metadata"][0]["metric_value"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_lists_count_exactly_their_scope() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    // An hour between ticks: crossings are sent by early firing, as the events arrive.
    let mut cfg = String::from("[engine]\ntick = \"1h\"\n");
    for (id, projects, threshold) in [
        ("every", "", 4.5),
        ("every-twin", "", 4.5),
        ("p1", "projects = [\"p1\"]\n", 1.5),
        ("p1-twin", "projects = [\"p1\"]\n", 1.5),
        ("p2", "projects = [\"p2\"]\n", 1.5),
        ("by-id", "projects = [\"id-1\"]\n", 1.5),
        ("own", "projects = [\"p1\", \"p2\"]\n", 2.5),
    ] {
        cfg.push_str(&alert(id, &rx, projects, threshold));
    }
    let d = Daemon::start(dir.path(), &cfg).await;
    // p1 twice (once with its id), p2 once, p3 (no alert's project) twice.
    d.send(&[
        cost("p1", None, 1.0),
        cost("p2", None, 1.0),
        cost("p3", None, 1.0),
        cost("p1", Some("id-1"), 1.0),
        cost("p3", None, 1.0),
    ])
    .await;
    for id in ["every", "every-twin"] {
        assert_eq!(
            rx.wait_for(&format!("/{id}/"), 1, Duration::from_secs(10))
                .await
                .len(),
            1
        );
        assert_eq!(value(&rx, id), ["5"], "{id}: every project");
    }
    for id in ["p1", "p1-twin"] {
        rx.wait_for(&format!("/{id}/"), 1, Duration::from_secs(10))
            .await;
        assert_eq!(value(&rx, id), ["2"], "{id}: p1 by name");
    }
    rx.wait_for("/own/", 1, Duration::from_secs(10)).await;
    assert_eq!(value(&rx, "own"), ["3"], "p1 and p2");
    // One event of p2 and one of id-1: not above 1.5 yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(value(&rx, "p2").is_empty());
    assert!(value(&rx, "by-id").is_empty());
    // A second of each crosses, and nothing else is sent again within the episode.
    d.send(&[cost("p2", None, 1.0), cost("p9", Some("id-1"), 1.0)])
        .await;
    rx.wait_for("/p2/", 1, Duration::from_secs(10)).await;
    rx.wait_for("/by-id/", 1, Duration::from_secs(10)).await;
    assert_eq!(value(&rx, "p2"), ["2"]);
    assert_eq!(value(&rx, "by-id"), ["2"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in ["every", "every-twin", "p1", "p1-twin", "own"] {
        assert_eq!(value(&rx, id).len(), 1, "{id}");
    }
}
