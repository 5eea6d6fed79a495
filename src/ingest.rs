//! Parsing and validating `POST /v1/events` bodies (DESIGN §5).
//!
//! A body is one JSON object, a JSON array of objects, or NDJSON. Every event is checked against
//! its kind's fields; a batch is all-or-nothing, so the first pass collects every problem with its
//! index and nothing is handed to the journal unless all events are valid.

use crate::event::{Event, EventBody, EventType, ScoreEntity};
use crate::rawjson::{self, Kind, SplitError};
use crate::store::{ClientId, NewEvent};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How far ahead of the daemon's clock an event timestamp may be.
pub const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;

/// Longest client event id.
pub const MAX_CLIENT_ID: usize = 128;

/// Limits that apply to one body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_events: usize,
    pub max_line: usize,
}

/// One invalid event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    pub index: usize,
    pub error: String,
}

/// Why a body was refused; `status` is the HTTP status to answer with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    #[serde(skip)]
    pub status: u16,
    pub error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
}

impl Rejection {
    fn bad(error: impl Into<String>) -> Self {
        Rejection {
            status: 400,
            error: error.into(),
            details: Vec::new(),
        }
    }
}

/// Whether the body should be read as NDJSON, from its content type.
pub fn is_ndjson(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| {
        let c = c.split(';').next().unwrap_or("").trim();
        c.eq_ignore_ascii_case("application/x-ndjson")
            || c.eq_ignore_ascii_case("application/ndjson")
            || c.eq_ignore_ascii_case("application/jsonl")
    })
}

/// Splits an NDJSON body into its non-blank lines, refusing over-long ones.
pub fn split_ndjson(body: &[u8], max_line: usize) -> Result<Vec<&[u8]>, Rejection> {
    split_ndjson_bounded(body, max_line, usize::MAX)
}

