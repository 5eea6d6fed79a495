//! Console benchmark (issue 14): how long each page takes with 1,000 alerts and a full
//! delivery log.
//!
//! Not a timed test: it prints numbers for the README and asserts nothing. Run with
//! `cargo bench --bench console`.
//!
//! - **Served**: the real `alertd` binary with 1,000 alerts (two threshold triggers each, so
//!   2,000 sparklines on the alerts page), one error trace that makes every alert fire (1,000
//!   webhooks to a loopback receiver, so the delivery log holds its full `log_size` of 1,000),
//!   and 3 silences. Each page is then fetched [`REQUESTS`] times, one after the other, over
//!   loopback with a logged-in session; the time is from sending the request to the last byte
//!   of the answer, so it bounds the server time from above.
//! - **Rendered**: the pure page functions alone on the same amount of data (1,000 alert rows
//!   with full 60-slot series; 100 delivery rows), to split rendering from gathering.

#[path = "../tests/common/mod.rs"]
mod common;

use alertd::alert::supervisor::RunState;
use alertd::config::DestinationKind;
use alertd::delivery::{Delivery, TlsOptions};
use alertd::event::EventType;
use alertd::notification::NotificationState;
use alertd::ui::model::{AlertRow, DeliveryRow, Redactor, Rule, Status, TriggerRow};
use alertd::ui::pages::{self, Chrome, Counts};
use common::{error_trace, Daemon, Receiver};
use std::hint::black_box;
use std::time::{Duration, Instant};

const ALERTS: usize = 1_000;
/// Requests per page.
const REQUESTS: usize = 50;
/// Renders per page in the pure timing.
const RENDERS: usize = 50;

/// Median, 95th percentile and maximum of `samples`, in milliseconds.
fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:6.2} ms  p95 {:6.2} ms  max {:6.2} ms",
        ms(p(0.5)),
        ms(p(0.95)),
        ms(*samples.last().unwrap())
    )
}

fn config(rx: &Receiver) -> String {
    let mut text = String::from(
        "[engine]\ntick = \"1s\"\n[delivery]\nworkers = 8\nper_endpoint_in_flight = 64\nlog_size = 1000\n",
    );
    for i in 0..ALERTS {
        text.push_str(&format!(
            "[[alert]]\nid = \"alert-{i:04}\"\nname = \"Alert {i}\"\nurl = \"{}\"\n\
             [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 0\nwindow = \"5m\"\n\
             [[alert.trigger]]\nevent = \"trace:latency\"\nthreshold = 2.5\nwindow = \"15m\"\n",
            rx.url(&format!("/hook/{i}"))
        ));
    }
    text
}

async fn served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rx = Receiver::start().await;
    let d = Daemon::start(dir.path(), &config(&rx)).await;
    d.send(&[error_trace("bench")]).await;
    rx.wait_for("/hook/", ALERTS, Duration::from_secs(300))
        .await;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = d.get("/v1/deliveries?status=delivered&limit=10000").await;
        if v["deliveries"].as_array().map_or(0, Vec::len) >= ALERTS {
            break;
        }
        assert!(Instant::now() < deadline, "delivery log never filled: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..3 {
        let (status, v) = d
            .post(
                "/v1/silences",
                Some(serde_json::json!({"alert": format!("alert-{i:04}"), "duration": "1h"})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
    }
    // A session cookie, as a browser gets it (no token configured: the first page sets it).
    let first = http
        .get(format!("{}/ui/alerts", d.base))
        .send()
        .await
        .expect("alerts page");
    let cookie = first.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie value")
        .to_string();
    println!("served by the alertd binary ({ALERTS} alerts, delivery log full, {REQUESTS} requests each):");
    for path in [
        "/ui/alerts",
        "/ui/alerts/alert-0500",
        "/ui/deliveries?status=delivered",
        "/ui/deliveries?status=pending",
        "/ui/silences",
    ] {
        let mut samples = Vec::with_capacity(REQUESTS);
        let mut bytes = 0;
        for _ in 0..REQUESTS {
            let t = Instant::now();
            let r = http
                .get(format!("{}{path}", d.base))
                .header("cookie", &cookie)
                .send()
                .await
                .expect("page");
            assert_eq!(r.status(), 200, "{path}");
            bytes = r.bytes().await.expect("body").len();
            samples.push(t.elapsed());
        }
        println!("  {path:34} {}  ({} KiB)", summary(samples), bytes / 1024);
    }
}

fn rendered() {
    let now = 1_795_168_800_123;
    let chrome = Chrome {
        now_ms: now,
        csrf: "x".repeat(43),
        logout: true,
        refresh: Some(5),
    };
    let series: Vec<Option<f64>> = (0..60).map(|i| Some(i as f64 * 0.3)).collect();
    let trigger = |event, value: f64| TriggerRow {
        event,
        projects: vec![],
        rule: Some(Rule {
            value: 10.0,
            operator: ">",
            window: Duration::from_secs(300),
            score: None,
        }),
        value: Some(value),
        firing: value > 10.0,
        firing_since_ms: (value > 10.0).then_some(now - 60_000),
        series: series.clone(),
        waiting: None,
    };
    let rows: Vec<AlertRow> = (0..ALERTS)
        .map(|i| AlertRow {
            id: format!("alert-{i:04}"),
            name: format!("Alert {i}"),
            run: RunState::Running,
            restarts: 0,
            destination: "general",
            host: "127.0.0.1:9000".into(),
            workspace: "default".into(),
            repeat_interval: Duration::from_secs(3600),
            send_resolved: false,
            debounce: Duration::from_secs(60),
            triggers: vec![
                trigger(EventType::TraceErrors, (i % 20) as f64),
                trigger(EventType::TraceLatency, 1.5),
            ],
            firing_since_ms: None,
            silenced_until_ms: None,
            last_notified_ms: Some(now - 60_000),
        })
        .collect();
    let deliveries: Vec<DeliveryRow> = (0..100)
        .map(|i| {
            let d = Delivery {
                id: format!("0193a000-0000-7000-8000-{i:012}"),
                alert_id: format!("alert-{i:04}"),
                event_type: EventType::TraceErrors,
                state: NotificationState::Firing,
                destination: DestinationKind::General,
                url: "http://127.0.0.1:9000/hook".into(),
                headers: vec![],
                signing_secret: String::new(),
                tls: TlsOptions::default(),
                body: "{\"payload\":{\"message\":\"x\"}}".repeat(20),
                created_ms: now - i * 1000,
                attempts: 1,
                max_retries: 8,
                next_attempt_ms: now,
                last_status: Some(200),
                last_error: None,
                finished_ms: Some(now - i * 1000 + 40),
                listed: Vec::new(),
            };
            DeliveryRow::new(&d, Status::Delivered, None, &Redactor::new(&[]))
        })
        .collect();
    let time = |f: &dyn Fn() -> String| {
        let samples: Vec<Duration> = (0..RENDERS)
            .map(|_| {
                let t = Instant::now();
                black_box(f());
                t.elapsed()
            })
            .collect();
        summary(samples)
    };
    println!("rendered alone (pure page functions, {RENDERS} renders each):");
    println!(
        "  alerts page, {ALERTS} alerts × 2 sparklines  {}",
        time(&|| pages::alerts_page(&chrome, &rows).into_string())
    );
    println!(
        "  deliveries page, 100 rows              {}",
        time(&|| pages::deliveries_page(
            &chrome,
            Status::Delivered,
            Counts::default(),
            &deliveries,
            100
        )
        .into_string())
    );
}

fn main() {
    rendered();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(served());
}
