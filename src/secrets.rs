//! Secrets in the config: finding them (validated or not) and keeping them out of messages.
//!
//! Config errors, test-probe answers and logs may quote a file or a request body; every such
//! text passes through [`redact`] with the secrets found here first.

use crate::config::{AlertSpec, Config};

/// The secrets of one alert, and its URL's path (Slack and PagerDuty keep secrets there).
pub fn spec_secrets(spec: &AlertSpec) -> Vec<String> {
    let mut out = vec![
        spec.secret_token.clone(),
        spec.signing_secret.clone(),
        spec.routing_key.clone(),
    ];
    out.extend(url_secret(&spec.url));
    out.retain(|s| !s.is_empty());
    out
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
