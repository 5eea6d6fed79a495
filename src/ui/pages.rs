//! The console's pages: pure functions from [`super::model`] values to HTML (maud).
//!
//! maud rather than askama: a page is a Rust function, so the compiler checks every value a
//! page uses, its type and its escaping (everything interpolated is HTML-escaped unless wrapped
//! in `PreEscaped`, which this module uses only for fixed strings); pieces compose by calling
//! functions, not by template inheritance; and there are no template files to find at run time
//! or to keep in step with the structs. Golden files in `tests/golden/ui/` pin the output.
//!
//! The stable hooks of DESIGN §13 are written here and nowhere else: `data-alert-id` and
//! `data-firing` on each alert row, `data-action="test"` and `data-test-result`,
//! `data-form="silence"` with inputs `duration` and `comment`, `data-action="retry"` and
//! `data-sparkline`.

use super::assets;
use super::model::{AlertRow, DeliveryRow, SilenceRow, Status, TestOutcome, TriggerRow};
use super::widgets::{self, alert_badge, sep, time_el, Badge};
use crate::event::EventType;
use crate::silence::SilenceState;
use maud::{html, Markup, DOCTYPE};

/// What every page needs besides its own content.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The time the page is rendered at: relative times count from it.
    pub now_ms: i64,
    /// The session's CSRF token, put in every form.
    pub csrf: String,
    /// Show "Log out" (a token is configured).
    pub logout: bool,
    /// Seconds between refreshes; `None` on a page that must not reload (a form with an error).
    pub refresh: Option<u32>,
}

/// Which section of the console a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Alerts,
    Deliveries,
    Silences,
    /// The login page: no navigation.
    Login,
    /// Error pages: navigation, nothing current.
    Other,
}

