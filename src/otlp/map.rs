//! From an OTLP `ExportTraceServiceRequest` to alertd `trace` events (DESIGN §14).
//!
//! Pure: no I/O, no clock (the caller passes `now_ms`), so every rule below is pinned by unit
//! tests and fixtures. One root span (empty `parent_span_id`) is one trace event:
//!
//! - `trace_id`: the lower-case hex trace id, also the event's client id, so an exporter that
//!   retries an export it already delivered is counted once;
//! - `project`: resource attribute `opik.project_name`, else `openinference.project.name`, else the
//!   request header `projectName`, else resource attribute `service.name`;
//! - `workspace`: header `Comet-Workspace`, else `default`;
//! - error: span status `ERROR`; its message is the status message, else the first `exception`
//!   event's `exception.message`;
//! - latency: `end − start`; timestamp (window membership): the span's end;
//! - cost: the sum of `gen_ai.usage.cost` (else `llm.cost.total`, OpenInference) over every span
//!   of that trace *in the same request*, whatever resource or scope it came in.
//!
//! A root span that cannot become a valid event (missing or all-zero trace id, missing times, an
//! end before its start, an end in the future) is not stored and is counted as rejected, so the
//! exporter learns about it through `partial_success`.

use crate::event::{Event, EventBody};
use crate::ingest::MAX_FUTURE_MS;
use crate::store::{ClientId, NewEvent};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::collections::HashMap;

/// Resource attributes naming the project, in order of preference before the header.
const PROJECT_ATTRS: [&str; 2] = ["opik.project_name", "openinference.project.name"];
/// The resource attribute used when nothing more specific names the project.
const SERVICE_NAME: &str = "service.name";
/// Span attributes carrying a cost in USD; the first present on a span is used.
const COST_ATTRS: [&str; 2] = ["gen_ai.usage.cost", "llm.cost.total"];
/// Longest error message kept (they are logged, and can be whole stack traces).
const MAX_MESSAGE: usize = 1024;
/// Reasons quoted in `partial_success.error_message`; the rest are only counted.
const MAX_REASONS: usize = 3;

/// What the request's headers contribute to the mapping.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The `projectName` header (Opik's OTLP endpoint convention).
    pub project_header: Option<&'a str>,
    /// The `Comet-Workspace` header.
    pub workspace_header: Option<&'a str>,
    /// The daemon's clock, epoch milliseconds: the receive time and the future-skew bound.
    pub now_ms: i64,
}

/// One root span as a trace, before it becomes a stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedTrace {
    /// Lower-case hex, 32 characters.
    pub trace_id: String,
    pub workspace: String,
    pub project: Option<String>,
    /// The root span's end, epoch milliseconds.
    pub timestamp_ms: i64,
    pub duration_s: f64,
    /// `None` when no span of the trace in this request carried a cost attribute.
    pub cost: Option<f64>,
    pub error: Option<TraceError>,
}

/// Why a trace counts as an error.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceError {
    /// Status message, else the first exception event's `exception.message`; truncated.
    pub message: Option<String>,
}

/// A root span that could not be mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Hex of whatever trace id bytes the span had (may be empty).
    pub trace_id: String,
    pub reason: String,
}

/// The outcome of mapping one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    pub traces: Vec<MappedTrace>,
    pub rejected: Vec<Rejected>,
    /// Every span in the request, root or not.
    pub spans: u64,
}

impl Mapping {
    /// The `partial_success.error_message`: the first few reasons, with their trace ids.
    pub fn error_message(&self) -> String {
        if self.rejected.is_empty() {
            return String::new();
        }
        let mut parts: Vec<String> = self
            .rejected
            .iter()
            .take(MAX_REASONS)
            .map(|r| {
                if r.trace_id.is_empty() {
                    r.reason.clone()
                } else {
                    format!("trace {}: {}", r.trace_id, r.reason)
                }
            })
            .collect();
        if self.rejected.len() > MAX_REASONS {
            parts.push(format!("and {} more", self.rejected.len() - MAX_REASONS));
        }
        format!(
            "{} root span(s) could not become alertd trace events: {}",
            self.rejected.len(),
            parts.join("; ")
        )
    }

