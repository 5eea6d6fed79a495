//! Classifying an attempt's result by the rules of DESIGN §9.

use std::time::Duration;

/// What an attempt means for the delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again; `after` is the receiver's `Retry-After`, if it sent one.
    Retry {
        after: Option<Duration>,
    },
    Permanent,
}

/// Classifies an HTTP status: 2xx success; 408, 429, 5xx retried; any other status permanent
/// (redirects are not followed, so a 3xx is a misconfigured URL).
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry { after: retry_after },
        _ => Outcome::Permanent,
    }
}

/// Parses `Retry-After`: delta seconds or an HTTP date, relative to `now_secs`.
pub fn parse_retry_after(value: &str, now_secs: i64) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate_to_unix(v)?;
    Some(Duration::from_secs((at - now_secs).max(0) as u64))
}

fn httpdate_to_unix(v: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc2822;
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is RFC 2822 compatible.
    time::OffsetDateTime::parse(v, &Rfc2822)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(classify_status(204, None), Outcome::Delivered);
        for s in [408, 429, 500, 503] {
            assert!(matches!(classify_status(s, None), Outcome::Retry { .. }));
        }
        for s in [301, 400, 401, 404, 410] {
            assert_eq!(classify_status(s, None), Outcome::Permanent);
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("2", 0), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_770),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }
}
