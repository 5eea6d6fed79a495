//! What the pages show, as plain values built from the engine's and the store's state.
//!
//! The builders here are the only place that reads [`AlertInfo`], [`Delivery`] and
//! [`Silence`] for the console: they pick what a person needs, mask URLs down to their host and
//! pass every text that could quote a secret (delivery bodies, errors, receiver answers) through
//! [`redact`]. The pages ([`super::pages`]) then render these values and nothing else, so a
//! secret cannot reach the HTML by a template slip.

use crate::alert::supervisor::{AlertInfo, RunState};
use crate::alert::threshold::ThresholdState;
use crate::alert::window::Totals;
use crate::delivery::Delivery;
use crate::event::EventType;
use crate::notification::NotificationState;
use crate::redact::redact;
use crate::silence::{Silence, SilenceSet, SilenceState};
use std::time::Duration;

/// Most of a delivery body the deliveries page shows.
pub const BODY_SHOWN: usize = 8 * 1024;
/// Most of an error message a row shows.
pub const ERROR_SHOWN: usize = 300;

/// One alert, for the list and its own page.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: String,
    pub name: String,
    pub run: RunState,
    pub restarts: u64,
    /// `general`, `slack` or `pagerduty`.
    pub destination: &'static str,
    /// Host and port of the URL: its path may hold a secret.
    pub host: String,
    pub workspace: String,
    pub repeat_interval: Duration,
    pub send_resolved: bool,
    pub debounce: Duration,
    pub triggers: Vec<TriggerRow>,
    /// When the oldest firing episode of its triggers started.
    pub firing_since_ms: Option<i64>,
    /// The end of the latest active silence covering it.
    pub silenced_until_ms: Option<i64>,
    pub last_notified_ms: Option<i64>,
}

impl AlertRow {
    /// Whether any trigger is firing (silenced or not).
    pub fn firing(&self) -> bool {
        self.triggers.iter().any(|t| t.firing)
    }

    /// The event types of its triggers, for the test and silence forms.
    pub fn event_types(&self) -> Vec<EventType> {
        let mut v: Vec<EventType> = Vec::new();
        for t in &self.triggers {
            if !v.contains(&t.event) {
                v.push(t.event);
            }
        }
        v
    }
}

/// The rule of a threshold trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub value: f64,
    /// `>` or `<`.
    pub operator: &'static str,
    pub window: Duration,
    /// The feedback score's name, for the feedback types.
    pub score: Option<String>,
}

/// One trigger and how it is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRow {
    pub event: EventType,
    pub projects: Vec<String>,
    /// `None` for per-event triggers.
    pub rule: Option<Rule>,
    /// The metric over the window at the last tick; `None` without data.
    pub value: Option<f64>,
    pub firing: bool,
    pub firing_since_ms: Option<i64>,
    /// The window's running metric from its oldest slot to now, so the last point is the
    /// current value and the threshold line is where it fires; empty before any data.
    pub series: Vec<Option<f64>>,
    /// Per-event triggers: events waiting in the open debounce bucket.
    pub waiting: Option<u64>,
}

/// The running metric over `slots` (oldest first): point `i` is the metric of slots `0..=i`.
/// A count or a sum is zero before the first event; a mean has no value yet.
pub fn running_series(event: EventType, slots: &[Totals]) -> Vec<Option<f64>> {
    let additive = matches!(event, EventType::TraceErrors | EventType::TraceCost);
    let mut acc = Totals::default();
    slots
        .iter()
        .map(|s| {
            acc.count += s.count;
            acc.sum += s.sum;
            ThresholdState::metric(event, acc).or(additive.then_some(0.0))
        })
        .collect()
}

/// Scheme-less host and port of a URL (`hooks.slack.com`, `127.0.0.1:9000`).
pub fn host_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            }
        }
        Err(_) => "(invalid URL)".into(),
    }
}

