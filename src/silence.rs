//! Silences (DESIGN §12): "quiet for two hours, we are deploying".
//!
//! Plain, synchronous logic with `now` passed in: what a silence is, its state at a moment
//! (pending, active, expired), which notifications it matches, how a request to create one is
//! validated, and [`SilenceSet`], the immutable snapshot the scheduler hands to every alert with
//! each tick. Storage is `store`'s business; what the tick does with a match is
//! [`engine`]'s.
//!
//! A silence matches a notification when its alert is the notification's alert (or `*`) and its
//! event types list the notification's type (or are empty). It matches only while active:
//! `starts_ms <= now < ends_ms`. Expiring one early sets `ends_ms` to now; expired silences stay
//! listed for [`KEEP_EXPIRED_MS`] so an operator can see what was muted last night.

pub mod engine;

use crate::event::EventType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The alert value that matches every alert.
pub const ANY_ALERT: &str = "*";
/// Expired silences are listed (and stored) this long after they end.
pub const KEEP_EXPIRED_MS: i64 = 24 * 3600 * 1000;
/// At most this many silences may be pending or active at once: each one is checked at every
/// tick, and a script creating silences in a loop should hit a wall, not slow the engine.
pub const MAX_LIVE: usize = 10_000;
/// The longest silence: an alert muted for longer should be disabled in the config instead.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
const MAX_COMMENT: usize = 1024;
const MAX_CREATED_BY: usize = 255;

/// One silence as stored and listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// UUIDv7: sorts by creation time, so the table scans newest first from the end.
    pub id: String,
    /// An alert id, or [`ANY_ALERT`]. Not checked against the config after creation: a silence
    /// of an alert that was removed stays listed until it expires.
    pub alert: String,
    /// Empty = every event type of the alert.
    pub event_types: Vec<EventType>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub comment: String,
    pub created_by: String,
    pub created_ms: i64,
}

/// Where a silence is in its life at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    Pending,
    Active,
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

impl Silence {
    /// The state at `now_ms`.
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if now_ms >= self.ends_ms {
            SilenceState::Expired
        } else if now_ms < self.starts_ms {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// Whether this silence covers notifications of `alert` about `event`, whatever the time.
    pub fn covers(&self, alert: &str, event: EventType) -> bool {
        (self.alert == ANY_ALERT || self.alert == alert)
            && (self.event_types.is_empty() || self.event_types.contains(&event))
    }

    /// The table key: the UUID's 128-bit value.
    pub fn key(&self) -> u128 {
        parse_id(&self.id).unwrap_or(0)
    }

    /// Whether it is still worth keeping (and listing) at `now_ms`.
    pub fn is_kept(&self, now_ms: i64) -> bool {
        now_ms < self.ends_ms.saturating_add(KEEP_EXPIRED_MS)
    }
}

/// Parses a silence id as given by users and the API.
pub fn parse_id(id: &str) -> Option<u128> {
    uuid::Uuid::parse_str(id).ok().map(|u| u.as_u128())
}

/// Every stored silence at one moment, indexed for the tick: matching a trigger looks only at
/// the silences of its alert and the wildcard ones. Immutable; a change builds a new set.
#[derive(Debug, Default)]
pub struct SilenceSet {
    /// Newest first.
    all: Vec<Silence>,
    by_alert: HashMap<String, Vec<usize>>,
    wildcard: Vec<usize>,
}

impl SilenceSet {
    /// A set of these silences, in any order.
    pub fn new(mut all: Vec<Silence>) -> SilenceSet {
        all.sort_by(|a, b| b.key().cmp(&a.key()).then_with(|| b.id.cmp(&a.id)));
        let mut by_alert: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard = Vec::new();
        for (i, s) in all.iter().enumerate() {
            if s.alert == ANY_ALERT {
                wildcard.push(i);
            } else {
                by_alert.entry(s.alert.clone()).or_default().push(i);
            }
        }
        SilenceSet {
            all,
            by_alert,
            wildcard,
        }
    }

    /// No silences at all.
    pub fn empty() -> Arc<SilenceSet> {
        Arc::new(SilenceSet::default())
    }

    /// Every silence, newest first, expired ones included.
    pub fn all(&self) -> &[Silence] {
        &self.all
    }

