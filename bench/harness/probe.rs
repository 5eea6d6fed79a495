//! What the bench reads from outside the daemon: Prometheus text from `GET /metrics` (the
//! `alertd_tick_seconds` histogram and any later metric), `/proc/<pid>/io` write bytes, the redb
//! data file of a stopped daemon (table sizes), and an RSS guard that stops a runaway backlog
//! from taking the shared machine down. Part of `examples/bench.rs` (included by `#[path]`).

use super::*;

/// A Prometheus histogram from `/metrics`: cumulative counts per upper bound (`le`), sum, count.
#[derive(Clone, Default, Debug)]
pub(crate) struct Hist {
    pub(crate) buckets: Vec<(f64, f64)>,
    pub(crate) sum: f64,
    pub(crate) count: f64,
}

impl Hist {
    /// Reads `NAME_bucket{le=…}`, `NAME_sum` and `NAME_count` from exposition text.
    pub(crate) fn parse(text: &str, name: &str) -> Option<Hist> {
        let mut h = Hist::default();
        let mut seen = false;
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = l.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if let Some(labels) = series.strip_prefix(&format!("{name}_bucket{{")) {
                let le = labels
                    .split(',')
                    .find_map(|kv| kv.trim().strip_prefix("le=\""))
                    .map(|x| x.trim_end_matches('}').trim_end_matches('"'));
                let bound = match le {
                    Some("+Inf") => f64::INFINITY,
                    Some(b) => b.parse().unwrap_or(f64::NAN),
                    None => continue,
                };
                h.buckets.push((bound, v));
                seen = true;
            } else if series == format!("{name}_sum") {
                h.sum = v;
                seen = true;
            } else if series == format!("{name}_count") {
                h.count = v;
                seen = true;
            }
        }
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        seen.then_some(h)
    }

    /// What was observed since `earlier` (same buckets).
    pub(crate) fn since(&self, earlier: &Hist) -> Hist {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map(|x| x.1)
                .unwrap_or(0.0)
        };
        Hist {
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, c - before(*le)))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    pub(crate) fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            f64::NAN
        }
    }

    /// Quantile by linear interpolation inside the bucket that holds rank q·count, as
    /// Prometheus' `histogram_quantile` does (a rank in the +Inf bucket gives the highest finite
    /// bound). Only as fine as the buckets: alertd's tick buckets double from 1 ms.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        if self.count <= 0.0 {
            return f64::NAN;
        }
        let rank = q * self.count;
        let (mut lo, mut below) = (0.0, 0.0);
        for &(le, cum) in &self.buckets {
            if cum >= rank {
                if le.is_infinite() {
                    return lo;
                }
                let inside = cum - below;
                return if inside > 0.0 {
                    lo + (le - lo) * (rank - below) / inside
                } else {
                    le
                };
            }
            lo = le;
            below = cum;
        }
        lo
    }
}

/// Sum of the samples of metric family `name` (exact name, any labels) whose labels contain
/// `filter`; `None` when the daemon does not export it (a metric that a later change adds).
pub(crate) fn metric_opt(text: &str, name: &str, filter: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let base = series.split('{').next().unwrap_or("");
        if base == name && series.contains(filter) {
            if let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
    }
    found
}

