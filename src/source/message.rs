//! One log message → validated events: the `/v1/events` body rules applied to a message.
//!
//! A message holds one event object, a JSON array of them, or NDJSON lines, and is all or
//! nothing like an HTTP batch: one invalid event makes the whole message invalid (it is then
//! terminated, never half-applied). Events are read with the HTTP path's typed parser
//! ([`crate::ingest::parse_dated_line`], [`crate::ingest::parse_dated_raw_event`] over
//! [`crate::rawjson`]): fields are picked out of the message bytes, never built as a JSON tree,
//! and an NDJSON line of a valid message is read once. Pure functions, so the rules are tested
//! without a server.
//!
//! De-duplication is per message, not per event: the message is the unit JetStream redelivers,
//! and its events are committed together ([`crate::store::Store::append_keyed`]), so one id
//! ([`dedup_id`]) counts a redelivered message once. Events that carry their own `id` are also
//! de-duplicated by it, as over HTTP.

use crate::ingest::{self, Limits, MAX_CLIENT_ID};
use crate::rawjson::{self, SplitError};
use crate::store::NewEvent;
use serde_json::value::RawValue;

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
/// An event keeps its own `id` as its client id; the message's id is the journal request's
/// key, not copied onto each event. An event without `timestamp` is dated when it was
/// published to the log, not when alertd read it, so events that waited in the log while
/// alertd was down fall in the right windows.
pub fn decode(
    payload: &[u8],
    published_ms: i64,
    now_ms: i64,
    limits: Limits,
) -> Result<Vec<NewEvent>, String> {
    match valid_ndjson(payload, published_ms.min(now_ms), now_ms, limits) {
        Some(events) => Ok(events),
        None => decode_whole(payload, published_ms, now_ms, limits),
    }
}

/// The events of an NDJSON message whose every line is a valid event, each line read once
/// ([`ingest::parse_dated_line`]); `None` for any other message, which [`decode_whole`] then
/// reads. [`decode_whole`] reads a line twice (whole, then for its fields and date), and
/// NDJSON of many events is what producers batch into a message; keeping the slow path for
/// everything else keeps every error message word for word.
fn valid_ndjson(
    payload: &[u8],
    published_ms: i64,
    now_ms: i64,
    limits: Limits,
) -> Option<Vec<NewEvent>> {
    let body = payload.trim_ascii();
    if !body.contains(&b'\n') {
        return None;
    }
    let lines = ingest::split_ndjson(body, limits.max_line).ok()?;
    if lines.len() > limits.max_events {
        return None;
    }
    lines
        .into_iter()
        .map(|line| {
            let (mut e, dated) = ingest::parse_dated_line(line, now_ms)?;
            if !dated {
                e.event.timestamp_ms = published_ms;
            }
            Some(e)
        })
        .collect()
}

/// [`decode`] reading the message whole first, then each event's fields: the path of every
/// message that is not all valid NDJSON events, and the reference the one-pass path must agree
/// with (`tests/properties.rs`).
pub fn decode_whole(
    payload: &[u8],
    published_ms: i64,
    now_ms: i64,
    limits: Limits,
) -> Result<Vec<NewEvent>, String> {
    let values = values(payload, limits)?;
    let single = values.len() == 1;
    let published_ms = published_ms.min(now_ms);
    let mut events = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let (mut e, dated) = ingest::parse_dated_raw_event(v, now_ms).map_err(|e| {
            if single {
                e
            } else {
                format!("event {}: {e}", i + 1)
            }
        })?;
        if !dated {
            e.event.timestamp_ms = published_ms;
        }
        events.push(e);
    }
    Ok(events)
}

