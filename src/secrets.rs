//! Secrets at the edges of a request: a delivery's own secrets (so a receiver echoing them
//! back cannot get them into logs, storage or API answers), the bearer-token check, and the
//! warning for an API open beyond loopback. Finding secrets in the config and redacting text
//! is [`crate::redact`]'s.

use crate::config::Config;
use crate::delivery::sender::Attempt;
use crate::delivery::Delivery;
use crate::redact::{redact, url_paths, Secret};

/// A signing secret as written (`whsec_…`) and its key part alone.
pub fn signing_secret_forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    if let Some(key) = secret.strip_prefix("whsec_") {
        out.push(key.to_string());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The secrets a delivery is sent with: every header value (the bearer token among them, with
/// and without its `Bearer ` prefix), the signing secret and the URL's path.
pub fn delivery_secrets(d: &Delivery) -> Vec<Secret> {
    let mut out = Vec::new();
    for (_, v) in &d.headers {
        out.push(Secret::Value(v.clone()));
        if let Some(t) = v.strip_prefix("Bearer ") {
            out.push(Secret::Value(t.to_string()));
        }
    }
    out.extend(
        signing_secret_forms(&d.signing_secret)
            .into_iter()
            .map(Secret::Value),
    );
    // Anywhere, not only at the end of a URL: a receiver may echo the path in any form.
    out.extend(url_paths(&d.url).into_iter().map(Secret::Value));
    out.retain(|s| !s.text().is_empty());
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
            listed: Vec::new(),
        };
        let text = "echo: hdr-value Bearer tok-123 tok-123 abcd1234 services/T1/B2/XYZ";
        let got = redact(text, &delivery_secrets(&d));
        assert_eq!(got, "echo: *** *** *** *** ***");
    }
}