/// Bytes the process caused to be written to the storage layer (`write_bytes` of
/// `/proc/<pid>/io`: page-cache writes attributed to the writer, fsync'd or not).
pub(crate) fn write_bytes(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

/// One redb table of a stopped daemon's data file.
#[derive(Debug)]
pub(crate) struct TableInfo {
    pub(crate) name: String,
    pub(crate) entries: u64,
    /// Leaf + branch pages × page size: what the table occupies in the file.
    pub(crate) page_bytes: u64,
    /// Key and value bytes alone.
    pub(crate) stored_bytes: u64,
}

/// redb's default page size (alertd does not change it).
pub(crate) const REDB_PAGE: u64 = 4096;

/// Every table of a redb file (opened read-only, after the daemon stopped).
pub(crate) fn redb_tables(path: &Path) -> Res<Vec<TableInfo>> {
    use redb::{MultimapTableHandle, ReadableDatabase, ReadableTableMetadata, TableHandle};
    let db = redb::ReadOnlyDatabase::open(path)?;
    let txn = db.begin_read()?;
    let mut out = Vec::new();
    for h in txn.list_tables()? {
        let name = h.name().to_string();
        let t = txn.open_untyped_table(h)?;
        let st = t.stats()?;
        out.push(TableInfo {
            name,
            entries: t.len()?,
            page_bytes: (st.leaf_pages() + st.branch_pages()) * REDB_PAGE,
            stored_bytes: st.stored_bytes(),
        });
    }
    for h in txn.list_multimap_tables()? {
        let name = h.name().to_string();
        let t = txn.open_untyped_multimap_table(h)?;
        let st = t.stats()?;
        out.push(TableInfo {
            name,
            entries: t.len()?,
            page_bytes: (st.leaf_pages() + st.branch_pages()) * REDB_PAGE,
            stored_bytes: st.stored_bytes(),
        });
    }
    Ok(out)
}

/// Tables that remember client event ids, recognised by name (`ingest_ids`, `ingest_id_times`
/// today; `remembered_ids`, `client_ids`, `dedup…` are also taken).
pub(crate) fn is_id_table(name: &str) -> bool {
    name.contains("ingest_id")
        || name.contains("client_id")
        || name.contains("remembered")
        || name.contains("dedup")
}

/// Kills a daemon whose RSS passes a cap (a runaway backlog must not take the shared machine
/// down); reports whether it did. Stops watching when dropped.
pub(crate) struct RssGuard {
    tripped: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    cap_mib: u64,
}

impl RssGuard {
    pub(crate) fn watch(pid: u32, cap_mib: u64) -> RssGuard {
        let tripped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let t2 = tripped.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let (rss, _) = rss_kib(pid);
                if rss == 0 {
                    return;
                }
                if rss / 1024 > cap_mib {
                    t2.store(true, std::sync::atomic::Ordering::SeqCst);
                    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                    return;
                }
            }
        });
        RssGuard {
            tripped,
            task,
            cap_mib,
        }
    }

    /// An error naming the cap if the guard killed the daemon.
    pub(crate) fn check(&self) -> Res<()> {
        if self.tripped.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!(
                "alertd's RSS passed the {} MiB cap (--rss-cap-mib) and it was killed",
                self.cap_mib
            )
            .into());
        }
        Ok(())
    }
}

impl Drop for RssGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fixed set of batches posted once by 4 clients, then the wait until the daemon is idle.
pub(crate) struct FixedRun {
    /// Events answered 202.
    pub(crate) events: f64,
    /// Seconds until the last 202.
    pub(crate) acked_s: f64,
    /// Seconds until the process went idle (alerts consume routed events after the ack).
    pub(crate) busy_s: f64,
    /// CPU seconds of the daemon from the first request until idle.
    pub(crate) cpu_s: f64,
    /// Request latencies, ms, sorted.
    pub(crate) lat_ms: Vec<f64>,
}

/// Posts `bodies` (`per` events each) once with 4 clients, then waits until alertd uses less
/// than 12 % of a core for 0.5 s (at most `idle_limit`).
pub(crate) async fn post_fixed(
    a: &Alertd,
    bodies: Arc<Vec<Bytes>>,
    per: usize,
    guard: &RssGuard,
    idle_limit: Duration,
) -> Res<FixedRun> {
    let pid = a.proc.pid();
    let t = Target::parse(&a.url("/v1/events"))?;
    let cpu0 = cpu_secs(pid);
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (t, bodies, next) = (t.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = connect(t.addr).await?;
            let mut ok = 0usize;
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= bodies.len() {
                    break;
                }
                let sent = Instant::now();
                let (st, _) = send(
                    &mut c,
                    &t,
                    "POST",
                    "application/x-ndjson",
                    bodies[i].clone(),
                )
                .await?;
                lat.push(sent.elapsed().as_secs_f64() * 1000.0);
                if st == 202 {
                    ok += 1;
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((ok, lat))
        }));
    }
    let mut ok = 0;
    let mut lat_ms = Vec::new();
    for t in tasks {
        match t.await? {
            Ok((n, l)) => {
                ok += n;
                lat_ms.extend(l);
            }
            Err(e) => {
                guard.check()?;
                return Err(e);
            }
        }
    }
    let acked_s = started.elapsed().as_secs_f64();
    let limit = Instant::now() + idle_limit;
    let mut last = cpu_secs(pid);
    let mut quiet = 0;
    let mut busy_until = started.elapsed();
    while Instant::now() < limit && quiet < 2 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        guard.check()?;
        let c = cpu_secs(pid);
        if c - last < 0.03 {
            quiet += 1;
        } else {
            quiet = 0;
            busy_until = started.elapsed();
        }
        last = c;
    }
    guard.check()?;
    lat_ms.sort_by(|a, b| a.total_cmp(b));
    Ok(FixedRun {
        events: (ok * per) as f64,
        acked_s,
        busy_s: busy_until.as_secs_f64().max(acked_s),
        cpu_s: cpu_secs(pid) - cpu0,
        lat_ms,
    })
}
