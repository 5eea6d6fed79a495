//! Secrets in the config: finding them (validated or not) and keeping them out of messages.
//!
//! Config errors, test-probe answers and logs may quote a file or a request body; every such
//! text passes through [`redact`] with the secrets found here first.

use crate::config::{AlertSpec, Config};
use crate::delivery::sender::Attempt;
use crate::delivery::Delivery;

/// The secrets of one alert: tokens, signing secret, routing key, every custom header value,
/// and its URL's path (Slack and PagerDuty keep secrets there).
pub fn spec_secrets(spec: &AlertSpec) -> Vec<String> {
    let mut out = vec![spec.secret_token.clone(), spec.routing_key.clone()];
    out.extend(signing_secret_forms(&spec.signing_secret));
    out.extend(spec.headers.values().cloned());
    out.extend(url_secret(&spec.url));
    out.retain(|s| !s.is_empty());
    out
}

/// A signing secret as written (`whsec_…`) and its key part alone.
fn signing_secret_forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    if let Some(key) = secret.strip_prefix("whsec_") {
        out.push(key.to_string());
    }
    out
}

/// The secrets a delivery is sent with: every header value (the bearer token among them, with
/// and without its `Bearer ` prefix), the signing secret and the URL's path.
pub fn delivery_secrets(d: &Delivery) -> Vec<String> {
    let mut out = Vec::new();
    for (_, v) in &d.headers {
        out.push(v.clone());
        if let Some(t) = v.strip_prefix("Bearer ") {
            out.push(t.to_string());
        }
    }
    out.extend(signing_secret_forms(&d.signing_secret));
    out.extend(url_secret(&d.url));
    out.retain(|s| !s.is_empty());
    out
}

/// An attempt's answer with the delivery's secrets replaced by `***`: a receiver may echo the
/// request (headers included) in its error body, and that text is stored as `last_error`,
/// logged and returned by the API.
pub fn scrub_attempt(mut a: Attempt, d: &Delivery) -> Attempt {
    let secrets = delivery_secrets(d);
    a.error = a.error.map(|e| redact(&e, &secrets));
    a.response_body = redact(&a.response_body, &secrets);
    a
}