    /// The stored events, ready for the journal. `now_ms` is the receive time.
    pub fn into_events(self, now_ms: i64) -> Vec<NewEvent> {
        self.traces
            .into_iter()
            .map(|t| NewEvent {
                client_id: Some(ClientId::new(&t.workspace, &t.trace_id)),
                event: Event {
                    id: crate::ingest::new_event_id(now_ms),
                    workspace: t.workspace,
                    project: t.project,
                    project_id: None,
                    timestamp_ms: t.timestamp_ms,
                    received_ms: now_ms,
                    user: "system".into(),
                    body: EventBody::Trace {
                        trace_id: Some(t.trace_id),
                        duration_s: Some(t.duration_s),
                        cost: t.cost,
                        error: t.error.is_some(),
                    },
                },
            })
            .collect()
    }
}

/// Maps every root span of `req` (see the module doc for the rules).
pub fn map_request(req: &ExportTraceServiceRequest, ctx: &Context<'_>) -> Mapping {
    let workspace = ctx
        .workspace_header
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .unwrap_or("default");
    let header_project = ctx.project_header.map(str::trim).filter(|p| !p.is_empty());

    // Pass 1: cost per trace over every span of the request.
    let mut costs: HashMap<&[u8], f64> = HashMap::new();
    let mut spans = 0u64;
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                spans += 1;
                if let Some(c) = span_cost(span) {
                    *costs.entry(span.trace_id.as_slice()).or_insert(0.0) += c;
                }
            }
        }
    }

    // Pass 2: one trace per root span.
    let mut out = Mapping {
        spans,
        ..Mapping::default()
    };
    for rs in &req.resource_spans {
        let resource: &[KeyValue] = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let project = PROJECT_ATTRS
            .iter()
            .find_map(|k| str_attr(resource, k))
            .or(header_project)
            .or_else(|| str_attr(resource, SERVICE_NAME))
            .map(str::to_string);
        for ss in &rs.scope_spans {
            for span in ss.spans.iter().filter(|s| s.parent_span_id.is_empty()) {
                match map_root(span, ctx.now_ms) {
                    Ok((timestamp_ms, duration_s, error)) => out.traces.push(MappedTrace {
                        trace_id: hex(&span.trace_id),
                        workspace: workspace.to_string(),
                        project: project.clone(),
                        timestamp_ms,
                        duration_s,
                        // The sum is finite: each term is, and a sum of finite non-negative
                        // costs overflows only past 1.8e308 USD; guard anyway.
                        cost: costs.get(span.trace_id.as_slice()).copied().map(|c| {
                            if c.is_finite() {
                                c
                            } else {
                                f64::MAX
                            }
                        }),
                        error,
                    }),
                    Err(reason) => out.rejected.push(Rejected {
                        trace_id: hex(&span.trace_id),
                        reason,
                    }),
                }
            }
        }
    }
    out
}

/// Timestamp, duration and error of a root span, or why it cannot be a trace event.
fn map_root(span: &Span, now_ms: i64) -> Result<(i64, f64, Option<TraceError>), String> {
    if span.trace_id.len() != 16 {
        return Err(format!(
            "trace id must be 16 bytes, got {}",
            span.trace_id.len()
        ));
    }
    if span.trace_id.iter().all(|&b| b == 0) {
        return Err("trace id is all zeros (invalid in OTLP)".into());
    }
    let (start, end) = (span.start_time_unix_nano, span.end_time_unix_nano);
    if start == 0 || end == 0 {
        return Err("start_time_unix_nano and end_time_unix_nano are required".into());
    }
    if end < start {
        return Err("end_time_unix_nano is before start_time_unix_nano".into());
    }
    // u64 nanoseconds / 1e6 fits an i64 of milliseconds.
    let timestamp_ms = (end / 1_000_000) as i64;
    if timestamp_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(
            "the span ends more than 5 minutes in the future; check the sender's clock".into(),
        );
    }
    let duration_s = (end - start) as f64 / 1e9;
    let error =
        (span.status.as_ref().map(|s| s.code) == Some(StatusCode::Error as i32)).then(|| {
            let status_message = span
                .status
                .as_ref()
                .map(|s| s.message.as_str())
                .filter(|m| !m.is_empty());
            let message = status_message.or_else(|| {
                span.events
                    .iter()
                    .find(|e| e.name == "exception")
                    .and_then(|e| str_attr(&e.attributes, "exception.message"))
            });
            TraceError {
                message: message.map(truncate),
            }
        });
    Ok((timestamp_ms, duration_s, error))
}