fn layout(c: &Chrome, nav: Nav, title: &str, main: Markup) -> Markup {
    let link = |target: Nav, href: &str, label: &str| {
        html! {
            @if nav == target { a href=(href) aria-current="page" { (label) } }
            @else { a href=(href) { (label) } }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · alertd" }
                link rel="stylesheet" href=(assets::CSS_HREF);
                link rel="icon" href=(assets::ICON_HREF) type="image/svg+xml";
                @if let Some(secs) = c.refresh {
                    script src=(assets::JS_HREF) defer {}
                    noscript { meta http-equiv="refresh" content=(secs); }
                }
            }
            body data-refresh=[c.refresh] {
                header.top {
                    a.brand href="/ui/alerts" {
                        img src=(assets::ICON_HREF) alt="" width="20" height="20";
                        " alertd"
                    }
                    @if nav != Nav::Login {
                        nav aria-label="Sections" {
                            (link(Nav::Alerts, "/ui/alerts", "Alerts"))
                            (link(Nav::Deliveries, "/ui/deliveries", "Deliveries"))
                            (link(Nav::Silences, "/ui/silences", "Silences"))
                        }
                    }
                    @if c.logout && nav != Nav::Login {
                        form.logout method="post" action="/ui/logout" {
                            (csrf(c))
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main { (main) }
                footer {
                    "Rendered " (time_el(c.now_ms, c.now_ms))
                    @if let Some(secs) = c.refresh { (sep()) "refreshes every " (secs) " s" }
                    (sep()) "alertd " (env!("CARGO_PKG_VERSION"))
                }
            }
        }
    }
}

fn csrf(c: &Chrome) -> Markup {
    html! { input type="hidden" name="csrf" value=(c.csrf); }
}

/// `12 > 10 over 5m`, or what a per-event trigger is waiting with.
fn trigger_summary(t: &TriggerRow) -> Markup {
    html! {
        @if let Some(rule) = &t.rule {
            span.value { @match t.value { Some(v) => (widgets::number(v)), None => "no data" } }
            " "
            span.rule {
                (rule.operator) " " (widgets::number(rule.value))
                " over " (widgets::duration(rule.window))
            }
        } @else {
            span.value { (t.waiting.unwrap_or(0)) }
            " "
            span.rule { "waiting to be sent" }
        }
    }
}

fn trigger_label(t: &TriggerRow) -> String {
    match t.rule.as_ref().and_then(|r| r.score.as_deref()) {
        Some(score) => format!("{} ({score})", t.event),
        None => t.event.to_string(),
    }
}

fn spark(t: &TriggerRow, size: widgets::SparkSize) -> Option<Markup> {
    let rule = t.rule.as_ref()?;
    let label = format!(
        "{} over the last {}: {} (fires when {} {})",
        trigger_label(t),
        widgets::duration(rule.window),
        t.value
            .map(widgets::number)
            .unwrap_or_else(|| "no data".into()),
        rule.operator,
        widgets::number(rule.value)
    );
    Some(widgets::sparkline(
        &t.series, rule.value, t.firing, size, &label,
    ))
}

fn status_cell(c: &Chrome, a: &AlertRow) -> Markup {
    html! {
        (alert_badge(a.run, a.firing()).render())
        @if let Some(until) = a.silenced_until_ms {
            " " (Badge::Silenced.render())
            div.sub { "until " (time_el(c.now_ms, until)) }
        }
        @if let Some(since) = a.firing_since_ms {
            div.sub { "firing since " (time_el(c.now_ms, since)) }
        }
    }
}

/// `/ui/alerts`: every configured alert, firing ones first.
pub fn alerts_page(c: &Chrome, alerts: &[AlertRow]) -> Markup {
    let firing = alerts.iter().filter(|a| a.firing()).count();
    let silenced = alerts
        .iter()
        .filter(|a| a.silenced_until_ms.is_some())
        .count();
    let mut order: Vec<&AlertRow> = alerts.iter().collect();
    order.sort_by_key(|a| {
        (
            !a.firing(),
            a.run != crate::alert::supervisor::RunState::Failed,
        )
    });
    let main = html! {
        div.heading {
            h1 { "Alerts" }
            p.summary {
                (alerts.len()) " configured" (sep())
                strong { (firing) " firing" } (sep())
                (silenced) " silenced"
            }
        }
        @if alerts.is_empty() {
            p.empty { "No alerts are configured. Add an " code { "[[alert]]" }
                " to the config file and reload." }
        } @else {
            table.alerts {
                thead { tr { th { "Alert" } th { "Status" } th { "Triggers" } th { "Destination" } } }
                tbody {
                    @for a in order {
                        tr class=(if a.firing() { "firing" } else { "" })
                            data-alert-id=(a.id) data-firing=(a.firing()) {
                            td data-label="Alert" {
                                a.name href=(format!("/ui/alerts/{}", a.id)) { (a.name) }
                                div.sub.mono { (a.id) }
                            }
                            td data-label="Status" { (status_cell(c, a)) }
                            td data-label="Triggers" {
                                ul.triggers {
                                    @for t in &a.triggers {
                                        li class=(if t.firing { "trigger firing" } else { "trigger" }) {
                                            div.event { (trigger_label(t)) }
                                            div.measure { (trigger_summary(t)) }
                                            @if let Some(s) = spark(t, widgets::SMALL) { (s) }
                                        }
                                    }
                                }
                            }
                            td data-label="Destination" {
                                (a.destination) div.sub.mono { (a.host) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(c, Nav::Alerts, "Alerts", main)
}

/// The values of a silence form, kept when it is shown again with an error.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SilenceForm {
    pub alert: String,
    pub event_types: Vec<String>,
    pub duration: String,
    pub comment: String,
    pub created_by: String,
    /// The field that was refused and why.
    pub error: Option<(String, String)>,
}

impl SilenceForm {
    /// An empty form for `alert` with the usual duration.
    pub fn for_alert(alert: &str) -> SilenceForm {
        SilenceForm {
            alert: alert.to_string(),
            duration: "1h".into(),
            ..SilenceForm::default()
        }
    }
}

/// Where a form sends the browser back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Back {
    Alert,
    Silences,
}

impl Back {
    pub fn as_str(self) -> &'static str {
        match self {
            Back::Alert => "alert",
            Back::Silences => "silences",
        }
    }
}

fn silence_form(
    c: &Chrome,
    form: &SilenceForm,
    back: Back,
    alerts: &[String],
    types: &[EventType],
) -> Markup {
    let invalid = |field: &str| form.error.as_ref().is_some_and(|(f, _)| f == field);
    html! {
        form.silence method="post" action="/ui/silences" data-form="silence" {
            (csrf(c))
            input type="hidden" name="return" value=(back.as_str());
            @if let Some((field, message)) = &form.error {
                p.error role="alert" { strong { (field) ": " } (message) }
            }
            @if back == Back::Alert {
                input type="hidden" name="alert" value=(form.alert);
            } @else {
                label {
                    span { "Alert" }
                    select name="alert" aria-invalid=[invalid("alert").then_some("true")] {
                        option value="*" selected[form.alert == "*"] { "every alert (*)" }
                        @for id in alerts {
                            option value=(id) selected[&form.alert == id] { (id) }
                        }
                    }
                }
            }
            label {
                span { "For" }
                input type="text" name="duration" value=(form.duration) required
                    placeholder="2h, 30m, 1d" autocomplete="off"
                    aria-invalid=[invalid("duration").then_some("true")];
            }
            label.wide {
                span { "Comment" }
                input type="text" name="comment" value=(form.comment) maxlength="1024"
                    placeholder="why, and who to ask" autocomplete="off";
            }
            label {
                span { "By" }
                input type="text" name="created_by" value=(form.created_by) maxlength="255"
                    placeholder="your name" autocomplete="off";
            }
            @if types.len() > 1 {
                fieldset.types aria-invalid=[invalid("event_types").then_some("true")] {
                    legend { "Only these event types (none ticked: all)" }
                    @for t in types {
                        label.check {
                            input type="checkbox" name="event_types" value=(t.as_str())
                                checked[form.event_types.iter().any(|x| x == t.as_str())];
                            " " (t.as_str())
                        }
                    }
                }
            }
            div.actions { button type="submit" data-action="silence" { "Silence" } }
        }
    }
}

fn silences_table(c: &Chrome, rows: &[SilenceRow], back: Back, show_alert: bool) -> Markup {
    html! {
        table.silences {
            thead { tr {
                th { "State" } @if show_alert { th { "Alert" } } th { "Event types" }
                th { "From" } th { "Until" } th { "Comment" } th { "" }
            } }
            tbody {
                @for r in rows {
                    @let s = &r.silence;
                    tr data-silence-id=(s.id) data-state=(r.state.as_str()) {
                        td data-label="State" { (match r.state {
                            SilenceState::Pending => Badge::Pending,
                            SilenceState::Active => Badge::Active,
                            SilenceState::Expired => Badge::Expired,
                        }.render()) }
                        @if show_alert {
                            td data-label="Alert" {
                                @if s.alert == crate::silence::ANY_ALERT { "every alert (*)" }
                                @else { a href=(format!("/ui/alerts/{}", s.alert)) { (s.alert) } }
                            }
                        }
                        td data-label="Event types" {
                            @if s.event_types.is_empty() { "all" }
                            @else { @for (i, t) in s.event_types.iter().enumerate() {
                                @if i > 0 { ", " } span.mono { (t) }
                            } }
                        }
                        td data-label="From" { (time_el(c.now_ms, s.starts_ms)) }
                        td data-label="Until" { (time_el(c.now_ms, s.ends_ms)) }
                        td data-label="Comment" {
                            (s.comment)
                            @if !s.created_by.is_empty() { div.sub { "by " (s.created_by) } }
                        }
                        td.act {
                            @if r.state != SilenceState::Expired {
                                form method="post" action=(format!("/ui/silences/{}/expire", s.id)) {
                                    (csrf(c))
                                    input type="hidden" name="return" value=(back.as_str());
                                    button.secondary type="submit" data-action="expire" { "Expire" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn test_result(c: &Chrome, t: &TestOutcome) -> Markup {
    let class = if t.success {
        "test-result ok"
    } else {
        "test-result failed"
    };
    html! {
        div class=(class) data-test-result role="status" {
            p {
                @if t.success { (Badge::Delivered.render()) } @else { (Badge::Dead.render()) }
                " "
                strong {
                    @match t.status_code { Some(code) => { "HTTP " (code) }, None => "no answer" }
                }
                (sep())
                @if let Some(e) = t.event_type { span.mono { (e) } (sep()) }
                (time_el(c.now_ms, t.at_ms))
            }
            @if let Some(e) = &t.error { p.error-text { (e) } }
            @if !t.excerpt.is_empty() {
                p.sub { "The receiver answered:" }
                pre.body { (t.excerpt) }
            }
        }
    }
}

/// Everything on an alert's own page.
#[derive(Debug, Clone)]
pub struct AlertPage {
    pub alert: AlertRow,
    /// Newest first, every status mixed.
    pub deliveries: Vec<DeliveryRow>,
    /// Silences that cover it (its own and `*`).
    pub silences: Vec<SilenceRow>,
    pub test: Option<TestOutcome>,
    pub form: SilenceForm,
}

/// `/ui/alerts/{id}`.
pub fn alert_page(c: &Chrome, p: &AlertPage) -> Markup {
    let a = &p.alert;
    let types = a.event_types();
    let main = html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/ui/alerts" { "Alerts" } " / " span.mono { (a.id) } }
        section.alert-head data-alert-id=(a.id) data-firing=(a.firing()) {
            h1 { (a.name) }
            div.status { (status_cell(c, a)) }
            dl.facts {
                div { dt { "Destination" } dd { (a.destination) " · " span.mono { (a.host) } } }
                div { dt { "Workspace" } dd { (a.workspace) } }
                div { dt { "Engine" } dd {
                    (match a.run {
                        crate::alert::supervisor::RunState::Running => "running",
                        crate::alert::supervisor::RunState::Disabled => "disabled in the config",
                        crate::alert::supervisor::RunState::Failed => "failed (too many restarts; retried at the next reload)",
                    })
                    @if a.restarts > 0 { " · " (a.restarts) " restarts" }
                } }
                div { dt { "Repeats" } dd { "every " (widgets::duration(a.repeat_interval)) " while firing" } }
                div { dt { "Resolve" } dd { @if a.send_resolved { "sent" } @else { "not sent" } } }
                div { dt { "Last notified" } dd {
                    @match a.last_notified_ms { Some(t) => (time_el(c.now_ms, t)), None => "never" }
                } }
            }
        }
        section {
            h2 { "Triggers" }
            ul.trigger-cards {
                @for t in &a.triggers {
                    li class=(if t.firing { "card firing" } else { "card" }) {
                        div.card-head {
                            span.event { (trigger_label(t)) }
                            @if t.rule.is_some() {
                                (if t.firing { Badge::Firing } else { Badge::Ok }.render())
                            }
                        }
                        div.measure.big { (trigger_summary(t)) }
                        @if let Some(since) = t.firing_since_ms {
                            div.sub { "firing since " (time_el(c.now_ms, since)) }
                        }
                        @if !t.projects.is_empty() {
                            div.sub { "projects: " (t.projects.join(", ")) }
                        }
                        @if let Some(s) = spark(t, widgets::LARGE) {
                            div.spark-wide {
                                (s)
                                @if let Some(rule) = &t.rule {
                                    div.spark-axis aria-hidden="true" {
                                        span { (widgets::duration(rule.window)) " ago" }
                                        span { "- - threshold " (rule.operator) " " (widgets::number(rule.value)) }
                                        span { "now" }
                                    }
                                }
                            }
                        }
                        @if t.rule.is_none() {
                            div.sub { "Events are grouped for " (widgets::duration(a.debounce)) " and sent as one message." }
                        }
                    }
                }
            }
        }
        section #test {
            h2 { "Test connection" }
            p.sub { "Sends a sample notification to the destination now and shows what the receiver answered. Nothing is stored." }
            form.inline method="post" action=(format!("/ui/alerts/{}/test", a.id)) {
                (csrf(c))
                @if types.len() > 1 {
                    label { span { "Event type" }
                        select name="event_type" {
                            @for t in &types { option value=(t.as_str()) { (t.as_str()) } }
                        }
                    }
                }
                button type="submit" data-action="test" { "Test connection" }
            }
            @if let Some(t) = &p.test { (test_result(c, t)) }
        }
        section #silence {
            h2 { "Silence" }
            @if !p.silences.is_empty() { (silences_table(c, &p.silences, Back::Alert, true)) }
            (silence_form(c, &p.form, Back::Alert, &[], &types))
        }
        section #deliveries {
            h2 { "Recent deliveries" }
            @if p.deliveries.is_empty() { p.empty { "Nothing sent yet." } }
            @else { (deliveries_table(c, &p.deliveries, false)) }
        }
    };
    layout(c, Nav::Alerts, &a.name, main)
}

fn deliveries_table(c: &Chrome, rows: &[DeliveryRow], show_alert: bool) -> Markup {
    html! {
        table.deliveries {
            thead { tr {
                th { "Decided" } @if show_alert { th { "Alert" } } th { "Event" } th { "Status" }
                th { "HTTP" } th { "Attempts" } th { "Took" } th { "" }
            } }
            tbody {
                @for d in rows {
                    tr data-delivery-id=(d.id) data-status=(d.status.as_str()) {
                        td data-label="Decided" { (time_el(c.now_ms, d.created_ms)) }
                        @if show_alert {
                            td data-label="Alert" { a href=(format!("/ui/alerts/{}", d.alert_id)) { (d.alert_id) } }
                        }
                        td data-label="Event" {
                            span.mono { (d.event_type) } " " span.sub { (d.state.as_str()) }
                        }
                        td data-label="Status" {
                            (match d.status {
                                Status::Pending => Badge::Pending,
                                Status::Delivered => Badge::Delivered,
                                Status::Dead => Badge::Dead,
                                Status::Suppressed => Badge::Suppressed,
                            }.render())
                            @if d.status == Status::Pending {
                                div.sub { "next try " (time_el(c.now_ms, d.next_attempt_ms)) }
                            }
                            @if let Some(s) = &d.silence_id {
                                div.sub { "by silence " span.mono { (s.get(..8).unwrap_or(s)) } }
                            }
                        }
                        td data-label="HTTP" {
                            @match d.last_status { Some(code) => span.code { (code) }, None => span.sub { "—" } }
                        }
                        td data-label="Attempts" { (d.attempts) span.sub { " of " (1 + d.max_retries) } }
                        td data-label="Took" {
                            @match d.took_ms() { Some(ms) => (widgets::span_ms(ms)), None => span.sub { "—" } }
                        }
                        td.act {
                            @if d.status == Status::Dead {
                                form method="post" action=(format!("/ui/deliveries/{}/retry", d.id)) {
                                    (csrf(c))
                                    button type="submit" data-action="retry" { "Retry" }
                                }
                            }
                        }
                    }
                    @if d.last_error.is_some() || !d.body.is_empty() {
                        tr.detail data-detail-of=(d.id) {
                            td colspan=(if show_alert { 8 } else { 7 }) {
                                @if let Some(e) = &d.last_error { p.error-text { (e) } }
                                details {
                                    summary { "Body sent to " (d.destination) " · " span.mono { (d.host) } }
                                    pre.body { (d.body) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Row counts of the delivery tables, for the tabs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub pending: u64,
    pub dead: u64,
}

/// `/ui/deliveries?status=…`: the newest rows of one status.
pub fn deliveries_page(
    c: &Chrome,
    status: Status,
    counts: Counts,
    rows: &[DeliveryRow],
    limit: usize,
) -> Markup {
    let main = html! {
        div.heading {
            h1 { "Deliveries" }
            p.summary { (counts.pending) " pending" (sep()) strong { (counts.dead) " dead" } }
        }
        nav.tabs aria-label="Status" {
            @for s in Status::ALL {
                @let href = format!("/ui/deliveries?status={}", s.as_str());
                @let label = match s {
                    Status::Pending => format!("Pending ({})", counts.pending),
                    Status::Delivered => "Delivered".to_string(),
                    Status::Dead => format!("Dead ({})", counts.dead),
                    Status::Suppressed => "Suppressed".to_string(),
                };
                @if s == status { a href=(href) aria-current="page" { (label) } }
                @else { a href=(href) { (label) } }
            }
        }
        @if rows.is_empty() {
            p.empty { (match status {
                Status::Pending => "Nothing is waiting to be sent.",
                Status::Delivered => "Nothing delivered yet.",
                Status::Dead => "No dead letters.",
                Status::Suppressed => "No notification was suppressed by a silence.",
            }) }
        } @else {
            (deliveries_table(c, rows, true))
            @if rows.len() >= limit { p.sub { "The newest " (limit) " are shown." } }
        }
    };
    layout(c, Nav::Deliveries, "Deliveries", main)
}

/// `/ui/silences`: create, list and expire.
pub fn silences_page(
    c: &Chrome,
    rows: &[SilenceRow],
    alerts: &[String],
    form: &SilenceForm,
) -> Markup {
    let main = html! {
        div.heading { h1 { "Silences" }
            p.summary { "A silence keeps notifications from being sent; evaluation goes on and what it kept back is listed under suppressed deliveries." } }
        section {
            h2 { "New silence" }
            (silence_form(c, form, Back::Silences, alerts, &EventType::ALL))
        }
        section {
            h2 { "Silences" }
            @if rows.is_empty() { p.empty { "No silences in the last 24 hours." } }
            @else { (silences_table(c, rows, Back::Silences, true)) }
        }
    };
    layout(c, Nav::Silences, "Silences", main)
}

/// `/ui/login`: the token form.
pub fn login_page(c: &Chrome, error: Option<&str>) -> Markup {
    let main = html! {
        section.login {
            h1 { "Log in" }
            p { "Enter the console token (" code { "server.auth_token" } ")." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/ui/login" data-form="login" {
                (csrf(c))
                label { span { "Token" }
                    input type="password" name="token" required autocomplete="current-password" autofocus;
                }
                div.actions { button type="submit" data-action="login" { "Log in" } }
            }
        }
    };
    layout(c, Nav::Login, "Log in", main)
}

/// An error page: what went wrong and what to do.
pub fn error_page(c: &Chrome, title: &str, message: &str) -> Markup {
    let main = html! {
        section.problem {
            h1 { (title) }
            p { (message) }
            p { a href="/ui/alerts" { "Back to the alerts" } }
        }
    };
    layout(c, Nav::Other, title, main)
}