/// Like [`split_ndjson`], refusing at the `max_lines + 1`-th non-blank line without looking
/// further, so a body of a million tiny lines never becomes a million slices.
pub fn split_ndjson_bounded(
    body: &[u8],
    max_line: usize,
    max_lines: usize,
) -> Result<Vec<&[u8]>, Rejection> {
    let mut lines = Vec::new();
    // `memchr` finds the newlines a vector at a time: splitting byte by byte was 6 % of
    // alertd's CPU under batched ingest (`bench/profile.sh batch`).
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
    for (n, end) in ends.enumerate() {
        let line = &body[start..end];
        start = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > max_line {
            return Err(Rejection {
                status: 413,
                error: format!(
                    "NDJSON line {} is {} bytes; the limit is {max_line}",
                    n + 1,
                    line.len()
                ),
                details: Vec::new(),
            });
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        if lines.len() == max_lines {
            return Err(too_many(max_lines));
        }
        lines.push(line);
    }
    Ok(lines)
}

/// Parses and validates a whole body into events ready for the journal.
///
/// Limits act while parsing (see [`crate::rawjson`]): the count is checked as elements are
/// found, and events are read field by field from the request bytes, never as a JSON tree.
pub fn parse_body(
    body: &[u8],
    ndjson: bool,
    now_ms: i64,
    limits: Limits,
) -> Result<Vec<NewEvent>, Rejection> {
    if ndjson {
        let lines = split_ndjson_bounded(body, limits.max_line, limits.max_events)?;
        return all_or_nothing(lines.into_iter().map(|l| parse_line(l, now_ms)));
    }
    let values = match rawjson::split_top(body, limits.max_events) {
        Ok(v) => v,
        Err(SplitError::TooMany) => return Err(too_many(limits.max_events)),
        Err(SplitError::Invalid(e)) => return Err(Rejection::bad(format!(
            "body is not valid JSON ({e}); send an object, an array of objects, or NDJSON with Content-Type: application/x-ndjson"
        ))),
    };
    all_or_nothing(values.into_iter().map(|v| parse_raw_event(v, now_ms)))
}

/// The events of a batch, or every reason some of them are invalid (by index).
fn all_or_nothing(
    parsed: impl ExactSizeIterator<Item = Result<NewEvent, String>>,
) -> Result<Vec<NewEvent>, Rejection> {
    if parsed.len() == 0 {
        return Err(Rejection::bad("the batch holds no events"));
    }
    let mut events = Vec::with_capacity(parsed.len());
    let mut details = Vec::new();
    for (index, v) in parsed.enumerate() {
        match v {
            Ok(e) => events.push(e),
            Err(error) => details.push(Detail { index, error }),
        }
    }
    if !details.is_empty() {
        return Err(Rejection {
            status: 400,
            error: format!(
                "{} of {} events are invalid; nothing was stored",
                details.len(),
                details.len() + events.len()
            ),
            details,
        });
    }
    Ok(events)
}

/// Events with every object over `max_object` bytes replaced by its truncation marker
/// ([`crate::budget::fit_object`]), so the inbox and every alert's bucket hold the small form.
pub fn fit_objects(mut events: Vec<NewEvent>, max_object: usize) -> Vec<NewEvent> {
    for e in &mut events {
        if let EventBody::Guardrail { object, .. } | EventBody::Object { object, .. } =
            &mut e.event.body
        {
            if object.len() > max_object {
                *object = crate::budget::fit_object(object, max_object).into_owned();
            }
        }
    }
    events
}

fn too_many(max: usize) -> Rejection {
    Rejection {
        status: 413,
        error: format!(
            "the batch holds more than {max} events; the limit is {max} (ingest.max_batch_events)"
        ),
        details: Vec::new(),
    }
}

/// Longest accepted text field (`user`, `workspace`, `project`, `name`, ids…) in bytes: these
/// are names, and every notification repeats some of them.
pub const MAX_FIELD_BYTES: usize = 1024;

/// The top-level keys an event may use; any other key is skipped unread.
const FIELDS: &[&str] = &[
    "kind",
    "workspace",
    "project",
    "project_id",
    "timestamp",
    "id",
    "user",
    "trace_id",
    "duration_ms",
    "start_time",
    "end_time",
    "total_estimated_cost",
    "error_info",
    "entity_type",
    "entity_id",
    "name",
    "value",
    "result",
    "details",
    "prompt",
    "prompt_version",
    "prompts",
    "experiments",
];

/// The position of `key` in [`FIELDS`]; with a literal key, inlined into [`Fields::get`], the
/// compiler resolves it.
#[inline(always)]
fn field_index(key: &str) -> usize {
    match key {
        "kind" => 0,
        "workspace" => 1,
        "project" => 2,
        "project_id" => 3,
        "timestamp" => 4,
        "id" => 5,
        "user" => 6,
        "trace_id" => 7,
        "duration_ms" => 8,
        "start_time" => 9,
        "end_time" => 10,
        "total_estimated_cost" => 11,
        "error_info" => 12,
        "entity_type" => 13,
        "entity_id" => 14,
        "name" => 15,
        "value" => 16,
        "result" => 17,
        "details" => 18,
        "prompt" => 19,
        "prompt_version" => 20,
        "prompts" => 21,
        "experiments" => 22,
        other => unreachable!("{other} is not listed in FIELDS"),
    }
}

/// A new server-side event id: a UUIDv7 of the receive time with random low bits. Cheaper than
/// `Uuid::now_v7` (no shared context, no clock read per event); ids need be unique and roughly
/// time-ordered, not strictly monotonic. The bytes are filled from the thread's generator in one
/// call: `rand::random::<[u8; 10]>()` draws a whole `u32` for each byte.
pub fn new_event_id(now_ms: i64) -> String {
    use rand::RngCore;
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    let id = uuid::Builder::from_unix_timestamp_millis(now_ms.max(0) as u64, &random).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut buf).to_owned()
}

/// An event's known fields, borrowed from the body.
struct Fields<'a>(Vec<Option<&'a RawValue>>);

