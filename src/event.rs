//! The events alertd stores and the alert event types they feed.
//!
//! An ingested [`Event`] is what lands in the `inbox` table: validated, normalised (durations in
//! seconds, timestamps in epoch milliseconds) and carrying the raw JSON objects that per-event
//! notifications echo back to receivers. Object payloads are kept as JSON *text* because the
//! storage codec (bincode) cannot decode self-describing values such as `serde_json::Value`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The ten alert event types of the contract. `Display` is the wire string (`trace:errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    TraceErrors,
    TraceCost,
    TraceLatency,
    TraceFeedbackScore,
    ThreadFeedbackScore,
    GuardrailsTriggered,
    PromptCreated,
    PromptCommitted,
    PromptDeleted,
    ExperimentFinished,
}

impl EventType {
    /// Every type, in the order documentation and golden files list them.
    pub const ALL: [EventType; 10] = [
        EventType::TraceErrors,
        EventType::TraceCost,
        EventType::TraceLatency,
        EventType::TraceFeedbackScore,
        EventType::ThreadFeedbackScore,
        EventType::GuardrailsTriggered,
        EventType::PromptCreated,
        EventType::PromptCommitted,
        EventType::PromptDeleted,
        EventType::ExperimentFinished,
    ];

    /// The wire name used in config, webhook bodies and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TraceErrors => "trace:errors",
            EventType::TraceCost => "trace:cost",
            EventType::TraceLatency => "trace:latency",
            EventType::TraceFeedbackScore => "trace:feedback_score",
            EventType::ThreadFeedbackScore => "trace_thread:feedback_score",
            EventType::GuardrailsTriggered => "trace:guardrails_triggered",
            EventType::PromptCreated => "prompt:created",
            EventType::PromptCommitted => "prompt:committed",
            EventType::PromptDeleted => "prompt:deleted",
            EventType::ExperimentFinished => "experiment:finished",
        }
    }

    /// The upper-case name Opik receivers expect in threshold metadata (`TRACE_COST`).
    pub fn metadata_name(self) -> &'static str {
        match self {
            EventType::TraceErrors => "TRACE_ERRORS",
            EventType::TraceCost => "TRACE_COST",
            EventType::TraceLatency => "TRACE_LATENCY",
            EventType::TraceFeedbackScore => "TRACE_FEEDBACK_SCORE",
            EventType::ThreadFeedbackScore => "TRACE_THREAD_FEEDBACK_SCORE",
            EventType::GuardrailsTriggered => "TRACE_GUARDRAILS_TRIGGERED",
            EventType::PromptCreated => "PROMPT_CREATED",
            EventType::PromptCommitted => "PROMPT_COMMITTED",
            EventType::PromptDeleted => "PROMPT_DELETED",
            EventType::ExperimentFinished => "EXPERIMENT_FINISHED",
        }
    }

    /// Threshold types are evaluated over a window on every tick; the others are grouped.
    pub fn is_threshold(self) -> bool {
        matches!(
            self,
            EventType::TraceErrors
                | EventType::TraceCost
                | EventType::TraceLatency
                | EventType::TraceFeedbackScore
                | EventType::ThreadFeedbackScore
        )
    }

    /// Feedback types compare with a configurable operator and need a score name.
    pub fn is_feedback(self) -> bool {
        matches!(
            self,
            EventType::TraceFeedbackScore | EventType::ThreadFeedbackScore
        )
    }

    /// Prompt and experiment types are workspace-wide; the trace-derived ones honour `projects`.
    pub fn is_project_scoped(self) -> bool {
        !matches!(
            self,
            EventType::PromptCreated
                | EventType::PromptCommitted
                | EventType::PromptDeleted
                | EventType::ExperimentFinished
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                format!(
                    "unknown event type {s:?}; expected one of {}",
                    known.join(", ")
                )
            })
    }
}

/// Whether a feedback score belongs to a trace or a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScoreEntity {
    Trace,
    Thread,
}

/// The kind-specific part of an event, already validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    Trace {
        trace_id: Option<String>,
        duration_s: Option<f64>,
        cost: Option<f64>,
        error: bool,
    },
    FeedbackScore {
        entity: ScoreEntity,
        entity_id: Option<String>,
        name: String,
        value: f64,
    },
    Guardrail {
        trace_id: Option<String>,
        failed: bool,
        /// The guardrail as JSON text, echoed in `metadata`.
        object: String,
    },
    /// `prompt_created`, `prompt_committed`, `prompt_deleted`, `experiment_finished`: the
    /// event's object (or array) as JSON text.
    Object {
        event_type: EventType,
        object: String,
    },
}

