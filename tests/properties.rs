//! Property tests for the ingest parser: NDJSON splitting and whole-body validation.
//!
//! The splitting properties compare `split_ndjson` with a model built from the generated lines;
//! the body properties build batches from valid event generators and plant invalid events at
//! chosen indexes. Backoff schedule properties live next to the code in `src/delivery/backoff.rs`.

use alertd::event::EventBody;
use alertd::ingest::{parse_body, split_ndjson, Limits};
use proptest::prelude::*;
use serde_json::{json, Value};

/// A fixed "now" (2026-09-22).
const NOW_MS: i64 = 1_790_000_000_000;

/// Bytes of a line's content: anything but the line feed and carriage return (a trailing `\r`
/// belongs to the line ending; inner ones are tested separately).
fn line_byte() -> impl Strategy<Value = u8> {
    any::<u8>().prop_filter("no line break", |b| *b != b'\n' && *b != b'\r')
}

/// One NDJSON line: blank (empty or whitespace only) or with some content.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => proptest::collection::vec(prop_oneof![Just(b' '), Just(b'\t'), Just(0x0c)], 0..4),
        4 => proptest::collection::vec(line_byte(), 1..60),
    ]
}

/// Joins lines with a mix of `\n` and `\r\n`, with or without a final line ending.
fn join(lines: &[Vec<u8>], crlf: &[bool], trailing: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        body.extend_from_slice(l);
        if i + 1 < lines.len() || trailing {
            if crlf[i % crlf.len()] {
                body.push(b'\r');
            }
            body.push(b'\n');
        }
    }
    body
}

fn is_blank(l: &[u8]) -> bool {
    l.iter().all(|b| b.is_ascii_whitespace())
}

proptest! {
    /// Every non-blank line comes back whole, in order, without its line ending; blank lines
    /// (empty, whitespace, or a lone `\r`) are dropped; nothing is merged or split.
    #[test]
    fn ndjson_split_returns_each_non_blank_line_once_in_order(
        lines in proptest::collection::vec(line(), 0..30),
        crlf in proptest::collection::vec(any::<bool>(), 1..8),
        trailing in any::<bool>(),
    ) {
        let body = join(&lines, &crlf, trailing);
        let got = split_ndjson(&body, 60).expect("no line is over the limit");
        let want: Vec<&[u8]> = lines.iter().map(|l| l.as_slice()).filter(|l| !is_blank(l)).collect();
        prop_assert_eq!(got, want);
    }

    /// A carriage return inside a line is content, not a line break: only the one right before
    /// the `\n` is removed.
    #[test]
    fn ndjson_split_keeps_inner_carriage_returns(
        head in proptest::collection::vec(line_byte(), 1..20),
        tail in proptest::collection::vec(line_byte(), 1..20),
        crlf in any::<bool>(),
    ) {
        let mut line = vec![b'a'];
        line.extend_from_slice(&head);
        line.push(b'\r');
        line.extend_from_slice(&tail);
        let mut body = line.clone();
        body.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        body.extend_from_slice(b"{}");
        let got = split_ndjson(&body, 100).unwrap();
        prop_assert_eq!(got, vec![line.as_slice(), b"{}".as_slice()]);
    }

    /// A line longer than the limit refuses the body with 413 naming that line's number (blank
    /// lines counted) and the limit; lines exactly at the limit pass.
    #[test]
    fn ndjson_split_refuses_the_first_over_long_line_by_number(
        lines in proptest::collection::vec(line(), 1..20),
        long_at in any::<proptest::sample::Index>(),
        extra in 1usize..50,
        crlf in proptest::collection::vec(any::<bool>(), 1..4),
        max in 60usize..80,
    ) {
        let mut lines = lines;
        let at = long_at.index(lines.len());
        // Lines before it stay within the limit (they are at most 59 bytes); this one is over.
        lines[at] = vec![b'x'; max + extra];
        for l in lines.iter_mut().skip(at + 1) {
            l.truncate(max);
        }
        let body = join(&lines, &crlf, true);
        let r = split_ndjson(&body, max).unwrap_err();
        prop_assert_eq!(r.status, 413);
        let line_no = format!("line {} ", at + 1);
        let limit = format!("limit is {max}");
        prop_assert!(r.error.contains(&line_no), "{}", r.error);
        prop_assert!(r.error.contains(&limit), "{}", r.error);

        lines[at] = vec![b'x'; max];
        let body = join(&lines, &crlf, true);
        let got = split_ndjson(&body, max).unwrap();
        prop_assert_eq!(got.len(), lines.iter().filter(|l| !is_blank(l)).count());
    }
}

/// A non-empty name-like string.
fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,11}"
}

