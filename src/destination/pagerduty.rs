//! PagerDuty Events API v2 body (`POST https://events.pagerduty.com/v2/enqueue`).
//!
//! A trigger is:
//!
//! ```json
//! {"routing_key": "…", "event_action": "trigger",
//!  "dedup_key": "alertd/<alert id>/<event type>/<episode start, epoch ms>",
//!  "payload": {"summary": "…", "source": "alertd@<host>", "severity": "warning",
//!              "timestamp": "2026-11-20T10:00:00.123Z", "group": "<workspace>",
//!              "class": "<event type>", "custom_details": { <the general body> }},
//!  "client": "alertd", "client_url": "<base_url>", "links": [{"href": "…", "text": "…"}]}
//! ```
//!
//! - The `dedup_key` is fixed by the firing episode (threshold types) or by the bucket's open time
//!   (per-event types). Every repeat of one episode updates the same incident and the resolve
//!   closes it; every per-event message opens its own incident. It never depends on the attempt,
//!   so retries and restarts cannot open duplicates.
//! - A resolve carries only `routing_key`, `event_action` and `dedup_key`: PagerDuty ignores a
//!   payload on resolve, and the incident already holds the details.
//! - `summary` uses the same words as the Slack `text` (see [`super::slack::summary`]) and is cut
//!   to PagerDuty's 1,024 characters.
//! - `severity`: `error` for `trace:errors`, `warning` for the other threshold types, `info` for
//!   per-event types, which report changes rather than breakage.
//! - `client_url` and `links` (the UI list view of the event type, see [`super::slack`] for the
//!   paths) appear only when the alert's `base_url` is set.

use super::{general, rfc3339_ms, slack, Context};
use crate::config::AlertSpec;
use crate::event::EventType;
use crate::notification::{Notification, NotificationState};
use serde_json::{json, Map, Value};

/// PagerDuty's limit on `payload.summary`.
pub const SUMMARY_LIMIT: usize = 1024;

/// The PagerDuty event for `n`.
pub fn body(n: &Notification, alert: &AlertSpec, ctx: &Context) -> String {
    let mut event = Map::new();
    event.insert("routing_key".into(), json!(alert.routing_key));
    let action = match n.state {
        NotificationState::Firing => "trigger",
        NotificationState::Resolved => "resolve",
    };
    event.insert("event_action".into(), json!(action));
    event.insert("dedup_key".into(), json!(dedup_key(n)));
    if n.state == NotificationState::Resolved {
        return Value::Object(event).to_string();
    }
    let general: Value = serde_json::from_str(&general::body(n, ctx))
        .expect("the general body is JSON produced by serde_json");
    event.insert(
        "payload".into(),
        json!({
            "summary": clip(&slack::summary(n), SUMMARY_LIMIT),
            "source": ctx.source,
            "severity": severity(n.event_type),
            "timestamp": rfc3339_ms(n.created_ms),
            "group": n.workspace,
            "class": n.event_type.as_str(),
            "custom_details": general,
        }),
    );
    event.insert("client".into(), json!("alertd"));
    let base = alert.base_url.trim_end_matches('/');
    if let Some(list) = slack::list_url(n, base) {
        event.insert("client_url".into(), json!(base));
        event.insert(
            "links".into(),
            json!([{"href": list, "text": format!("Open {} in the UI", slack::list_path(n.event_type))}]),
        );
    }
    Value::Object(event).to_string()
}

/// `alertd/<alert id>/<event type>/<episode start ms>`: one incident per firing episode.
pub fn dedup_key(n: &Notification) -> String {
    format!(
        "alertd/{}/{}/{}",
        n.alert_id, n.event_type, n.episode_start_ms
    )
}

/// How urgent PagerDuty should treat an event of type `t`.
pub fn severity(t: EventType) -> &'static str {
    match t {
        EventType::TraceErrors => "error",
        t if t.is_threshold() => "warning",
        _ => "info",
    }
}

