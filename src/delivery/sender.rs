//! One HTTP attempt: build the request from a stored delivery, send it, classify the answer.

use super::outcome::{classify_status, parse_retry_after, Outcome};
use super::{Delivery, TlsOptions};
use crate::config::DeliveryConfig;
use crate::destination;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most of a response body alertd reads; the rest is dropped unread.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// How much of a failed response body is kept as the error reason.
pub const ERROR_BODY_KEPT: usize = 1024;

/// The result of one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// What the receiver answered (at most [`MAX_RESPONSE_BODY`]).
    pub response_body: String,
}

/// The HTTP clients: rustls, no redirects, connect and total timeouts. One default client, plus
/// one per distinct per-alert TLS setting (`ca_file`, `tls_insecure`), built on first use.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    cfg: DeliveryConfig,
    custom: Arc<Mutex<HashMap<TlsOptions, reqwest::Client>>>,
}

fn builder(cfg: &DeliveryConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.timeout)
        .user_agent(concat!("alertd/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(30))
}

impl Sender {
    /// A client configured from `[delivery]`.
    pub fn new(cfg: &DeliveryConfig) -> Result<Sender, String> {
        let client = builder(cfg)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Sender {
            client,
            cfg: cfg.clone(),
            custom: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The client for a delivery's TLS settings.
    fn client_for(&self, tls: &TlsOptions) -> Result<reqwest::Client, String> {
        if *tls == TlsOptions::default() {
            return Ok(self.client.clone());
        }
        let mut cache = self
            .custom
            .lock()
            .expect("client cache lock is never poisoned");
        if let Some(c) = cache.get(tls) {
            return Ok(c.clone());
        }
        let mut b = builder(&self.cfg);
        if let Some(path) = &tls.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("ca_file {path}: {e}"))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {path}: {e}"))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if tls.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let c = b
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        cache.insert(tls.clone(), c.clone());
        Ok(c)
    }

    /// Sends `d` once. The answer is scrubbed of the delivery's secrets before anyone stores,
    /// logs or returns it: a receiver may echo the request's headers.
    pub async fn attempt(&self, d: &Delivery, now_secs: i64) -> Attempt {
        crate::secrets::scrub_attempt(self.attempt_unscrubbed(d, now_secs).await, d)
    }

    async fn attempt_unscrubbed(&self, d: &Delivery, now_secs: i64) -> Attempt {
        let url = match reqwest::Url::parse(&d.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => u,
            _ => {
                return Attempt {
                    status: None,
                    outcome: Outcome::Permanent,
                    error: Some(format!("unusable URL {:?}", d.url)),
                    response_body: String::new(),
                }
            }
        };
        let client = match self.client_for(&d.tls) {
            Ok(c) => c,
            Err(e) => {
                return Attempt {
                    status: None,
                    outcome: Outcome::Retry { after: None },
                    error: Some(e),
                    response_body: String::new(),
                }
            }
        };
        let mut req = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (k, v) in d
            .headers
            .iter()
            .chain(destination::attempt_headers(d, now_secs).iter())
        {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.body(d.body.clone()).send().await {
            Err(e) => Attempt {
                status: None,
                outcome: if e.is_builder() {
                    Outcome::Permanent
                } else {
                    Outcome::Retry { after: None }
                },
                error: Some(describe(&e)),
                response_body: String::new(),
            },
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, now_secs));
                let mut body = Vec::new();
                while body.len() < MAX_RESPONSE_BODY {
                    match resp.chunk().await {
                        Ok(Some(c)) => body.extend_from_slice(&c),
                        _ => break,
                    }
                }
                body.truncate(MAX_RESPONSE_BODY);
                let text = String::from_utf8_lossy(&body).into_owned();
                let outcome = classify_status(status, retry_after);
                let error = (outcome != Outcome::Delivered).then(|| {
                    let snippet: String = text.chars().take(ERROR_BODY_KEPT).collect();
                    format!("HTTP {status}: {snippet}")
                });
                Attempt {
                    status: Some(status),
                    outcome,
                    error,
                    response_body: text,
                }
            }
        }
    }
}

/// A connection error with its causes, e.g. "connection refused".
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