/// The JSON values of a payload, borrowed from it: one value (object or array) or NDJSON lines.
fn values(payload: &[u8], limits: Limits) -> Result<Vec<&RawValue>, String> {
    let body = payload.trim_ascii();
    if body.is_empty() {
        return Err("the message is empty; send an event object or NDJSON lines".into());
    }
    if !body.contains(&b'\n') {
        return one_value(body, limits);
    }
    let lines = ingest::split_ndjson(body, limits.max_line).map_err(|r| r.error)?;
    let first = rawjson::one(lines[0]);
    // A pretty-printed object spans lines: its first line alone is not JSON.
    if first.is_err() && rawjson::split_top(body, limits.max_events).is_ok() {
        return one_value(body, limits);
    }
    if lines.len() > limits.max_events {
        return Err(format!(
            "the message holds {} events; the limit is {} (ingest.max_batch_events)",
            lines.len(),
            limits.max_events
        ));
    }
    let mut values = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let v = if i == 0 {
            first.as_ref().ok().copied()
        } else {
            None
        };
        match v.map(Ok).unwrap_or_else(|| rawjson::one(line)) {
            Ok(v) => values.push(v),
            Err(e) => return Err(format!("NDJSON line {}: invalid JSON: {e}", i + 1)),
        }
    }
    Ok(values)
}

fn one_value(body: &[u8], limits: Limits) -> Result<Vec<&RawValue>, String> {
    match rawjson::split_top(body, limits.max_events) {
        Ok(items) if items.is_empty() => Err("the array holds no events".into()),
        Ok(items) => Ok(items),
        Err(SplitError::TooMany) => Err(format!(
            "the message holds more than {max} events; the limit is {max} (ingest.max_batch_events)",
            max = limits.max_events
        )),
        Err(SplitError::Invalid(e)) => Err(format!(
            "the message is not valid JSON ({e}); send an event object or NDJSON lines"
        )),
    }
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
        decode(payload.as_bytes(), PUBLISHED, NOW, LIMITS).unwrap()
    }

    fn err(payload: &str) -> String {
        decode(payload.as_bytes(), PUBLISHED, NOW, LIMITS).unwrap_err()
    }

    #[test]
    fn events_keep_only_their_own_ids_the_message_id_is_the_requests() {
        let e = ok(r#"{"kind":"trace","project":"p"}"#);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].client_id, None);
        let e = ok("{\"kind\":\"trace\"}\n\n{\"kind\":\"trace\",\"id\":\"mine\"}\r\n{\"kind\":\"trace\"}\n");
        let ids: Vec<_> = e.iter().map(|e| e.client_id.clone()).collect();
        let mine = crate::store::ClientId::new(&e[1].event.workspace, "mine");
        assert_eq!(ids, vec![None, Some(mine), None]);
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
        let e = ok(concat!(
            "{\"kind\":\"trace\"}\n",
            "{\"kind\":\"trace\",\"timestamp\":\"2027-01-15T07:30:00Z\"}\n",
            "{\"kind\":\"trace\",\"timestamp\":null}\n",
        ));
        assert_eq!(e[0].event.timestamp_ms, PUBLISHED);
        assert_eq!(e[1].event.timestamp_ms, time_of("2027-01-15T07:30:00Z"));
        assert_eq!(e[2].event.timestamp_ms, PUBLISHED);
        // "timestamp" elsewhere in the text (a nested key, a value) does not date the event.
        let e = ok(
            r#"{"kind":"trace","error_info":{"timestamp":"2027-01-15T07:30:00Z"},"trace_id":"timestamp"}"#,
        );
        assert_eq!(e[0].event.timestamp_ms, PUBLISHED);
        // The key spelled with an escape is the same key, alone (read whole) or in NDJSON.
        let escaped = r#"{"kind":"trace","time\u0073tamp":"2027-01-15T07:30:00Z"}"#;
        for payload in [escaped.to_string(), format!("{escaped}\n{escaped}\n")] {
            for e in ok(&payload) {
                assert_eq!(e.event.timestamp_ms, time_of("2027-01-15T07:30:00Z"));
            }
        }
        // A publication time after alertd's clock (skew) is capped at now.
        let e = decode(br#"{"kind":"trace"}"#, NOW + 5_000, NOW, LIMITS).unwrap();
        assert_eq!(e[0].event.timestamp_ms, NOW);
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
        let array = format!("[{}]", ["{\"kind\":\"trace\"}"; 4].join(","));
        assert!(err(&array).contains("holds more than 3 events; the limit is 3"));
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