/// The first `max` characters of `s`, with `…` in place of the last one when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertState;
    use crate::config::Config;
    use crate::event::{Event, EventBody};
    use std::path::Path;
    use std::sync::Arc;

    const PD: &str = "[[alert]]\nid = \"prod-errors\"\nname = \"Prod errors\"\ndestination = \"pagerduty\"\nurl = \"https://events.pagerduty.com/v2/enqueue\"\nrouting_key = \"R0UT1NG\"\n";

    fn alert(extra: &str, trigger: &str) -> Arc<AlertSpec> {
        let text = format!("{PD}{extra}\n[[alert.trigger]]\n{trigger}");
        let cfg = Config::from_toml(Path::new("test.toml"), &text, false).expect("valid config");
        cfg.alerts[0].clone()
    }

    fn ctx() -> Context {
        Context {
            max_retries: 8,
            source: "alertd@test".into(),
        }
    }

    fn error_trace(seq: u64, ts: i64) -> Event {
        Event {
            id: format!("e{seq}"),
            workspace: "default".into(),
            project: Some("p".into()),
            project_id: None,
            timestamp_ms: ts,
            received_ms: ts,
            user: "u".into(),
            body: EventBody::Trace {
                trace_id: None,
                duration_s: None,
                cost: None,
                error: true,
            },
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut k = 0;
        move || {
            k += 1;
            format!("0193a000-0000-7000-8000-{k:012}")
        }
    }

    const ERRORS: &str = "event = \"trace:errors\"\nthreshold = 0\nwindow = \"1m\"\n";

    #[test]
    fn firing_then_resolved_gives_trigger_and_resolve_with_the_same_dedup_key() {
        let spec = alert("", ERRORS);
        let mut state = AlertState::new(spec.clone(), 0);
        state.apply(1, &error_trace(1, 1_000));
        let mut next = ids();
        let fired = state.tick(2_000, &mut next);
        assert_eq!(fired.len(), 1);
        assert!(
            state.tick(3_000, &mut next).is_empty(),
            "no repeat within 1h"
        );
        let resolved = state.tick(70_000, &mut next);
        assert_eq!(resolved.len(), 1, "the error left the 1-minute window");
        let t: Value = serde_json::from_str(&body(&fired[0], &spec, &ctx())).unwrap();
        let r: Value = serde_json::from_str(&body(&resolved[0], &spec, &ctx())).unwrap();
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(t["dedup_key"], "alertd/prod-errors/trace:errors/2000");
        assert_eq!(t["dedup_key"], r["dedup_key"]);
        assert_eq!(r["routing_key"], "R0UT1NG");
        assert!(r.get("payload").is_none(), "a resolve carries no payload");
    }

    #[test]
    fn a_new_episode_gets_a_new_dedup_key() {
        let spec = alert("", ERRORS);
        let mut state = AlertState::new(spec.clone(), 0);
        let mut next = ids();
        state.apply(1, &error_trace(1, 1_000));
        let first = state.tick(2_000, &mut next);
        state.tick(70_000, &mut next);
        state.apply(2, &error_trace(2, 80_000));
        let second = state.tick(81_000, &mut next);
        assert_ne!(dedup_key(&first[0]), dedup_key(&second[0]));
    }

    #[test]
    fn severity_follows_the_event_type() {
        assert_eq!(severity(EventType::TraceErrors), "error");
        for t in [
            EventType::TraceCost,
            EventType::TraceLatency,
            EventType::TraceFeedbackScore,
            EventType::ThreadFeedbackScore,
        ] {
            assert_eq!(severity(t), "warning", "{t}");
        }
        for t in EventType::ALL.into_iter().filter(|t| !t.is_threshold()) {
            assert_eq!(severity(t), "info", "{t}");
        }
    }

    #[test]
    fn custom_details_are_the_general_body() {
        let spec = alert("", ERRORS);
        let mut state = AlertState::new(spec.clone(), 0);
        state.apply(1, &error_trace(1, 1_000));
        let n = state.tick(2_000, &mut ids()).remove(0);
        let v: Value = serde_json::from_str(&body(&n, &spec, &ctx())).unwrap();
        let general: Value = serde_json::from_str(&general::body(&n, &ctx())).unwrap();
        assert_eq!(v["payload"]["custom_details"], general);
        assert_eq!(v["payload"]["source"], "alertd@test");
        assert_eq!(v["payload"]["timestamp"], "1970-01-01T00:00:02.000Z");
        assert_eq!(
            v["payload"]["summary"],
            "Prod errors: Trace Error Alert firing: 1 > 0 over 1 minute (Workspace-wide)"
        );
    }

    #[test]
    fn summary_is_cut_to_1024_chars() {
        let projects: Vec<String> = (0..200).map(|i| format!("\"project-{i}\"")).collect();
        let mut long = (*alert(
            "",
            &format!("{ERRORS}projects = [{}]\n", projects.join(",")),
        ))
        .clone();
        long.name = "n".repeat(255);
        let spec = Arc::new(long);
        let mut state = AlertState::new(spec.clone(), 0);
        let mut e = error_trace(1, 1_000);
        e.project = Some("project-7".into());
        state.apply(1, &e);
        let n = state.tick(2_000, &mut ids()).remove(0);
        let v: Value = serde_json::from_str(&body(&n, &spec, &ctx())).unwrap();
        let s = v["payload"]["summary"].as_str().unwrap();
        assert_eq!(s.chars().count(), SUMMARY_LIMIT);
        assert!(s.ends_with('…'));
    }

    #[test]
    fn links_and_client_url_only_with_base_url() {
        let spec = alert("", ERRORS);
        let mut state = AlertState::new(spec.clone(), 0);
        state.apply(1, &error_trace(1, 1_000));
        let n = state.tick(2_000, &mut ids()).remove(0);
        let v: Value = serde_json::from_str(&body(&n, &spec, &ctx())).unwrap();
        assert!(v.get("links").is_none() && v.get("client_url").is_none());
        assert_eq!(v["client"], "alertd");
        let with = alert("base_url = \"https://opik.example.com/\"", ERRORS);
        let v: Value = serde_json::from_str(&body(&n, &with, &ctx())).unwrap();
        assert_eq!(v["client_url"], "https://opik.example.com");
        assert_eq!(
            v["links"][0]["href"],
            "https://opik.example.com/default/projects"
        );
    }
}
