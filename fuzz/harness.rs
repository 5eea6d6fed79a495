//! The bodies of the fuzz targets, shared with `tests/fuzz_regressions.rs` so that every crash
//! input and every seed is replayed in CI through exactly the code the fuzzer ran.
//!
//! Each function takes arbitrary bytes, feeds them to one parser, and checks the contract of its
//! answer; a panic (including a failed check) is a finding.
#![allow(dead_code)]

use alertd::alert::AlertState;
use alertd::codec;
use alertd::config::{AlertSpec, Config};
use alertd::delivery::Delivery;
use alertd::event::Event;
use alertd::ingest::{parse_body, split_ndjson, Limits, MAX_FUTURE_MS};
use alertd::store::NewEvent;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// A fixed "now" (2026-09-22) so runs are reproducible.
pub const NOW_MS: i64 = 1_790_000_000_000;

const JSON_LIMITS: Limits = Limits {
    max_events: 64,
    max_line: 4096,
};

const NDJSON_LIMITS: Limits = Limits {
    max_events: 64,
    max_line: 512,
};

/// `POST /v1/events` with a JSON object or array body: at most `max_events` events come back,
/// none dated beyond the allowed clock skew; a refusal is 400 or 413 with in-range, ordered
/// indexes.
pub fn ingest_json(data: &[u8]) {
    match parse_body(data, false, NOW_MS, JSON_LIMITS) {
        Ok(events) => {
            assert!(!events.is_empty() && events.len() <= JSON_LIMITS.max_events);
            for e in &events {
                assert!(e.event.timestamp_ms <= NOW_MS + MAX_FUTURE_MS);
            }
        }
        Err(r) => check_rejection(&r, JSON_LIMITS),
    }
}

/// `POST /v1/events` with an NDJSON body: lines come back within the limit, unbroken and
/// non-blank; an accepted body has one event per such line.
pub fn ingest_ndjson(data: &[u8]) {
    let lines = split_ndjson(data, NDJSON_LIMITS.max_line);
    if let Ok(lines) = &lines {
        for l in lines {
            assert!(l.len() <= NDJSON_LIMITS.max_line);
            assert!(!l.contains(&b'\n'));
            assert!(!l.iter().all(|b| b.is_ascii_whitespace()));
        }
    }
    match parse_body(data, true, NOW_MS, NDJSON_LIMITS) {
        Ok(events) => {
            let n = lines.expect("an accepted body splits").len();
            assert_eq!(events.len(), n, "one event per non-blank line");
            assert!(n <= NDJSON_LIMITS.max_events);
        }
        Err(r) => check_rejection(&r, NDJSON_LIMITS),
    }
}

fn check_rejection(r: &alertd::ingest::Rejection, limits: Limits) {
    assert!(r.status == 400 || r.status == 413, "status {}", r.status);
    assert!(!r.error.is_empty());
    let mut last = None;
    for d in &r.details {
        assert!(
            d.index < limits.max_events,
            "index {} out of range",
            d.index
        );
        assert!(last < Some(d.index), "details out of order");
        last = Some(d.index);
    }
}

/// One event of each kind, received at `NOW_MS`.
fn events() -> &'static [NewEvent] {
    static EVENTS: OnceLock<Vec<NewEvent>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let body = br#"{"kind":"trace","project":"p","duration_ms":1500,"total_estimated_cost":2.5,"error_info":{}}
{"kind":"feedback_score","entity_type":"trace","name":"hallucination","value":0.2}
{"kind":"feedback_score","entity_type":"thread","name":"hallucination","value":0.9}
{"kind":"guardrail","name":"pii","result":"failed","project":"p"}
{"kind":"prompt_created","prompt":{"id":"p1","name":"greeting"}}
{"kind":"prompt_committed","prompt_version":{"id":"v1","prompt_id":"p1","commit":"abc"}}
{"kind":"prompt_deleted","prompts":[{"id":"p1"}]}
{"kind":"experiment_finished","experiments":[{"id":"e1","name":"x","dataset_id":"d"}]}"#;
        let limits = Limits {
            max_events: 100,
            max_line: 4096,
        };
        parse_body(body, true, NOW_MS, limits).expect("the fixed events are valid")
    })
}

/// Runs an alert through events and ticks: what a daemon would do with it.
fn exercise(mut state: AlertState, first_seq: u64) -> AlertState {
    let mut n = 0u64;
    let mut new_id = || {
        n += 1;
        n.to_string()
    };
    for (i, e) in events().iter().enumerate() {
        state.apply(first_seq.saturating_add(i as u64), &e.event);
    }
    state.tick(NOW_MS, &mut new_id);
    state.tick(NOW_MS + 120_000, &mut new_id);
    state.tick(NOW_MS + 7_200_000, &mut new_id);
    let _ = state.view();
    state
}

/// The config parser and validator (without environment overrides): every error names the
/// file, and every alert of a valid config can take events, tick and checkpoint.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `*_file` keys read files; keep the fuzzer away from devices and large files.
    if text.contains("_file") {
        return;
    }
    let path = Path::new("fuzz/alertd.toml");
    match Config::from_toml(path, text, false) {
        Ok(cfg) => {
            for spec in &cfg.alerts {
                assert!(!spec.triggers.is_empty());
                assert!(!spec.id.is_empty() && spec.id.len() <= 64);
                let state = exercise(AlertState::new(spec.clone(), 0), 1);
                let cp = codec::encode(&state.checkpoint());
                AlertState::decode_checkpoint(&spec.id, &cp).expect("a fresh checkpoint decodes");
            }
        }
        Err(e) => {
            assert!(e.to_string().starts_with("fuzz/alertd.toml"), "{e}");
        }
    }
}