/// The span's own cost in USD: the first cost attribute it carries, if finite and non-negative.
fn span_cost(span: &Span) -> Option<f64> {
    COST_ATTRS
        .iter()
        .find_map(|k| num_attr(&span.attributes, k))
        .filter(|c| c.is_finite() && *c >= 0.0)
}

fn find_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// A non-empty string attribute.
fn str_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match find_attr(attrs, key)? {
        any_value::Value::StringValue(s) if !s.trim().is_empty() => Some(s.trim()),
        _ => None,
    }
}

/// A numeric attribute: double, int, or a string holding a number (some SDKs stringify).
fn num_attr(attrs: &[KeyValue], key: &str) -> Option<f64> {
    match find_attr(attrs, key)? {
        any_value::Value::DoubleValue(d) => Some(*d),
        any_value::Value::IntValue(i) => Some(*i as f64),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_MESSAGE) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// Lower-case hex, as OTLP/JSON and every tracing UI print trace ids.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_790_000_000_000;

    /// Parses an OTLP/JSON fixture from `tests/otlp/` (the format the spec's examples use).
    fn fixture(name: &str) -> ExportTraceServiceRequest {
        let path = format!("{}/tests/otlp/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn ctx() -> Context<'static> {
        Context {
            now_ms: NOW_MS,
            ..Context::default()
        }
    }

    #[test]
    fn error_root_span_with_costly_children_becomes_one_error_trace() {
        let m = map_request(&fixture("openllmetry_error.json"), &ctx());
        assert_eq!(m.spans, 3);
        assert!(m.rejected.is_empty(), "{:?}", m.rejected);
        assert_eq!(m.traces.len(), 1);
        let t = &m.traces[0];
        assert_eq!(t.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(t.project.as_deref(), Some("chatbot-prod"));
        assert_eq!(t.workspace, "default");
        assert_eq!(t.duration_s, 2.5);
        assert_eq!(t.timestamp_ms, 1_789_999_992_500);
        assert_eq!(t.cost, Some(0.75), "0.5 + 0.25 from the two children");
        assert_eq!(
            t.error,
            Some(TraceError {
                message: Some("upstream model timed out".into())
            })
        );
    }

    #[test]
    fn openinference_project_and_llm_cost_total_and_exception_message() {
        let m = map_request(&fixture("openinference.json"), &ctx());
        assert_eq!(m.traces.len(), 1);
        let t = &m.traces[0];
        assert_eq!(t.project.as_deref(), Some("rag-app"));
        assert_eq!(t.cost, Some(1.25));
        assert_eq!(
            t.error.as_ref().and_then(|e| e.message.as_deref()),
            Some("division by zero"),
            "no status message: the first exception event's message"
        );
    }

    #[test]
    fn project_prefers_opik_then_openinference_then_header_then_service_name() {
        let mut req = fixture("openinference.json");
        let header = Context {
            project_header: Some("from-header"),
            ..ctx()
        };
        assert_eq!(
            map_request(&req, &header).traces[0].project.as_deref(),
            Some("rag-app"),
            "openinference.project.name beats the header"
        );
        let attrs = &mut req.resource_spans[0].resource.as_mut().unwrap().attributes;
        attrs.retain(|kv| kv.key != "openinference.project.name");
        assert_eq!(
            map_request(&req, &header).traces[0].project.as_deref(),
            Some("from-header"),
            "the header beats service.name"
        );
        assert_eq!(
            map_request(&req, &ctx()).traces[0].project.as_deref(),
            Some("rag-service"),
            "service.name last"
        );
        let m = map_request(&fixture("openllmetry_error.json"), &header);
        assert_eq!(
            m.traces[0].project.as_deref(),
            Some("chatbot-prod"),
            "opik.project_name beats everything"
        );
    }

    #[test]
    fn workspace_comes_from_the_header_else_default() {
        let req = fixture("openllmetry_error.json");
        let c = Context {
            workspace_header: Some("team-a"),
            ..ctx()
        };
        assert_eq!(map_request(&req, &c).traces[0].workspace, "team-a");
        let blank = Context {
            workspace_header: Some("  "),
            ..ctx()
        };
        assert_eq!(map_request(&req, &blank).traces[0].workspace, "default");
    }

    #[test]
    fn ok_trace_without_cost_attributes_has_no_error_and_no_cost() {
        let m = map_request(&fixture("ok_no_cost.json"), &ctx());
        assert_eq!(m.traces.len(), 1);
        assert_eq!(m.traces[0].error, None);
        assert_eq!(
            m.traces[0].cost, None,
            "no cost attribute: trace:cost is not fed"
        );
        let events = m.into_events(NOW_MS);
        assert_eq!(
            events[0].event.feeds().iter().collect::<Vec<_>>(),
            vec![crate::event::EventType::TraceLatency]
        );
    }

    #[test]
    fn cost_is_summed_per_trace_across_resources_in_one_request() {
        let m = map_request(&fixture("two_traces_split.json"), &ctx());
        assert_eq!(m.spans, 4);
        let mut costs: Vec<(String, Option<f64>)> = m
            .traces
            .iter()
            .map(|t| (t.trace_id.clone(), t.cost))
            .collect();
        costs.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            costs,
            vec![
                ("11111111111111111111111111111111".into(), Some(3.0)),
                ("22222222222222222222222222222222".into(), Some(0.5)),
            ],
            "trace 1's child came under another resource; its cost still counts"
        );
    }

    #[test]
    fn invalid_root_spans_are_rejected_with_reasons_and_valid_ones_kept() {
        let m = map_request(&fixture("unmappable.json"), &ctx());
        assert_eq!(m.traces.len(), 1, "{:?}", m.rejected);
        let reasons: Vec<&str> = m.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(m.rejected.len(), 4, "{reasons:?}");
        assert!(reasons[0].contains("all zeros"));
        assert!(reasons[1].contains("required"));
        assert!(reasons[2].contains("before"));
        assert!(reasons[3].contains("future"));
        let msg = m.error_message();
        assert!(msg.starts_with("4 root span(s)"), "{msg}");
        assert!(msg.contains("and 1 more"), "{msg}");
    }

    #[test]
    fn events_use_the_trace_id_as_client_id() {
        let m = map_request(&fixture("openllmetry_error.json"), &ctx());
        let e = m.into_events(NOW_MS).remove(0);
        assert_eq!(
            e.client_id,
            Some(ClientId::new(
                &e.event.workspace,
                "5b8efff798038103d269b633813fc60c"
            ))
        );
        assert_eq!(e.event.received_ms, NOW_MS);
        assert_eq!(e.event.user, "system");
        assert_eq!(
            e.event.body,
            EventBody::Trace {
                trace_id: Some("5b8efff798038103d269b633813fc60c".into()),
                duration_s: Some(2.5),
                cost: Some(0.75),
                error: true,
            }
        );
    }

    #[test]
    fn negative_and_non_numeric_costs_are_ignored() {
        let mut req = fixture("openllmetry_error.json");
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        for (span, v) in spans.iter_mut().skip(1).zip([
            any_value::Value::DoubleValue(-3.0),
            any_value::Value::BoolValue(true),
        ]) {
            for kv in &mut span.attributes {
                if kv.key == "gen_ai.usage.cost" {
                    kv.value.as_mut().unwrap().value = Some(v.clone());
                }
            }
        }
        assert_eq!(map_request(&req, &ctx()).traces[0].cost, None);
    }

    #[test]
    fn long_error_messages_are_truncated() {
        let long = "x".repeat(5000);
        let t = truncate(&long);
        assert_eq!(t.chars().count(), MAX_MESSAGE + 1);
        assert!(t.ends_with('…'));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0x10, 0xff]), "00ab10ff");
    }
}
