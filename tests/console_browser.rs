//! The console in a real browser (DESIGN §13): headless Chromium driven over WebDriver against
//! the real `alertd` binary and a real loopback receiver. Screenshots of every page land in
//! `target/console-screenshots/` for a reviewer.
//!
//! Needs Debian's `chromium` and `chromium-driver` (see tests/browser); without them these
//! tests fail and say how to install them.

mod browser;
mod common;

use browser::Browser;
use common::{error_trace, Answer, Daemon, Receiver};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn alert(id: &str, name: &str, url: &str, threshold: u32, extra: &str) -> String {
    format!(
        "[[alert]]\nid = \"{id}\"\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n\
         [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = {threshold}\nwindow = \"5m\"\n"
    )
}

const ENGINE: &str = "[engine]\ntick = \"200ms\"\n[delivery]\ninitial_backoff = \"50ms\"\n\
                      max_retries = 1\ndrain_timeout = \"2s\"\n";

/// An `application/x-www-form-urlencoded` body, as a browser sends a form.
fn form_body(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Waits until the daemon's JSON at `path` satisfies `ok`.
async fn api_until(
    base: &str,
    token: Option<&str>,
    path: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    let client = reqwest::Client::new();
    loop {
        let mut req = client.get(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let v: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {path} answered {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_tests_silences_and_retries_alerts_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script("/dead", vec![Answer::Status(400)]);
    let rest = format!(
        "{ENGINE}{}{}{}{}",
        alert(
            "prod-errors",
            "Production errors",
            &rx.url("/errors"),
            2,
            ""
        ),
        alert("deadly", "Goes to dead letters", &rx.url("/dead"), 0, ""),
        alert("quiet", "Quiet hours", &rx.url("/quiet"), 3, ""),
        alert("calm", "Error budget", &rx.url("/calm"), 100, ""),
    );
    let d = Daemon::start(dir.path(), &rest).await;
    let b = Browser::start(1280, 900).await;

    // `/` leads to the alerts, which list every alert, none firing yet.
    b.goto(&d.base).await;
    b.wait_path("/ui/alerts").await;
    for id in ["prod-errors", "deadly", "quiet", "calm"] {
        let row = b.find(&format!("tr[data-alert-id=\"{id}\"]")).await;
        assert_eq!(
            row.attr("data-firing").await.unwrap().as_deref(),
            Some("false")
        );
    }

    // Silence `quiet` through the silences page's form.
    b.goto(&format!("{}/ui/silences", d.base)).await;
    let form = b.find("form[data-form=\"silence\"]").await;
    b.find("form[data-form=\"silence\"] select[name=\"alert\"]")
        .await
        .select_by_value("quiet")
        .await
        .unwrap();
    let duration = b
        .find("form[data-form=\"silence\"] input[name=\"duration\"]")
        .await;
    duration.clear().await.unwrap();
    duration.send_keys("1h").await.unwrap();
    b.find("form[data-form=\"silence\"] input[name=\"comment\"]")
        .await
        .send_keys("maintenance window")
        .await
        .unwrap();
    form.find(fantoccini::Locator::Css("button[type=\"submit\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_path("/ui/silences").await;
    let listed = b
        .find("tr[data-state=\"active\"]")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("quiet") && listed.contains("maintenance window"),
        "{listed}"
    );
    b.screenshot("silences").await;

    // Open the alerts page, then send four error traces: every alert fires (`quiet` is
    // silenced, so its notification is suppressed), and the page, left alone, refreshes itself
    // to show it.
    let alerts_url = format!("{}/ui/alerts", d.base);
    b.goto(&alerts_url).await;
    b.find("tr[data-alert-id=\"prod-errors\"][data-firing=\"false\"]")
        .await;
    d.send(&[
        error_trace("p"),
        error_trace("p"),
        error_trace("p"),
        error_trace("p"),
    ])
    .await;
    b.wait_on_page(
        "tr[data-alert-id=\"prod-errors\"][data-firing=\"true\"]",
        WAIT,
        "prod-errors fires after 4 errors over a threshold of 2",
    )
    .await;
    b.reload_until(
        &alerts_url,
        "tr[data-alert-id=\"quiet\"][data-firing=\"true\"]",
        WAIT,
        "quiet fires too",
    )
    .await;
    b.find("tr[data-alert-id=\"calm\"][data-firing=\"false\"]")
        .await;
    let quiet = b.text("tr[data-alert-id=\"quiet\"]").await.unwrap();
    assert!(
        quiet.contains("Silenced") && quiet.contains("until"),
        "{quiet}"
    );
    // The sparkline of the window is drawn, with its threshold line.
    b.find("tr[data-alert-id=\"prod-errors\"] svg[data-sparkline] polyline")
        .await;
    b.find("tr[data-alert-id=\"prod-errors\"] svg[data-sparkline] line.threshold")
        .await;
    let measure = b
        .text("tr[data-alert-id=\"prod-errors\"] .measure")
        .await
        .unwrap();
    assert!(
        measure.contains('4') && measure.contains("> 2"),
        "{measure}"
    );
    b.screenshot("alerts").await;

    rx.wait_for("/errors", 1, WAIT).await;
    let suppressed = b
        .reload_until(
            &format!("{}/ui/deliveries?status=suppressed", d.base),
            "tr[data-status=\"suppressed\"]",
            WAIT,
            "the silenced alert's notification is listed as suppressed",
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(suppressed.contains("quiet"), "{suppressed}");
    assert!(
        rx.requests_to("/quiet").is_empty(),
        "a silenced alert sends nothing"
    );
    b.screenshot("deliveries-suppressed").await;

    // The 400 made a dead letter; Retry sends it again (the receiver now answers 200).
    rx.wait_for("/dead", 1, WAIT).await;
    let dead_url = format!("{}/ui/deliveries?status=dead", d.base);
    b.reload_until(
        &dead_url,
        "button[data-action=\"retry\"]",
        WAIT,
        "the 400 makes a dead letter",
    )
    .await;
    let row = b.text("tr[data-status=\"dead\"]").await.unwrap();
    assert!(row.contains("400") && row.contains("deadly"), "{row}");
    b.screenshot("deliveries-dead").await;
    b.find("button[data-action=\"retry\"]")
        .await
        .click()
        .await
        .unwrap();
    b.wait_path("/ui/deliveries").await;
    rx.wait_for("/dead", 2, WAIT).await;
    api_until(
        &d.base,
        None,
        "/v1/deliveries?status=dead",
        "retried",
        |v| v["deliveries"].as_array().is_some_and(|a| a.is_empty()),
    )
    .await;
    b.reload_until(
        &format!("{}/ui/deliveries?status=delivered", d.base),
        "tr[data-status=\"delivered\"]",
        WAIT,
        "the retried letter is delivered",
    )
    .await;
    b.screenshot("deliveries-delivered").await;

    // Test connection on the alert's own page shows the receiver's status code and answer.
    b.goto(&format!("{}/ui/alerts/prod-errors", d.base)).await;
    b.find("section[data-alert-id=\"prod-errors\"][data-firing=\"true\"]")
        .await;
    b.find("svg[data-sparkline] polyline").await;
    b.screenshot("alert-top").await;
    let before = rx.requests_to("/errors").len();
    b.find("button[data-action=\"test\"]")
        .await
        .click()
        .await
        .unwrap();
    let result = b
        .wait_on_page("[data-test-result]", WAIT, "the test result is shown")
        .await
        .text()
        .await
        .unwrap();
    assert!(result.contains("200"), "{result}");
    assert!(
        result.contains("scripted"),
        "the receiver's answer: {result}"
    );
    assert_eq!(
        rx.requests_to("/errors").len(),
        before + 1,
        "one sample sent"
    );
    let deliveries = b.text("section#deliveries").await.unwrap();
    assert!(
        deliveries.contains("Delivered") && deliveries.contains("200"),
        "{deliveries}"
    );
    b.screenshot("alert").await;

    // The alert page's own silence form.
    b.find("form[data-form=\"silence\"] input[name=\"comment\"]")
        .await
        .send_keys("on it")
        .await
        .unwrap();
    b.find("form[data-form=\"silence\"] button[type=\"submit\"]")
        .await
        .click()
        .await
        .unwrap();
    b.wait_path("/ui/alerts/prod-errors").await;
    let silences = b
        .wait_on_page(
            "section#silence tr[data-state=\"active\"]",
            WAIT,
            "the new silence is listed on the alert's page",
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(silences.contains("on it"), "{silences}");
    api_until(
        &d.base,
        None,
        "/v1/alerts",
        "the silence covers prod-errors",
        |v| {
            v["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["id"] == "prod-errors" && !a["silences"].as_array().unwrap().is_empty())
        },
    )
    .await;

    // Expire it from the silences page.
    b.goto(&format!("{}/ui/silences", d.base)).await;
    let before = b.find_all("button[data-action=\"expire\"]").await.len();
    b.find("button[data-action=\"expire\"]")
        .await
        .click()
        .await
        .unwrap();
    api_until(&d.base, None, "/v1/silences", "one silence expired", |v| {
        let active = v["silences"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["state"] == "active")
            .count();
        active == before - 1
    })
    .await;
    b.wait_on_page(
        "tr[data-state=\"expired\"]",
        WAIT,
        "the expired silence stays listed",
    )
    .await;

    // At 375 px every page fits without scrolling sideways.
    b.client.set_window_size(375, 812).await.unwrap();
    for (name, path) in [
        ("alerts", "/ui/alerts"),
        ("alert", "/ui/alerts/prod-errors"),
        ("deliveries", "/ui/deliveries?status=delivered"),
        ("deliveries-suppressed", "/ui/deliveries?status=suppressed"),
        ("silences", "/ui/silences"),
    ] {
        b.goto(&format!("{}{path}", d.base)).await;
        let (wide, widths) = b.overflow().await;
        assert_eq!(widths["inner"], 375, "the viewport is 375 px: {widths}");
        assert!(!wide, "{path} scrolls sideways at 375 px: {widths}");
        b.screenshot(&format!("{name}-375px")).await;
    }
    b.close().await;
}

const TOKEN: &str = "console-token-5c1f9e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_needs_a_login_and_refuses_forged_forms() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script("/fail", vec![Answer::Status(500), Answer::Status(500)]);
    // Every kind of secret a config holds, as in the API's secrets test.
    let rest = format!(
        "{ENGINE}{}{}{}{}{}",
        alert(
            "prod-errors",
            "Production errors",
            &rx.url("/errors/PATH-SECRET-77a1"),
            0,
            "secret_token = \"BEARER-SECRET-2b9c\"\n\
             signing_secret = \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\""
        ),
        alert(
            "slack",
            "Slack",
            &rx.url("/services/T000/B000/SLACKPATH-44e1"),
            0,
            "destination = \"slack\""
        ),
        alert(
            "pd",
            "PagerDuty",
            &rx.url("/pd/PDPATH-0c77"),
            0,
            "destination = \"pagerduty\"\nrouting_key = \"ROUTING-KEY-8842ab\""
        ),
        alert("fail", "Failing", &rx.url("/fail/FAILPATH-3391"), 0, ""),
        alert(
            "conn",
            "Unreachable",
            "http://127.0.0.1:9/CONNPATH-6d02",
            0,
            ""
        ),
    );
    let d =
        Daemon::start_with_env(dir.path(), &rest, &[("ALERTD_SERVER__AUTH_TOKEN", TOKEN)]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Without a session: pages lead to the login, forms are refused.
    let r = http
        .get(format!("{}/ui/alerts", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/login");
    let r = http
        .post(format!("{}/ui/silences", d.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("alert", "prod-errors"), ("duration", "1h")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The API's bearer token is no console session.
    let r = http
        .get(format!("{}/ui/alerts", d.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    // Every console answer carries the security headers: pages, redirects, assets, errors.
    for path in [
        "/",
        "/ui/login",
        "/ui/alerts",
        "/ui/assets/console.css",
        "/ui/nope",
    ] {
        let r = http.get(format!("{}{path}", d.base)).send().await.unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }

    let b = Browser::start(1280, 900).await;
    b.goto(&format!("{}/ui/alerts", d.base)).await;
    b.wait_path("/ui/login").await;
    b.screenshot("login").await;
    // A wrong token is refused.
    b.find("input[name=\"token\"]")
        .await
        .send_keys("not-the-token")
        .await
        .unwrap();
    b.find("button[data-action=\"login\"]")
        .await
        .click()
        .await
        .unwrap();
    let refused = b
        .wait_on_page("p.error", WAIT, "a wrong token is refused")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        refused.contains("not the configured"),
        "{}",
        b.source().await
    );
    // The right one leads to the alerts.
    b.find("input[name=\"token\"]")
        .await
        .send_keys(TOKEN)
        .await
        .unwrap();
    b.find("button[data-action=\"login\"]")
        .await
        .click()
        .await
        .unwrap();
    b.wait_path("/ui/alerts").await;
    b.find("tr[data-alert-id=\"prod-errors\"]").await;

    // The session cookie: HttpOnly, SameSite=Strict, expiring.
    let cookies = b.client.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "alertd_session")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    assert!(session.expires().is_some(), "the cookie expires");
    assert!(
        b.eval("return document.cookie;").await == "",
        "no script can read the session"
    );
    let cookie_header = format!("alertd_session={}", session.value());

    // A forged form (the session's cookie, a wrong CSRF token) changes nothing.
    b.goto(&format!("{}/ui/silences", d.base)).await;
    let form = b
        .client
        .form(fantoccini::Locator::Css("form[data-form=\"silence\"]"))
        .await
        .unwrap();
    form.set_by_name("csrf", "forged-token").await.unwrap();
    form.set_by_name("duration", "1h").await.unwrap();
    form.submit().await.unwrap();
    let refused = b
        .wait_on_page("section.problem", WAIT, "the forged form is refused")
        .await;
    let page = refused.text().await.unwrap();
    assert!(page.contains("Form refused"), "{page}");
    b.screenshot("csrf-refused").await;
    let silences = |v: &serde_json::Value| v["silences"].as_array().unwrap().len();
    let v = api_until(&d.base, Some(TOKEN), "/v1/silences", "listing", |_| true).await;
    assert_eq!(silences(&v), 0, "the forged form created nothing: {v}");
    // The same POST from outside the browser: refused without the token, accepted with it.
    let post = |csrf: Option<String>| {
        let mut fields = vec![("alert", "prod-errors"), ("duration", "1h")];
        let csrf = csrf.unwrap_or_default();
        if !csrf.is_empty() {
            fields.push(("csrf", csrf.as_str()));
        }
        http.post(format!("{}/ui/silences", d.base))
            .header("cookie", &cookie_header)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&fields))
            .send()
    };
    assert_eq!(post(None).await.unwrap().status(), 403);
    assert_eq!(
        post(Some("AAAA".into())).await.unwrap().status(),
        403,
        "a made-up token"
    );
    b.goto(&format!("{}/ui/silences", d.base)).await;
    let csrf = b
        .find("form[data-form=\"silence\"] input[name=\"csrf\"]")
        .await
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let r = post(Some(csrf)).await.unwrap();
    assert_eq!(r.status(), 303, "the page's own token is accepted");
    let v = api_until(&d.base, Some(TOKEN), "/v1/silences", "created", |v| {
        silences(v) == 1
    })
    .await;
    assert_eq!(v["silences"][0]["created_by"], "console");
    // Expire it, so the delivery below is sent.
    let id = v["silences"][0]["id"].as_str().unwrap();
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/silences/{id}", d.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A cross-site request is refused even with a valid token.
    let r = http
        .post(format!("{}/ui/silences", d.base))
        .header("cookie", &cookie_header)
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("alert", "prod-errors"), ("duration", "1h")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // No secret is ever rendered: not a URL's path, a bearer token, a signing secret, a routing
    // key or the console token, on any page, after deliveries, dead letters and a test of each
    // alert.
    reqwest::Client::new()
        .post(format!("{}/v1/events", d.base))
        .bearer_auth(TOKEN)
        .json(&error_trace("p"))
        .send()
        .await
        .unwrap();
    for path in ["/errors", "/services", "/pd"] {
        rx.wait_for(path, 1, WAIT).await;
    }
    api_until(
        &d.base,
        Some(TOKEN),
        "/v1/deliveries?status=dead",
        "fail and conn end as dead letters",
        |v| v["deliveries"].as_array().is_some_and(|a| a.len() == 2),
    )
    .await;
    let mut sources = Vec::new();
    for id in ["prod-errors", "slack", "pd", "fail", "conn"] {
        b.goto(&format!("{}/ui/alerts/{id}", d.base)).await;
        b.find("button[data-action=\"test\"]")
            .await
            .click()
            .await
            .unwrap();
        b.wait_on_page("[data-test-result]", WAIT, "the test result is shown")
            .await;
        sources.push(b.source().await);
    }
    for path in [
        "/ui/alerts",
        "/ui/deliveries?status=pending",
        "/ui/deliveries?status=delivered",
        "/ui/deliveries?status=dead",
        "/ui/deliveries?status=suppressed",
        "/ui/silences",
    ] {
        b.goto(&format!("{}{path}", d.base)).await;
        sources.push(b.source().await);
    }
    let all = sources.join("\n");
    assert!(
        all.contains("Body sent to pagerduty"),
        "a PagerDuty body is shown"
    );
    assert!(
        all.contains("HTTP 500"),
        "the failing receiver's answer is shown"
    );
    assert!(all.contains("connection"), "the connection error is shown");
    for secret in [
        TOKEN,
        "PATH-SECRET-77a1",
        "BEARER-SECRET-2b9c",
        "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "SLACKPATH-44e1",
        "PDPATH-0c77",
        "ROUTING-KEY-8842ab",
        "FAILPATH-3391",
        "CONNPATH-6d02",
    ] {
        for s in &sources {
            assert!(!s.contains(secret), "{secret} rendered:\n{s}");
        }
    }

    // Log out: the session ends.
    b.find("form.logout button").await.click().await.unwrap();
    b.wait_path("/ui/login").await;
    b.goto(&format!("{}/ui/alerts", d.base)).await;
    b.wait_path("/ui/login").await;
    b.close().await;
}
