//! The console (DESIGN §13): server-rendered pages under `/ui/` to see alerts, test their
//! destinations, retry dead letters and silence alerts, served by alertd itself.
//!
//! - [`model`] turns the engine's and the store's state into what a page shows (secrets
//!   masked or redacted there), [`pages`] renders it (pure functions, pinned by golden files),
//!   [`widgets`] holds the shared pieces (times, badges, the sparkline), [`assets`] the embedded
//!   stylesheet, script and icon.
//! - [`session`] signs the session cookie and derives CSRF tokens; the guard here enforces
//!   them: with `server.auth_token` set every page but the login form needs a logged-in
//!   session, and every POST needs the session's CSRF token (the [`Checked`] form extractor).
//! - Every response carries a strict Content-Security-Policy (no inline script or style),
//!   `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`.
//!
//! The console does not use the API's bearer token: a browser cannot send it. The routes are
//! merged beside the API's, outside its auth layer, with this module's own guard.

pub mod assets;
mod handlers;
pub mod model;
pub mod pages;
pub mod session;
pub mod widgets;

use crate::api::AppState;
use crate::clock::now_ms;
use axum::extract::{Form, FromRequest, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Router};
use maud::Markup;
use model::TestOutcome;
use pages::Chrome;
use session::{Session, SessionKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Seconds between page refreshes.
pub const REFRESH_S: u32 = 5;

/// The console's Content-Security-Policy: nothing but this origin's own files, no inline script
/// or style, no framing, forms only to this origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// State the console keeps beside the API's.
pub struct Console {
    /// Signs sessions when no token is configured; random per process.
    process_secret: [u8; 32],
    /// The last Test connection of each alert, shown on its page until the next one.
    tests: Mutex<HashMap<String, TestOutcome>>,
}

impl Console {
    fn new() -> Console {
        Console {
            process_secret: rand::random(),
            tests: Mutex::new(HashMap::new()),
        }
    }
}

/// The session of the request, put there by the guard.
#[derive(Clone)]
pub(crate) struct Ctx {
    session: Session,
    key: SessionKey,
    /// A token is configured: show "Log out".
    logout: bool,
}

impl Ctx {
    fn chrome(&self, now_ms: i64, refresh: Option<u32>) -> Chrome {
        Chrome {
            now_ms,
            csrf: self.session.csrf(&self.key),
            logout: self.logout,
            refresh,
        }
    }
}

/// The console's routes, to be merged into the API router (outside its bearer-token layer).
pub fn routes(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/ui", get(to_alerts))
        .route("/ui/", get(to_alerts))
        .route("/ui/login", get(handlers::login_form).post(handlers::login))
        .route("/ui/logout", post(handlers::logout))
        .route("/ui/alerts", get(handlers::alerts))
        .route("/ui/alerts/{id}", get(handlers::alert))
        .route("/ui/alerts/{id}/test", post(handlers::test))
        .route("/ui/deliveries", get(handlers::deliveries))
        .route("/ui/deliveries/{id}/retry", post(handlers::retry))
        .route(
            "/ui/silences",
            get(handlers::silences).post(handlers::create_silence),
        )
        .route("/ui/silences/{id}/expire", post(handlers::expire_silence))
        .route("/ui/{*rest}", any(handlers::not_found))
        .layer(middleware::from_fn_with_state(state, guard));
    Router::new()
        .route("/", get(to_alerts))
        .route("/ui/assets/{name}", get(assets::serve))
        .merge(pages)
        .layer(middleware::from_fn(security_headers))
        .layer(Extension(Arc::new(Console::new())))
}

async fn to_alerts() -> Redirect {
    Redirect::to("/ui/alerts")
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

/// Resolves the session (minting one where allowed), refuses what needs a login, and sets the
/// cookie of a new session on the way out.
async fn guard(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    mut req: Request,
    next: Next,
) -> Response {
    let cfg = s.config();
    let token = cfg.server.auth_token.as_str();
    let needs_login = !token.is_empty();
    let key = SessionKey::derive(token, &console.process_secret);
    let now_s = now_ms().div_euclid(1000);
    let is_login = req.uri().path() == "/ui/login";
    let safe = req.method() == Method::GET || req.method() == Method::HEAD;
    if !safe && cross_site(&req) {
        return refused("The request came from another site.");
    }
    let existing = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)
        .and_then(|v| Session::decode(v, &key, now_s));
    let (session, fresh) = match existing {
        Some(s) if s.authed || !needs_login || is_login => (s, false),
        _ if is_login || !needs_login => (Session::new(!needs_login, now_s), true),
        _ if safe => return Redirect::to("/ui/login").into_response(),
        _ => {
            return (
                StatusCode::UNAUTHORIZED,
                "log in at /ui/login first (the session is missing or expired)",
            )
                .into_response()
        }
    };
    let cookie = fresh.then(|| session.set_cookie(&key, now_s));
    req.extensions_mut().insert(Ctx {
        session,
        key,
        logout: needs_login,
    });
    let mut resp = next.run(req).await;
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// A browser says the request was started by another site (Fetch Metadata); the CSRF token
/// would refuse it too, this refuses it earlier.
fn cross_site(req: &Request) -> bool {
    req.headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
}

fn refused(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        format!("refused: {why} Reload the console page and try again."),
    )
        .into_response()
}

/// An HTML answer.
pub(crate) fn html(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.into_string(),
    )
        .into_response()
}

/// The fields of a form whose CSRF token matched the session's. Every state-changing console
/// route takes its input through this, so none can forget the check.
pub(crate) struct Checked {
    pub ctx: Ctx,
    fields: Vec<(String, String)>,
}

impl Checked {
    /// The first value of `name`, trimmed; empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    }

    /// Every value of `name` (checkboxes).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
}

impl FromRequest<AppState> for Checked {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let ctx = req
            .extensions()
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| refused("No console session."))?;
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|e| {
                let page = pages::error_page(
                    &ctx.chrome(now_ms(), None),
                    "That form could not be read",
                    &e.body_text(),
                );
                html(StatusCode::BAD_REQUEST, page)
            })?;
        let given = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if !ctx.session.csrf_ok(&ctx.key, given) {
            tracing::warn!("console form refused: missing or wrong CSRF token");
            let page = pages::error_page(
                &ctx.chrome(now_ms(), None),
                "Form refused",
                "The form's security token is missing or out of date (CSRF check), so nothing \
                 was changed. Go back, reload the page and send the form again.",
            );
            return Err(html(StatusCode::FORBIDDEN, page));
        }
        Ok(Checked { ctx, fields })
    }
}