/// The row of one alert at `now_ms`.
pub fn alert_row(info: &AlertInfo, silences: &SilenceSet, now_ms: i64) -> AlertRow {
    let spec = &info.spec;
    let views = info
        .view
        .as_ref()
        .map(|v| v.triggers.as_slice())
        .unwrap_or(&[]);
    let triggers: Vec<TriggerRow> = spec
        .triggers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = views.get(i).filter(|v| v.event == t.event);
            TriggerRow {
                event: t.event,
                projects: t.projects.clone(),
                rule: t.threshold.as_ref().map(|th| Rule {
                    value: th.value,
                    operator: th.operator.symbol(),
                    window: th.window,
                    score: th.score.clone(),
                }),
                value: v.and_then(|v| v.value),
                firing: v.is_some_and(|v| v.firing),
                firing_since_ms: v.and_then(|v| v.firing_since_ms),
                series: v
                    .map(|v| running_series(t.event, &v.slots))
                    .unwrap_or_default(),
                waiting: v.and_then(|v| v.bucket_size),
            }
        })
        .collect();
    let silenced_until_ms = silences
        .active_for(&spec.id, now_ms)
        .into_iter()
        .map(|s| s.ends_ms)
        .max();
    AlertRow {
        id: spec.id.clone(),
        name: spec.name.clone(),
        run: info.state,
        restarts: info.restarts,
        destination: spec.destination.as_str(),
        host: host_of(&spec.url),
        workspace: spec.workspace.clone(),
        repeat_interval: spec.repeat_interval,
        send_resolved: spec.send_resolved,
        debounce: spec.debounce,
        firing_since_ms: triggers.iter().filter_map(|t| t.firing_since_ms).min(),
        triggers,
        silenced_until_ms,
        last_notified_ms: info.view.as_ref().and_then(|v| v.last_notified_ms),
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Delivered,
    Dead,
    Suppressed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Delivered,
        Status::Dead,
        Status::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Dead => "dead",
            Status::Suppressed => "suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One delivery as the console shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub id: String,
    pub alert_id: String,
    pub event_type: EventType,
    /// `firing` or `resolved`.
    pub state: NotificationState,
    pub status: Status,
    pub destination: &'static str,
    pub host: String,
    pub attempts: u32,
    pub max_retries: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    pub next_attempt_ms: i64,
    /// Redacted and cut to [`BODY_SHOWN`].
    pub body: String,
    /// The silence that kept a suppressed one from being sent.
    pub silence_id: Option<String>,
}

impl DeliveryRow {
    /// From a stored delivery, with the config's secrets (`config`) and the delivery's own
    /// (its URL's path, its signing secret: its alert may be gone from the config) taken out of
    /// its body and error.
    pub fn new(
        d: &Delivery,
        status: Status,
        silence_id: Option<String>,
        config: &Redactor,
    ) -> DeliveryRow {
        let own: Vec<crate::redact::Secret> = url_secret(&d.url)
            .into_iter()
            .chain(std::iter::once(d.signing_secret.clone()))
            .map(crate::redact::Secret::Value)
            .collect();
        let clean = |text: &str| redact(&config.redact(text), &own);
        DeliveryRow {
            id: d.id.clone(),
            alert_id: d.alert_id.clone(),
            event_type: d.event_type,
            state: d.state,
            status,
            destination: d.destination.as_str(),
            host: host_of(&d.url),
            attempts: d.attempts,
            max_retries: d.max_retries,
            last_status: d.last_status,
            last_error: d
                .last_error
                .as_deref()
                .map(|e| super::widgets::excerpt(&clean(e), ERROR_SHOWN)),
            created_ms: d.created_ms,
            finished_ms: d.finished_ms,
            next_attempt_ms: d.next_attempt_ms,
            body: super::widgets::excerpt(&clean(&display_body(&d.body)), BODY_SHOWN),
            silence_id,
        }
    }

    /// From decision to delivery (or dead letter): what the receiver and the retries cost.
    pub fn took_ms(&self) -> Option<i64> {
        self.finished_ms.map(|f| f - self.created_ms)
    }
}

/// Takes many secrets out of texts in one pass each, whatever their number: the config's
/// secrets grow with its alerts (every URL path counts), and a page redacts a hundred bodies.
/// Same rule as [`redact`]: secrets of 4 characters or more, the longest one at a place wins.
pub struct Redactor {
    matcher: Option<aho_corasick::AhoCorasick>,
}

impl Redactor {
    pub fn new(secrets: &[crate::redact::Secret]) -> Redactor {
        let patterns: Vec<&str> = secrets
            .iter()
            .map(crate::redact::Secret::text)
            .filter(|s| s.len() >= 4)
            .collect();
        let matcher = (!patterns.is_empty()).then(|| {
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(&patterns)
                .expect("literal patterns always build")
        });
        Redactor { matcher }
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        match &self.matcher {
            None => text.to_string(),
            Some(m) => {
                let mut out = String::with_capacity(text.len());
                m.replace_all_with(text, &mut out, |_, _, dst| {
                    dst.push_str("***");
                    true
                });
                out
            }
        }
    }
}

/// The path and query of a URL (Slack and PagerDuty keep secrets there), if it has one.
fn url_secret(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let mut tail = u.path().trim_start_matches('/').to_string();
    if let Some(q) = u.query() {
        tail.push('?');
        tail.push_str(q);
    }
    (tail.len() > 1).then_some(tail)
}

