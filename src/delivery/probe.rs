//! "Test connection": a realistic sample notification sent straight to an alert's destination.
//!
//! Used by `POST /v1/alerts/{id}/test` and `alertd test`. Nothing is stored; the sample goes
//! through the same formatter and sender as real notifications, with one retry.

use super::outcome::Outcome;
use super::sender::Sender;
use crate::clock::now_ms;
use crate::config::{AlertSpec, DeliveryConfig};
use crate::destination::{self, Context};
use crate::event::EventType;
use crate::notification::{MetricSnapshot, Notification, NotificationState};
use serde::Serialize;

/// The answer of a test send.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub status: &'static str,
    pub status_code: Option<u16>,
    pub request_body: String,
    pub error_message: Option<String>,
    /// The start of what the receiver answered, for the console's Test connection; not part
    /// of the API answer (DESIGN §10 fixes its fields).
    #[serde(skip)]
    pub response_excerpt: String,
}

/// How much of the receiver's answer a test keeps for the console.
pub const RESPONSE_EXCERPT_CHARS: usize = 512;

/// A sample object of a per-event type, shaped like the real thing.
fn sample_object(t: EventType, now: i64) -> String {
    let at = destination::rfc3339_ms(now);
    let v = match t {
        EventType::PromptCreated => {
            serde_json::json!({"id": "01930000-0000-7000-8000-000000000001", "name": "sample-prompt", "description": "A sample prompt from alertd", "created_at": at, "created_by": "alertd"})
        }
        EventType::PromptCommitted => {
            serde_json::json!({"id": "01930000-0000-7000-8000-000000000002", "prompt_id": "01930000-0000-7000-8000-000000000001", "commit": "a1b2c3d4", "template": "Hello {{name}}", "created_at": at, "created_by": "alertd"})
        }
        EventType::PromptDeleted => {
            serde_json::json!([{"id": "01930000-0000-7000-8000-000000000001", "name": "sample-prompt"}])
        }
        EventType::ExperimentFinished => {
            serde_json::json!([{"id": "01930000-0000-7000-8000-000000000003", "name": "sample-experiment", "dataset_id": "01930000-0000-7000-8000-000000000004"}])
        }
        _ => {
            serde_json::json!({"trace_id": "01930000-0000-7000-8000-000000000005", "name": "pii", "result": "failed", "details": {"entities": ["EMAIL"]}, "project_name": "sample-project", "project_id": null})
        }
    };
    v.to_string()
}

/// The sample notification for `t` as `alert` would send it.
pub fn sample(alert: &AlertSpec, t: EventType, now: i64) -> Notification {
    let trigger = alert.triggers.iter().find(|tr| tr.event == t);
    let metric = t.is_threshold().then(|| {
        let th = trigger.and_then(|tr| tr.threshold.clone());
        let threshold = th.as_ref().map(|t| t.value).unwrap_or(1.0);
        let below = th
            .as_ref()
            .is_some_and(|t| t.operator == crate::config::Operator::Below);
        MetricSnapshot {
            value: Some(if below {
                threshold / 2.0
            } else {
                threshold * 2.0 + 1.0
            }),
            threshold,
            operator: th
                .as_ref()
                .map(|t| t.operator)
                .unwrap_or(crate::config::Operator::Above),
            window_seconds: th.as_ref().map(|t| t.window.as_secs()).unwrap_or(300),
            score: th
                .and_then(|t| t.score)
                .or_else(|| t.is_feedback().then(|| "sample_score".into())),
            projects: trigger.map(|t| t.projects.clone()).unwrap_or_default(),
        }
    });
    let items = if t.is_threshold() {
        vec![]
    } else {
        vec![sample_object(t, now)]
    };
    Notification {
        id: uuid::Uuid::now_v7().to_string(),
        alert_id: alert.id.clone(),
        alert_name: alert.name.clone(),
        workspace: alert.workspace.clone(),
        event_type: t,
        state: NotificationState::Firing,
        created_ms: now,
        episode_start_ms: now,
        event_ids: vec![uuid::Uuid::now_v7().to_string()],
        user_names: vec!["alertd-test".into()],
        event_count: 1,
        metric,
        items,
    }
}

/// Sends a sample of `event_type` (default: the alert's first trigger) with up to one retry.
pub async fn send_test(
    alert: &AlertSpec,
    event_type: Option<EventType>,
    cfg: &DeliveryConfig,
) -> Result<TestResult, String> {
    let t = event_type
        .or_else(|| alert.triggers.first().map(|t| t.event))
        .ok_or("the alert has no trigger")?;
    let now = now_ms();
    let n = sample(alert, t, now);
    let d = destination::prepare(&n, alert, &Context::for_host(cfg.max_retries));
    let sender = Sender::new(cfg)?;
    let mut attempt = sender.attempt(&d, now / 1000).await;
    if matches!(attempt.outcome, Outcome::Retry { .. }) {
        tokio::time::sleep(cfg.initial_backoff.min(std::time::Duration::from_secs(2))).await;
        attempt = sender.attempt(&d, now_ms() / 1000).await;
    }
    let ok = attempt.outcome == Outcome::Delivered;
    Ok(TestResult {
        status: if ok { "success" } else { "failure" },
        status_code: attempt.status,
        request_body: d.body,
        error_message: attempt.error,
        response_excerpt: attempt
            .response_body
            .chars()
            .take(RESPONSE_EXCERPT_CHARS)
            .collect(),
    })
}