    /// The silences worth listing at `now_ms` (not expired for more than a day), newest first.
    pub fn listed(&self, now_ms: i64) -> impl Iterator<Item = &Silence> {
        self.all.iter().filter(move |s| s.is_kept(now_ms))
    }

    fn of_alert<'a>(&'a self, alert: &str) -> impl Iterator<Item = &'a Silence> {
        self.by_alert
            .get(alert)
            .into_iter()
            .flatten()
            .chain(self.wildcard.iter())
            .map(|&i| &self.all[i])
    }

    /// The active silence that mutes a notification of `alert` about `event` at `now_ms`, if
    /// any. When several do, the one ending last: it is the one that explains the quiet longest.
    pub fn matching(&self, alert: &str, event: EventType, now_ms: i64) -> Option<&Silence> {
        self.of_alert(alert)
            .filter(|s| s.state(now_ms) == SilenceState::Active && s.covers(alert, event))
            .max_by(|a, b| a.ends_ms.cmp(&b.ends_ms).then_with(|| a.id.cmp(&b.id)))
    }

    /// The silences active for `alert` at `now_ms` (its own and the wildcard ones), newest
    /// first, for `GET /v1/alerts`.
    pub fn active_for(&self, alert: &str, now_ms: i64) -> Vec<&Silence> {
        let mut out: Vec<&Silence> = self
            .of_alert(alert)
            .filter(|s| s.state(now_ms) == SilenceState::Active)
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.key()));
        out
    }

    /// How many silences are active at `now_ms`.
    pub fn active_count(&self, now_ms: i64) -> usize {
        self.all
            .iter()
            .filter(|s| s.state(now_ms) == SilenceState::Active)
            .count()
    }

    /// How many are pending or active at `now_ms` (the ones counted against [`MAX_LIVE`]).
    pub fn live_count(&self, now_ms: i64) -> usize {
        self.all
            .iter()
            .filter(|s| s.state(now_ms) != SilenceState::Expired)
            .count()
    }

    /// Whether any silence is stored at all: the tick skips matching when none is.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

/// A rejected request: which field is wrong and why, for a `400` that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn bad(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// What `POST /v1/silences` (and `alertd silence add`) asks for, before validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SilenceRequest {
    pub alert: String,
    pub event_types: Vec<String>,
    pub duration: Option<String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub comment: String,
    pub created_by: String,
}

const FIELDS: [&str; 7] = [
    "alert",
    "event_types",
    "duration",
    "starts_at",
    "ends_at",
    "comment",
    "created_by",
];

