//! OpenTelemetry in, through the real binary (DESIGN §14): spans made by the real OpenTelemetry
//! SDK and sent by the real `opentelemetry-otlp` HTTP exporter (protobuf and JSON, gzip or not)
//! make `trace:errors` and `trace:cost` fire; a repeated export counts once; a 10,000-span
//! request maps every root; hostile bodies get the answers the OTLP/HTTP spec names (400 with a
//! `google.rpc.Status`, 415, 413 — also for a gzip bomb, with flat memory — and 503 with
//! `Retry-After` when the journal queue is full).

mod common;

use alertd::otlp::decode::RpcStatus;
use common::{Daemon, Receiver};
use flate2::write::GzEncoder;
use opentelemetry::trace::{Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue as PbKeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource as PbResource;
use opentelemetry_proto::tonic::trace::v1::{
    status, ResourceSpans, ScopeSpans, Span, Status as PbStatus,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use prost::Message;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a test waits for a webhook or a metric it expects.
const PATIENCE: Duration = Duration::from_secs(15);

/// Collects what the SDK's span processor hands to exporters, so the test can give the very
/// same batch to the OTLP exporter inside its own tokio runtime — twice, like a retry.
#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collect {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
}

/// One trace made with the SDK: an ERROR root span (status `message`, or an empty status
/// message plus a recorded exception when `exception` is set) with two LLM children whose
/// `gen_ai.usage.cost` are 0.5 and 0.25.
fn record_error_trace(resource: &Resource, message: &str, exception: bool) -> Vec<SpanData> {
    let collect = Collect::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(collect.clone())
        .with_resource(resource.clone())
        .build();
    let tracer = provider.tracer("alertd-otlp-test");
    let cx = Context::current_with_span(tracer.start("chat_workflow"));
    for cost in [0.5, 0.25] {
        let mut child = tracer.start_with_context("openai.chat", &cx);
        opentelemetry::trace::Span::set_attribute(
            &mut child,
            KeyValue::new("gen_ai.usage.cost", cost),
        );
        opentelemetry::trace::Span::end(&mut child);
    }
    let root = cx.span();
    if exception {
        root.record_error(&std::io::Error::other(message.to_string()));
        root.set_status(Status::error(""));
    } else {
        root.set_status(Status::error(message.to_string()));
    }
    root.end();
    provider.shutdown().expect("the SDK shuts down");
    let spans = std::mem::take(&mut *collect.0.lock().unwrap());
    assert_eq!(spans.len(), 3, "root and two children");
    spans
}

/// The real OTLP/HTTP exporter pointed at the daemon.
fn exporter(
    d: &Daemon,
    protocol: Protocol,
    gzip: bool,
    headers: &[(&str, &str)],
    resource: &Resource,
) -> opentelemetry_otlp::SpanExporter {
    let mut b = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(format!("{}/v1/traces", d.base))
        .with_timeout(Duration::from_secs(10))
        .with_headers(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        );
    if gzip {
        b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    let mut e = b.build().expect("the OTLP exporter builds");
    e.set_resource(resource);
    e
}

/// Two alerts in `workspace` scoped to `project`: errors (> 0) to `/errors`, cost (> 0.7) to
/// `/cost`.
fn errors_and_cost_alerts(rx: &Receiver, workspace: &str, project: &str) -> String {
    format!(
        r#"
[engine]
tick = "200ms"
[[alert]]
id = "errors"
url = "{errors}"
workspace = "{workspace}"
[[alert.trigger]]
event = "trace:errors"
projects = ["{project}"]
threshold = 0
window = "1h"
[[alert]]
id = "cost"
url = "{cost}"
workspace = "{workspace}"
[[alert.trigger]]
event = "trace:cost"
projects = ["{project}"]
threshold = 0.7
window = "1h"
"#,
        errors = rx.url("/errors"),
        cost = rx.url("/cost"),
    )
}

/// The metric value in a threshold webhook.
fn metric_value(body: &serde_json::Value) -> String {
    body["payload"]["metadata"][0]["metric_value"]
        .as_str()
        .unwrap_or_else(|| panic!("a threshold body: {body}"))
        .to_string()
}

/// An alert's first trigger's current value, if a tick evaluated it.
async fn trigger_value(d: &Daemon, alert: &str) -> Option<f64> {
    let (s, v) = d.get("/v1/alerts").await;
    assert_eq!(s, 200, "{v}");
    v["alerts"].as_array()?.iter().find(|a| a["id"] == alert)?["triggers"][0]["value"].as_f64()
}

/// Waits until the alert's value is `want` (within 1e-6).
async fn wait_value(d: &Daemon, alert: &str, want: f64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = trigger_value(d, alert).await;
        if got.is_some_and(|g| (g - want).abs() < 1e-6) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "alert {alert}: value {got:?}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one Prometheus sample line starting with `prefix` (labels included).
async fn metric(d: &Daemon, prefix: &str) -> Option<f64> {
    let text = d.metrics().await;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Exports one error trace twice with the real exporter and checks both alerts fire once with
/// the right values and the repeat was a duplicate.
async fn error_trace_fires_errors_and_cost_once(
    protocol: Protocol,
    gzip: bool,
    resource: Resource,
    headers: &[(&str, &str)],
    workspace: &str,
    project: &str,
    exception: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let d = Daemon::start(dir.path(), &errors_and_cost_alerts(&rx, workspace, project)).await;
    let spans = record_error_trace(&resource, "upstream model timed out", exception);
    let e = exporter(&d, protocol, gzip, headers, &resource);
    e.export(spans.clone())
        .await
        .expect("alertd accepts the export");
    e.export(spans)
        .await
        .expect("alertd accepts the repeated export");

    let errors = rx.wait_for("/errors", 1, PATIENCE).await;
    assert_eq!(errors[0].json()["event_type"], "trace:errors");
    assert_eq!(metric_value(&errors[0].json()), "1");
    assert_eq!(errors[0].json()["workspace_id"], workspace);
    let cost = rx.wait_for("/cost", 1, PATIENCE).await;
    assert_eq!(cost[0].json()["event_type"], "trace:cost");
    assert_eq!(metric_value(&cost[0].json()), "0.7500", "0.5 + 0.25");
    assert_eq!(
        cost[0].json()["payload"]["metadata"][0]["project_names"],
        project
    );

    // The repeat was refused as a duplicate at commit time, before its 200: never counted.
    assert_eq!(trigger_value(&d, "errors").await, Some(1.0));
    assert_eq!(trigger_value(&d, "cost").await, Some(0.75));
    assert_eq!(
        metric(&d, "alertd_otlp_root_spans_total{outcome=\"duplicate\"}").await,
        Some(1.0)
    );
    assert_eq!(
        metric(&d, "alertd_otlp_root_spans_total{outcome=\"accepted\"}").await,
        Some(1.0)
    );
    assert_eq!(
        metric(&d, "alertd_otlp_spans_received_total").await,
        Some(6.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_protobuf_gzip_export_fires_errors_and_cost_and_a_repeat_counts_once() {
    let resource = Resource::builder_empty()
        .with_service_name("chatbot")
        .with_attribute(KeyValue::new("opik.project_name", "chatbot-prod"))
        .build();
    error_trace_fires_errors_and_cost_once(
        Protocol::HttpBinary,
        true,
        resource,
        &[],
        "default",
        "chatbot-prod",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_json_export_takes_project_and_workspace_from_headers_and_an_exception_error() {
    // No project attribute on the resource: the `projectName` header beats `service.name`.
    let resource = Resource::builder_empty()
        .with_service_name("rag-service")
        .build();
    error_trace_fires_errors_and_cost_once(
        Protocol::HttpJson,
        false,
        resource,
        &[("projectName", "rag-app"), ("Comet-Workspace", "team-a")],
        "team-a",
        "rag-app",
        true,
    )
    .await;
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn kv(key: &str, v: any_value::Value) -> PbKeyValue {
    PbKeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..PbKeyValue::default()
    }
}

/// A request of `traces` traces of `spans_per_trace` spans each, under one resource with
/// `opik.project_name = project`; every `error_every`th root is an ERROR and every child costs
/// `child_cost`. Trace ids start at `first_trace` so requests can be made distinct.
fn build_request(
    project: &str,
    first_trace: u64,
    traces: u64,
    spans_per_trace: u64,
    error_every: u64,
    child_cost: f64,
) -> ExportTraceServiceRequest {
    let end = now_nanos() - 1_000_000_000;
    let mut spans = Vec::new();
    for t in first_trace..first_trace + traces {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&0xa1e7_d000_0000_0000u64.to_be_bytes());
        trace_id[8..].copy_from_slice(&(t + 1).to_be_bytes());
        for s in 0..spans_per_trace {
            let root = s == 0;
            spans.push(Span {
                trace_id: trace_id.to_vec(),
                span_id: (t * 100 + s + 1).to_be_bytes().to_vec(),
                parent_span_id: if root {
                    vec![]
                } else {
                    (t * 100 + 1).to_be_bytes().to_vec()
                },
                name: if root { "workflow" } else { "llm" }.into(),
                start_time_unix_nano: end - 500_000_000,
                end_time_unix_nano: end,
                attributes: if root {
                    vec![]
                } else {
                    vec![kv(
                        "gen_ai.usage.cost",
                        any_value::Value::DoubleValue(child_cost),
                    )]
                },
                status: (root && t % error_every == 0).then(|| PbStatus {
                    code: status::StatusCode::Error as i32,
                    message: "boom".into(),
                }),
                ..Span::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(PbResource {
                attributes: vec![
                    kv("service.name", any_value::Value::StringValue("svc".into())),
                    kv(
                        "opik.project_name",
                        any_value::Value::StringValue(project.into()),
                    ),
                ],
                ..PbResource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// Two quiet alerts (never fire during a test) on errors and cost, whose values tests read.
const QUIET_ALERTS: &str = r#"
[engine]
tick = "200ms"
[[alert]]
id = "errors"
url = "http://127.0.0.1:9/unused"
[[alert.trigger]]
event = "trace:errors"
threshold = 1000000
window = "1h"
[[alert]]
id = "cost"
url = "http://127.0.0.1:9/unused"
[[alert.trigger]]
event = "trace:cost"
threshold = 1000000
window = "1h"
"#;

async fn post(
    d: &Daemon,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/traces", d.base))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        r = r.header("content-encoding", e);
    }
    r.send().await.expect("the daemon answers")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_of_ten_thousand_spans_maps_every_root_span() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), QUIET_ALERTS).await;
    // 2,000 traces of 5 spans; every 4th root an error; 4 children of 0.001 each.
    let req = build_request("bulk", 0, 2_000, 5, 4, 0.001);
    let body = req.encode_to_vec();
    let r = post(&d, "application/x-protobuf", None, body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/x-protobuf",
        "the answer is in the request's encoding"
    );
    let answer = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.partial_success, None, "every root span mapped");
    wait_value(&d, "errors", 500.0).await;
    wait_value(&d, "cost", 8.0).await;
    assert_eq!(
        metric(&d, "alertd_otlp_spans_received_total").await,
        Some(10_000.0)
    );
    assert_eq!(
        metric(&d, "alertd_otlp_root_spans_total{outcome=\"accepted\"}").await,
        Some(2_000.0)
    );
}

/// Small limits so hostile bodies stay cheap to build.
const SMALL_BODY: &[(&str, &str)] = &[("ALERTD_SERVER__MAX_BODY", "1MiB")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_the_otlp_answers_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with_env(dir.path(), QUIET_ALERTS, SMALL_BODY).await;

    // Junk protobuf: 400 with a protobuf google.rpc.Status.
    let r = post(
        &d,
        "application/x-protobuf",
        None,
        b"\x0a\xff\xff\xff\xff\x0fjunk".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let s = RpcStatus::decode(r.bytes().await.unwrap()).expect("a protobuf Status");
    assert_eq!(s.code, 3);
    assert!(s.message.contains("protobuf"), "{}", s.message);

    // Junk JSON, and JSON that is not OTLP: 400 with a JSON Status.
    for body in [
        &b"{\"resourceSpans\": ["[..],
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"not hex"}]}]}]}"#,
    ] {
        let r = post(&d, "application/json", None, body.to_vec()).await;
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.expect("a JSON Status");
        assert_eq!(v["code"], 3, "{v}");
        assert!(v["message"].as_str().unwrap().contains("JSON"), "{v}");
    }

    // A gzip header on a body that is not gzip: 400.
    let valid = build_request("p", 0, 1, 1, 1, 0.0).encode_to_vec();
    let r = post(&d, "application/x-protobuf", Some("gzip"), valid.clone()).await;
    assert_eq!(r.status(), 400);

    // Another content type or content encoding: 415.
    let r = post(&d, "text/plain", None, valid.clone()).await;
    assert_eq!(r.status(), 415);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("application/x-protobuf"),
        "{v}"
    );
    let r = post(&d, "application/x-protobuf", Some("br"), valid.clone()).await;
    assert_eq!(r.status(), 415);

    // Over max_body as sent: 413 with a Status naming the setting.
    let big = build_request("p", 0, 10_000, 2, 1, 0.0).encode_to_vec();
    assert!(big.len() > 1024 * 1024, "{} bytes", big.len());
    let r = post(&d, "application/x-protobuf", None, big.clone()).await;
    assert_eq!(r.status(), 413);
    let s = RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
    assert!(s.message.contains("server.max_body"), "{}", s.message);
    // Within max_body compressed, over it inflated: 413 too.
    let packed = gzip(&big);
    assert!(packed.len() < 1024 * 1024);
    let r = post(&d, "application/x-protobuf", Some("gzip"), packed).await;
    assert_eq!(r.status(), 413);

    // None of that stored anything; a valid request then counts alone. Its root with an
    // all-zero trace id is rejected through partial_success.
    let mut req = build_request("p", 0, 2, 1, 1, 0.0);
    req.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![0; 16];
    let r = post(
        &d,
        "application/json",
        None,
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], 1, "{v}");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("all zeros"),
        "{v}"
    );
    wait_value(&d, "errors", 1.0).await;
    assert_eq!(
        metric(&d, "alertd_otlp_root_spans_total{outcome=\"rejected\"}").await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &d,
            "alertd_otlp_requests_total{encoding=\"protobuf\",outcome=\"too_large\"}"
        )
        .await,
        Some(2.0)
    );
}

/// Peak resident memory of a process so far (`VmHWM`), in KiB: a bomb inflated and freed
/// between two samples of the current RSS would go unseen, its peak does not.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_413_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with_env(dir.path(), QUIET_ALERTS, SMALL_BODY).await;
    // 512 gzip members of 1 MiB of zeros each: about 0.5 MiB on the wire, 512 MiB inflated.
    let member = gzip(&vec![0u8; 1024 * 1024]);
    let bomb: Vec<u8> = member.repeat(512);
    assert!(bomb.len() < 1024 * 1024, "{} bytes", bomb.len());

    let send = |n: usize| {
        let d = &d;
        let bomb = &bomb;
        async move {
            for _ in 0..n {
                let r = post(d, "application/x-protobuf", Some("gzip"), bomb.clone()).await;
                assert_eq!(r.status(), 413);
                let s = RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
                assert!(
                    s.message.contains("inflates past server.max_body"),
                    "{}",
                    s.message
                );
            }
        }
    };
    // Warm up with a real gzip export, then take the peak so far as the baseline.
    let r = post(
        &d,
        "application/x-protobuf",
        Some("gzip"),
        gzip(&build_request("p", 0, 1, 1, 1, 0.0).encode_to_vec()),
    )
    .await;
    assert_eq!(r.status(), 200, "a real gzip export works");
    let before = peak_rss_kib(d.pid());
    send(20).await;
    let after = peak_rss_kib(d.pid());
    eprintln!("VmHWM {before} KiB before, {after} KiB after 20 bombs (each 512 MiB inflated)");
    assert!(
        after <= before + 32 * 1024,
        "peak resident memory grew from {before} KiB to {after} KiB: a bomb was inflated"
    );
    wait_value(&d, "errors", 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_queue_answers_503_with_retry_after_and_keeps_nothing_it_refused() {
    let dir = tempfile::tempdir().unwrap();
    // One queued event is the limit: any request arriving while another waits for its commit
    // is refused.
    let d = Daemon::start_with_env(
        dir.path(),
        QUIET_ALERTS,
        &[("ALERTD_INGEST__MAX_QUEUED_EVENTS", "1")],
    )
    .await;
    let accepted_traces = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (client, url) = (client.clone(), format!("{}/v1/traces", d.base));
        let (accepted_traces, refused) = (accepted_traces.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..30u64 {
                // 100 error traces per request, every request's ids distinct.
                let req = build_request("p", (t * 30 + i) * 100, 100, 1, 1, 0.0);
                let r = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(req.encode_to_vec())
                    .send()
                    .await
                    .expect("the daemon answers");
                match r.status().as_u16() {
                    200 => {
                        accepted_traces.fetch_add(100, Ordering::Relaxed);
                    }
                    503 => {
                        assert_eq!(r.headers()["retry-after"], "1");
                        let s = RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
                        assert_eq!(s.code, 14, "UNAVAILABLE");
                        assert!(s.message.contains("queue is full"), "{}", s.message);
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected status {other}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (accepted, refused) = (
        accepted_traces.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    eprintln!("{accepted} traces accepted, {refused} requests refused with 503");
    assert!(
        refused > 0,
        "8 concurrent exporters never found the queue full"
    );
    assert!(accepted > 0, "the queue never let anything through");
    wait_value(&d, "errors", accepted as f64).await;
}
