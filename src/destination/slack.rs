//! Slack incoming-webhook body (Block Kit), laid out the way Slack users read alerts.
//!
//! The body is `{"text": …, "blocks": […]}`:
//!
//! 1. `text`: a plain one-line summary. Slack shows it in notifications and mobile previews,
//!    where blocks are not rendered.
//! 2. A `header` block with the alert name, cut to 150 characters (Slack rejects longer headers).
//! 3. A section `*N* new <Label> event(s) happened`, N being the true event count.
//! 4. A details section: the metric as bullets for threshold types, one line per item for
//!    per-event types. Slack rejects a section over 3,000 characters, so lines are added in order
//!    while the text stays within [`DETAILS_BUDGET`] (2,950), leaving room for the fallback's
//!    pointer to the list view.
//! 5. A fallback section, only when something is not shown: it says how many lines were cut (and
//!    how many events the engine's `max_events_per_message` cap kept out of the message) and
//!    links to the list view.
//!
//! Links appear only when the alert's `base_url` is set. Paths follow the Opik UI, whose alert
//! semantics alertd mirrors, so `base_url` can point straight at an Opik deployment. Every id or
//! name placed in a path is percent-encoded; `{ws}` is the alert's workspace.
//!
//! | link | path |
//! |---|---|
//! | prompt (created) | `{base_url}/{ws}/prompts/{prompt id}` |
//! | prompt version (committed) | `{base_url}/{ws}/prompts/{prompt_id}?activeVersionId={version id}` |
//! | trace of a failed guardrail | `{base_url}/{ws}/projects/{project_id, else project name}/traces?trace={trace_id}` |
//! | experiment | `{base_url}/{ws}/experiments/{dataset_id}/compare?experiments=%5B%22{id}%22%5D` |
//! | list views (fallback, threshold metrics) | `{base_url}/{ws}/prompts`, `…/projects`, `…/experiments` |
//!
//! Deleted prompts are listed by name and id without links: their pages are gone.
//!
//! The wording helpers ([`label`], [`window_words`], [`summary`], [`list_url`]) are public because
//! the PagerDuty formatter uses the same words, so one alert reads the same in both places.

use crate::config::AlertSpec;
use crate::event::EventType;
use crate::notification::{format_number, MetricSnapshot, Notification, NotificationState};
use serde_json::{json, Value};

/// Slack's limit on header text.
pub const HEADER_LIMIT: usize = 150;
/// Slack's limit on a section's text.
pub const SECTION_LIMIT: usize = 3000;
/// The details text stops growing at this length, below [`SECTION_LIMIT`] for safety.
pub const DETAILS_BUDGET: usize = 2950;
/// Names and ids are shown at most this long, so one odd object cannot crowd out the others.
const SHOWN_LIMIT: usize = 100;
/// A project scope longer than this is cut: it is one line and must not crowd out the metric.
const SCOPE_LIMIT: usize = 1000;

/// The Slack body for `n`.
pub fn body(n: &Notification, alert: &AlertSpec) -> String {
    let ui = ui_base(&alert.base_url, &n.workspace);
    let details = match &n.metric {
        Some(m) => threshold_details(n.event_type, n.state, m, ui.as_deref()),
        None => item_details(n, ui.as_deref()),
    };
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&n.alert_name, HEADER_LIMIT), "emoji": true}}),
        section(&headline(n)),
        section(&details.text),
    ];
    if let Some(f) = details.fallback {
        blocks.push(section(&f));
    }
    json!({"text": escape(&summary(n)), "blocks": blocks}).to_string()
}

