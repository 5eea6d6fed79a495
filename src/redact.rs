//! Keeping secrets out of what alertd prints: config errors, log lines and API answers.
//!
//! Two kinds of secret are hidden differently. A token, key or password is replaced wherever its
//! text occurs. A webhook URL's path and query (Slack and PagerDuty keep their secrets there) is
//! replaced only where a URL is printed: right after a `/`, up to the end of the URL. Masking the
//! path's text everywhere would also mangle names that happen to contain it — the alert `u-count`
//! whose URL ends in `/count` must stay `u-count` in its own error message.

use crate::config::{AlertSpec, Config};

/// One secret to keep out of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secret {
    /// A token, key or password: hidden wherever it occurs (if at least 4 characters long).
    Value(String),
    /// A webhook URL's path and query without the leading `/`: hidden where it follows a `/` and
    /// ends the URL, as in `https://hooks.slack.com/***`.
    UrlPath(String),
}

impl Secret {
    pub fn text(&self) -> &str {
        match self {
            Secret::Value(s) | Secret::UrlPath(s) => s,
        }
    }
}

/// A URL with its path hidden: Slack and PagerDuty URLs carry secrets in the path.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let hidden = if u.path().len() > 1 || u.query().is_some() {
                "/***"
            } else {
                "/"
            };
            format!(
                "{}://{}{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                port,
                hidden
            )
        }
        Err(_) => "***".into(),
    }
}

/// `text` with every secret replaced by `***`, longest secret first so that a secret containing
/// another is hidden whole.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    let mut sorted: Vec<&Secret> = secrets
        .iter()
        .filter(|s| match s {
            Secret::Value(v) => v.len() >= 4,
            Secret::UrlPath(p) => p.len() >= 2,
        })
        .collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.text().len()));
    let mut out = text.to_string();
    for s in sorted {
        if !out.contains(s.text()) {
            continue;
        }
        out = match s {
            Secret::Value(v) => out.replace(v.as_str(), "***"),
            Secret::UrlPath(p) => hide_url_path(&out, p),
        };
    }
    out
}

/// Characters that continue a URL path segment: a `/count` followed by one of them is some other,
/// longer path (a file `/srv/count/x`, a URL `/country`), not the secret one.
fn continues_path(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%' | '/')
}

/// Replaces `path` where it is the end of a printed URL: after a `/`, not followed by more path.
fn hide_url_path(text: &str, path: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before: Option<char> = None;
    while let Some(i) = rest.find(path) {
        let prev = rest[..i].chars().next_back().or(before);
        let after = rest[i + path.len()..].chars().next();
        out.push_str(&rest[..i]);
        if prev == Some('/') && !after.is_some_and(continues_path) {
            out.push_str("***");
            before = Some('*');
            rest = &rest[i + path.len()..];
        } else {
            // Not this occurrence; look again one character further (occurrences may overlap).
            let c = rest[i..].chars().next().expect("a match is not empty");
            out.push(c);
            before = Some(c);
            rest = &rest[i + c.len_utf8()..];
        }
    }
    out.push_str(rest);
    out
}

/// The part of a URL that [`mask_url`] hides (path and query, without the leading `/`), in its
/// normalised form and as written when that differs; nothing for a URL without a path.
pub(crate) fn url_paths(url: &str) -> Vec<String> {
    // As written: everything after the authority's first `/`. An invalid URL still names its
    // secret path in the TOML error's quoted line, so this does not rely on parsing.
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let written = rest.split_once('/').map_or("", |(_, t)| t).to_string();
    let mut out = vec![written];
    if let Ok(u) = url::Url::parse(url) {
        let mut tail = u.path().trim_start_matches('/').to_string();
        if let Some(q) = u.query() {
            tail.push('?');
            tail.push_str(q);
        }
        out.push(tail);
    }
    out.retain(|t| t.len() > 1);
    out.dedup();
    out
}

/// The secrets of one alert: its token, signing secret (with and without `whsec_`), routing
/// key, custom header values and URL path.
pub fn spec_secrets(spec: &AlertSpec) -> Vec<Secret> {
    let mut out: Vec<Secret> = [&spec.secret_token, &spec.routing_key]
        .into_iter()
        .chain(spec.headers.values())
        .filter(|s| !s.is_empty())
        .map(|s| Secret::Value(s.clone()))
        .collect();
    out.extend(
        crate::secrets::signing_secret_forms(&spec.signing_secret)
            .into_iter()
            .map(Secret::Value),
    );
    out.extend(url_paths(&spec.url).into_iter().map(Secret::UrlPath));
    out
}

/// Every secret of a validated config.
pub fn config_secrets(cfg: &Config) -> Vec<Secret> {
    let mut out = Vec::new();
    if !cfg.server.auth_token.is_empty() {
        out.push(Secret::Value(cfg.server.auth_token.clone()));
    }
    for a in &cfg.alerts {
        out.extend(spec_secrets(a));
    }
    out
}

