//! Delivery: the durable outbox row, the retry rules, and the dispatcher that sends.
//!
//! A [`Delivery`] is written to `outbox` in the same transaction as the tick that decided it and
//! leaves only on success (to the bounded delivery log), permanent failure or exhaustion (to
//! `dead_letters`). Its `id` and body never change, so receivers can de-duplicate.

pub mod backoff;
pub mod dispatcher;
pub mod outcome;
pub mod pool;
pub mod probe;
pub mod sender;

use crate::config::DestinationKind;
use crate::event::EventType;
use crate::notification::{Notification, NotificationState};
use serde::{Deserialize, Serialize};

/// One notification on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The notification id (UUIDv7); the outbox key is its 128-bit value.
    pub id: String,
    pub alert_id: String,
    pub event_type: EventType,
    pub state: NotificationState,
    pub destination: DestinationKind,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Standard Webhooks secret; signatures are made per attempt.
    pub signing_secret: String,
    /// TLS settings of the alert when the notification was decided.
    pub tls: TlsOptions,
    pub body: String,
    pub created_ms: i64,
    pub attempts: u32,
    pub max_retries: u32,
    pub next_attempt_ms: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// When it was delivered or dead-lettered.
    pub finished_ms: Option<i64>,
    /// The events' objects `body` embeds verbatim, as the notification listed them. Not stored
    /// with the row: the tick's commit uses them to store each object once for all the bodies it
    /// writes (see `store::bodies`), and the scheduler drops them after that commit.
    #[serde(skip)]
    pub listed: Vec<String>,
}

/// Per-alert TLS settings a delivery is sent with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TlsOptions {
    pub ca_file: Option<String>,
    pub insecure: bool,
}

/// Which table a delivery listing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Dead,
    Delivered,
}

impl std::str::FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "dead" => Ok(DeliveryStatus::Dead),
            "delivered" => Ok(DeliveryStatus::Delivered),
            other => Err(format!(
                "status must be pending, dead, delivered or suppressed, got {other:?}"
            )),
        }
    }
}

/// Writes `d` as [`Delivery`]'s own `Serialize` would, with an empty body: the store keeps
/// bodies apart from their rows (see `store::bodies`), and this avoids cloning a body only to
/// drop it. Same fields in the same order, so the row decodes as a [`Delivery`].
pub(crate) fn serialize_without_body<S: serde::Serializer>(
    d: &Delivery,
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(rename = "Delivery")]
    struct Row<'a> {
        id: &'a str,
        alert_id: &'a str,
        event_type: EventType,
        state: NotificationState,
        destination: DestinationKind,
        url: &'a str,
        headers: &'a [(String, String)],
        signing_secret: &'a str,
        tls: &'a TlsOptions,
        body: &'a str,
        created_ms: i64,
        attempts: u32,
        max_retries: u32,
        next_attempt_ms: i64,
        last_status: Option<u16>,
        last_error: Option<&'a str>,
        finished_ms: Option<i64>,
    }
    Row {
        id: &d.id,
        alert_id: &d.alert_id,
        event_type: d.event_type,
        state: d.state,
        destination: d.destination,
        url: &d.url,
        headers: &d.headers,
        signing_secret: &d.signing_secret,
        tls: &d.tls,
        body: "",
        created_ms: d.created_ms,
        attempts: d.attempts,
        max_retries: d.max_retries,
        next_attempt_ms: d.next_attempt_ms,
        last_status: d.last_status,
        last_error: d.last_error.as_deref(),
        finished_ms: d.finished_ms,
    }
    .serialize(s)
}

impl Delivery {
    /// A new, never attempted delivery of `n`, due at once.
    pub fn new(
        n: &Notification,
        destination: DestinationKind,
        url: String,
        headers: Vec<(String, String)>,
        signing_secret: String,
        body: String,
        max_retries: u32,
    ) -> Delivery {
        Delivery {
            id: n.id.clone(),
            alert_id: n.alert_id.clone(),
            event_type: n.event_type,
            state: n.state,
            destination,
            url,
            headers,
            signing_secret,
            tls: TlsOptions::default(),
            body,
            created_ms: n.created_ms,
            attempts: 0,
            max_retries,
            next_attempt_ms: n.created_ms,
            last_status: None,
            last_error: None,
            finished_ms: None,
            listed: Vec::new(),
        }
    }

    /// The table key: the UUID's 128-bit value, so keys sort by creation time.
    pub fn key(&self) -> u128 {
        parse_key(&self.id).unwrap_or(0)
    }

    /// The endpoint used for per-endpoint concurrency limits: scheme, host and port.
    pub fn endpoint(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(u) => format!(
                "{}://{}:{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port_or_known_default().unwrap_or(0)
            ),
            Err(_) => self.url.clone(),
        }
    }
}

/// Parses a delivery id as given by users and the API.
pub fn parse_key(id: &str) -> Option<u128> {
    uuid::Uuid::parse_str(id).ok().map(|u| u.as_u128())
}
