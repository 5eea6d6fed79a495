//! The console over plain HTTP against the real binary: redirects, the session cookie without a
//! token, refused forms answering with the field named, and error pages. (The browser flows are
//! in `console_browser.rs`.)

mod common;

use common::{Daemon, Receiver};

const ALERTS: &str = "[engine]\ntick = \"200ms\"\n\
    [[alert]]\nid = \"prod-errors\"\nurl = \"http://127.0.0.1:9/hook\"\n\
    [[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 5\nwindow = \"5m\"\n";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A page's CSRF token, as a browser would send it back.
fn csrf_of(page: &str) -> String {
    let start = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[start..start + page[start..].find('"').unwrap()].to_string()
}

/// Opens a console session: the cookie and the silences page's CSRF token.
async fn session(d: &Daemon) -> (String, String) {
    let r = client()
        .get(format!("{}/ui/silences", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    let cookie = cookie.split(';').next().unwrap().to_string();
    (cookie, csrf_of(&r.text().await.unwrap()))
}

async fn post_form(d: &Daemon, path: &str, cookie: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let r = client()
        .post(format!("{}{path}", d.base))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    (status, location.unwrap_or(text))
}

#[tokio::test]
async fn the_root_and_the_bare_prefix_lead_to_the_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), ALERTS).await;
    for path in ["/", "/ui", "/ui/"] {
        let r = client()
            .get(format!("{}{path}", d.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/ui/alerts", "{path}");
    }
    // Without a token there is nothing to log in to.
    let r = client()
        .get(format!("{}/ui/login", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/ui/alerts");
}

#[tokio::test]
async fn a_refused_silence_names_the_field_and_keeps_the_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), ALERTS).await;
    let (cookie, csrf) = session(&d).await;
    let (status, page) = post_form(
        &d,
        "/ui/silences",
        &cookie,
        &[
            ("csrf", &csrf),
            ("return", "silences"),
            ("alert", "prod-errors"),
            ("duration", "-5m"),
            ("comment", "night <b>shift</b>"),
        ],
    )
    .await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("<strong>duration: </strong>"), "{page}");
    assert!(page.contains("value=\"-5m\""), "the value is kept");
    assert!(
        page.contains("value=\"night &lt;b&gt;shift&lt;/b&gt;\""),
        "escaped"
    );
    let (_, v) = d.get("/v1/silences").await;
    assert_eq!(v["silences"].as_array().unwrap().len(), 0);

    // An unknown alert from the alert page's form is named too.
    let (status, page) = post_form(
        &d,
        "/ui/silences",
        &cookie,
        &[
            ("csrf", &csrf),
            ("return", "alert"),
            ("alert", "nope"),
            ("duration", "1h"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("<strong>alert: </strong>"), "{page}");

    // A good one redirects back to where the form was, and is stored.
    let (status, location) = post_form(
        &d,
        "/ui/silences",
        &cookie,
        &[
            ("csrf", &csrf),
            ("return", "alert"),
            ("alert", "prod-errors"),
            ("duration", "30m"),
            ("event_types", "trace:errors"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location, "/ui/alerts/prod-errors#silence");
    let (_, v) = d.get("/v1/silences").await;
    let s = &v["silences"][0];
    assert_eq!(s["alert"], "prod-errors");
    assert_eq!(s["event_types"][0], "trace:errors");
    assert_eq!(s["created_by"], "console");
}

/// A valid silence form with CSRF token `token`.
fn silence_fields(token: &str) -> Vec<(&str, &str)> {
    vec![
        ("csrf", token),
        ("alert", "prod-errors"),
        ("duration", "1h"),
    ]
}

#[tokio::test]
async fn forms_without_the_session_token_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), ALERTS).await;
    let (cookie, csrf) = session(&d).await;
    let (other_cookie, _) = session(&d).await;
    // No cookie: a fresh session is opened, and the form is still refused.
    let (status, _) = post_form(&d, "/ui/silences", "", &silence_fields("x")).await;
    assert_eq!(status, 403);
    // Another session's token.
    let (status, page) = post_form(&d, "/ui/silences", &other_cookie, &silence_fields(&csrf)).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("Form refused"));
    // Retry, expire and test are guarded the same way.
    for path in [
        "/ui/deliveries/0193a000-0000-7000-8000-000000000001/retry",
        "/ui/silences/0193a000-0000-7000-8000-000000000001/expire",
        "/ui/alerts/prod-errors/test",
        "/ui/logout",
    ] {
        let (status, _) = post_form(&d, path, &cookie, &[("csrf", "nope")]).await;
        assert_eq!(status, 403, "{path}");
    }
    let (_, v) = d.get("/v1/silences").await;
    assert_eq!(v["silences"].as_array().unwrap().len(), 0);
    // With the right token the same session works.
    let (status, _) = post_form(&d, "/ui/silences", &cookie, &silence_fields(&csrf)).await;
    assert_eq!(status, 303);
}

#[tokio::test]
async fn unknown_things_answer_with_a_page_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = Daemon::start(dir.path(), ALERTS).await;
    let (cookie, csrf) = session(&d).await;
    let get = |path: &str| {
        client()
            .get(format!("{}{path}", d.base))
            .header("cookie", &cookie)
            .send()
    };
    for (path, status, says) in [
        ("/ui/alerts/nope", 404, "No alert with id"),
        ("/ui/nothing/here", 404, "No such page"),
        ("/ui/deliveries?status=lost", 400, "status must be"),
        ("/ui/assets/nope.css", 404, "no such asset"),
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{path}: {text}");
    }
    for (path, status, says) in [
        (
            "/ui/deliveries/0193a000-0000-7000-8000-000000000001/retry",
            404,
            "No dead letter",
        ),
        ("/ui/deliveries/not-a-uuid/retry", 400, "not a delivery id"),
        (
            "/ui/silences/0193a000-0000-7000-8000-000000000001/expire",
            404,
            "No silence",
        ),
        ("/ui/alerts/nope/test", 404, "No alert with id"),
    ] {
        let (got, text) = post_form(&d, path, &cookie, &[("csrf", &csrf)]).await;
        assert_eq!(got, status, "{path}: {text}");
        assert!(text.contains(says), "{path}: {text}");
    }
    assert!(rx.requests().is_empty());
}