/// The human label of an event type, as Slack and PagerDuty messages show it.
pub fn label(t: EventType) -> &'static str {
    match t {
        EventType::PromptCreated => "Prompt Created",
        EventType::PromptCommitted => "Prompt Committed",
        EventType::PromptDeleted => "Prompt Deleted",
        EventType::ExperimentFinished => "Experiment Finished",
        EventType::GuardrailsTriggered => "Guardrail Triggered",
        EventType::TraceErrors => "Trace Error Alert",
        EventType::TraceFeedbackScore => "Trace Feedback Score",
        EventType::ThreadFeedbackScore => "Thread Feedback Score",
        EventType::TraceCost => "Cost Alert",
        EventType::TraceLatency => "Latency Alert",
    }
}

/// A window length in words: `3600` → "1 hour", `5400` → "1 hour 30 minutes".
pub fn window_words(seconds: u64) -> String {
    if seconds == 0 {
        return "0 seconds".into();
    }
    let mut rest = seconds;
    let mut parts = Vec::new();
    for (size, unit) in [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ] {
        let k = rest / size;
        if k > 0 {
            parts.push(format!("{k} {unit}{}", if k == 1 { "" } else { "s" }));
            rest -= k * size;
        }
    }
    parts.join(" ")
}

/// A metric number with its unit: `$` before a cost, ` s` after a latency.
pub fn metric_value(t: EventType, v: f64) -> String {
    match t {
        EventType::TraceCost => format!("${}", format_number(v)),
        EventType::TraceLatency => format!("{} s", format_number(v)),
        _ => format_number(v),
    }
}

/// The project scope in words: "Workspace-wide" or the configured projects.
pub fn scope(m: &MetricSnapshot) -> String {
    if m.projects.is_empty() {
        "Workspace-wide".into()
    } else {
        clip(&m.projects.join(", "), SCOPE_LIMIT)
    }
}

/// A plain one-line summary (no markup), e.g.
/// `Prod cost: Cost Alert firing: $150.7500 > $100 over 1 hour (chatbot-prod)`.
pub fn summary(n: &Notification) -> String {
    let label = label(n.event_type);
    let Some(m) = &n.metric else {
        return format!("{}: {}", n.alert_name, headline(n).replace('*', ""));
    };
    let score = m
        .score
        .as_deref()
        .map(|s| format!("{s} "))
        .unwrap_or_default();
    let threshold = format!(
        "{} {}",
        m.operator.symbol(),
        metric_value(n.event_type, m.threshold)
    );
    let window = window_words(m.window_seconds);
    match n.state {
        NotificationState::Firing => format!(
            "{}: {label} firing: {score}{} {threshold} over {window} ({})",
            n.alert_name,
            m.value
                .map(|v| metric_value(n.event_type, v))
                .unwrap_or_else(|| "no data".into()),
            scope(m)
        ),
        NotificationState::Resolved => format!(
            "{}: {label} resolved: {score}{} (threshold {threshold} over {window}, {})",
            n.alert_name,
            m.value
                .map(|v| metric_value(n.event_type, v))
                .unwrap_or_else(|| "no data".into()),
            scope(m)
        ),
    }
}

/// The UI root of a workspace, `{base_url}/{workspace}`, or `None` when links are off.
pub fn ui_base(base_url: &str, workspace: &str) -> Option<String> {
    let base = base_url.trim_end_matches('/');
    (!base.is_empty()).then(|| format!("{base}/{}", encode(workspace)))
}

/// The UI list view where the events of `n` can be browsed, when `base_url` is set.
pub fn list_url(n: &Notification, base_url: &str) -> Option<String> {
    ui_base(base_url, &n.workspace).map(|ui| format!("{ui}/{}", list_path(n.event_type)))
}

/// The list view of an event type's objects (`prompts`, `projects` or `experiments`), relative to
/// the workspace's UI root.
pub fn list_path(t: EventType) -> &'static str {
    match t {
        EventType::PromptCreated | EventType::PromptCommitted | EventType::PromptDeleted => {
            "prompts"
        }
        EventType::ExperimentFinished => "experiments",
        _ => "projects",
    }
}

