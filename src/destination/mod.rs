//! Destinations: each turns a [`Notification`] into the HTTP request its receiver expects.
//!
//! One module per destination (`general`, `slack`, `pagerduty`); nothing else knows their
//! formats. A body is fixed when the notification is decided and stored with the delivery, so
//! every attempt sends the same bytes. Per-attempt headers (Standard Webhooks signatures, whose
//! timestamp must be fresh) are added by [`attempt_headers`].

pub mod general;
pub mod pagerduty;
pub mod signature;
pub mod slack;

use crate::budget;
use crate::config::{AlertSpec, DestinationKind};
use crate::delivery::Delivery;
use crate::notification::Notification;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// Facts about the sender that bodies mention.
#[derive(Debug, Clone)]
pub struct Context {
    pub max_retries: u32,
    /// `alertd@<hostname>`, PagerDuty's `payload.source`.
    pub source: String,
}

impl Context {
    /// The context for this host.
    pub fn for_host(max_retries: u32) -> Context {
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        Context {
            max_retries,
            source: format!("alertd@{host}"),
        }
    }
}

/// PagerDuty refuses an event over 512 KB; its objects get this much, leaving room for the rest.
pub const PAGERDUTY_ITEMS_BUDGET: usize = 480 * 1000;

/// The request body for `n` as `alert`'s destination expects it. The events' objects are cut to
/// `engine.max_message_bytes` (and PagerDuty's own limit) with a marker ([`budget::fit_items`]);
/// Slack's text has limits of its own.
pub fn body(n: &Notification, alert: &AlertSpec, ctx: &Context) -> String {
    let within = |budget: usize| match budget::fit_items(&n.items, budget) {
        None => std::borrow::Cow::Borrowed(n),
        Some(items) => std::borrow::Cow::Owned(Notification { items, ..n.clone() }),
    };
    match alert.destination {
        DestinationKind::General => general::body(&within(alert.max_message_bytes), ctx),
        DestinationKind::Slack => slack::body(n, alert),
        DestinationKind::PagerDuty => pagerduty::body(
            &within(alert.max_message_bytes.min(PAGERDUTY_ITEMS_BUDGET)),
            alert,
            ctx,
        ),
    }
}

/// The static headers of an alert's destination: its custom headers and, for the general
/// destination, the bearer token.
fn static_headers(alert: &AlertSpec) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = alert
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if alert.destination == DestinationKind::General && !alert.secret_token.is_empty() {
        headers.push((
            "Authorization".into(),
            format!("Bearer {}", alert.secret_token),
        ));
    }
    headers
}

fn tls_options(alert: &AlertSpec) -> crate::delivery::TlsOptions {
    crate::delivery::TlsOptions {
        ca_file: alert.ca_file.as_ref().map(|p| p.display().to_string()),
        insecure: alert.tls_insecure,
    }
}

/// Builds the outbox row for `n`: body fixed now, with the destination as it is now (each
/// attempt re-reads it, see [`current`]).
pub fn prepare(n: &Notification, alert: &AlertSpec, ctx: &Context) -> Delivery {
    let mut d = Delivery::new(
        n,
        alert.destination,
        alert.url.clone(),
        static_headers(alert),
        alert.signing_secret.clone(),
        body(n, alert, ctx),
        ctx.max_retries,
    );
    d.tls = tls_options(alert);
    // The general and PagerDuty bodies embed the events' objects as they are (Slack rewrites
    // them): the store can keep each once for every body of a tick.
    if alert.destination != DestinationKind::Slack {
        d.listed = n.items.clone();
    }
    d
}

/// The delivery as the next attempt must send it (DESIGN §9): to its alert's *current* URL,
/// headers, bearer token, signing secret and TLS settings, so fixing a URL or rotating a secret
/// by reload lets stuck notifications through. The id and body never change. If the alert was
/// removed, or its destination kind changed (the body would no longer fit), the destination it
/// was decided with is kept.
pub fn current(d: &Delivery, config: &crate::config::Config) -> Delivery {
    let mut out = d.clone();
    if let Some(alert) = config.alert(&d.alert_id) {
        if alert.destination == d.destination {
            out.url = alert.url.clone();
            out.headers = static_headers(alert);
            out.signing_secret = alert.signing_secret.clone();
            out.tls = tls_options(alert);
        }
    }
    out
}

/// Headers computed at each attempt: the Standard Webhooks trio when a signing secret is set.
pub fn attempt_headers(d: &Delivery, now_secs: i64) -> Vec<(String, String)> {
    if d.signing_secret.is_empty() {
        return Vec::new();
    }
    let Ok(key) = signature::decode_secret(&d.signing_secret) else {
        return Vec::new();
    };
    vec![
        ("webhook-id".into(), d.id.clone()),
        ("webhook-timestamp".into(), now_secs.to_string()),
        (
            "webhook-signature".into(),
            signature::sign(&key, &d.id, now_secs, d.body.as_bytes()),
        ),
    ]
}

const MILLIS_Z: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// RFC 3339 UTC with milliseconds, as receivers of the general body expect.
pub fn rfc3339_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(MILLIS_Z).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        assert_eq!(rfc3339_ms(1_763_632_800_123), "2025-11-20T10:00:00.123Z");
    }
}
