//! The console's pages as pure functions of their state: golden files pin each page's HTML, and
//! contract tests pin what automation and security rely on (DESIGN §13): the stable `data-*`
//! hooks, a CSRF token in every form, no inline script or style, no secret.
//!
//! Golden files are `tests/golden/ui/<page>.html`, the rendered HTML with a line break between
//! tags so diffs read. After an intended change, regenerate with
//! `UPDATE_GOLDEN=1 cargo nextest run --test ui_pages` and read the diff before committing.

use alertd::alert::supervisor::RunState;
use alertd::config::DestinationKind;
use alertd::delivery::{Delivery, TlsOptions};
use alertd::event::EventType;
use alertd::notification::NotificationState;
use alertd::silence::{Silence, SilenceSet};
use alertd::ui::model::{
    self, AlertRow, DeliveryRow, Redactor, Rule, SilenceRow, Status, TestOutcome, TriggerRow,
};
use alertd::ui::pages::{self, AlertPage, Chrome, Counts, SilenceForm};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// 2026-11-20T10:00:00.123Z.
const NOW: i64 = 1_795_168_800_123;
const CSRF: &str = "CSRF-TOKEN-FIXTURE";
const MIN: i64 = 60_000;

fn chrome() -> Chrome {
    Chrome {
        now_ms: NOW,
        csrf: CSRF.into(),
        logout: true,
        refresh: Some(5),
    }
}

/// A series climbing from nothing to `end` over the 60 slots.
fn ramp(end: f64) -> Vec<Option<f64>> {
    (0..60)
        .map(|i| (i >= 20).then(|| end * (i - 19) as f64 / 40.0))
        .collect()
}

fn errors_trigger(value: f64, firing: bool) -> TriggerRow {
    TriggerRow {
        event: EventType::TraceErrors,
        projects: vec!["chatbot-prod".into()],
        rule: Some(Rule {
            value: 10.0,
            operator: ">",
            window: Duration::from_secs(300),
            score: None,
        }),
        value: Some(value),
        firing,
        firing_since_ms: firing.then_some(NOW - 7 * MIN),
        series: ramp(value),
        waiting: None,
    }
}

fn alert(id: &str, name: &str, run: RunState, triggers: Vec<TriggerRow>) -> AlertRow {
    AlertRow {
        id: id.into(),
        name: name.into(),
        run,
        restarts: 0,
        destination: "slack",
        host: "hooks.slack.com".into(),
        workspace: "default".into(),
        repeat_interval: Duration::from_secs(3600),
        send_resolved: false,
        debounce: Duration::from_secs(60),
        firing_since_ms: triggers.iter().filter_map(|t| t.firing_since_ms).min(),
        triggers,
        silenced_until_ms: None,
        last_notified_ms: None,
    }
}

fn alerts() -> Vec<AlertRow> {
    let mut firing = alert(
        "prod-errors",
        "Production errors",
        RunState::Running,
        vec![errors_trigger(12.0, true)],
    );
    firing.last_notified_ms = Some(NOW - 7 * MIN);
    firing.silenced_until_ms = Some(NOW + 53 * MIN);
    let latency = alert(
        "latency",
        "Slow answers <script>alert(1)</script>",
        RunState::Running,
        vec![TriggerRow {
            event: EventType::TraceFeedbackScore,
            projects: vec![],
            rule: Some(Rule {
                value: 0.5,
                operator: "<",
                window: Duration::from_secs(900),
                score: Some("hallucination".into()),
            }),
            value: None,
            firing: false,
            firing_since_ms: None,
            series: vec![],
            waiting: None,
        }],
    );
    let prompts = alert(
        "prompts",
        "Prompt changes",
        RunState::Disabled,
        vec![TriggerRow {
            event: EventType::PromptCreated,
            projects: vec![],
            rule: None,
            value: None,
            firing: false,
            firing_since_ms: None,
            series: vec![],
            waiting: Some(3),
        }],
    );
    let mut failed = alert(
        "cost",
        "Cost",
        RunState::Failed,
        vec![errors_trigger(2.0, false)],
    );
    failed.restarts = 6;
    vec![latency, firing, prompts, failed]
}

