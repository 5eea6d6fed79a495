//! Delivery you can trust: retries, dead letters, Retry-After, isolation, restart, signatures —
//! through the real binary to a loopback receiver answering scripted statuses.

mod common;

use common::{error_trace, Answer, Daemon, Receiver};
use std::time::{Duration, Instant};

/// An alert that fires on the first error trace of project `p`, delivering to `url`.
fn alert(id: &str, project: &str, url: &str, extra: &str) -> String {
    format!(
        "[[alert]]\nid = \"{id}\"\nurl = \"{url}\"\n{extra}\n[[alert.trigger]]\nevent = \"trace:errors\"\nprojects = [\"{project}\"]\nthreshold = 0\nwindow = \"5m\"\n"
    )
}

fn engine(extra_delivery: &str) -> String {
    format!(
        "[engine]\ntick = \"200ms\"\n[delivery]\ninitial_backoff = \"300ms\"\nmax_backoff = \"5s\"\nmax_retries = 3\n{extra_delivery}\n"
    )
}

async fn dead_letters(d: &Daemon) -> Vec<serde_json::Value> {
    let (s, v) = d.get("/v1/deliveries?status=dead").await;
    assert_eq!(s, 200);
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

async fn wait_dead(d: &Daemon, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dl = dead_letters(d).await;
        if dl.len() >= n {
            return dl;
        }
        assert!(
            Instant::now() < deadline,
            "no dead letter after 20 s: {}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_id_and_growing_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script("/a", vec![Answer::Status(500); 4]);
    // Backoff 200 ms doubling, ±50% jitter, capped at 2 s: the four gaps fall in
    // [100, 300), [200, 600), [400, 1200) and [800, 2000] ms.
    let cfg = "[engine]\ntick = \"200ms\"\n[delivery]\ninitial_backoff = \"200ms\"\nmax_backoff = \"2s\"\nmax_retries = 6\n".to_string()
        + &alert("a", "p", &rx.url("/a"), "");
    let d = Daemon::start(dir.path(), &cfg).await;
    d.send(&[error_trace("p")]).await;
    let got = rx.wait_for("/a", 5, Duration::from_secs(20)).await;
    let id = got[0].json()["id"].clone();
    assert!(
        got.iter().all(|r| r.json()["id"] == id),
        "one id for every attempt"
    );
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "every attempt sends the same body"
    );
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    // Lower bounds only growth meets: a schedule stuck at the first delay (< 300 ms) fails the
    // third and fourth, one stuck at the second (< 600 ms) fails the fourth.
    for (n, min_ms) in [(0, 100), (1, 200), (2, 400), (3, 800)] {
        assert!(
            gaps[n] >= Duration::from_millis(min_ms),
            "gap {} was {:?}, at least {min_ms} ms expected: {gaps:?}",
            n + 1,
            gaps[n]
        );
    }
    // After the success nothing more: the next retry would have come within the 2 s cap.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        rx.requests_to("/a").len(),
        5,
        "no attempt after the success"
    );
    let (_, v) = d.get("/v1/deliveries?status=delivered").await;
    assert_eq!(v["deliveries"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["deliveries"][0]["attempts"], 5);
    let (_, v) = d.get("/v1/deliveries?status=pending").await;
    assert_eq!(v["deliveries"].as_array().map(Vec::len), Some(0), "{v}");
    assert!(dead_letters(&d).await.is_empty());
}

#[tokio::test]
async fn client_error_goes_to_dead_letters_and_api_retry_delivers_the_same_body() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script("/a", vec![Answer::Status(400)]);
    let cfg = engine("") + &alert("a", "p", &rx.url("/a"), "");
    let d = Daemon::start(dir.path(), &cfg).await;
    d.send(&[error_trace("p")]).await;
    let dead = wait_dead(&d, 1).await;
    assert_eq!(rx.requests_to("/a").len(), 1, "a 400 is not retried");
    assert_eq!(dead[0]["attempts"], 1);
    assert_eq!(dead[0]["last_status"], 400);
    assert!(dead[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("HTTP 400: scripted"));
    let id = dead[0]["id"].as_str().unwrap().to_string();
    let (s, _) = d.post(&format!("/v1/deliveries/{id}/retry"), None).await;
    assert_eq!(s, 202);
    let got = rx.wait_for("/a", 2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json()["id"], id.as_str());
    assert_eq!(got[0].body, got[1].body);
    assert!(wait_until_empty_dead(&d).await);
    let (s, _) = d.post(&format!("/v1/deliveries/{id}/retry"), None).await;
    assert_eq!(
        s, 404,
        "a delivered notification is no longer a dead letter"
    );
}

async fn wait_until_empty_dead(d: &Daemon) -> bool {
    for _ in 0..100 {
        if dead_letters(d).await.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script("/a", vec![Answer::RetryAfter(429, 2)]);
    let cfg = engine("") + &alert("a", "p", &rx.url("/a"), "");
    let d = Daemon::start(dir.path(), &cfg).await;
    d.send(&[error_trace("p")]).await;
    let got = rx.wait_for("/a", 2, Duration::from_secs(15)).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(1950),
        "second attempt after {gap:?}, Retry-After said 2 s"
    );
}

#[tokio::test]
async fn unreachable_receiver_ends_in_dead_letters_with_the_connection_error() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("http://127.0.0.1:{}/nobody", common::free_port());
    let cfg = engine("") + &alert("a", "p", &closed, "");
    let d = Daemon::start(dir.path(), &cfg).await;
    d.send(&[error_trace("p")]).await;
    let dead = wait_dead(&d, 1).await;
    assert_eq!(dead[0]["attempts"], 4, "1 attempt + max_retries 3");
    let err = dead[0]["last_error"].as_str().unwrap();
    assert!(err.contains("connect") || err.contains("refused"), "{err}");
    assert!(dead[0]["last_status"].is_null());
}