/// A past RFC 3339 timestamp within the last day.
fn past_timestamp() -> impl Strategy<Value = String> {
    (0i64..86_400_000).prop_map(|back| {
        let t =
            time::OffsetDateTime::from_unix_timestamp_nanos((NOW_MS - back) as i128 * 1_000_000)
                .unwrap();
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    })
}

/// A valid event of any kind, with optional common fields; paired with its kind name.
fn valid_event() -> impl Strategy<Value = (Value, &'static str)> {
    let body = prop_oneof![
        (0.0f64..1e7, 0.0f64..1e4, any::<bool>(), name()).prop_map(|(d, c, err, t)| {
            let mut v = json!({"kind": "trace", "trace_id": t, "duration_ms": d, "total_estimated_cost": c});
            if err {
                v["error_info"] = json!({"message": "boom"});
            }
            (v, "trace")
        }),
        (any::<bool>(), name(), -1e9f64..1e9).prop_map(|(thread, n, value)| {
            let entity = if thread { "thread" } else { "trace" };
            (json!({"kind": "feedback_score", "entity_type": entity, "entity_id": "e1", "name": n, "value": value}), "feedback_score")
        }),
        (name(), any::<bool>()).prop_map(|(n, failed)| {
            let result = if failed { "failed" } else { "passed" };
            (json!({"kind": "guardrail", "name": n, "result": result, "details": {"why": n}}), "guardrail")
        }),
        name().prop_map(|id| (json!({"kind": "prompt_created", "prompt": {"id": id, "name": "p"}}), "prompt_created")),
        name().prop_map(|id| (json!({"kind": "prompt_committed", "prompt_version": {"id": id, "prompt_id": "p", "commit": "c0ffee"}}), "prompt_committed")),
        proptest::collection::vec(name(), 1..4).prop_map(|ids| {
            let prompts: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
            (json!({"kind": "prompt_deleted", "prompts": prompts}), "prompt_deleted")
        }),
        proptest::collection::vec(name(), 1..4).prop_map(|ids| {
            let exps: Vec<Value> = ids.iter().map(|id| json!({"id": id, "name": "x", "dataset_id": "d"})).collect();
            (json!({"kind": "experiment_finished", "experiments": exps}), "experiment_finished")
        }),
    ];
    (
        body,
        proptest::option::of(name()),
        proptest::option::of(name()),
        proptest::option::of(past_timestamp()),
        proptest::option::of("[A-Za-z0-9]{1,128}"),
        proptest::option::of(name()),
    )
        .prop_map(|((mut v, kind), workspace, project, ts, id, user)| {
            for (key, value) in [
                ("workspace", workspace),
                ("project", project),
                ("timestamp", ts),
                ("id", id),
                ("user", user),
            ] {
                if let Some(value) = value {
                    v[key] = json!(value);
                }
            }
            (v, kind)
        })
}

/// An event that must be refused, whatever its neighbours.
fn invalid_event() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"kind": "span"})),
        Just(json!({"workspace": "w"})),
        Just(json!({"kind": "trace", "duration_ms": "5"})),
        Just(json!({"kind": "trace", "total_estimated_cost": -0.5})),
        Just(json!({"kind": "trace", "error_info": "boom"})),
        Just(json!({"kind": "trace", "timestamp": "yesterday"})),
        Just(json!({"kind": "trace", "timestamp": "2999-01-01T00:00:00Z"})),
        Just(json!({"kind": "trace", "workspace": ""})),
        Just(json!({"kind": "trace", "id": "x".repeat(129)})),
        Just(json!({"kind": "feedback_score", "entity_type": "span", "name": "n", "value": 1})),
        Just(json!({"kind": "feedback_score", "entity_type": "trace", "name": "n"})),
        Just(json!({"kind": "guardrail", "name": "pii", "result": "maybe"})),
        Just(json!({"kind": "prompt_created", "prompt": {"name": "no id"}})),
        Just(json!({"kind": "prompt_deleted", "prompts": []})),
        Just(json!({"kind": "experiment_finished", "experiments": [1]})),
        Just(json!(42)),
        Just(json!("trace")),
        Just(json!([{"kind": "trace"}])),
    ]
}

/// The batch as NDJSON, with blank lines and CRLF endings sprinkled in.
fn ndjson(events: &[Value], crlf: &[bool]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if crlf[i % crlf.len()] {
            body.extend_from_slice(b"\r\n  \n");
        }
        body.extend_from_slice(e.to_string().as_bytes());
        body.extend_from_slice(if crlf[(i + 1) % crlf.len()] {
            b"\r\n"
        } else {
            b"\n"
        });
    }
    body
}

