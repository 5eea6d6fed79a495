//! PagerDuty Events API v2 body.

use super::Context;
use crate::config::AlertSpec;
use crate::notification::{Notification, NotificationState};

/// The PagerDuty event for `n`.
pub fn body(n: &Notification, alert: &AlertSpec, ctx: &Context) -> String {
    serde_json::json!({
        "routing_key": alert.routing_key,
        "event_action": if n.state == NotificationState::Resolved { "resolve" } else { "trigger" },
        "dedup_key": format!("alertd/{}/{}/{}", n.alert_id, n.event_type, n.episode_start_ms),
        "payload": {
            "summary": format!("{}: {}", n.alert_name, n.event_type),
            "source": ctx.source,
            "severity": "error",
        }
    })
    .to_string()
}