fn delivery(k: u32, status: Status) -> DeliveryRow {
    let d = Delivery {
        id: format!("0193a000-0000-7000-8000-00000000000{k}"),
        alert_id: "prod-errors".into(),
        event_type: EventType::TraceErrors,
        state: NotificationState::Firing,
        destination: DestinationKind::Slack,
        url: "https://hooks.slack.com/services/T000/B000/SLACKSECRET".into(),
        headers: vec![],
        signing_secret: String::new(),
        tls: TlsOptions::default(),
        body: r#"{"blocks":[{"type":"header","text":{"type":"plain_text","text":"Production errors"}}]}"#
            .into(),
        created_ms: NOW - (k as i64) * 3 * MIN,
        attempts: match status {
            Status::Dead => 9,
            Status::Pending => 2,
            _ => 1,
        },
        max_retries: 8,
        next_attempt_ms: NOW + 30_000,
        last_status: match status {
            Status::Delivered => Some(200),
            Status::Dead => Some(500),
            Status::Pending => Some(503),
            Status::Suppressed => None,
        },
        last_error: (status == Status::Dead).then(|| "HTTP 500: internal error".to_string()),
        finished_ms: matches!(status, Status::Delivered | Status::Dead)
            .then_some(NOW - (k as i64) * 3 * MIN + 240),
        listed: Vec::new(),
    };
    let silence =
        (status == Status::Suppressed).then(|| "0193b000-0000-7000-8000-000000000001".to_string());
    DeliveryRow::new(
        &d,
        status,
        silence,
        &Redactor::new(&[alertd::redact::Secret::Value("SLACKSECRET".to_string())]),
    )
}

fn silence(k: u32, alert: &str, starts: i64, ends: i64) -> Silence {
    Silence {
        id: format!("0193b000-0000-7000-8000-00000000000{k}"),
        alert: alert.into(),
        event_types: if k == 2 {
            vec![EventType::TraceErrors]
        } else {
            vec![]
        },
        starts_ms: starts,
        ends_ms: ends,
        comment: "deploying the fix".into(),
        created_by: "ana".into(),
        created_ms: starts,
    }
}

fn silence_rows() -> Vec<SilenceRow> {
    let set = SilenceSet::new(vec![
        silence(1, "prod-errors", NOW - 7 * MIN, NOW + 53 * MIN),
        silence(2, "*", NOW - 120 * MIN, NOW - 60 * MIN),
    ]);
    model::silence_rows(&set, None, NOW)
}

fn alert_page() -> AlertPage {
    AlertPage {
        alert: alerts().remove(1),
        deliveries: vec![
            delivery(1, Status::Pending),
            delivery(2, Status::Delivered),
            delivery(3, Status::Dead),
            delivery(4, Status::Suppressed),
        ],
        silences: silence_rows(),
        test: Some(TestOutcome {
            at_ms: NOW - 20_000,
            event_type: Some(EventType::TraceErrors),
            success: true,
            status_code: Some(200),
            excerpt: "ok".into(),
            error: None,
        }),
        form: SilenceForm::for_alert("prod-errors"),
    }
}

fn silences_form_with_error() -> SilenceForm {
    SilenceForm {
        alert: "prod-errors".into(),
        event_types: vec!["trace:errors".into()],
        duration: "-5m".into(),
        comment: "night".into(),
        created_by: String::new(),
        error: Some((
            "duration".into(),
            "must be a positive duration like \"2h\"".into(),
        )),
    }
}

/// Every page of the fixture state, by golden file name.
fn all_pages() -> Vec<(&'static str, String)> {
    let c = chrome();
    let mut no_refresh = chrome();
    no_refresh.refresh = None;
    vec![
        ("alerts", pages::alerts_page(&c, &alerts()).into_string()),
        ("alerts_empty", pages::alerts_page(&c, &[]).into_string()),
        ("alert", pages::alert_page(&c, &alert_page()).into_string()),
        (
            "deliveries_dead",
            pages::deliveries_page(
                &c,
                Status::Dead,
                Counts {
                    pending: 1,
                    dead: 1,
                },
                &[delivery(3, Status::Dead)],
                100,
            )
            .into_string(),
        ),
        (
            "silences",
            pages::silences_page(
                &no_refresh,
                &silence_rows(),
                &["cost".into(), "prod-errors".into()],
                &silences_form_with_error(),
            )
            .into_string(),
        ),
        (
            "login",
            pages::login_page(&no_refresh, Some("That token is not the configured one."))
                .into_string(),
        ),
    ]
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/ui")
        .join(format!("{name}.html"))
}

/// One tag per line, so a golden diff shows what changed; the release's version (in asset
/// links and the footer) written as `VERSION`, so a version bump is not a page change.
fn readable(html: &str) -> String {
    let html = html
        .replace("><", ">\n<")
        .replace(env!("CARGO_PKG_VERSION"), "VERSION");
    format!("{html}\n")
}

#[test]
fn pages_match_their_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatched = Vec::new();
    for (name, html) in all_pages() {
        let path = golden_path(name);
        let got = readable(&html);
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run UPDATE_GOLDEN=1 cargo nextest run --test ui_pages",
                path.display()
            )
        });
        if want != got {
            mismatched.push(name);
        }
    }
    assert!(
        mismatched.is_empty(),
        "pages differ from their golden files: {mismatched:?} (UPDATE_GOLDEN=1 to accept)"
    );
}

