//! Parsing and validating `POST /v1/events` bodies (DESIGN §5).
//!
//! A body is one JSON object, a JSON array of objects, or NDJSON. Every event is checked against
//! its kind's fields; a batch is all-or-nothing, so the first pass collects every problem with its
//! index and nothing is handed to the journal unless all events are valid.

use crate::event::{Event, EventBody, EventType, ScoreEntity};
use crate::store::NewEvent;
use serde::Serialize;
use serde_json::{Map, Value};
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
    let mut lines = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
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
        lines.push(line);
    }
    Ok(lines)
}

/// Parses and validates a whole body into events ready for the journal.
pub fn parse_body(
    body: &[u8],
    ndjson: bool,
    now_ms: i64,
    limits: Limits,
) -> Result<Vec<NewEvent>, Rejection> {
    let values: Vec<Result<Value, String>> = if ndjson {
        let lines = split_ndjson(body, limits.max_line)?;
        check_count(lines.len(), limits.max_events)?;
        lines
            .into_iter()
            .map(|l| serde_json::from_slice::<Value>(l).map_err(|e| format!("invalid JSON: {e}")))
            .collect()
    } else {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            Rejection::bad(format!(
                "body is not valid JSON ({e}); send an object, an array of objects, or NDJSON with Content-Type: application/x-ndjson"
            ))
        })?;
        match v {
            Value::Array(items) => {
                check_count(items.len(), limits.max_events)?;
                items.into_iter().map(Ok).collect()
            }
            other => vec![Ok(other)],
        }
    };
    if values.is_empty() {
        return Err(Rejection::bad("the batch holds no events"));
    }
    let mut events = Vec::with_capacity(values.len());
    let mut details = Vec::new();
    for (index, v) in values.into_iter().enumerate() {
        match v.and_then(|v| parse_event(v, now_ms)) {
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

fn check_count(n: usize, max: usize) -> Result<(), Rejection> {
    if n > max {
        return Err(Rejection {
            status: 413,
            error: format!(
                "the batch holds {n} events; the limit is {max} (ingest.max_batch_events)"
            ),
            details: Vec::new(),
        });
    }
    Ok(())
}

fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{key} must be a string, got {}", type_name(other))),
    }
}

fn req_str(m: &Map<String, Value>, key: &str) -> Result<String, String> {
    match opt_str(m, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("{key} is required")),
    }
}

fn opt_num(m: &Map<String, Value>, key: &str, non_negative: bool) -> Result<Option<f64>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let f = n
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("{key} must be a finite number"))?;
            if non_negative && f < 0.0 {
                return Err(format!("{key} must not be negative, got {f}"));
            }
            Ok(Some(f))
        }
        Some(other) => Err(format!("{key} must be a number, got {}", type_name(other))),
    }
}