/// Whether the bearer token `given` is `token`, in time that depends on neither's length nor
/// content: both are hashed to fixed-length digests first, and the digests are compared in
/// constant time (a plain constant-time compare returns early when the lengths differ).
pub fn token_matches(given: &str, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(token.as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// Logs a loud warning when the API listens beyond loopback without a bearer token: anyone
/// who can reach the port can then post events, read deliveries and reload the config.
pub fn warn_if_open(cfg: &Config, when: &'static str) {
    let Ok(addr) = cfg.server.listen.parse::<std::net::SocketAddr>() else {
        return;
    };
    if cfg.server.auth_token.is_empty() && !addr.ip().is_loopback() {
        tracing::warn!(
            listen = %cfg.server.listen,
            when,
            "the API listens beyond loopback WITHOUT a bearer token: anyone who can reach it can \
             post events, list deliveries, retry and reload. Set server.auth_token_file, or \
             listen on 127.0.0.1"
        );
    }
}

/// Every secret of a validated config.
pub fn config_secrets(cfg: &Config) -> Vec<String> {
    let mut out = vec![cfg.server.auth_token.clone()];
    for a in &cfg.alerts {
        out.extend(spec_secrets(a));
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The path and query of a URL, the part [`mask_url`] hides.
fn url_secret(url: &str) -> Option<String> {
    let tail = match url::Url::parse(url) {
        Ok(u) => {
            let mut tail = u.path().trim_start_matches('/').to_string();
            if let Some(q) = u.query() {
                tail.push('?');
                tail.push_str(q);
            }
            tail
        }
        // An invalid URL still names its secret path in the validation error: cut by hand.
        Err(_) => {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            rest.split_once('/').map_or("", |(_, t)| t).to_string()
        }
    };
    (tail.len() > 1).then_some(tail)
}

/// Secrets written inline in a config file that may not validate, as (key, value): read
/// leniently as TOML so messages about that file can be scrubbed of them. URL paths count
/// (Slack and PagerDuty keep secrets there), under the key `url`.
fn inline_secrets(path: &std::path::Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return vec![];
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return vec![];
    };
    let mut out = Vec::new();
    if let Some(t) = doc
        .get("server")
        .and_then(|s| s.get("auth_token"))
        .and_then(|v| v.as_str())
    {
        out.push(("server.auth_token".to_string(), t.to_string()));
    }
    for alert in doc
        .get("alert")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        let id = alert.get("id").and_then(|v| v.as_str()).unwrap_or("?");
        for key in ["secret_token", "signing_secret", "routing_key"] {
            if let Some(v) = alert.get(key).and_then(|v| v.as_str()) {
                out.push((format!("alert {id:?}: {key}"), v.to_string()));
            }
        }
        if let Some(headers) = alert.get("headers").and_then(|h| h.as_table()) {
            for (name, v) in headers {
                if let Some(v) = v.as_str() {
                    out.push((format!("alert {id:?}: headers.{name}"), v.to_string()));
                }
            }
        }
        if let Some(u) = alert.get("url").and_then(|v| v.as_str()) {
            if let Some(tail) = url_secret(u) {
                out.push((format!("alert {id:?}: url"), tail));
            }
        }
    }
    out.retain(|(_, v)| !v.is_empty());
    out
}

/// Every secret value written inline in the config file at `path`.
pub fn file_secrets(path: &std::path::Path) -> Vec<String> {
    inline_secrets(path).into_iter().map(|(_, v)| v).collect()
}

/// Which settings of the file at `path` hold a secret inline (webhook URLs of the general
/// destination are not counted: their paths are usually not secret).
pub fn file_secrets_keys(path: &std::path::Path) -> Vec<String> {
    let general_urls: Vec<String> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|d| d.get("alert").and_then(|a| a.as_array()).cloned())
        .into_iter()
        .flatten()
        .filter(|a| {
            a.get("destination")
                .and_then(|d| d.as_str())
                .is_none_or(|d| d == "general")
        })
        .map(|a| {
            let id = a.get("id").and_then(|v| v.as_str()).unwrap_or("?");
            format!("alert {id:?}: url")
        })
        .collect();
    inline_secrets(path)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !general_urls.contains(k))
        .collect()
}

/// `text` with every occurrence of a secret replaced by `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| s.len() >= 4).collect();
    // Longest first, so a secret containing another is hidden whole.
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in sorted {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_exactly_whatever_their_lengths() {
        assert!(token_matches("s3cret", "s3cret"));
        for wrong in ["", "s3cre", "s3cret ", "S3cret", "s3cret-and-more"] {
            assert!(!token_matches(wrong, "s3cret"), "{wrong:?}");
        }
    }

    #[test]
    fn delivery_secrets_cover_headers_bearer_and_signing_key() {
        let d = Delivery {
            id: "0195e3a0-0000-7000-8000-000000000000".into(),
            alert_id: "a".into(),
            event_type: crate::event::EventType::PromptCreated,
            state: crate::notification::NotificationState::Firing,
            destination: crate::config::DestinationKind::General,
            url: "https://hooks.example/services/T1/B2/XYZ".into(),
            headers: vec![
                ("X-Key".into(), "hdr-value".into()),
                ("Authorization".into(), "Bearer tok-123".into()),
            ],
            signing_secret: "whsec_abcd1234".into(),
            tls: Default::default(),
            body: String::new(),
            created_ms: 0,
            attempts: 0,
            max_retries: 0,
            next_attempt_ms: 0,
            last_status: None,
            last_error: None,
            finished_ms: None,
        };
        let text = "echo: hdr-value Bearer tok-123 tok-123 abcd1234 services/T1/B2/XYZ";
        let got = redact(text, &delivery_secrets(&d));
        assert_eq!(got, "echo: *** *** *** *** ***");
    }
}