impl SilenceRequest {
    /// Reads the JSON body field by field, so a wrong type is reported with the field's name
    /// (serde's derive would only give a line and column).
    pub fn from_json(body: &Value) -> Result<SilenceRequest, FieldError> {
        let Some(map) = body.as_object() else {
            return Err(bad("body", "expected a JSON object"));
        };
        if let Some(k) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(bad(
                "body",
                format!("unknown field {k:?}; expected {}", FIELDS.join(", ")),
            ));
        }
        let alert = opt_string(map, "alert")?.ok_or_else(|| {
            bad(
                "alert",
                "required: the id of the alert to silence, or \"*\" for every alert",
            )
        })?;
        let event_types = match map.get("event_types") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad("event_types", "expected an array of strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("event_types", "expected an array of strings")),
        };
        Ok(SilenceRequest {
            alert,
            event_types,
            duration: opt_string(map, "duration")?,
            starts_at: opt_string(map, "starts_at")?,
            ends_at: opt_string(map, "ends_at")?,
            comment: opt_string(map, "comment")?.unwrap_or_default(),
            created_by: opt_string(map, "created_by")?.unwrap_or_default(),
        })
    }

    /// Validates against the running config and the stored silences at `now_ms`, and builds
    /// the silence with id `id`. `alert_types` gives a configured alert's trigger event types
    /// (`None` for an unknown alert); `live` is how many silences are pending or active.
    pub fn validate(
        &self,
        id: String,
        now_ms: i64,
        alert_types: &dyn Fn(&str) -> Option<Vec<EventType>>,
        live: usize,
    ) -> Result<Silence, FieldError> {
        let configured = if self.alert == ANY_ALERT {
            None
        } else {
            Some(alert_types(&self.alert).ok_or_else(|| {
                bad(
                    "alert",
                    format!(
                        "no alert with id {:?} is configured (use \"*\" for every alert)",
                        self.alert
                    ),
                )
            })?)
        };
        let mut event_types = Vec::new();
        for name in &self.event_types {
            let t: EventType = name.parse().map_err(|e: String| bad("event_types", e))?;
            if let Some(types) = &configured {
                if !types.contains(&t) {
                    let have: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
                    return Err(bad(
                        "event_types",
                        format!(
                            "alert {:?} has no {t} trigger (its triggers: {})",
                            self.alert,
                            have.join(", ")
                        ),
                    ));
                }
            }
            if !event_types.contains(&t) {
                event_types.push(t);
            }
        }
        let starts_ms = match &self.starts_at {
            None => now_ms,
            Some(s) => parse_time(s).map_err(|e| bad("starts_at", e))?,
        };
        let ends_ms = match (&self.duration, &self.ends_at) {
            (Some(_), Some(_)) => {
                return Err(bad("duration", "give either duration or ends_at, not both"))
            }
            (None, None) => {
                return Err(bad(
                    "duration",
                    "required (or ends_at): how long the silence lasts, e.g. \"2h\"",
                ))
            }
            (Some(d), None) => {
                let d = parse_duration(d).map_err(|e| bad("duration", e))?;
                starts_ms.saturating_add(d.as_millis() as i64)
            }
            (None, Some(e)) => {
                let end = parse_time(e).map_err(|e| bad("ends_at", e))?;
                if end <= starts_ms {
                    return Err(bad("ends_at", "must be after starts_at"));
                }
                if (end - starts_ms) as u128 > MAX_DURATION.as_millis() {
                    return Err(bad("ends_at", "a silence lasts at most 365 days"));
                }
                end
            }
        };
        if ends_ms <= now_ms {
            let field = if self.ends_at.is_some() {
                "ends_at"
            } else {
                "starts_at"
            };
            return Err(bad(field, "the silence would already be over"));
        }
        if self.comment.chars().count() > MAX_COMMENT {
            return Err(bad("comment", format!("at most {MAX_COMMENT} characters")));
        }
        if self.created_by.chars().count() > MAX_CREATED_BY {
            return Err(bad(
                "created_by",
                format!("at most {MAX_CREATED_BY} characters"),
            ));
        }
        if live >= MAX_LIVE {
            return Err(bad(
                "alert",
                format!(
                    "there are already {live} pending or active silences (at most {MAX_LIVE}); \
                     expire some first"
                ),
            ));
        }
        Ok(Silence {
            id,
            alert: self.alert.clone(),
            event_types,
            starts_ms,
            ends_ms,
            comment: self.comment.clone(),
            created_by: self.created_by.clone(),
            created_ms: now_ms,
        })
    }
}

fn opt_string(map: &Map<String, Value>, field: &'static str) -> Result<Option<String>, FieldError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(field, "expected a string")),
    }
}

/// A positive duration in humantime form (`90m`, `2h`, `1d 12h`), at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!("must be positive, got {text:?}"));
    }
    let d = humantime::parse_duration(t)
        .map_err(|e| format!("{e} in {text:?}; expected a duration like \"2h\" or \"90m\""))?;
    if d.is_zero() {
        return Err(format!("must be positive, got {text:?}"));
    }
    if d > MAX_DURATION {
        return Err(format!("a silence lasts at most 365 days, got {text:?}"));
    }
    Ok(d)
}