#[test]
fn each_alert_row_carries_its_id_and_firing_state() {
    let html = pages::alerts_page(&chrome(), &alerts()).into_string();
    for (id, firing) in [
        ("prod-errors", true),
        ("latency", false),
        ("prompts", false),
        ("cost", false),
    ] {
        let hook = format!("data-alert-id=\"{id}\" data-firing=\"{firing}\"");
        assert!(html.contains(&hook), "{hook} missing");
    }
    // Firing first.
    let first = html.find("data-alert-id=").unwrap();
    assert!(html[first..].starts_with("data-alert-id=\"prod-errors\""));
}

#[test]
fn threshold_triggers_draw_a_sparkline_with_the_threshold() {
    let html = pages::alerts_page(&chrome(), &alerts()).into_string();
    // prod-errors, latency (empty window) and cost; not the per-event trigger.
    assert_eq!(html.matches("data-sparkline").count(), 3, "{html}");
    assert_eq!(html.matches("class=\"threshold\"").count(), 3);
    let page = pages::alert_page(&chrome(), &alert_page()).into_string();
    assert_eq!(page.matches("data-sparkline").count(), 1);
    assert!(page.contains("<polyline"), "the window's series is drawn");
}

#[test]
fn the_alert_page_has_the_test_button_result_and_silence_form() {
    let html = pages::alert_page(&chrome(), &alert_page()).into_string();
    assert!(html.contains("data-action=\"test\""));
    let result = html
        .split("data-test-result")
        .nth(1)
        .expect("a test result");
    assert!(result.contains("HTTP 200"), "{result}");
    let form = html
        .split("data-form=\"silence\"")
        .nth(1)
        .expect("a silence form");
    assert!(form.contains("name=\"duration\""));
    assert!(form.contains("name=\"comment\""));
    assert!(html.contains("firing since"));
    assert!(
        html.contains("title=\"2026-11-20 09:53:00 UTC\""),
        "absolute time on hover"
    );
}

#[test]
fn only_dead_letters_have_a_retry_button() {
    let html = pages::alert_page(&chrome(), &alert_page()).into_string();
    assert_eq!(html.matches("data-action=\"retry\"").count(), 1);
    let retry = html.find("data-action=\"retry\"").unwrap();
    let form = html[..retry].rfind("<form").unwrap();
    assert!(html[form..retry]
        .contains("action=\"/ui/deliveries/0193a000-0000-7000-8000-000000000003/retry\""));
}

#[test]
fn every_form_posts_with_the_csrf_token() {
    for (name, html) in all_pages() {
        let forms = html.matches("<form").count();
        let tokens = html
            .matches(&format!("name=\"csrf\" value=\"{CSRF}\""))
            .count();
        assert_eq!(forms, tokens, "{name}: {forms} forms, {tokens} CSRF tokens");
        assert_eq!(
            forms,
            html.matches("method=\"post\"").count(),
            "{name}: a form that changes state posts"
        );
    }
}

#[test]
fn no_page_has_inline_script_or_style() {
    for (name, html) in all_pages() {
        for script in html.split("<script").skip(1) {
            let tag = &script[..script.find('>').unwrap()];
            assert!(tag.contains("src=\"/ui/assets/"), "{name}: inline script");
            assert!(script[script.find('>').unwrap() + 1..].starts_with("</script>"));
        }
        assert!(!html.contains("<style"), "{name}: inline style element");
        assert!(!html.contains(" style="), "{name}: inline style attribute");
        assert!(!html.contains(" onclick="), "{name}: inline handler");
        assert!(!html.contains("javascript:"), "{name}: script URL");
    }
}

#[test]
fn text_is_escaped() {
    let html = pages::alerts_page(&chrome(), &alerts()).into_string();
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn a_refused_silence_form_keeps_its_values_and_names_the_field() {
    let mut c = chrome();
    c.refresh = None;
    let html =
        pages::silences_page(&c, &silence_rows(), &[], &silences_form_with_error()).into_string();
    assert!(html.contains("<strong>duration: </strong>"), "{html}");
    assert!(html.contains("value=\"-5m\""));
    assert!(html.contains("aria-invalid=\"true\""));
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "no refresh while a form shows an error"
    );
}

#[test]
fn pages_refresh_without_javascript_too() {
    let html = pages::alerts_page(&chrome(), &alerts()).into_string();
    assert!(html.contains("<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>"));
    assert!(html.contains("data-refresh=\"5\""));
}

#[test]
fn secrets_in_delivery_bodies_and_errors_are_never_rendered() {
    let html = pages::alert_page(&chrome(), &alert_page()).into_string();
    assert!(!html.contains("SLACKSECRET"));
    assert!(html.contains("hooks.slack.com"));
}
