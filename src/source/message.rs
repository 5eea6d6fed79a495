//! One log message → validated events: the `/v1/events` body rules applied to a message.
//!
//! A message holds one event object, a JSON array of them, or NDJSON lines, and is all or
//! nothing like an HTTP batch: one invalid event makes the whole message invalid (it is then
//! terminated, never half-applied). Pure functions, so the rules are tested without a server.

use crate::ingest::{self, Limits, MAX_CLIENT_ID};
use crate::store::NewEvent;
use serde_json::Value;

/// The de-duplication id of a message: its `Nats-Msg-Id` header (the producer's own id, which
/// also makes JetStream drop repeated publishes), else `<stream>:<stream sequence>`, which is
/// stable across redeliveries of the same stored message.
pub fn dedup_id(msg_id: Option<&str>, stream: &str, sequence: u64) -> Result<String, String> {
    match msg_id.map(str::trim) {
        Some(id) if !id.is_empty() => {
            if id.chars().count() > MAX_CLIENT_ID {
                return Err(format!(
                    "Nats-Msg-Id is {} characters; the limit is {MAX_CLIENT_ID}",
                    id.chars().count()
                ));
            }
            Ok(id.to_string())
        }
        _ => Ok(format!("{stream}:{sequence}")),
    }
}

/// Validates a message's payload into events ready for the journal.
///
/// Each event gets a client id for de-duplication unless it carries its own `id`: the
/// message's `dedup` id for a single event, `<dedup>#<n>` (1-based) for the n-th of several.
/// An event without `timestamp` is dated when it was published to the log, not when alertd read
/// it, so events that waited in the log while alertd was down fall in the right windows.
pub fn decode(
    payload: &[u8],
    dedup: &str,
    published_ms: i64,
    now_ms: i64,
    limits: Limits,
) -> Result<Vec<NewEvent>, String> {
    let values = values(payload, limits)?;
    let single = values.len() == 1;
    let mut events = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let n = i + 1;
        let dated = v.get("timestamp").is_some_and(|t| !t.is_null());
        let mut e = ingest::parse_event(v, now_ms).map_err(|e| {
            if single {
                e
            } else {
                format!("event {n}: {e}")
            }
        })?;
        if !dated {
            e.event.timestamp_ms = published_ms.min(now_ms);
        }
        if e.client_id.is_none() {
            e.client_id = Some(if single {
                dedup.to_string()
            } else {
                format!("{dedup}#{n}")
            });
        }
        events.push(e);
    }
    Ok(events)
}

/// The JSON values of a payload: one value (object or array) or NDJSON lines.
fn values(payload: &[u8], limits: Limits) -> Result<Vec<Value>, String> {
    let body = payload.trim_ascii();
    if body.is_empty() {
        return Err("the message is empty; send an event object or NDJSON lines".into());
    }
    if !body.contains(&b'\n') {
        return one_value(body, limits);
    }
    let lines = ingest::split_ndjson(body, limits.max_line).map_err(|r| r.error)?;
    // A pretty-printed object spans lines: its first line alone is not JSON.
    if serde_json::from_slice::<Value>(lines[0]).is_err()
        && serde_json::from_slice::<Value>(body).is_ok()
    {
        return one_value(body, limits);
    }
    if lines.len() > limits.max_events {
        return Err(too_many(lines.len(), limits));
    }
    let mut values = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => values.push(v),
            Err(e) => return Err(format!("NDJSON line {}: invalid JSON: {e}", i + 1)),
        }
    }
    Ok(values)
}

fn one_value(body: &[u8], limits: Limits) -> Result<Vec<Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if items.is_empty() => Err("the array holds no events".into()),
        Ok(Value::Array(items)) if items.len() > limits.max_events => {
            Err(too_many(items.len(), limits))
        }
        Ok(Value::Array(items)) => Ok(items),
        Ok(v) => Ok(vec![v]),
        Err(e) => Err(format!(
            "the message is not valid JSON ({e}); send an event object or NDJSON lines"
        )),
    }
}