/// An RFC 3339 time as epoch milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|e| {
        format!("{e} in {text:?}; expected an RFC 3339 time like \"2026-11-20T18:00:00Z\"")
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_780_000_000_000;
    const MIN: i64 = 60_000;

    fn silence(id: u8, alert: &str, types: &[EventType], starts: i64, ends: i64) -> Silence {
        Silence {
            id: format!("0197a000-0000-7000-8000-0000000000{id:02x}"),
            alert: alert.into(),
            event_types: types.to_vec(),
            starts_ms: starts,
            ends_ms: ends,
            comment: String::new(),
            created_by: String::new(),
            created_ms: starts,
        }
    }

    fn known(id: &str) -> Option<Vec<EventType>> {
        (id == "a").then(|| vec![EventType::TraceErrors, EventType::PromptCreated])
    }

    fn request(body: Value) -> Result<Silence, FieldError> {
        SilenceRequest::from_json(&body)?.validate("id".into(), NOW, &known, 0)
    }

    #[test]
    fn state_is_pending_then_active_then_expired_at_the_exact_bounds() {
        let s = silence(1, "a", &[], NOW, NOW + MIN);
        assert_eq!(s.state(NOW - 1), SilenceState::Pending);
        assert_eq!(s.state(NOW), SilenceState::Active);
        assert_eq!(s.state(NOW + MIN - 1), SilenceState::Active);
        assert_eq!(s.state(NOW + MIN), SilenceState::Expired);
    }

    #[test]
    fn matches_same_alert_or_wildcard_and_listed_or_all_event_types() {
        let set = SilenceSet::new(vec![
            silence(1, "a", &[EventType::TraceCost], NOW, NOW + MIN),
            silence(2, "*", &[EventType::PromptCreated], NOW, NOW + MIN),
        ]);
        assert_eq!(
            set.matching("a", EventType::TraceCost, NOW)
                .map(|s| s.key()),
            Some(set.all()[1].key())
        );
        assert!(set.matching("a", EventType::TraceErrors, NOW).is_none());
        assert!(set.matching("b", EventType::TraceCost, NOW).is_none());
        assert_eq!(
            set.matching("b", EventType::PromptCreated, NOW)
                .map(|s| s.alert.as_str()),
            Some("*")
        );
        let all_types = SilenceSet::new(vec![silence(3, "b", &[], NOW, NOW + MIN)]);
        for t in EventType::ALL {
            assert!(all_types.matching("b", t, NOW).is_some(), "{t}");
        }
    }

    #[test]
    fn only_active_silences_match() {
        let set = SilenceSet::new(vec![
            silence(1, "a", &[], NOW + MIN, NOW + 2 * MIN),
            silence(2, "a", &[], NOW - 2 * MIN, NOW - MIN),
        ]);
        assert!(set.matching("a", EventType::TraceErrors, NOW).is_none());
        assert!(set
            .matching("a", EventType::TraceErrors, NOW + MIN)
            .is_some());
        assert_eq!(set.active_count(NOW), 0);
        assert_eq!(set.live_count(NOW), 1);
    }

    #[test]
    fn the_longest_of_several_matching_silences_is_named() {
        let set = SilenceSet::new(vec![
            silence(1, "a", &[], NOW, NOW + 5 * MIN),
            silence(2, "*", &[], NOW, NOW + 9 * MIN),
            silence(3, "a", &[], NOW, NOW + 7 * MIN),
        ]);
        let m = set.matching("a", EventType::TraceErrors, NOW).unwrap();
        assert_eq!(m.ends_ms, NOW + 9 * MIN);
    }

    #[test]
    fn listing_is_newest_first_and_keeps_expired_ones_for_a_day() {
        let set = SilenceSet::new(vec![
            silence(1, "a", &[], NOW - 3 * MIN, NOW - 2 * MIN),
            silence(3, "a", &[], NOW, NOW + MIN),
            silence(2, "*", &[], NOW, NOW + MIN),
        ]);
        let ids: Vec<u128> = set.listed(NOW).map(|s| s.key() & 0xff).collect();
        assert_eq!(ids, vec![3, 2, 1]);
        let later = NOW - 2 * MIN + KEEP_EXPIRED_MS;
        assert_eq!(set.listed(later - 1).count(), 3);
        assert_eq!(
            set.listed(later)
                .map(|s| s.key() & 0xff)
                .collect::<Vec<_>>(),
            vec![3, 2],
            "expired more than 24 h ago: gone"
        );
    }

    #[test]
    fn active_for_an_alert_includes_wildcards_and_skips_pending_ones() {
        let set = SilenceSet::new(vec![
            silence(1, "a", &[], NOW, NOW + MIN),
            silence(2, "*", &[], NOW, NOW + MIN),
            silence(3, "a", &[], NOW + MIN, NOW + 2 * MIN),
            silence(4, "b", &[], NOW, NOW + MIN),
        ]);
        let ids: Vec<u128> = set
            .active_for("a", NOW)
            .iter()
            .map(|s| s.key() & 0xff)
            .collect();
        assert_eq!(ids, vec![2, 1]);
    }

    #[test]
    fn a_duration_request_starts_now_by_default() {
        let s = request(json!({"alert": "a", "duration": "2h", "comment": "deploy"})).unwrap();
        assert_eq!(s.starts_ms, NOW);
        assert_eq!(s.ends_ms, NOW + 120 * MIN);
        assert_eq!(s.comment, "deploy");
        assert!(s.event_types.is_empty());
        let s = request(json!({"alert": "*", "starts_at": "2026-05-28T21:00:00Z",
            "ends_at": "2026-05-28T23:00:00Z", "event_types": ["trace:cost", "trace:cost"]}))
        .unwrap();
        assert_eq!(s.ends_ms - s.starts_ms, 120 * MIN);
        assert_eq!(
            s.event_types,
            vec![EventType::TraceCost],
            "wildcard takes any type"
        );
    }

    fn field_of(body: Value) -> (&'static str, String) {
        let e = request(body).unwrap_err();
        (e.field, e.message)
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases = [
            (json!({"duration": "1h"}), "alert", "required"),
            (
                json!({"alert": "zz", "duration": "1h"}),
                "alert",
                "no alert",
            ),
            (
                json!({"alert": "a", "duration": "1h", "event_types": ["trace:nope"]}),
                "event_types",
                "unknown event type",
            ),
            (
                json!({"alert": "a", "duration": "1h", "event_types": ["trace:cost"]}),
                "event_types",
                "has no trace:cost trigger",
            ),
            (
                json!({"alert": "a", "event_types": "trace:errors", "duration": "1h"}),
                "event_types",
                "array",
            ),
            (json!({"alert": "a"}), "duration", "required"),
            (
                json!({"alert": "a", "duration": "-5m"}),
                "duration",
                "positive",
            ),
            (
                json!({"alert": "a", "duration": "0s"}),
                "duration",
                "positive",
            ),
            (json!({"alert": "a", "duration": "soon"}), "duration", "2h"),
            (
                json!({"alert": "a", "duration": 7200}),
                "duration",
                "string",
            ),
            (json!({"alert": "a", "duration": "400d"}), "duration", "365"),
            (
                json!({"alert": "a", "duration": "1h", "ends_at": "2026-05-28T23:00:00Z"}),
                "duration",
                "not both",
            ),
            (
                json!({"alert": "a", "starts_at": "2026-05-28T23:00:00Z", "ends_at": "2026-05-28T22:00:00Z"}),
                "ends_at",
                "after starts_at",
            ),
            (
                json!({"alert": "a", "ends_at": "2020-01-01T00:00:00Z"}),
                "ends_at",
                "after starts_at",
            ),
            (
                json!({"alert": "a", "starts_at": "2020-01-01T00:00:00Z", "duration": "1h"}),
                "starts_at",
                "already be over",
            ),
            (
                json!({"alert": "a", "duration": "1h", "starts_at": "tomorrow"}),
                "starts_at",
                "RFC 3339",
            ),
            (
                json!({"alert": "a", "duration": "1h", "comment": "x".repeat(2000)}),
                "comment",
                "1024",
            ),
            (
                json!({"alert": "a", "duration": "1h", "until": "x"}),
                "body",
                "unknown field \"until\"",
            ),
        ];
        for (body, field, needle) in cases {
            let (f, m) = field_of(body.clone());
            assert_eq!(f, field, "{body}: {m}");
            assert!(m.contains(needle), "{body}: {m:?} lacks {needle:?}");
        }
        let e = request(json!([1])).unwrap_err();
        assert_eq!(e.field, "body");
    }

    #[test]
    fn the_live_limit_is_enforced() {
        let req = SilenceRequest::from_json(&json!({"alert": "a", "duration": "1h"})).unwrap();
        assert!(req.validate("x".into(), NOW, &known, MAX_LIVE - 1).is_ok());
        let e = req.validate("x".into(), NOW, &known, MAX_LIVE).unwrap_err();
        assert!(e.message.contains("10000"), "{e}");
    }
}