impl<'a> Fields<'a> {
    /// The value of `key`; JSON `null` counts as absent. Inlined, as is [`field_index`], so a
    /// literal key's index is found at compile time: a run-time `match` on the key was 3.8 % of
    /// parsing.
    #[inline(always)]
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0[field_index(key)].filter(|v| rawjson::kind(v) != Kind::Null)
    }

    #[inline(always)]
    fn opt_str(&self, key: &str) -> Result<Option<String>, String> {
        Ok(text(key, self.get(key))?.map(Cow::into_owned))
    }

    /// A string field that is only compared (`kind`, `entity_type`, `result`): borrowed from
    /// the body unless it holds escapes.
    #[inline(always)]
    fn req_text(&self, key: &str) -> Result<Cow<'a, str>, String> {
        match text(key, self.get(key))? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(format!("{key} is required")),
        }
    }

    #[inline(always)]
    fn req_str(&self, key: &str) -> Result<String, String> {
        self.req_text(key).map(Cow::into_owned)
    }

    #[inline(always)]
    fn opt_num(&self, key: &str, non_negative: bool) -> Result<Option<f64>, String> {
        number(key, self.get(key), non_negative)
    }

    #[inline(always)]
    fn opt_time(&self, key: &str) -> Result<Option<i64>, String> {
        time(key, self.get(key))
    }

    /// An object with an `id` (string or number), as minified JSON text.
    fn req_object(&self, key: &str) -> Result<String, String> {
        match self.get(key) {
            Some(v) if rawjson::kind(v) == Kind::Object => {
                let id = rawjson::fields(v, &["id"])?[0].map(rawjson::kind);
                if !matches!(id, Some(Kind::String | Kind::Number)) {
                    return Err(format!("{key}.id is required (string)"));
                }
                Ok(rawjson::minify(v.get()))
            }
            None => Err(format!("{key} is required (an object)")),
            Some(v) => Err(format!(
                "{key} must be an object, got {}",
                rawjson::kind(v).name()
            )),
        }
    }

    /// A non-empty array of objects, as minified JSON text.
    fn req_object_array(&self, key: &str) -> Result<String, String> {
        match self.get(key) {
            Some(v) if rawjson::kind(v) == Kind::Array => match rawjson::objects_in(v) {
                Ok(_) => Ok(rawjson::minify(v.get())),
                Err(None) => Err(format!("{key} must not be empty")),
                Err(Some(i)) => Err(format!("{key}[{i}] must be an object")),
            },
            None => Err(format!("{key} is required (an array of objects)")),
            Some(v) => Err(format!(
                "{key} must be an array, got {}",
                rawjson::kind(v).name()
            )),
        }
    }
}

/// The text of string field `key` (value `v`), borrowed unless it holds escapes.
fn text<'a>(key: &str, v: Option<&'a RawValue>) -> Result<Option<Cow<'a, str>>, String> {
    match v {
        None => Ok(None),
        Some(v) if rawjson::kind(v) == Kind::String => {
            // The body was validated as JSON: a string without escapes is its own text.
            let text = v.get();
            let s: Cow<'a, str> = match text.get(1..text.len() - 1) {
                Some(inner) if !inner.contains('\\') => Cow::Borrowed(inner),
                _ => Cow::Owned(
                    serde_json::from_str(text)
                        .map_err(|e| format!("{key} is not a valid string: {e}"))?,
                ),
            };
            if s.len() > MAX_FIELD_BYTES {
                return Err(format!(
                    "{key} is {} bytes; the limit is {MAX_FIELD_BYTES}",
                    s.len()
                ));
            }
            Ok(Some(s))
        }
        Some(v) => Err(format!(
            "{key} must be a string, got {}",
            rawjson::kind(v).name()
        )),
    }
}

/// The number of field `key` (value `v`), finite and, when asked, not negative.
fn number(key: &str, v: Option<&RawValue>, non_negative: bool) -> Result<Option<f64>, String> {
    match v {
        None => Ok(None),
        Some(v) if rawjson::kind(v) == Kind::Number => {
            let f = serde_json::from_str::<f64>(v.get())
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("{key} must be a finite number"))?;
            if non_negative && f < 0.0 {
                return Err(format!("{key} must not be negative, got {f}"));
            }
            Ok(Some(f))
        }
        Some(v) => Err(format!(
            "{key} must be a number, got {}",
            rawjson::kind(v).name()
        )),
    }
}