/// `*N* new <Label> event(s) happened`, plural only when N ≠ 1.
fn headline(n: &Notification) -> String {
    format!(
        "*{}* new {} event{} happened",
        n.event_count,
        label(n.event_type),
        if n.event_count == 1 { "" } else { "s" }
    )
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// The details text and, when something was left out, the fallback text.
struct Details {
    text: String,
    fallback: Option<String>,
}

fn threshold_details(
    t: EventType,
    state: NotificationState,
    m: &MetricSnapshot,
    ui: Option<&str>,
) -> Details {
    let status = match state {
        NotificationState::Firing => "Firing",
        NotificationState::Resolved => "Resolved",
    };
    let value = m
        .value
        .map(|v| metric_value(t, v))
        .unwrap_or_else(|| "no data in the window".into());
    let mut lines = vec![
        format!("• *Current value:* {value}"),
        format!(
            "• *Threshold:* {} {}",
            escape(m.operator.symbol()),
            metric_value(t, m.threshold)
        ),
        format!("• *Time window:* {}", window_words(m.window_seconds)),
    ];
    if let Some(s) = &m.score {
        lines.push(format!("• *Score:* {}", escape(&clip(s, SHOWN_LIMIT))));
    }
    lines.push(format!("• *Scope:* {}", escape(&scope(m))));
    if let Some(ui) = ui {
        lines.push(format!("<{ui}/{}|View projects>", list_path(t)));
    }
    let (text, omitted) = fit(&format!("*Status:* {status}"), &lines);
    Details {
        text,
        fallback: (omitted > 0).then(|| format!("*{omitted}* more detail lines not shown.")),
    }
}

/// What a per-event type lists, and how its lines are named.
struct ItemKind {
    title: &'static str,
    one: &'static str,
    many: &'static str,
}

fn item_kind(t: EventType) -> ItemKind {
    let (title, one, many) = match t {
        EventType::PromptCreated => ("*Prompts created:*", "prompt", "prompts"),
        EventType::PromptCommitted => (
            "*Prompt versions committed:*",
            "prompt version",
            "prompt versions",
        ),
        EventType::PromptDeleted => ("*Prompts deleted:*", "deleted prompt", "deleted prompts"),
        EventType::ExperimentFinished => ("*Experiments finished:*", "experiment", "experiments"),
        _ => ("*Traces with failed guardrails:*", "trace", "traces"),
    };
    ItemKind { title, one, many }
}

fn item_details(n: &Notification, ui: Option<&str>) -> Details {
    let items: Vec<Value> = n
        .items
        .iter()
        .map(|s| serde_json::from_str(s).unwrap_or(Value::Null))
        .collect();
    let lines = match n.event_type {
        EventType::PromptCreated => items.iter().map(|p| prompt_line(p, ui)).collect(),
        EventType::PromptCommitted => items.iter().map(|v| version_line(v, ui)).collect(),
        EventType::PromptDeleted => flatten(&items).map(deleted_line).collect(),
        EventType::ExperimentFinished => flatten(&items).map(|e| experiment_line(e, ui)).collect(),
        _ => guardrail_lines(&items, ui),
    };
    let kind = item_kind(n.event_type);
    let (text, omitted) = if lines.is_empty() {
        (format!("{}\nNo details were recorded.", kind.title), 0)
    } else {
        fit(kind.title, &lines)
    };
    let capped = n.event_count.saturating_sub(n.items.len() as u64);
    let mut notes = Vec::new();
    if omitted > 0 {
        let unit = if omitted == 1 { kind.one } else { kind.many };
        notes.push(format!("*{omitted}* more {unit} not shown."));
    }
    if capped > 0 {
        notes.push(format!(
            "*{capped}* more event{} not included in this message.",
            if capped == 1 { " was" } else { "s were" }
        ));
    }
    if !notes.is_empty() {
        if let Some(ui) = ui {
            let list = list_path(n.event_type);
            notes.push(format!("<{ui}/{list}|View all {list}>"));
        }
    }
    Details {
        text,
        fallback: (!notes.is_empty()).then(|| notes.join(" ")),
    }
}

/// Items that are arrays (deleted prompts, finished experiments) contribute each element.
fn flatten(items: &[Value]) -> impl Iterator<Item = &Value> {
    items.iter().flat_map(|v| match v {
        Value::Array(a) => a.iter().collect::<Vec<_>>(),
        other => vec![other],
    })
}

/// A string field, or a number field shown as text (ids may be either).
fn field(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn view(url: Option<String>) -> String {
    url.map(|u| format!(" | <{u}|View>")).unwrap_or_default()
}

fn named(kind: &str, v: &Value) -> String {
    let id = field(v, "id").map(|i| code(&i));
    match (field(v, "name"), id) {
        (Some(name), Some(id)) => format!("{kind} *{}* ({id})", escape(&clip(&name, SHOWN_LIMIT))),
        (Some(name), None) => format!("{kind} *{}*", escape(&clip(&name, SHOWN_LIMIT))),
        (None, Some(id)) => format!("{kind} {id}"),
        (None, None) => format!("{kind} (no id)"),
    }
}

fn prompt_line(p: &Value, ui: Option<&str>) -> String {
    let url = ui
        .zip(field(p, "id"))
        .map(|(ui, id)| format!("{ui}/prompts/{}", encode(&id)));
    format!("• {}{}", named("Prompt", p), view(url))
}

fn version_line(v: &Value, ui: Option<&str>) -> String {
    let prompt = field(v, "prompt_id");
    let version = field(v, "commit").or_else(|| field(v, "id"));
    let url = match (ui, &prompt, field(v, "id")) {
        (Some(ui), Some(p), Some(id)) => Some(format!(
            "{ui}/prompts/{}?activeVersionId={}",
            encode(p),
            encode(&id)
        )),
        _ => None,
    };
    format!(
        "• Prompt {} version {}{}",
        prompt.map(|p| code(&p)).unwrap_or_else(|| "(no id)".into()),
        version
            .map(|c| code(&c))
            .unwrap_or_else(|| "(no id)".into()),
        view(url)
    )
}

fn deleted_line(p: &Value) -> String {
    format!("• {}", named("Prompt", p))
}

fn experiment_line(e: &Value, ui: Option<&str>) -> String {
    let url = match (ui, field(e, "dataset_id"), field(e, "id")) {
        (Some(ui), Some(ds), Some(id)) => Some(format!(
            "{ui}/experiments/{}/compare?experiments=%5B%22{}%22%5D",
            encode(&ds),
            encode(&id)
        )),
        _ => None,
    };
    format!("• {}{}", named("Experiment", e), view(url))
}

/// One line per trace: several guardrails failing on one trace make one line naming them all.
fn guardrail_lines(items: &[Value], ui: Option<&str>) -> Vec<String> {
    struct Trace {
        id: Option<String>,
        project_id: Option<String>,
        project_name: Option<String>,
        guardrails: Vec<String>,
    }
    let mut traces: Vec<Trace> = Vec::new();
    for g in items {
        let id = field(g, "trace_id");
        let project_id = field(g, "project_id");
        let project_name = field(g, "project_name");
        let name = field(g, "name").unwrap_or_else(|| "unnamed".into());
        let same = traces.iter_mut().find(|t| {
            id.is_some()
                && t.id == id
                && t.project_id == project_id
                && t.project_name == project_name
        });
        match same {
            Some(t) if !t.guardrails.contains(&name) => t.guardrails.push(name),
            Some(_) => {}
            None => traces.push(Trace {
                id,
                project_id,
                project_name,
                guardrails: vec![name],
            }),
        }
    }
    traces
        .into_iter()
        .map(|t| {
            let names: Vec<String> = t
                .guardrails
                .iter()
                .map(|g| format!("*{}*", escape(&clip(g, SHOWN_LIMIT))))
                .collect();
            let project = t.project_id.as_ref().or(t.project_name.as_ref());
            let url = match (ui, project, &t.id) {
                (Some(ui), Some(p), Some(id)) => Some(format!(
                    "{ui}/projects/{}/traces?trace={}",
                    encode(p),
                    encode(id)
                )),
                _ => None,
            };
            let trace =
                t.id.as_deref()
                    .map(code)
                    .unwrap_or_else(|| "(no trace id)".into());
            let place = t
                .project_name
                .as_ref()
                .or(t.project_id.as_ref())
                .map(|p| format!(" in *{}*", escape(&clip(p, SHOWN_LIMIT))))
                .unwrap_or_default();
            format!(
                "• Trace {trace}{place}: {} failed{}",
                names.join(", "),
                view(url)
            )
        })
        .collect()
}

/// `title` then as many of `lines` as fit within [`DETAILS_BUDGET`] characters, in order;
/// returns the text and how many lines were left out.
fn fit(title: &str, lines: &[String]) -> (String, usize) {
    let mut text = title.to_string();
    let mut len = text.chars().count();
    for (i, line) in lines.iter().enumerate() {
        let add = 1 + line.chars().count();
        if len + add > DETAILS_BUDGET {
            return (text, lines.len() - i);
        }
        text.push('\n');
        text.push_str(line);
        len += add;
    }
    (text, 0)
}

/// The first `max` characters of `s`, with `…` in place of the last one when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An id as inline code; a backtick inside would end the code span early.
fn code(s: &str) -> String {
    format!("`{}`", escape(&clip(&s.replace('`', "'"), SHOWN_LIMIT)))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a path segment or query
/// value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Operator};
    use std::path::Path;

    fn alert(base_url: &str) -> AlertSpec {
        let text = format!(
            "[[alert]]\nid = \"a\"\nname = \"Watch\"\ndestination = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/X\"\nbase_url = \"{base_url}\"\n[[alert.trigger]]\nevent = \"prompt:created\"\n"
        );
        let cfg = Config::from_toml(Path::new("test.toml"), &text, false).expect("valid config");
        (*cfg.alerts[0]).clone()
    }

    fn per_event(t: EventType, items: Vec<String>) -> Notification {
        Notification {
            id: "n1".into(),
            alert_id: "a".into(),
            alert_name: "Watch".into(),
            workspace: "default".into(),
            event_type: t,
            state: NotificationState::Firing,
            created_ms: 1_000,
            episode_start_ms: 1_000,
            event_ids: (0..items.len()).map(|i| format!("e{i}")).collect(),
            user_names: vec!["system".into()],
            event_count: items.len() as u64,
            metric: None,
            items,
        }
    }

    fn threshold(t: EventType, value: Option<f64>, threshold: f64) -> Notification {
        let mut n = per_event(t, vec![]);
        n.event_count = 1;
        n.metric = Some(MetricSnapshot {
            value,
            threshold,
            operator: Operator::Above,
            window_seconds: 3600,
            score: None,
            projects: vec![],
        });
        n
    }

    fn prompts(k: usize) -> Vec<String> {
        (0..k)
            .map(|i| format!(r#"{{"id":"0193a000-0000-7000-8000-{i:012}","name":"prompt-{i}"}}"#))
            .collect()
    }

    fn blocks(n: &Notification, base_url: &str) -> (Value, Vec<Value>) {
        let v: Value = serde_json::from_str(&body(n, &alert(base_url))).expect("JSON body");
        let b = v["blocks"].as_array().expect("blocks").clone();
        (v, b)
    }

    fn texts(b: &[Value]) -> Vec<String> {
        b.iter()
            .map(|x| x["text"]["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn header_carries_the_alert_name_cut_to_150_chars() {
        let mut n = per_event(EventType::PromptCreated, prompts(1));
        n.alert_name = "x".repeat(400);
        let (_, b) = blocks(&n, "");
        assert_eq!(b[0]["type"], "header");
        assert_eq!(b[0]["text"]["type"], "plain_text");
        assert_eq!(texts(&b)[0].chars().count(), HEADER_LIMIT);
    }

    #[test]
    fn headline_is_plural_only_when_count_is_not_one() {
        let (_, b) = blocks(&per_event(EventType::PromptCreated, prompts(1)), "");
        assert_eq!(texts(&b)[1], "*1* new Prompt Created event happened");
        let (_, b) = blocks(&per_event(EventType::PromptCreated, prompts(2)), "");
        assert_eq!(texts(&b)[1], "*2* new Prompt Created events happened");
    }

    #[test]
    fn every_type_has_its_label() {
        let labels: Vec<&str> = EventType::ALL.iter().map(|t| label(*t)).collect();
        assert_eq!(
            labels,
            [
                "Trace Error Alert",
                "Cost Alert",
                "Latency Alert",
                "Trace Feedback Score",
                "Thread Feedback Score",
                "Guardrail Triggered",
                "Prompt Created",
                "Prompt Committed",
                "Prompt Deleted",
                "Experiment Finished"
            ]
        );
    }

    #[test]
    fn windows_read_as_words() {
        assert_eq!(window_words(3600), "1 hour");
        assert_eq!(window_words(300), "5 minutes");
        assert_eq!(window_words(1), "1 second");
        assert_eq!(window_words(5400), "1 hour 30 minutes");
        assert_eq!(window_words(2 * 86_400), "2 days");
    }

    #[test]
    fn cost_is_in_dollars_and_latency_in_seconds() {
        let (_, b) = blocks(&threshold(EventType::TraceCost, Some(150.75), 100.0), "");
        let d = &texts(&b)[2];
        assert!(d.contains("• *Current value:* $150.7500"), "{d}");
        assert!(d.contains("• *Threshold:* &gt; $100"), "{d}");
        assert!(d.contains("• *Time window:* 1 hour"), "{d}");
        assert!(d.contains("• *Scope:* Workspace-wide"), "{d}");
        let (_, b) = blocks(&threshold(EventType::TraceLatency, Some(2.5), 2.0), "");
        let d = &texts(&b)[2];
        assert!(d.contains("• *Current value:* 2.5000 s"), "{d}");
        assert!(d.contains("• *Threshold:* &gt; 2 s"), "{d}");
    }

    #[test]
    fn feedback_details_name_the_score_operator_and_projects() {
        let mut n = threshold(EventType::TraceFeedbackScore, Some(0.25), 0.5);
        let m = n.metric.as_mut().unwrap();
        m.operator = Operator::Below;
        m.score = Some("hallucination".into());
        m.projects = vec!["chatbot-prod".into(), "search".into()];
        let (v, b) = blocks(&n, "");
        let d = &texts(&b)[2];
        assert!(d.starts_with("*Status:* Firing"), "{d}");
        assert!(d.contains("• *Threshold:* &lt; 0.5000"), "{d}");
        assert!(d.contains("• *Score:* hallucination"), "{d}");
        assert!(d.contains("• *Scope:* chatbot-prod, search"), "{d}");
        assert_eq!(
            v["text"],
            "Watch: Trace Feedback Score firing: hallucination 0.2500 &lt; 0.5000 over 1 hour (chatbot-prod, search)",
            "the text is mrkdwn too, so < is escaped"
        );
    }

    #[test]
    fn resolve_says_resolved() {
        let mut n = threshold(EventType::TraceErrors, None, 10.0);
        n.state = NotificationState::Resolved;
        let (v, b) = blocks(&n, "");
        let d = &texts(&b)[2];
        assert!(d.starts_with("*Status:* Resolved"), "{d}");
        assert!(d.contains("no data in the window"), "{d}");
        assert!(v["text"].as_str().unwrap().contains("resolved"));
    }

    #[test]
    fn five_hundred_prompts_fit_in_3000_chars_with_a_fallback() {
        let n = per_event(EventType::PromptCreated, prompts(500));
        let (_, b) = blocks(&n, "https://opik.example.com");
        assert_eq!(b.len(), 4, "header, headline, details, fallback");
        let t = texts(&b);
        let details = &t[2];
        assert!(details.chars().count() <= SECTION_LIMIT);
        assert!(details.chars().count() <= DETAILS_BUDGET);
        let shown = details.lines().count() - 1;
        assert!(shown > 10, "lines are added while they fit: {shown}");
        assert!(
            details.chars().count() + 1 + details.lines().nth(1).unwrap().chars().count()
                > DETAILS_BUDGET,
            "one more line would not have fit"
        );
        assert_eq!(
            t[3],
            format!(
                "*{}* more prompts not shown. <https://opik.example.com/default/prompts|View all prompts>",
                500 - shown
            )
        );
    }

    #[test]
    fn no_fallback_when_everything_fits() {
        let (_, b) = blocks(&per_event(EventType::PromptCreated, prompts(3)), "");
        assert_eq!(b.len(), 3);
        assert_eq!(texts(&b)[2].lines().count(), 4);
    }

    #[test]
    fn events_beyond_the_message_cap_are_reported() {
        let mut n = per_event(EventType::PromptCreated, prompts(2));
        n.event_count = 5;
        let (_, b) = blocks(&n, "");
        assert_eq!(texts(&b)[1], "*5* new Prompt Created events happened");
        assert_eq!(
            texts(&b)[3],
            "*3* more events were not included in this message."
        );
    }

    #[test]
    fn links_are_built_from_base_url_and_absent_without_it() {
        let n = per_event(EventType::PromptCreated, prompts(1));
        let (_, b) = blocks(&n, "https://opik.example.com/");
        assert!(texts(&b)[2].contains(
            "<https://opik.example.com/default/prompts/0193a000-0000-7000-8000-000000000000|View>"
        ));
        let (_, b) = blocks(&n, "");
        assert!(!texts(&b)[2].contains('<'), "{}", texts(&b)[2]);
    }

    #[test]
    fn failed_guardrails_on_one_trace_make_one_line() {
        let g = |name: &str, trace: &str| {
            format!(
                r#"{{"trace_id":"{trace}","name":"{name}","result":"failed","details":null,"project_name":"bot","project_id":null}}"#
            )
        };
        let n = per_event(
            EventType::GuardrailsTriggered,
            vec![
                g("pii", "t1"),
                g("toxicity", "t1"),
                g("pii", "t2"),
                g("pii", "t1"),
            ],
        );
        let (_, b) = blocks(&n, "https://ui");
        let d = &texts(&b)[2];
        assert_eq!(
            d,
            "*Traces with failed guardrails:*\n\
             • Trace `t1` in *bot*: *pii*, *toxicity* failed | <https://ui/default/projects/bot/traces?trace=t1|View>\n\
             • Trace `t2` in *bot*: *pii* failed | <https://ui/default/projects/bot/traces?trace=t2|View>"
        );
        assert_eq!(texts(&b)[1], "*4* new Guardrail Triggered events happened");
    }

    #[test]
    fn user_text_is_escaped_and_ids_percent_encoded() {
        let n = per_event(
            EventType::PromptCreated,
            vec![r#"{"id":"a/b c","name":"<b>&co"}"#.into()],
        );
        let (_, b) = blocks(&n, "https://ui");
        assert_eq!(
            texts(&b)[2],
            "*Prompts created:*\n• Prompt *&lt;b&gt;&amp;co* (`a/b c`) | <https://ui/default/prompts/a%2Fb%20c|View>"
        );
    }
}
