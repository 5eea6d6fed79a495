//! A reload reaches notifications already decided (DESIGN §9): each attempt reads the alert's
//! current URL, headers and secrets, so fixing a URL or rotating a signing secret lets stuck
//! deliveries through with their original id and body.

mod common;

use common::{error_trace, free_port, Daemon, Receiver};
use std::time::{Duration, Instant};

const OLD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const NEW_SECRET: &str = "whsec_dGhlIG5ldyBzZWNyZXQgb2YgdGhlIGFsZXJ0";

fn config(url: &str, secret: &str, max_retries: u32) -> String {
    format!(
        "[engine]\ntick = \"200ms\"\n[delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"400ms\"\nmax_retries = {max_retries}\n\
         [[alert]]\nid = \"a\"\nurl = \"{url}\"\nsigning_secret = \"{secret}\"\nheaders = {{ \"X-Env\" = \"{secret_tag}\" }}\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"1h\"\n",
        secret_tag = &secret[6..10]
    )
}

async fn one_row(d: &Daemon, status: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = d.get(&format!("/v1/deliveries?status={status}")).await;
        if let Some(r) = v["deliveries"].as_array().and_then(|a| a.first().cloned()) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no {status} delivery: {}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signature_verifies(r: &common::Received, secret: &str) -> bool {
    let key = alertd::destination::signature::decode_secret(secret).unwrap();
    let id = r.header("webhook-id").unwrap();
    let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
    let sig = r.header("webhook-signature").unwrap();
    alertd::destination::signature::verify(&key, &id, ts, r.body.as_bytes(), &sig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_follows_a_fixed_url_and_a_rotated_secret_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let dead = format!("http://127.0.0.1:{}/gone", free_port());
    let d = Daemon::start(dir.path(), &config(&dead, OLD_SECRET, 1000)).await;
    d.send(&[error_trace("p")]).await;
    // It is decided and failing against the dead port.
    let deadline = Instant::now() + Duration::from_secs(10);
    let pending = loop {
        let r = one_row(&d, "pending").await;
        if r["attempts"].as_u64().unwrap() >= 2 {
            break r;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    d.rewrite_config(&config(&rx.url("/fixed"), NEW_SECRET, 1000));
    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    let got = rx.wait_for("/fixed", 1, Duration::from_secs(10)).await;
    assert_eq!(
        got[0].json()["id"],
        pending["id"],
        "same id as the stuck delivery"
    );
    assert_eq!(
        got[0].header("webhook-id").as_deref(),
        pending["id"].as_str()
    );
    assert!(
        signature_verifies(&got[0], NEW_SECRET),
        "signed with the rotated secret"
    );
    assert!(!signature_verifies(&got[0], OLD_SECRET));
    assert_eq!(got[0].header("x-env").as_deref(), Some(&NEW_SECRET[6..10]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_retried_after_the_fix_goes_to_the_new_url() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let dead = format!("http://127.0.0.1:{}/gone", free_port());
    let d = Daemon::start(dir.path(), &config(&dead, OLD_SECRET, 0)).await;
    d.send(&[error_trace("p")]).await;
    let letter = one_row(&d, "dead").await;
    d.rewrite_config(&config(&rx.url("/fixed"), OLD_SECRET, 0));
    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    let id = letter["id"].as_str().unwrap();
    let (status, v) = d.post(&format!("/v1/deliveries/{id}/retry"), None).await;
    assert_eq!(status, 202, "{v}");
    let got = rx.wait_for("/fixed", 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["id"], id);
    assert!(signature_verifies(&got[0], OLD_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_alert_keeps_the_destination_it_was_decided_with() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = Daemon::start(dir.path(), &config(&rx.url("/original"), OLD_SECRET, 0)).await;
    // The receiver refuses at first: the notification becomes a dead letter.
    rx.script("/original", vec![common::Answer::Status(400)]);
    d.send(&[error_trace("p")]).await;
    let letter = one_row(&d, "dead").await;
    // The alert goes away; the retried letter still goes where it was decided to go.
    d.rewrite_config("[engine]\ntick = \"200ms\"\n");
    let (status, v) = d.post("/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    let id = letter["id"].as_str().unwrap();
    let (status, _) = d.post(&format!("/v1/deliveries/{id}/retry"), None).await;
    assert_eq!(status, 202);
    let got = rx.wait_for("/original", 2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json()["id"], id);
}
