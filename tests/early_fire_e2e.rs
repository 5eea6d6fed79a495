//! Early firing (issue 17): a threshold crossing is committed and sent when the events that
//! cross arrive, not at the next tick; `engine.early_fire = false` restores tick-only behaviour.

mod common;

use common::{error_trace, Daemon, Receiver};
use std::time::Duration;

fn config(rx: &Receiver, early: Option<bool>) -> String {
    // An hour between ticks: anything that arrives within the test came from early firing (or
    // from the final tick at SIGTERM).
    let early = early
        .map(|e| format!("early_fire = {e}\n"))
        .unwrap_or_default();
    format!(
        "[engine]\ntick = \"1h\"\n{early}\
         [[alert]]\nid = \"errors\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 2\nwindow = \"1h\"\n\
         [[alert]]\nid = \"quiet\"\nurl = \"{}\"\n[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 100\nwindow = \"1h\"\n",
        rx.url("/errors"),
        rx.url("/quiet")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_crossing_is_sent_without_waiting_for_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let mut d = Daemon::start(dir.path(), &config(&rx, None)).await;
    d.send(&[error_trace("p"), error_trace("p")]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.requests_to("/errors").is_empty(), "2 is not above 2");
    d.send(&[error_trace("p")]).await;
    let got = rx.wait_for("/errors", 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["payload"]["metadata"][0]["metric_value"], "3");
    assert_eq!(got[0].json()["payload"]["metadata"][0]["state"], "firing");
    // The early commit is durable like a tick's: after kill -9 the episode is not sent again.
    d.kill9();
    d.spawn().await;
    d.send(&[error_trace("p")]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rx.requests_to("/errors").len(), 1, "one firing per episode");
    assert!(rx.requests_to("/quiet").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_fire_off_waits_for_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let mut d = Daemon::start(dir.path(), &config(&rx, Some(false))).await;
    d.send(&[error_trace("p"), error_trace("p"), error_trace("p")])
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(rx.requests_to("/errors").is_empty(), "no early firing");
    // Positive control: the final tick at SIGTERM decides and sends it.
    assert_eq!(d.terminate(), Some(0));
    rx.wait_for("/errors", 1, Duration::from_secs(5)).await;
}