fn opt_time(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match opt_str(m, key)? {
        None => Ok(None),
        Some(s) => OffsetDateTime::parse(&s, &Rfc3339)
            .map(|t| Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
            .map_err(|e| format!("{key} must be an RFC 3339 timestamp, got {s:?} ({e})")),
    }
}

fn req_object(m: &Map<String, Value>, key: &str) -> Result<String, String> {
    match m.get(key) {
        Some(Value::Object(o)) => {
            match o.get("id") {
                Some(Value::String(_)) | Some(Value::Number(_)) => {}
                _ => return Err(format!("{key}.id is required (string)")),
            }
            Ok(Value::Object(o.clone()).to_string())
        }
        None | Some(Value::Null) => Err(format!("{key} is required (an object)")),
        Some(other) => Err(format!("{key} must be an object, got {}", type_name(other))),
    }
}

fn req_object_array(m: &Map<String, Value>, key: &str) -> Result<String, String> {
    match m.get(key) {
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(format!("{key} must not be empty"));
            }
            if let Some(i) = items.iter().position(|v| !v.is_object()) {
                return Err(format!("{key}[{i}] must be an object"));
            }
            Ok(Value::Array(items.clone()).to_string())
        }
        None | Some(Value::Null) => Err(format!("{key} is required (an array of objects)")),
        Some(other) => Err(format!("{key} must be an array, got {}", type_name(other))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Validates one event object.
pub fn parse_event(v: Value, now_ms: i64) -> Result<NewEvent, String> {
    let Value::Object(m) = v else {
        return Err(format!(
            "an event must be a JSON object, got {}",
            type_name(&v)
        ));
    };
    let kind = req_str(&m, "kind")?;
    let workspace = opt_str(&m, "workspace")?.unwrap_or_else(|| "default".into());
    if workspace.is_empty() {
        return Err("workspace must not be empty".into());
    }
    let project = opt_str(&m, "project")?;
    let project_id = opt_str(&m, "project_id")?;
    let timestamp_ms = opt_time(&m, "timestamp")?.unwrap_or(now_ms);
    if timestamp_ms > now_ms + MAX_FUTURE_MS {
        return Err(
            "timestamp is more than 5 minutes in the future; check the sender's clock".into(),
        );
    }
    let client_id = opt_str(&m, "id")?;
    if let Some(id) = &client_id {
        if id.is_empty() || id.chars().count() > MAX_CLIENT_ID {
            return Err(format!("id must be 1-{MAX_CLIENT_ID} characters"));
        }
    }
    let user = opt_str(&m, "user")?.unwrap_or_else(|| "system".into());
    let body = match kind.as_str() {
        "trace" => {
            let mut duration_s = opt_num(&m, "duration_ms", true)?.map(|ms| ms / 1000.0);
            if duration_s.is_none() {
                match (opt_time(&m, "start_time")?, opt_time(&m, "end_time")?) {
                    (Some(s), Some(e)) if e >= s => duration_s = Some((e - s) as f64 / 1000.0),
                    (Some(_), Some(_)) => return Err("end_time must not be before start_time".into()),
                    _ => {}
                }
            }
            let error = match m.get("error_info") {
                None | Some(Value::Null) => false,
                Some(Value::Object(_)) => true,
                Some(other) => {
                    return Err(format!("error_info must be an object, got {}", type_name(other)))
                }
            };
            EventBody::Trace {
                trace_id: opt_str(&m, "trace_id")?,
                duration_s,
                cost: opt_num(&m, "total_estimated_cost", true)?,
                error,
            }
        }
        "feedback_score" => {
            let entity = match req_str(&m, "entity_type")?.as_str() {
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
                entity_id: opt_str(&m, "entity_id")?,
                name: req_str(&m, "name")?,
                value: opt_num(&m, "value", false)?.ok_or("value is required (a number)")?,
            }
        }
        "guardrail" => {
            let name = req_str(&m, "name")?;
            let failed = match req_str(&m, "result")?.as_str() {
                "passed" => false,
                "failed" => true,
                other => {
                    return Err(format!(
                        "result must be \"passed\" or \"failed\", got {other:?}"
                    ))
                }
            };
            let trace_id = opt_str(&m, "trace_id")?;
            let object = serde_json::json!({
                "trace_id": trace_id,
                "name": name,
                "result": if failed { "failed" } else { "passed" },
                "details": m.get("details").cloned().unwrap_or(Value::Null),
                "project_name": project,
                "project_id": project_id,
            });
            EventBody::Guardrail {
                trace_id,
                failed,
                object: object.to_string(),
            }
        }
        "prompt_created" => EventBody::Object {
            event_type: EventType::PromptCreated,
            object: req_object(&m, "prompt")?,
        },
        "prompt_committed" => EventBody::Object {
            event_type: EventType::PromptCommitted,
            object: req_object(&m, "prompt_version")?,
        },
        "prompt_deleted" => EventBody::Object {
            event_type: EventType::PromptDeleted,
            object: req_object_array(&m, "prompts")?,
        },
        "experiment_finished" => EventBody::Object {
            event_type: EventType::ExperimentFinished,
            object: req_object_array(&m, "experiments")?,
        },
        other => {
            return Err(format!(
                "unknown kind {other:?}; expected trace, feedback_score, guardrail, prompt_created, prompt_committed, prompt_deleted or experiment_finished"
            ))
        }
    };
    Ok(NewEvent {
        client_id,
        event: Event {
            id: uuid::Uuid::now_v7().to_string(),
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
