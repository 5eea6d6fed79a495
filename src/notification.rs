//! A decided notification, independent of where it goes.
//!
//! The alert engine produces [`Notification`]s; the destination formatters turn one into the body
//! a receiver expects. Everything a formatter may need is here, so formatting is a pure function
//! and the body can be fixed when the notification is decided (its `id` and body never change
//! across retries and restarts).

use crate::config::Operator;
use crate::event::EventType;
use serde::{Deserialize, Serialize};

/// Firing or resolved; per-event notifications are always `Firing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationState {
    Firing,
    Resolved,
}

impl NotificationState {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Firing => "firing",
            NotificationState::Resolved => "resolved",
        }
    }
}

/// The measurement behind a threshold notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSnapshot {
    /// `None` for a resolve because the window became empty.
    pub value: Option<f64>,
    pub threshold: f64,
    pub operator: Operator,
    pub window_seconds: u64,
    pub score: Option<String>,
    /// Configured project scope, names or ids, as written.
    pub projects: Vec<String>,
}

/// One notification, ready for any destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// UUIDv7, stable across retries; also the Standard Webhooks `webhook-id`.
    pub id: String,
    pub alert_id: String,
    pub alert_name: String,
    pub workspace: String,
    pub event_type: EventType,
    pub state: NotificationState,
    pub created_ms: i64,
    /// Start of the firing episode (threshold) or of the bucket (per-event): PagerDuty's dedup key.
    pub episode_start_ms: i64,
    pub event_ids: Vec<String>,
    pub user_names: Vec<String>,
    /// True number of events, even when `items` was capped.
    pub event_count: u64,
    /// Set for threshold types.
    pub metric: Option<MetricSnapshot>,
    /// Per-event types: each event's object as JSON text, at most `max_events_per_message`.
    pub items: Vec<String>,
}

/// Formats a metric number as Opik does: integral values plain (`"60"`), others rounded half-up to
/// four decimals (`"0.7500"`).
pub fn format_number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let scaled = v * 10_000.0;
    // Half-up: nudge by a relative epsilon so 0.00005 (stored as 0.0000499999…) rounds up.
    let rounded = (scaled + scaled.signum() * scaled.abs() * 1e-12).round() / 10_000.0;
    format!("{rounded:.4}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_like_opik() {
        assert_eq!(format_number(60.0), "60");
        assert_eq!(format_number(0.75), "0.7500");
        assert_eq!(format_number(150.75), "150.7500");
        assert_eq!(format_number(1.23456), "1.2346");
        assert_eq!(format_number(0.00005), "0.0001");
        assert_eq!(format_number(2.00004), "2.0000");
        assert_eq!(format_number(-1.5), "-1.5000");
    }
}
