//! The console's handlers: gather state from the engine and the store, build the
//! [`super::model`] values, render a page. Forms answer with a redirect (POST, redirect, GET),
//! or with the page and the form's error when a value was refused.

use super::model::{self, AlertRow, DeliveryRow, Redactor, Status, TestOutcome};
use super::pages::{self, AlertPage, Back, Counts, SilenceForm};
use super::session::{self, Session};
use super::{html, Checked, Console, Ctx, REFRESH_S};
use crate::alert::supervisor::AlertInfo;
use crate::api::silences::CreateError;
use crate::api::AppState;
use crate::clock::now_ms;
use crate::delivery::{parse_key, DeliveryStatus};
use crate::event::EventType;
use crate::redact::{config_secrets, redact, spec_secrets};
use crate::silence::SilenceRequest;
use crate::supervisor::SupervisorMsg;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;
use std::sync::Arc;

/// Rows listed per delivery status.
pub const LIST_LIMIT: usize = 100;
/// Deliveries shown on an alert's page.
pub const ALERT_DELIVERIES: usize = 20;

fn problem(ctx: &Ctx, status: StatusCode, title: &str, message: &str) -> Response {
    html(
        status,
        pages::error_page(&ctx.chrome(now_ms(), None), title, message),
    )
}

async fn engine_alerts(s: &AppState) -> Result<Vec<AlertInfo>, String> {
    ractor::call_t!(s.inner().supervisor, SupervisorMsg::Alerts, 10_000)
        .map_err(|e| format!("The engine did not answer ({e}). Try again in a moment."))
}

pub(super) async fn alerts(State(s): State<AppState>, Extension(ctx): Extension<Ctx>) -> Response {
    let infos = match engine_alerts(&s).await {
        Ok(v) => v,
        Err(e) => return problem(&ctx, StatusCode::SERVICE_UNAVAILABLE, "Engine busy", &e),
    };
    let now = now_ms();
    let silences = s.inner().store.silences();
    let rows: Vec<AlertRow> = infos
        .iter()
        .map(|i| model::alert_row(i, &silences, now))
        .collect();
    html(
        StatusCode::OK,
        pages::alerts_page(&ctx.chrome(now, Some(REFRESH_S)), &rows),
    )
}