/// The time of RFC 3339 field `key` (value `v`), in Unix milliseconds.
fn time(key: &str, v: Option<&RawValue>) -> Result<Option<i64>, String> {
    match text(key, v)? {
        None => Ok(None),
        Some(s) => OffsetDateTime::parse(&s, &Rfc3339)
            .map(|t| Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
            .map_err(|e| format!("{key} must be an RFC 3339 timestamp, got {s:?} ({e})")),
    }
}

/// The guardrail object echoed in `metadata`, in the contract's key order.
#[derive(Serialize)]
struct GuardrailObject<'a> {
    trace_id: &'a Option<String>,
    name: &'a str,
    result: &'static str,
    details: &'a RawValue,
    project_name: &'a Option<String>,
    project_id: &'a Option<String>,
}

/// Validates one event given as a JSON value.
pub fn parse_event(v: Value, now_ms: i64) -> Result<NewEvent, String> {
    let text = v.to_string();
    let raw: &RawValue = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    parse_raw_event(raw, now_ms)
}

/// Validates one event read from the body (see [`crate::rawjson`]).
pub fn parse_raw_event(v: &RawValue, now_ms: i64) -> Result<NewEvent, String> {
    parse_dated_raw_event(v, now_ms).map(|(e, _)| e)
}

/// [`parse_raw_event`], and whether the event carries its own (non-null) `timestamp`, from the
/// same read of its fields: the log source dates undated events at publication.
pub fn parse_dated_raw_event(v: &RawValue, now_ms: i64) -> Result<(NewEvent, bool), String> {
    if rawjson::kind(v) != Kind::Object {
        return Err(format!(
            "an event must be a JSON object, got {}",
            rawjson::kind(v).name()
        ));
    }
    dated_event_from_fields(Fields(rawjson::fields(v, FIELDS)?), now_ms)
}

/// Validates one event given as an NDJSON line, reading the line once when it is an object
/// ([`rawjson::line_fields`]); the same answers as [`rawjson::one`] then [`parse_raw_event`].
pub fn parse_line(line: &[u8], now_ms: i64) -> Result<NewEvent, String> {
    match rawjson::line_fields(line, FIELDS) {
        Some(fields) => event_from_fields(Fields(fields), now_ms),
        None => rawjson::one(line)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|v| parse_raw_event(v, now_ms)),
    }
}

/// A valid event on one NDJSON line and whether it carries its own (non-null) `timestamp`,
/// read in one pass; `None` when the line is anything else (not one object, or an invalid
/// event), so a caller that must word errors its own way reads the line again on its own path.
/// The log source dates undated events at publication, so it needs to know which had a date.
pub fn parse_dated_line(line: &[u8], now_ms: i64) -> Option<(NewEvent, bool)> {
    dated_event_from_fields(Fields(rawjson::line_fields(line, FIELDS)?), now_ms).ok()
}

/// The event the fields make, and whether they held a non-null `timestamp`.
fn dated_event_from_fields(m: Fields<'_>, now_ms: i64) -> Result<(NewEvent, bool), String> {
    let dated = m.get("timestamp").is_some();
    event_from_fields(m, now_ms).map(|e| (e, dated))
}