#[tokio::test]
async fn a_hanging_receiver_does_not_delay_other_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let slow = Receiver::start().await;
    slow.set_default(Answer::Hang);
    let fast = Receiver::start().await;
    // Five notifications to one hanging endpoint would occupy all 4 workers; the endpoint may
    // hold only per_endpoint_in_flight (2) of them.
    let mut cfg = engine("timeout = \"30s\"");
    for i in 1..=5 {
        cfg += &alert(&format!("slow{i}"), "s", &slow.url(&format!("/s{i}")), "");
    }
    cfg += &alert("fast", "f", &fast.url("/f"), "");
    let d = Daemon::start(dir.path(), &cfg).await;
    d.send(&[error_trace("s")]).await;
    slow.wait_for("/s", 2, Duration::from_secs(10)).await;
    d.send(&[error_trace("f")]).await;
    fast.wait_for("/f", 1, Duration::from_secs(5)).await;
    assert_eq!(
        slow.requests_to("/s").len(),
        2,
        "the hanging endpoint holds at most 2 senders"
    );
}

#[tokio::test]
async fn a_restart_during_backoff_resumes_with_the_same_id_and_attempt_count() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script("/a", vec![Answer::Status(503), Answer::Status(503)]);
    let cfg = "[engine]\ntick = \"200ms\"\n[delivery]\ninitial_backoff = \"1500ms\"\nmax_backoff = \"2s\"\nmax_retries = 5\n".to_string()
        + &alert("a", "p", &rx.url("/a"), "");
    let mut d = Daemon::start(dir.path(), &cfg).await;
    d.send(&[error_trace("p")]).await;
    rx.wait_for("/a", 1, Duration::from_secs(10)).await;
    // Wait until the failed attempt is recorded (attempts = 1 in the outbox), then crash.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = d.get("/v1/deliveries?status=pending").await;
        if v["deliveries"][0]["attempts"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "attempt never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.kill9();
    d.spawn().await;
    let got = rx.wait_for("/a", 3, Duration::from_secs(20)).await;
    let id = got[0].json()["id"].clone();
    assert!(
        got.iter().all(|r| r.json()["id"] == id),
        "same id after restart"
    );
    let row = d.newest_delivered().await;
    assert_eq!(
        row["attempts"], 3,
        "attempt count continued across the restart"
    );
}

#[tokio::test]
async fn signed_deliveries_verify_with_an_independent_hmac() {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let cfg = engine("")
        + &alert(
            "a",
            "p",
            &rx.url("/a"),
            &format!("signing_secret = \"{secret}\"\nsecret_token = \"tok\"\nheaders = {{ \"X-Env\" = \"prod\" }}"),
        );
    let d = Daemon::start(dir.path(), &cfg).await;
    d.send(&[error_trace("p")]).await;
    let r = &rx.wait_for("/a", 1, Duration::from_secs(10)).await[0];
    let id = r.header("webhook-id").unwrap();
    assert_eq!(id, r.json()["id"].as_str().unwrap());
    let ts = r.header("webhook-timestamp").unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(r.header("webhook-signature").unwrap(), want);
    assert_eq!(r.header("authorization").unwrap(), "Bearer tok");
    assert_eq!(r.header("x-env").unwrap(), "prod");
}

#[tokio::test]
async fn test_endpoint_reports_success_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script("/bad", vec![Answer::Status(404)]);
    let cfg = engine("")
        + &alert("good", "p", &rx.url("/good"), "")
        + &alert("bad", "p", &rx.url("/bad"), "");
    let d = Daemon::start(dir.path(), &cfg).await;
    let (s, v) = d
        .post(
            "/v1/alerts/good/test",
            Some(serde_json::json!({"event_type": "prompt:created"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "success");
    assert_eq!(v["status_code"], 200);
    let sent: serde_json::Value =
        serde_json::from_str(v["request_body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["event_type"], "prompt:created");
    assert_eq!(rx.requests_to("/good").len(), 1);
    let (_, v) = d.post("/v1/alerts/bad/test", None).await;
    assert_eq!(v["status"], "failure");
    assert_eq!(v["status_code"], 404);
    assert!(v["error_message"].as_str().unwrap().contains("404"));
    let (s, _) = d.post("/v1/alerts/nope/test", None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn slack_webhooks_get_at_most_one_message_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let mut cfg = engine("");
    for i in 1..=3 {
        cfg += &alert(
            &format!("s{i}"),
            "p",
            &rx.url("/slack"),
            "destination = \"slack\"",
        );
    }
    let d = Daemon::start(dir.path(), &cfg).await;
    d.send(&[error_trace("p")]).await;
    let got = rx.wait_for("/slack", 3, Duration::from_secs(10)).await;
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "two Slack messages {gap:?} apart"
        );
    }
}