fn too_many(n: usize, limits: Limits) -> String {
    format!(
        "the message holds {n} events; the limit is {} (ingest.max_batch_events)",
        limits.max_events
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_events: 3,
        max_line: 1024,
    };
    const NOW: i64 = 1_800_000_000_000;
    const PUBLISHED: i64 = NOW - 60_000;

    fn ok(payload: &str) -> Vec<NewEvent> {
        decode(payload.as_bytes(), "S:7", PUBLISHED, NOW, LIMITS).unwrap()
    }

    fn err(payload: &str) -> String {
        decode(payload.as_bytes(), "S:7", PUBLISHED, NOW, LIMITS).unwrap_err()
    }

    #[test]
    fn a_single_event_takes_the_message_id() {
        let e = ok(r#"{"kind":"trace","project":"p"}"#);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].client_id.as_deref(), Some("S:7"));
    }

    #[test]
    fn ndjson_lines_get_numbered_ids_and_keep_their_own() {
        let e = ok("{\"kind\":\"trace\"}\n\n{\"kind\":\"trace\",\"id\":\"mine\"}\r\n{\"kind\":\"trace\"}\n");
        let ids: Vec<_> = e.iter().map(|e| e.client_id.clone().unwrap()).collect();
        assert_eq!(ids, vec!["S:7#1", "mine", "S:7#3"]);
    }

    #[test]
    fn an_array_and_a_pretty_printed_object_are_accepted() {
        assert_eq!(ok(r#"[{"kind":"trace"},{"kind":"trace"}]"#).len(), 2);
        assert_eq!(
            ok("{\n  \"kind\": \"trace\",\n  \"project\": \"p\"\n}\n").len(),
            1
        );
    }

    #[test]
    fn undated_events_are_dated_at_publication_dated_ones_keep_theirs() {
        let e =
            ok("{\"kind\":\"trace\"}\n{\"kind\":\"trace\",\"timestamp\":\"2027-01-15T07:30:00Z\"}");
        assert_eq!(e[0].event.timestamp_ms, PUBLISHED);
        assert_eq!(e[1].event.timestamp_ms, time_of("2027-01-15T07:30:00Z"));
    }

    fn time_of(s: &str) -> i64 {
        let t =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
        (t.unix_timestamp_nanos() / 1_000_000) as i64
    }

    #[test]
    fn one_bad_event_makes_the_whole_message_invalid() {
        let e = err("{\"kind\":\"trace\"}\n{\"kind\":\"nope\"}");
        assert!(e.starts_with("event 2: unknown kind \"nope\""), "{e}");
        assert!(err("{\"kind\":\"trace\"}\nnot json").starts_with("NDJSON line 2: invalid JSON"));
        assert!(err("   ").contains("empty"));
        assert!(err("[]").contains("no events"));
        assert!(err("42").contains("must be a JSON object"));
        assert!(err("{\"kind\":").contains("not valid JSON"));
    }

    #[test]
    fn limits_apply_per_message() {
        let four = "{\"kind\":\"trace\"}\n".repeat(4);
        assert!(err(&four).contains("holds 4 events; the limit is 3"));
        let long = format!(
            "{{\"kind\":\"trace\",\"x\":\"{}\"}}\n{{}}",
            "a".repeat(2000)
        );
        assert!(err(&long).contains("the limit is 1024"));
    }

    #[test]
    fn the_dedup_id_prefers_the_header() {
        assert_eq!(dedup_id(Some("abc"), "S", 9).unwrap(), "abc");
        assert_eq!(dedup_id(Some(" "), "S", 9).unwrap(), "S:9");
        assert_eq!(dedup_id(None, "S", 9).unwrap(), "S:9");
        assert!(dedup_id(Some(&"x".repeat(129)), "S", 9).is_err());
    }
}