/// The event the fields of one object make.
fn event_from_fields(m: Fields<'_>, now_ms: i64) -> Result<NewEvent, String> {
    let kind = m.req_text("kind")?;
    let workspace = m.opt_str("workspace")?.unwrap_or_else(|| "default".into());
    if workspace.is_empty() {
        return Err("workspace must not be empty".into());
    }
    let project = m.opt_str("project")?;
    let project_id = m.opt_str("project_id")?;
    let timestamp_ms = m.opt_time("timestamp")?.unwrap_or(now_ms);
    if timestamp_ms > now_ms + MAX_FUTURE_MS {
        return Err(
            "timestamp is more than 5 minutes in the future; check the sender's clock".into(),
        );
    }
    let client_id = m.opt_str("id")?;
    if let Some(id) = &client_id {
        if id.is_empty() || (id.len() > MAX_CLIENT_ID && id.chars().count() > MAX_CLIENT_ID) {
            return Err(format!("id must be 1-{MAX_CLIENT_ID} characters"));
        }
    }
    let user = m.opt_str("user")?.unwrap_or_else(|| "system".into());
    let body = match kind.as_ref() {
        "trace" => {
            let mut duration_s = m.opt_num("duration_ms", true)?.map(|ms| ms / 1000.0);
            if duration_s.is_none() {
                match (m.opt_time("start_time")?, m.opt_time("end_time")?) {
                    (Some(s), Some(e)) if e >= s => duration_s = Some((e - s) as f64 / 1000.0),
                    (Some(_), Some(_)) => return Err("end_time must not be before start_time".into()),
                    _ => {}
                }
            }
            let error = match m.get("error_info") {
                None => false,
                Some(v) if rawjson::kind(v) == Kind::Object => true,
                Some(v) => {
                    return Err(format!(
                        "error_info must be an object, got {}",
                        rawjson::kind(v).name()
                    ))
                }
            };
            EventBody::Trace {
                trace_id: m.opt_str("trace_id")?,
                duration_s,
                cost: m.opt_num("total_estimated_cost", true)?,
                error,
            }
        }
        "feedback_score" => {
            let entity = match m.req_text("entity_type")?.as_ref() {
                "trace" => ScoreEntity::Trace,
                "thread" => ScoreEntity::Thread,
                other => {
                    return Err(format!(
                        "entity_type must be \"trace\" or \"thread\", got {other:?}"
                    ))
                }
            };
            EventBody::FeedbackScore {
                entity,
                entity_id: m.opt_str("entity_id")?,
                name: m.req_str("name")?,
                value: m.opt_num("value", false)?.ok_or("value is required (a number)")?,
            }
        }
        "guardrail" => {
            let name = m.req_str("name")?;
            let failed = match m.req_text("result")?.as_ref() {
                "passed" => false,
                "failed" => true,
                other => {
                    return Err(format!(
                        "result must be \"passed\" or \"failed\", got {other:?}"
                    ))
                }
            };
            let trace_id = m.opt_str("trace_id")?;
            let details = m.get("details").map(|d| rawjson::minify(d.get()));
            let details: Box<RawValue> = match details {
                Some(d) => RawValue::from_string(d).map_err(|e| e.to_string())?,
                None => RawValue::from_string("null".into()).expect("null is JSON"),
            };
            let object = serde_json::to_string(&GuardrailObject {
                trace_id: &trace_id,
                name: &name,
                result: if failed { "failed" } else { "passed" },
                details: &details,
                project_name: &project,
                project_id: &project_id,
            })
            .expect("the guardrail object serialises");
            EventBody::Guardrail {
                trace_id,
                failed,
                object,
            }
        }
        "prompt_created" => EventBody::Object {
            event_type: EventType::PromptCreated,
            object: m.req_object("prompt")?,
        },
        "prompt_committed" => EventBody::Object {
            event_type: EventType::PromptCommitted,
            object: m.req_object("prompt_version")?,
        },
        "prompt_deleted" => EventBody::Object {
            event_type: EventType::PromptDeleted,
            object: m.req_object_array("prompts")?,
        },
        "experiment_finished" => EventBody::Object {
            event_type: EventType::ExperimentFinished,
            object: m.req_object_array("experiments")?,
        },
        other => {
            return Err(format!(
                "unknown kind {other:?}; expected trace, feedback_score, guardrail, prompt_created, prompt_committed, prompt_deleted or experiment_finished"
            ))
        }
    };
    Ok(NewEvent {
        client_id: client_id.map(|id| ClientId::new(&workspace, &id)),
        event: Event {
            id: new_event_id(now_ms),
            workspace,
            project,
            project_id,
            timestamp_ms,
            received_ms: now_ms,
            user,
            body,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_its_index() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(field_index(f), i, "{f}");
        }
    }

    #[test]
    fn event_ids_are_unique_v7_uuids_of_the_receive_time() {
        let a = new_event_id(1_780_000_000_000);
        let b = new_event_id(1_780_000_000_000);
        assert_ne!(a, b);
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 7);
        let (secs, nanos) = u.get_timestamp().unwrap().to_unix();
        assert_eq!(
            secs * 1_000 + u64::from(nanos) / 1_000_000,
            1_780_000_000_000
        );
    }

    #[test]
    fn strings_with_and_without_escapes_are_read_alike() {
        let raw: Box<RawValue> =
            serde_json::from_str(r#"{"kind":"trace","user":"a\"b\u00e9","project":"plain"}"#)
                .unwrap();
        let e = parse_raw_event(&raw, 1_000).unwrap().event;
        assert_eq!(e.user, "a\"bé");
        assert_eq!(e.project.as_deref(), Some("plain"));
    }

    const L: Limits = Limits {
        max_events: 10,
        max_line: 1024,
    };

    #[test]
    fn accepts_object_array_and_ndjson() {
        let one = br#"{"kind":"trace","error_info":{}}"#;
        assert_eq!(parse_body(one, false, 0, L).unwrap().len(), 1);
        let arr = br#"[{"kind":"trace"},{"kind":"guardrail","name":"pii","result":"failed"}]"#;
        assert_eq!(parse_body(arr, false, 0, L).unwrap().len(), 2);
        let nd = b"{\"kind\":\"trace\"}\r\n\n{\"kind\":\"trace\"}\n";
        assert_eq!(parse_body(nd, true, 0, L).unwrap().len(), 2);
    }

    #[test]
    fn one_bad_event_rejects_the_batch_and_names_its_index() {
        let arr =
            br#"[{"kind":"trace"},{"kind":"trace","total_estimated_cost":-1},{"kind":"nope"}]"#;
        let r = parse_body(arr, false, 0, L).unwrap_err();
        assert_eq!(r.status, 400);
        assert_eq!(r.details.len(), 2);
        assert_eq!(r.details[0].index, 1);
        assert!(r.details[0].error.contains("total_estimated_cost"));
        assert_eq!(r.details[1].index, 2);
        assert!(r.details[1].error.contains("unknown kind"));
    }

    #[test]
    fn wrong_types_and_future_timestamps_are_rejected() {
        for (body, needle) in [
            (
                r#"{"kind":"trace","duration_ms":"5"}"#,
                "duration_ms must be a number",
            ),
            (
                r#"{"kind":"trace","error_info":"x"}"#,
                "error_info must be an object",
            ),
            (
                r#"{"kind":"feedback_score","entity_type":"span","name":"x","value":1}"#,
                "entity_type",
            ),
            (
                r#"{"kind":"feedback_score","entity_type":"trace","name":"x"}"#,
                "value is required",
            ),
            (r#"{"kind":"prompt_created","prompt":{}}"#, "prompt.id"),
            (r#"{"kind":"prompt_deleted","prompts":[1]}"#, "prompts[0]"),
            (
                r#"{"kind":"trace","timestamp":"2999-01-01T00:00:00Z"}"#,
                "future",
            ),
            (r#"{"kind":"trace","timestamp":"yesterday"}"#, "RFC 3339"),
            (r#"{"workspace":"w"}"#, "kind is required"),
            (
                r#"{"kind":"trace","start_time":"2026-01-01T00:00:02Z","end_time":"2026-01-01T00:00:01Z"}"#,
                "end_time",
            ),
        ] {
            let r = parse_body(body.as_bytes(), false, 0, L).unwrap_err();
            assert!(r.details[0].error.contains(needle), "{body}: {:?}", r);
        }
    }

    #[test]
    fn latency_comes_from_duration_or_start_and_end() {
        let e = parse_body(br#"{"kind":"trace","duration_ms":1500}"#, false, 0, L).unwrap();
        assert!(
            matches!(e[0].event.body, EventBody::Trace { duration_s: Some(d), .. } if d == 1.5)
        );
        let e = parse_body(
            br#"{"kind":"trace","start_time":"2026-01-01T00:00:00Z","end_time":"2026-01-01T00:00:02.5Z"}"#,
            false,
            0,
            L,
        )
        .unwrap();
        assert!(
            matches!(e[0].event.body, EventBody::Trace { duration_s: Some(d), .. } if d == 2.5)
        );
    }

    #[test]
    fn too_many_events_and_long_lines_are_413() {
        let arr = format!("[{}]", [r#"{"kind":"trace"}"#; 11].join(","));
        let r = parse_body(arr.as_bytes(), false, 0, L).unwrap_err();
        assert_eq!(r.status, 413);
        assert!(r.error.contains("10"));
        let long = format!("{{\"kind\":\"trace\",\"x\":\"{}\"}}", "a".repeat(2000));
        assert_eq!(
            parse_body(long.as_bytes(), true, 0, L).unwrap_err().status,
            413
        );
    }
}