/// The newest deliveries of one alert, every status mixed.
async fn alert_deliveries(s: &AppState, alert: &str) -> Result<Vec<DeliveryRow>, String> {
    let store = s.inner().store.clone();
    let cfg = s.config();
    let secrets = Redactor::new(&config_secrets(&cfg));
    let scan = cfg.delivery.log_size.max(LIST_LIMIT);
    let alert = alert.to_string();
    tokio::task::spawn_blocking(move || {
        let mut rows = Vec::new();
        for (status, table) in [
            (Status::Pending, DeliveryStatus::Pending),
            (Status::Delivered, DeliveryStatus::Delivered),
            (Status::Dead, DeliveryStatus::Dead),
        ] {
            for d in store
                .list_deliveries(table, scan)
                .map_err(|e| e.to_string())?
            {
                if d.alert_id == alert {
                    rows.push(DeliveryRow::new(&d, status, None, &secrets));
                }
            }
        }
        for r in store.list_suppressed(scan).map_err(|e| e.to_string())? {
            if r.delivery.alert_id == alert {
                rows.push(DeliveryRow::new(
                    &r.delivery,
                    Status::Suppressed,
                    Some(r.silence_id.clone()),
                    &secrets,
                ));
            }
        }
        rows.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        rows.truncate(ALERT_DELIVERIES);
        Ok(rows)
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn render_alert(
    s: &AppState,
    console: &Console,
    ctx: &Ctx,
    id: &str,
    form: Option<SilenceForm>,
) -> Response {
    let infos = match engine_alerts(s).await {
        Ok(v) => v,
        Err(e) => return problem(ctx, StatusCode::SERVICE_UNAVAILABLE, "Engine busy", &e),
    };
    let Some(info) = infos.iter().find(|i| i.spec.id == id) else {
        return problem(
            ctx,
            StatusCode::NOT_FOUND,
            "No such alert",
            &format!("No alert with id {id:?} is configured."),
        );
    };
    let deliveries = match alert_deliveries(s, id).await {
        Ok(d) => d,
        Err(e) => {
            return problem(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "Store unavailable",
                &format!("The delivery history could not be read: {e}"),
            )
        }
    };
    let now = now_ms();
    let silences = s.inner().store.silences();
    let refresh = if form.as_ref().is_some_and(|f| f.error.is_some()) {
        None
    } else {
        Some(REFRESH_S)
    };
    let page = AlertPage {
        alert: model::alert_row(info, &silences, now),
        deliveries,
        silences: model::silence_rows(&silences, Some(id), now),
        test: console
            .tests
            .lock()
            .expect("test results lock is never poisoned")
            .get(id)
            .cloned(),
        form: form.unwrap_or_else(|| SilenceForm::for_alert(id)),
    };
    let status = if refresh.is_none() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    html(status, pages::alert_page(&ctx.chrome(now, refresh), &page))
}

pub(super) async fn alert(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    render_alert(&s, &console, &ctx, &id, None).await
}

pub(super) async fn test(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    Path(id): Path<String>,
    form: Checked,
) -> Response {
    let cfg = s.config();
    let Some(spec) = cfg.alert(&id).cloned() else {
        return problem(
            &form.ctx,
            StatusCode::NOT_FOUND,
            "No such alert",
            &format!("No alert with id {id:?} is configured."),
        );
    };
    let event_type = match form.get("event_type") {
        "" => None,
        t => match t.parse::<EventType>() {
            Ok(t) => Some(t),
            Err(e) => return problem(&form.ctx, StatusCode::BAD_REQUEST, "Unknown event type", &e),
        },
    };
    let mut secrets = config_secrets(&cfg);
    secrets.extend(spec_secrets(&spec));
    let at_ms = now_ms();
    let outcome = match crate::delivery::probe::send_test(&spec, event_type, &cfg.delivery).await {
        Ok(r) => TestOutcome {
            at_ms,
            event_type: event_type.or_else(|| spec.triggers.first().map(|t| t.event)),
            success: r.status == "success",
            status_code: r.status_code,
            excerpt: redact(&r.response_excerpt, &secrets),
            error: r.error_message.map(|e| redact(&e, &secrets)),
        },
        Err(e) => TestOutcome {
            at_ms,
            event_type,
            success: false,
            status_code: None,
            excerpt: String::new(),
            error: Some(redact(&e, &secrets)),
        },
    };
    tracing::info!(alert = %id, status = ?outcome.status_code, success = outcome.success,
        "console test connection");
    {
        let mut tests = console
            .tests
            .lock()
            .expect("test results lock is never poisoned");
        // Only configured alerts keep a result, so the map cannot grow past the config.
        tests.retain(|k, _| cfg.alert(k).is_some());
        tests.insert(id.clone(), outcome);
    }
    Redirect::to(&format!("/ui/alerts/{id}#test")).into_response()
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    status: Option<String>,
}

pub(super) async fn deliveries(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ListQuery>,
) -> Response {
    let status = match q.status.as_deref().map(Status::parse) {
        None => Status::Pending,
        Some(Some(st)) => st,
        Some(None) => {
            return problem(
                &ctx,
                StatusCode::BAD_REQUEST,
                "Unknown status",
                "status must be pending, delivered, dead or suppressed.",
            )
        }
    };
    let store = s.inner().store.clone();
    let secrets = Redactor::new(&config_secrets(&s.config()));
    let read = tokio::task::spawn_blocking(move || {
        let (pending, dead) = store.delivery_counts()?;
        let table = match status {
            Status::Pending => Some(DeliveryStatus::Pending),
            Status::Delivered => Some(DeliveryStatus::Delivered),
            Status::Dead => Some(DeliveryStatus::Dead),
            Status::Suppressed => None,
        };
        let rows: Vec<DeliveryRow> = match table {
            Some(t) => store
                .list_deliveries(t, LIST_LIMIT)?
                .iter()
                .map(|d| DeliveryRow::new(d, status, None, &secrets))
                .collect(),
            None => store
                .list_suppressed(LIST_LIMIT)?
                .iter()
                .map(|r| {
                    DeliveryRow::new(&r.delivery, status, Some(r.silence_id.clone()), &secrets)
                })
                .collect(),
        };
        Ok::<_, crate::store::StoreError>((Counts { pending, dead }, rows))
    })
    .await;
    match read {
        Ok(Ok((counts, rows))) => {
            let c = ctx.chrome(now_ms(), Some(REFRESH_S));
            html(
                StatusCode::OK,
                pages::deliveries_page(&c, status, counts, &rows, LIST_LIMIT),
            )
        }
        Ok(Err(e)) => problem(
            &ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            "Store unavailable",
            &e.to_string(),
        ),
        Err(e) => problem(
            &ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            "Store unavailable",
            &e.to_string(),
        ),
    }
}

pub(super) async fn retry(
    State(s): State<AppState>,
    Path(id): Path<String>,
    form: Checked,
) -> Response {
    let Some(key) = parse_key(&id) else {
        return problem(
            &form.ctx,
            StatusCode::BAD_REQUEST,
            "Not a delivery id",
            &format!("{id:?} is not a delivery id (a UUID)."),
        );
    };
    match crate::api::deliveries::requeue_dead(&s, key).await {
        Ok(Some(_)) => Redirect::to("/ui/deliveries?status=dead").into_response(),
        Ok(None) => problem(
            &form.ctx,
            StatusCode::NOT_FOUND,
            "No such dead letter",
            &format!("No dead letter with id {id}: it may have been retried already."),
        ),
        Err(e) => problem(
            &form.ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            "Store unavailable",
            &format!("The dead letter was not re-queued: {e}"),
        ),
    }
}

fn configured_ids(s: &AppState) -> Vec<String> {
    s.config().alerts.iter().map(|a| a.id.clone()).collect()
}

fn render_silences(s: &AppState, ctx: &Ctx, form: &SilenceForm) -> Response {
    let now = now_ms();
    let rows = model::silence_rows(&s.inner().store.silences(), None, now);
    let (status, refresh) = if form.error.is_some() {
        (StatusCode::BAD_REQUEST, None)
    } else {
        (StatusCode::OK, Some(REFRESH_S))
    };
    html(
        status,
        pages::silences_page(&ctx.chrome(now, refresh), &rows, &configured_ids(s), form),
    )
}

pub(super) async fn silences(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    render_silences(&s, &ctx, &SilenceForm::for_alert("*"))
}

fn back_of(form: &Checked) -> Back {
    if form.get("return") == Back::Alert.as_str() {
        Back::Alert
    } else {
        Back::Silences
    }
}

/// Where to go after a silence changed: the alert's page when the form was there.
fn back_to(back: Back, alert: &str) -> Redirect {
    if back == Back::Alert && alert != crate::silence::ANY_ALERT {
        Redirect::to(&format!("/ui/alerts/{alert}#silence"))
    } else {
        Redirect::to("/ui/silences")
    }
}

pub(super) async fn create_silence(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    form: Checked,
) -> Response {
    let back = back_of(&form);
    let mut values = SilenceForm {
        alert: form.get("alert").to_string(),
        event_types: form.all("event_types"),
        duration: form.get("duration").to_string(),
        comment: form.get("comment").to_string(),
        created_by: form.get("created_by").to_string(),
        error: None,
    };
    let req = SilenceRequest {
        alert: values.alert.clone(),
        event_types: values.event_types.clone(),
        duration: Some(values.duration.clone()).filter(|d| !d.is_empty()),
        starts_at: None,
        ends_at: None,
        comment: values.comment.clone(),
        created_by: if values.created_by.is_empty() {
            "console".into()
        } else {
            values.created_by.clone()
        },
    };
    match crate::api::silences::create_silence(&s, req).await {
        Ok(silence) => back_to(back, &silence.alert).into_response(),
        Err(CreateError::Invalid(e)) => {
            values.error = Some((e.field.to_string(), e.message));
            let known = s.config().alert(&values.alert).is_some();
            if back == Back::Alert && known {
                render_alert(&s, &console, &form.ctx, &values.alert.clone(), Some(values)).await
            } else {
                render_silences(&s, &form.ctx, &values)
            }
        }
        Err(CreateError::NotStored(e)) => problem(
            &form.ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            "Silence not stored",
            &e,
        ),
    }
}

pub(super) async fn expire_silence(
    State(s): State<AppState>,
    Path(id): Path<String>,
    form: Checked,
) -> Response {
    let Some(key) = crate::silence::parse_id(&id) else {
        return problem(
            &form.ctx,
            StatusCode::BAD_REQUEST,
            "Not a silence id",
            &format!("{id:?} is not a silence id (a UUID)."),
        );
    };
    match crate::api::silences::expire_silence(&s, key).await {
        Ok(Some(silence)) => back_to(back_of(&form), &silence.alert).into_response(),
        Ok(None) => problem(
            &form.ctx,
            StatusCode::NOT_FOUND,
            "No such silence",
            &format!("No silence with id {id}."),
        ),
        Err(e) => problem(
            &form.ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            "Silence not changed",
            &e,
        ),
    }
}

pub(super) async fn login_form(
    State(s): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    if s.config().server.auth_token.is_empty() || ctx.session.authed {
        return Redirect::to("/ui/alerts").into_response();
    }
    html(
        StatusCode::OK,
        pages::login_page(&ctx.chrome(now_ms(), None), None),
    )
}

pub(super) async fn login(State(s): State<AppState>, form: Checked) -> Response {
    let token = s.config().server.auth_token.clone();
    if token.is_empty() {
        return Redirect::to("/ui/alerts").into_response();
    }
    if !session::token_ok(form.get("token"), &token) {
        tracing::warn!("console login refused: wrong token");
        let page = pages::login_page(
            &form.ctx.chrome(now_ms(), None),
            Some("That token is not the configured one."),
        );
        return html(StatusCode::UNAUTHORIZED, page);
    }
    // A new session (new nonce) on login, so a session planted before it is worth nothing.
    let now_s = now_ms().div_euclid(1000);
    let fresh = Session::new(true, now_s);
    let mut r = Redirect::to("/ui/alerts").into_response();
    if let Ok(v) = HeaderValue::from_str(&fresh.set_cookie(&form.ctx.key, now_s)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    tracing::info!("console login");
    r
}

pub(super) async fn logout(form: Checked) -> Response {
    let target = if form.ctx.logout {
        "/ui/login"
    } else {
        "/ui/alerts"
    };
    let mut r = Redirect::to(target).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::clear_cookie()).expect("a fixed cookie value is valid"),
    );
    r
}

pub(super) async fn not_found(Extension(ctx): Extension<Ctx>) -> Response {
    problem(
        &ctx,
        StatusCode::NOT_FOUND,
        "No such page",
        "The console has alerts, deliveries and silences.",
    )
}
