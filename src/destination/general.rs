//! The general JSON webhook body, wire-compatible with Opik's alert webhooks (DESIGN §8).
//!
//! The envelope is snake_case and the `payload` camelCase, as Opik receivers parse them. Field
//! order follows the contract because some receivers log bodies verbatim.

use super::{rfc3339_ms, Context};
use crate::event::EventType;
use crate::notification::{format_number, Notification};
use serde::Serialize;
use serde_json::value::RawValue;

#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    event_type: EventType,
    alert_id: &'a str,
    alert_name: &'a str,
    workspace_id: &'a str,
    workspace_name: &'a str,
    created_at: String,
    max_retries: u32,
    payload: Payload<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    alert_id: &'a str,
    alert_name: &'a str,
    event_type: EventType,
    event_ids: &'a [String],
    user_names: &'a [String],
    event_count: u64,
    aggregation_type: &'static str,
    message: String,
    metadata: Vec<Box<RawValue>>,
}

#[derive(Serialize)]
struct MetricMetadata<'a> {
    event_type: &'static str,
    metric_name: &'static str,
    metric_value: String,
    threshold: String,
    window_seconds: u64,
    project_ids: String,
    project_names: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback_score_name: Option<&'a str>,
    state: &'static str,
}

/// Splits a configured project scope into (ids, names): UUIDs are ids, anything else a name.
pub fn split_projects(projects: &[String]) -> (Vec<&str>, Vec<&str>) {
    projects
        .iter()
        .map(String::as_str)
        .partition(|p| uuid::Uuid::parse_str(p).is_ok())
}

/// The `metadata` array: one metric object for threshold types, the events' objects otherwise.
pub fn metadata(n: &Notification) -> Vec<Box<RawValue>> {
    match &n.metric {
        Some(m) => {
            let (ids, names) = split_projects(&m.projects);
            let meta = MetricMetadata {
                event_type: n.event_type.metadata_name(),
                metric_name: n.event_type.as_str(),
                metric_value: format_number(m.value.unwrap_or(0.0)),
                threshold: format_number(m.threshold),
                window_seconds: m.window_seconds,
                project_ids: ids.join(","),
                project_names: names.join(","),
                feedback_score_name: m.score.as_deref(),
                state: n.state.as_str(),
            };
            vec![serde_json::value::to_raw_value(&meta).expect("metadata serialises")]
        }
        None => n
            .items
            .iter()
            .map(|o| {
                RawValue::from_string(o.clone()).unwrap_or_else(|_| {
                    serde_json::value::to_raw_value(o).expect("a string serialises")
                })
            })
            .collect(),
    }
}

/// The general webhook body for `n`.
pub fn body(n: &Notification, ctx: &Context) -> String {
    let envelope = Envelope {
        id: &n.id,
        event_type: n.event_type,
        alert_id: &n.alert_id,
        alert_name: &n.alert_name,
        workspace_id: &n.workspace,
        workspace_name: &n.workspace,
        created_at: rfc3339_ms(n.created_ms),
        max_retries: ctx.max_retries,
        payload: Payload {
            alert_id: &n.alert_id,
            alert_name: &n.alert_name,
            event_type: n.event_type,
            event_ids: &n.event_ids,
            user_names: &n.user_names,
            event_count: n.event_count,
            aggregation_type: "consolidated",
            message: format!(
                "Alert '{}': {} {} events aggregated",
                n.alert_name, n.event_count, n.event_type
            ),
            metadata: metadata(n),
        },
    };
    serde_json::to_string(&envelope).expect("the general body serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Operator;
    use crate::notification::{MetricSnapshot, NotificationState};

    fn cost() -> Notification {
        Notification {
            id: "0193a000-0000-7000-8000-000000000001".into(),
            alert_id: "prod-cost".into(),
            alert_name: "Prod cost".into(),
            workspace: "default".into(),
            event_type: EventType::TraceCost,
            state: NotificationState::Firing,
            created_ms: 1_763_632_800_123,
            episode_start_ms: 1_763_632_800_123,
            event_ids: vec!["e1".into()],
            user_names: vec!["system".into()],
            event_count: 1,
            metric: Some(MetricSnapshot {
                value: Some(150.75),
                threshold: 100.0,
                operator: Operator::Above,
                window_seconds: 3600,
                score: None,
                projects: vec!["chatbot-prod".into()],
            }),
            items: vec![],
        }
    }

    #[test]
    fn threshold_body_matches_the_contract_exactly() {
        let ctx = Context {
            max_retries: 8,
            source: "alertd@test".into(),
        };
        let want = r#"{"id":"0193a000-0000-7000-8000-000000000001","event_type":"trace:cost","alert_id":"prod-cost","alert_name":"Prod cost","workspace_id":"default","workspace_name":"default","created_at":"2025-11-20T10:00:00.123Z","max_retries":8,"payload":{"alertId":"prod-cost","alertName":"Prod cost","eventType":"trace:cost","eventIds":["e1"],"userNames":["system"],"eventCount":1,"aggregationType":"consolidated","message":"Alert 'Prod cost': 1 trace:cost events aggregated","metadata":[{"event_type":"TRACE_COST","metric_name":"trace:cost","metric_value":"150.7500","threshold":"100","window_seconds":3600,"project_ids":"","project_names":"chatbot-prod","state":"firing"}]}}"#;
        assert_eq!(body(&cost(), &ctx), want);
    }

    #[test]
    fn per_event_metadata_echoes_objects_verbatim() {
        let mut n = cost();
        n.metric = None;
        n.event_type = EventType::PromptCreated;
        n.items = vec![r#"{"id":"p1","name":"greeting"}"#.into()];
        let ctx = Context {
            max_retries: 8,
            source: "s".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&body(&n, &ctx)).unwrap();
        assert_eq!(v["payload"]["metadata"][0]["name"], "greeting");
    }
}