const LIMITS: Limits = Limits {
    max_events: 50,
    max_line: 64 * 1024,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A batch of n valid events parses to n events, in order, as an array and as NDJSON (and as
    /// a bare object when n is 1).
    #[test]
    fn valid_batch_yields_one_event_per_item_in_order(
        batch in proptest::collection::vec(valid_event(), 1..20),
        crlf in proptest::collection::vec(any::<bool>(), 1..5),
    ) {
        let (values, kinds): (Vec<Value>, Vec<&str>) = batch.into_iter().unzip();
        let array = serde_json::to_vec(&values).unwrap();
        let mut bodies = vec![(array, false), (ndjson(&values, &crlf), true)];
        if values.len() == 1 {
            bodies.push((values[0].to_string().into_bytes(), false));
        }
        for (body, nd) in bodies {
            let events = parse_body(&body, nd, NOW_MS, LIMITS)
                .map_err(|r| TestCaseError::fail(format!("{r:?}")))?;
            prop_assert_eq!(events.len(), values.len());
            for ((e, v), kind) in events.iter().zip(&values).zip(&kinds) {
                prop_assert_eq!(alertd::journal::kind_name(&e.event), *kind);
                prop_assert_eq!(
                    e.client_id.clone(),
                    v["id"].as_str().map(|id| alertd::store::ClientId::new(&e.event.workspace, id))
                );
                prop_assert_eq!(e.event.workspace.as_str(), v["workspace"].as_str().unwrap_or("default"));
                prop_assert_eq!(e.event.project.as_deref(), v["project"].as_str());
                prop_assert!(e.event.timestamp_ms <= NOW_MS);
                if let EventBody::Trace { duration_s, cost, error, .. } = &e.event.body {
                    // Within a few ulps: serde_json's fast float parsing may differ in the last bit.
                    let close = |got: Option<f64>, want: Option<f64>| {
                        matches!((got, want), (Some(g), Some(w)) if (g - w).abs() <= w.abs() * 1e-12)
                    };
                    prop_assert!(close(*cost, v["total_estimated_cost"].as_f64()),
                        "cost {:?} for {:?}", cost, v["total_estimated_cost"]);
                    let want_s = v["duration_ms"].as_f64().map(|ms| ms / 1000.0);
                    prop_assert!(close(*duration_s, want_s),
                        "duration {:?} s for {:?} ms", duration_s, v["duration_ms"]);
                    prop_assert_eq!(*error, v.get("error_info").is_some());
                }
            }
        }
    }

    /// One invalid event anywhere refuses the whole batch with 400 and exactly one detail,
    /// naming its index — in an array and in NDJSON (where blank lines do not count).
    #[test]
    fn one_invalid_event_is_named_by_its_index(
        batch in proptest::collection::vec(valid_event(), 0..20),
        bad in invalid_event(),
        at in any::<proptest::sample::Index>(),
        crlf in proptest::collection::vec(any::<bool>(), 1..5),
    ) {
        let mut values: Vec<Value> = batch.into_iter().map(|(v, _)| v).collect();
        let at = at.index(values.len() + 1);
        values.insert(at, bad);
        for (body, nd) in [(serde_json::to_vec(&values).unwrap(), false), (ndjson(&values, &crlf), true)] {
            let r = parse_body(&body, nd, NOW_MS, LIMITS).unwrap_err();
            prop_assert_eq!(r.status, 400, "{:?}", r);
            prop_assert_eq!(r.details.len(), 1, "{:?}", r);
            prop_assert_eq!(r.details[0].index, at);
            prop_assert!(!r.details[0].error.is_empty());
        }
    }

    /// A line that is not JSON at all counts as the invalid event at its index.
    #[test]
    fn ndjson_garbage_line_is_named_by_its_index(
        batch in proptest::collection::vec(valid_event(), 0..10),
        garbage in "[a-z{\\[\":,]{1,20}",
        at in any::<proptest::sample::Index>(),
    ) {
        prop_assume!(serde_json::from_str::<Value>(&garbage).is_err());
        let mut lines: Vec<String> = batch.into_iter().map(|(v, _)| v.to_string()).collect();
        let at = at.index(lines.len() + 1);
        lines.insert(at, garbage);
        let r = parse_body(lines.join("\n").as_bytes(), true, NOW_MS, LIMITS).unwrap_err();
        prop_assert_eq!(r.status, 400);
        prop_assert_eq!(r.details.len(), 1);
        prop_assert_eq!(r.details[0].index, at);
        prop_assert!(r.details[0].error.contains("invalid JSON"), "{}", r.details[0].error);
    }

    /// More events than the limit is 413 naming the limit, before any event is validated.
    #[test]
    fn too_many_events_is_413_naming_the_limit(
        max in 1usize..20,
        over in 1usize..5,
        nd in any::<bool>(),
    ) {
        let values = vec![json!({"kind": "nope"}); max + over];
        let body = if nd {
            ndjson(&values, &[false])
        } else {
            serde_json::to_vec(&values).unwrap()
        };
        let limits = Limits { max_events: max, max_line: 1024 };
        let r = parse_body(&body, nd, NOW_MS, limits).unwrap_err();
        prop_assert_eq!(r.status, 413);
        let limit = format!("limit is {max}");
        prop_assert!(r.error.contains(&limit), "{}", r.error);
        prop_assert!(r.details.is_empty());
    }
}

/// One NDJSON line near a valid event: the event itself, or it cut short, with a byte
/// inserted or replaced (invalid UTF-8 included), trailing text, surrounding whitespace, a
/// skipped field holding a bad byte, a duplicated key, or a JSON value that is not an object.
fn line_near_an_event() -> impl Strategy<Value = Vec<u8>> {
    let event = prop_oneof![valid_event().prop_map(|(v, _)| v), invalid_event(),]
        .prop_map(|v| v.to_string().into_bytes());
    (
        event,
        0usize..9,
        any::<proptest::sample::Index>(),
        any::<u8>(),
    )
        .prop_map(|(mut l, how, at, byte)| {
            let i = at.index(l.len() + 1);
            match how {
                0 => {}
                1 => l.truncate(i),
                2 => l.insert(i, byte),
                3 if i < l.len() => l[i] = byte,
                4 => l.extend_from_slice(b" x"),
                5 => {
                    l.splice(0..0, *b" \t");
                    l.extend_from_slice(b"  ");
                }
                6 if l.first() == Some(&b'{') => {
                    l.splice(1..1, *b"\"skipped\": \"\xff\", ");
                }
                7 if l.first() == Some(&b'{') => {
                    l.splice(1..1, *b"\"kind\": \"prompt_created\", ");
                }
                _ => l = format!("[{}]", String::from_utf8_lossy(&l)).into_bytes(),
            }
            l
        })
}

/// The event with its random server id cleared, for comparison.
fn without_id(r: Result<alertd::store::NewEvent, String>) -> Result<String, String> {
    r.map(|mut e| {
        e.event.id.clear();
        format!("{e:?}")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// An NDJSON line read in one pass (`parse_line`) gives what reading it whole and then its
    /// fields gave: the same event, or the same error message.
    #[test]
    fn a_line_read_in_one_pass_answers_as_read_twice(line in line_near_an_event()) {
        let once = alertd::ingest::parse_line(&line, NOW_MS);
        let twice = alertd::rawjson::one(&line)
            .map_err(|e| format!("invalid JSON: {e}"))
            .and_then(|v| alertd::ingest::parse_raw_event(v, NOW_MS));
        prop_assert_eq!(without_id(once), without_id(twice), "{}", String::from_utf8_lossy(&line));
    }
}

/// A log-source message near a valid NDJSON batch: mostly valid events (some with a null
/// `timestamp`, which counts as undated, some with the key spelled with an escape), now and
/// then a line from [`line_near_an_event`], separated by LF, CRLF or blank lines.
fn message_near_ndjson() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        6 => valid_event().prop_map(|(v, _)| v.to_string().into_bytes()),
        1 => valid_event().prop_map(|(mut v, _)| {
            v["timestamp"] = Value::Null;
            v.to_string().into_bytes()
        }),
        1 => valid_event().prop_map(|(v, _)| {
            // The same key, spelled with a JSON escape: still the event's date.
            v.to_string().replace("\"timestamp\":", "\"time\\u0073tamp\":").into_bytes()
        }),
        1 => line_near_an_event(),
    ];
    proptest::collection::vec((line, 0usize..3), 1..8).prop_map(|lines| {
        let mut body = Vec::new();
        for (l, sep) in lines {
            body.extend_from_slice(&l);
            body.extend_from_slice([&b"\n"[..], b"\r\n", b"\n \t\n"][sep]);
        }
        body
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A log message decoded with each line read once gives what reading it whole gave: the
    /// same events (dated at publication when they carry no date), or the same error.
    #[test]
    fn a_message_read_in_one_pass_answers_as_read_whole(
        message in message_near_ndjson(),
        max_events in 1usize..10,
    ) {
        use alertd::source::message::{decode, decode_whole};
        let limits = Limits { max_events, max_line: 64 * 1024 };
        let published = NOW_MS - 60_000;
        let ids = |r: Result<Vec<alertd::store::NewEvent>, String>| {
            r.map(|es| es.into_iter().map(|e| without_id(Ok(e)).unwrap()).collect::<Vec<_>>())
        };
        prop_assert_eq!(
            ids(decode(&message, published, NOW_MS, limits)),
            ids(decode_whole(&message, published, NOW_MS, limits)),
            "{}", String::from_utf8_lossy(&message)
        );
    }
}