/// A validated event as stored in the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Server-assigned UUIDv7; what `eventIds` lists.
    pub id: String,
    pub workspace: String,
    pub project: Option<String>,
    pub project_id: Option<String>,
    /// Event time in epoch milliseconds; decides window membership.
    pub timestamp_ms: i64,
    /// When alertd accepted it; opens debounce buckets so replay is deterministic.
    pub received_ms: i64,
    pub user: String,
    pub body: EventBody,
}

impl Event {
    /// All event types fed by this event; trace events feed up to three.
    pub fn feeds(&self) -> Feeds {
        let mut f = Feeds::default();
        match &self.body {
            EventBody::Trace {
                duration_s,
                cost,
                error,
                ..
            } => {
                if *error {
                    f.insert(EventType::TraceErrors);
                }
                if cost.is_some() {
                    f.insert(EventType::TraceCost);
                }
                if duration_s.is_some() {
                    f.insert(EventType::TraceLatency);
                }
            }
            EventBody::FeedbackScore { entity, .. } => f.insert(match entity {
                ScoreEntity::Trace => EventType::TraceFeedbackScore,
                ScoreEntity::Thread => EventType::ThreadFeedbackScore,
            }),
            EventBody::Guardrail { failed, .. } => {
                if *failed {
                    f.insert(EventType::GuardrailsTriggered);
                }
            }
            EventBody::Object { event_type, .. } => f.insert(*event_type),
        }
        f
    }
}

/// What a threshold alert on trace types reads from a trace event, packed: a batch that reaches
/// thousands of alerts is scanned once per alert, and a dense array of these stays in cache
/// where the events themselves (behind pointers, with their strings) do not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub seq: u64,
    pub timestamp_ms: i64,
    pub received_ms: i64,
    pub error: bool,
    pub cost: Option<f64>,
    pub duration_s: Option<f64>,
}

impl Point {
    /// The point of a trace event; `None` for other kinds.
    pub fn of(seq: u64, e: &Event) -> Option<Point> {
        match e.body {
            EventBody::Trace {
                duration_s,
                cost,
                error,
                ..
            } => Some(Point {
                seq,
                timestamp_ms: e.timestamp_ms,
                received_ms: e.received_ms,
                error,
                cost,
                duration_s,
            }),
            _ => None,
        }
    }
}

/// The event types one event feeds, as a bit set: every alert asks this of every event it
/// sees, so it must not allocate (a `Vec` here was most of an alert's cost per event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Feeds(u16);

impl Feeds {
    fn insert(&mut self, t: EventType) {
        self.0 |= 1 << t as u16;
    }

    /// Whether the event feeds `t`.
    pub fn contains(&self, t: &EventType) -> bool {
        self.0 & (1 << *t as u16) != 0
    }

    /// Whether the event feeds no type (a passed guardrail).
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The types, in [`EventType::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = EventType> {
        EventType::ALL.into_iter().filter(move |t| self.contains(t))
    }
}

/// The ingest kind names, for metrics; [`kind_index`] says which is an event's.
pub const KIND_NAMES: [&str; 7] = [
    "trace",
    "feedback_score",
    "guardrail",
    "prompt_created",
    "prompt_committed",
    "prompt_deleted",
    "experiment_finished",
];

/// The ingest kind name of an event, for metrics.
pub fn kind_name(e: &Event) -> &'static str {
    KIND_NAMES[kind_index(e)]
}

/// The index in [`KIND_NAMES`] of an event's kind: requests tally their kinds in an array.
pub fn kind_index(e: &Event) -> usize {
    match &e.body {
        EventBody::Trace { .. } => 0,
        EventBody::FeedbackScore { .. } => 1,
        EventBody::Guardrail { .. } => 2,
        EventBody::Object { event_type, .. } => match event_type.as_str() {
            "prompt:created" => 3,
            "prompt:committed" => 4,
            "prompt:deleted" => 5,
            _ => 6,
        },
    }
}

/// An event id as a number: its UUID (every id alertd makes is one), else a hash of the text.
/// Taken for every event of a request with client ids when it is prepared (see
/// `store::Prepared`), and read only after a failed commit, to tell which rows are whose:
/// copying the id strings instead was 6 % of the commit thread's time.
pub fn id_print(id: &str) -> u128 {
    match uuid::Uuid::try_parse(id) {
        Ok(u) => u.as_u128(),
        Err(_) => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            id.hash(&mut h);
            h.finish() as u128
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_round_trips_through_wire_name() {
        for t in EventType::ALL {
            assert_eq!(t.to_string().parse::<EventType>().unwrap(), t);
        }
        assert!("trace:nope".parse::<EventType>().is_err());
    }
}
