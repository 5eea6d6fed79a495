//! `GET /v1/alerts` (config, run state, current values) and `POST /v1/alerts/{id}/test`.

use super::{mask_url, unavailable, ApiError, AppState};
use crate::alert::supervisor::AlertInfo;
use crate::config::AlertSpec;
use crate::delivery::probe;
use crate::destination::rfc3339_ms;
use crate::event::EventType;
use crate::redact::{redact, spec_secrets};
use crate::supervisor::SupervisorMsg;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

fn alert_json(info: AlertInfo) -> serde_json::Value {
    let spec: &AlertSpec = &info.spec;
    let view = info.view;
    let triggers: Vec<serde_json::Value> = spec
        .triggers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = view.as_ref().and_then(|v| v.triggers.get(i));
            json!({
                "event": t.event,
                "projects": t.projects,
                "threshold": t.threshold.as_ref().map(|th| th.value),
                "window_seconds": t.threshold.as_ref().map(|th| th.window.as_secs()),
                "operator": t.threshold.as_ref().filter(|_| t.event.is_feedback()).map(|th| th.operator.symbol()),
                "score": t.threshold.as_ref().and_then(|th| th.score.clone()),
                "value": v.and_then(|v| v.value),
                "firing": v.is_some_and(|v| v.firing),
                "bucket_size": v.and_then(|v| v.bucket_size),
            })
        })
        .collect();
    json!({
        "id": spec.id,
        "name": spec.name,
        "enabled": spec.enabled,
        "state": info.state,
        "restarts": info.restarts,
        "destination": spec.destination.as_str(),
        "url": mask_url(&spec.url),
        "workspace": spec.workspace,
        "secret_token_set": !spec.secret_token.is_empty(),
        "signing_secret_set": !spec.signing_secret.is_empty(),
        "routing_key_set": !spec.routing_key.is_empty(),
        "headers": spec.headers.keys().collect::<Vec<_>>(),
        "repeat_interval_seconds": spec.repeat_interval.as_secs(),
        "send_resolved": spec.send_resolved,
        "debounce_seconds": spec.debounce.as_secs_f64(),
        "firing": triggers.iter().any(|t| t["firing"] == true),
        "last_notified_at": view.as_ref().and_then(|v| v.last_notified_ms).map(rfc3339_ms),
        "triggers": triggers,
    })
}

pub(super) async fn get_alerts(State(s): State<AppState>) -> Response {
    match ractor::call_t!(s.inner().supervisor, SupervisorMsg::Alerts, 10_000) {
        Ok(list) => {
            let (silences, now) = (s.inner().store.silences(), crate::clock::now_ms());
            let alerts: Vec<_> = list
                .into_iter()
                .map(|info| {
                    let id = info.spec.id.clone();
                    let mut a = alert_json(info);
                    a["silences"] = super::silences::active_json(&silences, &id, now);
                    a
                })
                .collect();
            Json(json!({ "alerts": alerts })).into_response()
        }
        Err(e) => unavailable(format!("the engine did not answer: {e}")),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct TestBody {
    event_type: Option<String>,
}

pub(super) async fn test_alert(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let cfg = s.config();
    let Some(spec) = cfg.alert(&id).cloned() else {
        return ApiError(StatusCode::NOT_FOUND, format!("no alert with id {id:?}")).into_response();
    };
    let req: TestBody = if body.iter().all(|b| b.is_ascii_whitespace()) {
        TestBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"))
                    .into_response()
            }
        }
    };
    let event_type = match req.event_type.as_deref().map(str::parse::<EventType>) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return ApiError(StatusCode::BAD_REQUEST, e).into_response(),
    };
    let secrets = spec_secrets(&spec);
    match probe::send_test(&spec, event_type, &cfg.delivery).await {
        Ok(mut r) => {
            // A PagerDuty body carries the routing key: the API never shows secrets.
            r.request_body = redact(&r.request_body, &secrets);
            r.error_message = r.error_message.map(|m| redact(&m, &secrets));
            Json(r).into_response()
        }
        Err(e) => ApiError(StatusCode::BAD_REQUEST, redact(&e, &secrets)).into_response(),
    }
}
