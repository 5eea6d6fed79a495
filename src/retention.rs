//! Delivery retention: dead letters and the delivered log stay bounded by age and bytes.
//!
//! Dead letters used to be kept forever and the delivered log was bounded only in rows, so a
//! receiver that refused large notifications for weeks grew the data file without limit. Every
//! 12 ticks (at most once a minute, at least once a second) the store deletes dead letters older
//! than `delivery.dead_letter_max_age`, then the oldest while they total more than
//! `delivery.dead_letter_max_bytes`; and the oldest delivered-log rows while that log totals more
//! than `delivery.log_max_bytes` (`delivery.log_size` still caps its rows). Ages come from the
//! keys: a notification id is a UUIDv7, whose first 48 bits are its creation time in ms.

use crate::config::{Config, LiveConfig};
use crate::store::Store;
use std::time::Duration;

/// One table's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// `dead_letters` or `delivery_log`.
    pub table: &'static str,
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

/// The rules of a config.
pub fn rules(cfg: &Config) -> Vec<Retention> {
    vec![
        Retention {
            table: "dead_letters",
            max_age: Some(cfg.delivery.dead_letter_max_age),
            max_bytes: Some(cfg.delivery.dead_letter_max_bytes.as_u64()),
        },
        Retention {
            table: "delivery_log",
            max_age: None,
            max_bytes: Some(cfg.delivery.log_max_bytes.as_u64()),
        },
    ]
}

/// Creation time (ms) of a row keyed by a UUIDv7 notification id.
fn created_ms(key: u128) -> i64 {
    (key >> 80) as i64
}

/// Which rows (given oldest first as (key, value bytes)) `rule` deletes at `now_ms`, each with
/// its reason: `age`, then `bytes` for the oldest of the rest while over the byte limit.
pub fn plan(rows: &[(u128, usize)], rule: &Retention, now_ms: i64) -> Vec<(u128, &'static str)> {
    let mut out = Vec::new();
    let mut rest = rows;
    if let Some(age) = rule.max_age {
        let cutoff = now_ms.saturating_sub(age.as_millis() as i64);
        let n = rows
            .iter()
            .take_while(|(k, _)| created_ms(*k) < cutoff)
            .count();
        out.extend(rows[..n].iter().map(|(k, _)| (*k, "age")));
        rest = &rows[n..];
    }
    if let Some(max) = rule.max_bytes {
        let mut total: u64 = rest.iter().map(|(_, b)| *b as u64).sum();
        for (k, b) in rest {
            if total <= max {
                break;
            }
            total -= *b as u64;
            out.push((*k, "bytes"));
        }
    }
    out
}

/// Runs retention now and then, reading the limits from the running config.
pub fn spawn(store: Store, config: LiveConfig) {
    tokio::spawn(async move {
        loop {
            let cfg = config.borrow().clone();
            let rules = rules(&cfg);
            let s = store.clone();
            let now = crate::clock::now_ms();
            match tokio::task::spawn_blocking(move || s.apply_retention(&rules, now)).await {
                Ok(Ok(done)) => {
                    for (table, reason, n) in done {
                        crate::metrics::retention_pruned(table, reason, n);
                        tracing::info!(table, reason, rows = n, "retention deleted old rows");
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "retention failed; will retry"),
                Err(e) => tracing::warn!(error = %e, "retention failed; will retry"),
            }
            let every =
                (cfg.engine.tick * 12).clamp(Duration::from_secs(1), Duration::from_secs(60));
            tokio::time::sleep(every).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ms: i64, n: u8) -> u128 {
        ((ms as u128) << 80) | n as u128
    }

    #[test]
    fn old_rows_go_by_age_then_oldest_by_bytes() {
        let rows = vec![
            (key(100, 1), 10),
            (key(200, 2), 10),
            (key(300, 3), 10),
            (key(400, 4), 10),
        ];
        let rule = Retention {
            table: "dead_letters",
            max_age: Some(Duration::from_millis(250)),
            max_bytes: Some(15),
        };
        assert_eq!(
            plan(&rows, &rule, 500),
            vec![
                (key(100, 1), "age"),
                (key(200, 2), "age"),
                (key(300, 3), "bytes")
            ]
        );
        let none = Retention {
            table: "delivery_log",
            max_age: None,
            max_bytes: Some(1000),
        };
        assert!(plan(&rows, &none, 500).is_empty());
    }
}
