//! Slack incoming-webhook body (Block Kit).

use crate::config::AlertSpec;
use crate::notification::Notification;

/// The Slack body for `n`.
pub fn body(n: &Notification, _alert: &AlertSpec) -> String {
    let text = format!("*{}* new {} event(s) happened", n.event_count, n.event_type);
    serde_json::json!({
        "text": format!("{}: {}", n.alert_name, text),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": n.alert_name.chars().take(150).collect::<String>()}},
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        ]
    })
    .to_string()
}
