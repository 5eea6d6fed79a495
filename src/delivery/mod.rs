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