/// Keys whose values are secrets, as they appear in the config file.
const SECRET_KEYS: [&str; 3] = ["secret_token", "signing_secret", "routing_key"];

/// Secrets written inline in a config file that may not validate, as (setting, secret): read
/// leniently as TOML so messages about that file can be scrubbed of them. A file that is not
/// even TOML is read line by line, since its parse error quotes the line it failed on.
fn inline_secrets(path: &std::path::Path) -> Vec<(String, Secret)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return vec![];
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return line_secrets(&text);
    };
    let mut out = Vec::new();
    if let Some(t) = doc
        .get("server")
        .and_then(|s| s.get("auth_token"))
        .and_then(|v| v.as_str())
    {
        out.push((
            "server.auth_token".to_string(),
            Secret::Value(t.to_string()),
        ));
    }
    for alert in doc
        .get("alert")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        let id = alert.get("id").and_then(|v| v.as_str()).unwrap_or("?");
        for key in SECRET_KEYS {
            if let Some(v) = alert.get(key).and_then(|v| v.as_str()) {
                out.push((format!("alert {id:?}: {key}"), Secret::Value(v.to_string())));
            }
        }
        if let Some(u) = alert.get("url").and_then(|v| v.as_str()) {
            for p in url_paths(u) {
                out.push((format!("alert {id:?}: url"), Secret::UrlPath(p)));
            }
        }
    }
    out.retain(|(_, s)| !s.text().is_empty());
    out
}

/// `key = "value"` lines of secret settings in a file that does not parse as TOML.
fn line_secrets(text: &str) -> Vec<(String, Secret)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim_start();
        let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let inner = &value[1..];
        let value = inner.split(quote).next().unwrap_or(inner).to_string();
        if value.is_empty() {
            continue;
        }
        if key == "auth_token" || SECRET_KEYS.contains(&key) {
            out.push((key.to_string(), Secret::Value(value)));
        } else if key == "url" {
            out.extend(
                url_paths(&value)
                    .into_iter()
                    .map(|p| ("url".to_string(), Secret::UrlPath(p))),
            );
        }
    }
    out
}

/// Every secret value written inline in the config file at `path`.
pub fn file_secrets(path: &std::path::Path) -> Vec<Secret> {
    inline_secrets(path).into_iter().map(|(_, s)| s).collect()
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
    let mut keys: Vec<String> = inline_secrets(path)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !general_urls.contains(k))
        .collect();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<Secret> {
        url_paths(&format!("https://hooks.example.com/{p}"))
            .into_iter()
            .map(Secret::UrlPath)
            .collect()
    }

    #[test]
    fn a_url_path_is_hidden_where_the_url_is_printed() {
        let s = path("count");
        assert_eq!(
            redact(r#"url = "https://hooks.example.com/count" is wrong"#, &s),
            r#"url = "https://hooks.example.com/***" is wrong"#
        );
        assert_eq!(
            redact("posting to http://h:9/count)", &s),
            "posting to http://h:9/***)"
        );
        assert_eq!(redact("http://h/count?x=1", &s), "http://h/***?x=1");
        assert_eq!(redact("http://h/count\\n", &s), "http://h/***\\n");
    }

    #[test]
    fn names_that_contain_the_url_path_are_left_alone() {
        let s = path("count");
        let msg =
            r#"alert "u-count": url is not a valid URL; see /srv/count/alertd.toml, /country"#;
        assert_eq!(redact(msg, &s), msg);
        assert_eq!(redact("count", &s), "count");
    }

    #[test]
    fn a_path_with_several_segments_and_a_query_is_hidden_whole() {
        let s = path("services/T000/B000/XXXX?a=1");
        assert_eq!(
            redact(
                "https://hooks.example.com/services/T000/B000/XXXX?a=1 and B000",
                &s
            ),
            "https://hooks.example.com/*** and B000"
        );
    }

    #[test]
    fn tokens_are_hidden_everywhere_and_short_ones_not_at_all() {
        let s = vec![
            Secret::Value("s3cret-tok".into()),
            Secret::Value("abc".into()),
        ];
        assert_eq!(
            redact("Bearer s3cret-tok; xs3cret-tokx abc", &s),
            "Bearer ***; x***x abc"
        );
    }

    #[test]
    fn the_longest_secret_goes_first() {
        let s = vec![
            Secret::Value("abcd".into()),
            Secret::Value("abcdefgh".into()),
        ];
        assert_eq!(redact("abcdefgh abcd", &s), "*** ***");
    }

    #[test]
    fn a_file_that_is_not_toml_is_scrubbed_line_by_line() {
        let got = line_secrets(
            "[[alert]]\nid = \"x\nurl = \"https://h/p/SECRET\" oops\nsecret_token = 'tok-1234'\n",
        );
        assert_eq!(
            got,
            vec![
                ("url".to_string(), Secret::UrlPath("p/SECRET".into())),
                ("secret_token".to_string(), Secret::Value("tok-1234".into())),
            ]
        );
    }
}