/// An alert with every kind of trigger, so any decoded trigger state and bucket is adopted.
/// The checkpoint seeds in `fuzz/corpus/checkpoint_decode` were written for this alert.
pub const CHECKPOINT_ALERT: &str = r#"
[[alert]]
id = "fuzz"
url = "http://127.0.0.1:9/hook"
[[alert.trigger]]
event = "trace:errors"
threshold = 1
window = "5m"
[[alert.trigger]]
event = "trace:cost"
threshold = 1
window = "1h"
[[alert.trigger]]
event = "trace:latency"
threshold = 1
window = "1m"
[[alert.trigger]]
event = "trace:feedback_score"
score = "hallucination"
operator = "<"
threshold = 0.5
window = "15m"
[[alert.trigger]]
event = "prompt:created"
[[alert.trigger]]
event = "trace:guardrails_triggered"
"#;

/// The alert of [`CHECKPOINT_ALERT`].
pub fn checkpoint_spec() -> &'static Arc<AlertSpec> {
    static SPEC: OnceLock<Arc<AlertSpec>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let cfg = Config::from_toml(Path::new("fuzz.toml"), CHECKPOINT_ALERT, false)
            .expect("valid config");
        cfg.alerts[0].clone()
    })
}

/// Stored bytes read back from redb: a checkpoint, an inbox event or an outbox delivery.
/// Foreign or corrupted bytes decode to an error, and a checkpoint that does decode restores
/// into a working alert (events, ticks, a new checkpoint that decodes again).
pub fn checkpoint_decode(data: &[u8]) {
    let _ = codec::decode::<Event>(data);
    let _ = codec::decode::<Delivery>(data);
    let Ok(cp) = AlertState::decode_checkpoint("fuzz", data) else {
        return;
    };
    let seq = cp.applied_seq.saturating_add(1);
    let state = exercise(AlertState::restore(checkpoint_spec().clone(), cp, &[]), seq);
    AlertState::decode_checkpoint("fuzz", &codec::encode(&state.checkpoint()))
        .expect("a fresh checkpoint decodes");
}

/// `POST /v1/traces`: the first byte picks the encoding (bit 0: JSON, else protobuf) and the
/// compression (bit 1: gzip), the rest is the body, read with a 64 KiB `max_body`. A body that
/// decodes maps every root span to exactly one trace or one rejection; traces carry 32-hex-digit
/// ids (also their client ids), finite non-negative durations and costs, and no time beyond the
/// allowed skew; the answer encodes and decodes back.
pub fn otlp_decode(data: &[u8]) {
    use alertd::otlp::decode::{decode_body, encode_response, BodyError, Compression, Encoding};
    use alertd::otlp::map::{map_request, Context};
    const MAX: usize = 64 * 1024;
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let enc = if mode & 1 == 1 {
        Encoding::Json
    } else {
        Encoding::Protobuf
    };
    let compression = if mode & 2 == 2 {
        Compression::Gzip
    } else {
        Compression::Identity
    };
    let req = match decode_body(body, enc, compression, MAX) {
        Ok(r) => r,
        Err(BodyError::TooLarge(_)) => {
            assert_eq!(compression, Compression::Gzip, "only inflating can exceed");
            return;
        }
        Err(BodyError::Invalid(m)) => {
            assert!(!m.is_empty());
            return;
        }
    };
    let all: Vec<_> = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let roots = all.iter().filter(|s| s.parent_span_id.is_empty()).count();
    let ctx = Context {
        project_header: Some("p"),
        workspace_header: None,
        now_ms: NOW_MS,
    };
    let m = map_request(&req, &ctx);
    assert_eq!(m.spans as usize, all.len());
    assert_eq!(m.traces.len() + m.rejected.len(), roots);
    assert_eq!(m.error_message().is_empty(), m.rejected.is_empty());
    for t in &m.traces {
        assert_eq!(t.trace_id.len(), 32);
        assert!(t.trace_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(t.duration_s.is_finite() && t.duration_s >= 0.0);
        assert!(t.cost.is_none_or(|c| c.is_finite() && c >= 0.0));
        assert!(t.timestamp_ms <= NOW_MS + MAX_FUTURE_MS);
        assert_eq!(t.workspace, "default");
    }
    let ids: Vec<String> = m.traces.iter().map(|t| t.trace_id.clone()).collect();
    let rejected = m.rejected.len() as i64;
    let message = m.error_message();
    for (e, id) in m.into_events(NOW_MS).iter().zip(&ids) {
        assert_eq!(
            e.client_id,
            Some(alertd::store::ClientId::new(&e.event.workspace, id))
        );
        assert!(!e.event.feeds().is_empty(), "a trace always feeds latency");
    }
    let answer = encode_response(rejected, &message, enc);
    match enc {
        Encoding::Protobuf => {
            use prost::Message;
            let r = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(answer.as_slice())
                .expect("the answer decodes");
            assert_eq!(r.partial_success.map_or(0, |p| p.rejected_spans), rejected);
        }
        Encoding::Json => {
            let v: serde_json::Value = serde_json::from_slice(&answer).expect("JSON answer");
            assert_eq!(
                v["partialSuccess"]["rejectedSpans"].as_i64().unwrap_or(0),
                rejected
            );
        }
    }
}