/// A body as the console shows it: JSON pretty-printed for reading, and a PagerDuty body's
/// routing key masked, even for an alert no longer in the config (whose key [`redact`] would
/// not know).
fn display_body(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(mut v) => {
            if let Some(k) = v.get_mut("routing_key").filter(|k| k.is_string()) {
                *k = serde_json::Value::String("***".into());
            }
            serde_json::to_string_pretty(&v).unwrap_or_default()
        }
        Err(_) => body.to_string(),
    }
}

/// One silence as the console shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceRow {
    pub silence: Silence,
    pub state: SilenceState,
}

/// Silences listed at `now_ms` (newest first, expired kept 24 h), optionally only those that
/// cover `alert` (its own and `*`).
pub fn silence_rows(set: &SilenceSet, alert: Option<&str>, now_ms: i64) -> Vec<SilenceRow> {
    set.listed(now_ms)
        .filter(|s| alert.is_none_or(|a| s.alert == a || s.alert == crate::silence::ANY_ALERT))
        .map(|s| SilenceRow {
            silence: s.clone(),
            state: s.state(now_ms),
        })
        .collect()
}

/// What the last Test connection of an alert got.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutcome {
    pub at_ms: i64,
    pub event_type: Option<EventType>,
    pub success: bool,
    pub status_code: Option<u16>,
    /// The start of the receiver's answer, redacted.
    pub excerpt: String,
    /// Why it failed, redacted.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_series_ends_at_the_window_value() {
        let slots = [
            Totals::default(),
            Totals { count: 2, sum: 3.0 },
            Totals::default(),
            Totals { count: 1, sum: 6.0 },
        ];
        assert_eq!(
            running_series(EventType::TraceErrors, &slots),
            vec![Some(0.0), Some(2.0), Some(2.0), Some(3.0)]
        );
        assert_eq!(
            running_series(EventType::TraceCost, &slots),
            vec![Some(0.0), Some(3.0), Some(3.0), Some(9.0)]
        );
        assert_eq!(
            running_series(EventType::TraceLatency, &slots),
            vec![None, Some(1.5), Some(1.5), Some(3.0)]
        );
    }

    #[test]
    fn a_delivery_shows_no_secret_even_of_a_removed_alert() {
        use crate::config::DestinationKind;
        use crate::delivery::{Delivery, TlsOptions};
        let d = Delivery {
            id: "0193a000-0000-7000-8000-000000000001".into(),
            alert_id: "gone".into(),
            event_type: EventType::TraceErrors,
            state: NotificationState::Firing,
            destination: DestinationKind::PagerDuty,
            url: "https://events.example.com/v2/PATHSECRET".into(),
            headers: vec![],
            signing_secret: "whsec_SIGNSECRET".into(),
            tls: TlsOptions::default(),
            body: r#"{"routing_key":"ROUTINGSECRET","event_action":"trigger"}"#.into(),
            created_ms: 1_000,
            attempts: 9,
            max_retries: 8,
            next_attempt_ms: 1_000,
            last_status: None,
            last_error: Some(
                "unusable URL \"https://events.example.com/v2/PATHSECRET\" whsec_SIGNSECRET".into(),
            ),
            finished_ms: Some(4_000),
            listed: Vec::new(),
        };
        let row = DeliveryRow::new(&d, Status::Dead, None, &Redactor::new(&[]));
        let shown = format!("{row:?}");
        for secret in ["ROUTINGSECRET", "PATHSECRET", "SIGNSECRET"] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        assert!(row.body.contains("event_action"), "{}", row.body);
        assert_eq!(row.host, "events.example.com");
        assert_eq!(row.took_ms(), Some(3_000));
    }

    #[test]
    fn the_redactor_hides_what_redact_hides() {
        let secrets: Vec<crate::redact::Secret> =
            ["abcd", "abcdefgh", "xyz", "hook/12", "hook/123"]
                .iter()
                .map(|s| crate::redact::Secret::Value(s.to_string()))
                .collect();
        let r = Redactor::new(&secrets);
        for text in [
            "abcdefgh and abcd",
            "xyz is too short to count",
            "POST /hook/123 then /hook/12",
            "nothing here",
            "",
        ] {
            assert_eq!(r.redact(text), redact(text, &secrets), "{text:?}");
        }
        assert_eq!(Redactor::new(&[]).redact("abc"), "abc");
    }

    #[test]
    fn only_the_host_of_a_url_is_shown() {
        assert_eq!(
            host_of("https://hooks.slack.com/services/T000/B000/XXXX"),
            "hooks.slack.com"
        );
        assert_eq!(
            host_of("http://127.0.0.1:9000/a/b?k=SECRET"),
            "127.0.0.1:9000"
        );
        assert_eq!(host_of("http://[::1/x"), "(invalid URL)");
    }
}
