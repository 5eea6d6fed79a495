//! The scenarios issues 12, 17 and 21 measure: ticks at 10,000 alerts, ingest with the shipped
//! config, one-project fan-out, alerts without project filters, client ids and the data file,
//! per-event alerts' disk writes. Part of `examples/bench.rs` (included by `#[path]`); the
//! report and the targets table live there.

use super::*;
/// Issue 12: 10,000 alerts × 2 one-hour threshold triggers at the default 5 s tick. Start →
/// `/readyz`; a fixed set of events posted once; then a few more ticks with that state. Tick mean
/// and p99 come from the daemon's `alertd_tick_seconds` histogram, counting every tick from the
/// start of the load to the end (p99 interpolated inside the histogram's buckets).
pub(crate) fn ticks(ctx: &mut Ctx) -> Fut<'_> {
    Box::pin(async move {
        let n = 10_000;
        let events = if ctx.a.quick { 10_000 } else { 20_000 };
        let more_ticks = if ctx.a.quick { 2.0 } else { 6.0 };
        let scen = format!("6 ticks, {n} alerts × 2 one-hour triggers, after {events} events");
        let dir = ctx.fresh_dir("ticks");
        let port = free_port();
        let cfg = alertd_config(
            port,
            &dir,
            "5s",
            &Delivery::default(),
            &two_trigger_alerts(n, &ctx.sink.url("/ticks")),
        );
        let a = Alertd::start(&ctx.a.alertd, &dir, &cfg, port).await?;
        let pid = a.proc.pid();
        let guard = RssGuard::watch(pid, ctx.a.rss_cap_mib);
        let before = a.ticks().await;
        let bodies = Arc::new(trace_bodies(events / BATCH, BATCH));
        let run = post_fixed(&a, bodies, BATCH, &guard, Duration::from_secs(120)).await?;
        // The load is processed; let the state tick a few times.
        let idle_at = a.ticks().await.count;
        let deadline = Instant::now() + Duration::from_secs_f64(5.0 * (more_ticks + 2.0));
        while a.ticks().await.count < idle_at + more_ticks && Instant::now() < deadline {
            guard.check()?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        guard.check()?;
        let d = a.ticks().await.since(&before);
        let (rss, hwm) = rss_kib(pid);
        let g = "ticks";
        let rep = &mut ctx.report;
        rep.add(
            g,
            &scen,
            "alertd",
            "start → ready s",
            a.ready_after.as_secs_f64(),
        );
        rep.add(
            g,
            &scen,
            "alertd",
            "RSS MiB idle (after the load)",
            rss as f64 / 1024.0,
        );
        rep.add(g, &scen, "alertd", "RSS MiB (peak)", hwm as f64 / 1024.0);
        rep.add(g, &scen, "alertd", "tick mean ms", d.mean() * 1000.0);
        rep.add(
            g,
            &scen,
            "alertd",
            "tick p99 ms (interpolated)",
            d.quantile(0.99) * 1000.0,
        );
        rep.add(g, &scen, "alertd", "ticks counted", d.count);
        rep.add(
            g,
            &scen,
            "alertd",
            "processed events/s (until idle)",
            run.events / run.busy_s,
        );
        drop(a);
        ctx.cleanup(&dir);
        Ok(())
    })
}

/// Issue 12: batched ingest with the shipped config (its engine, ingest and delivery settings
/// and its alerts; only listen address, data file and alert URLs changed) for the batched-load
/// duration, which spans several of its 5 s ticks.
pub(crate) fn shipped(ctx: &mut Ctx) -> Fut<'_> {
    Box::pin(async move {
        let path = ctx.a.shipped_config.clone();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the shipped config {}: {e}", path.display()))?;
        let dir = ctx.fresh_dir("shipped");
        let port = free_port();
        let cfg = shipped_config_for(&text, port, &dir, &ctx.sink.url("/shipped"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let a = Alertd::start(&ctx.a.alertd, &dir, &cfg, port).await?;
        let pid = a.proc.pid();
        let spec = load_spec(
            "batch",
            Target::parse(&a.url("/v1/events"))?,
            None,
            secs(ctx, true),
        )?;
        let scen = format!(
            "1 batched ingest, shipped config (1,000 events/request, 4 clients, {:.0} s with ticks)",
            spec.duration.as_secs_f64()
        );
        let before = a.ticks().await;
        let cpu0 = cpu_secs(pid);
        let r = run_load(&spec).await;
        let cpu = cpu_secs(pid) - cpu0;
        let d = a.ticks().await.since(&before);
        let (_, hwm) = rss_kib(pid);
        if !r.statuses.is_empty() || r.errors > 0 {
            ctx.report.note(format!(
                "{scen}: non-202 answers {:?}, connection errors {}",
                r.statuses, r.errors
            ));
        }
        let items = r.ok as f64 * BATCH as f64;
        let (g, rep) = ("shipped", &mut ctx.report);
        rep.add(g, &scen, "alertd", "events/s", r.rps() * BATCH as f64);
        rep.add(g, &scen, "alertd", "p50 ms", r.pct_ms(0.5));
        rep.add(g, &scen, "alertd", "p99 ms", r.pct_ms(0.99));
        rep.add(
            g,
            &scen,
            "alertd",
            "CPU µs/event",
            cpu * 1e6 / items.max(1.0),
        );
        rep.add(g, &scen, "alertd", "RSS MiB (peak)", hwm as f64 / 1024.0);
        rep.add(g, &scen, "alertd", "ticks during the load", d.count);
        drop(a);
        ctx.cleanup(&dir);
        Ok(())
    })
}

/// A fixed set of batches through N alerts: acked and processed rates, request p99, CPU per
/// event (until idle) and peak RSS.
pub(crate) async fn fixed_alerts(
    ctx: &mut Ctx,
    group: &'static str,
    scen: &str,
    alerts: &str,
    bodies: Vec<Bytes>,
) -> Res<()> {
    let dir = ctx.fresh_dir(group);
    let port = free_port();
    let cfg = alertd_config(port, &dir, "5s", &Delivery::default(), alerts);
    let a = Alertd::start(&ctx.a.alertd, &dir, &cfg, port).await?;
    let pid = a.proc.pid();
    let guard = RssGuard::watch(pid, ctx.a.rss_cap_mib);
    let run = post_fixed(
        &a,
        Arc::new(bodies),
        BATCH,
        &guard,
        Duration::from_secs(120),
    )
    .await?;
    let (_, hwm) = rss_kib(pid);
    let rep = &mut ctx.report;
    rep.add(
        group,
        scen,
        "alertd",
        "acked events/s",
        run.events / run.acked_s,
    );
    rep.add(
        group,
        scen,
        "alertd",
        "processed events/s (until idle)",
        run.events / run.busy_s,
    );
    rep.add(group, scen, "alertd", "p99 ms", pct(&run.lat_ms, 0.99));
    rep.add(
        group,
        scen,
        "alertd",
        "CPU µs/event",
        run.cpu_s * 1e6 / run.events.max(1.0),
    );
    rep.add(group, scen, "alertd", "RSS MiB (peak)", hwm as f64 / 1024.0);
    drop(a);
    ctx.cleanup(&dir);
    Ok(())
}

/// Issue 12: 1,000 alerts all scoped to one project, every event in that project, so each
/// event reaches all 1,000 alerts.
pub(crate) fn fanout(ctx: &mut Ctx) -> Fut<'_> {
    Box::pin(async move {
        let events = if ctx.a.quick { 20_000 } else { 100_000 };
        let scen =
            format!("7 fan-out, 1000 alerts all matching one project ({events} events, batched)");
        let alerts = project_alerts(1000, &ctx.sink.url("/fanout"), Some("hot"));
        let bodies = trace_bodies_in(events / BATCH, BATCH, "hot");
        fixed_alerts(ctx, "fanout", &scen, &alerts, bodies).await
    })
}

/// Issue 21: 2,000 alerts without a project filter (every event of the workspace reaches all).
pub(crate) fn noproject(ctx: &mut Ctx) -> Fut<'_> {
    Box::pin(async move {
        let events = if ctx.a.quick { 10_000 } else { 50_000 };
        let scen = format!(
            "8 no project filter, 2000 alerts ({events} events over 100 projects, batched)"
        );
        let alerts = project_alerts(2000, &ctx.sink.url("/noproject"), None);
        let bodies = trace_bodies(events / BATCH, BATCH);
        fixed_alerts(ctx, "noproject", &scen, &alerts, bodies).await
    })
}

/// Issue 21: 2,000 per-event alerts (`trace:guardrails_triggered`, default 60 s debounce, 20
/// alerts per project) under a low steady load of guardrail events with 500-byte details: the
/// daemon's disk writes (`/proc/<pid>/io` write_bytes, and `alertd_store_bytes_written_total`)
/// against the bytes of accepted events. Then the same load with the alerts scoped to projects
/// no event has: what ingest alone writes, so the alerts' share is the difference.
pub(crate) fn perevent(ctx: &mut Ctx) -> Fut<'_> {
    Box::pin(async move {
        let url = ctx.sink.url("/perevent");
        perevent_run(ctx, "", &guardrail_alerts(2000, &url)).await?;
        let idle = guardrail_alerts(2000, &url).replace("[\"proj-", "[\"other-");
        perevent_run(ctx, " (alerts take none: ingest alone)", &idle).await
    })
}

async fn perevent_run(ctx: &mut Ctx, variant: &str, alerts: &str) -> Res<()> {
    {
        // PEREVENT_SECS sets a longer load, to see whether the write ratio has settled.
        let load_s: usize = std::env::var("PEREVENT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if ctx.a.quick { 10 } else { 30 });
        // 15 events every 100 ms: 150 events/s.
        let (per, every) = (15usize, Duration::from_millis(100));
        let scen = format!(
            "10 per-event, 2000 guardrail alerts, 500-byte details, 150 events/s for {load_s} s{variant}"
        );
        let dir = ctx.fresh_dir("perevent");
        let port = free_port();
        // Debounce 5 s, not the default 60 s: notifications (each carries its events) start
        // within the load, so it measures the steady state. With the default, a load shorter
        // than a minute never saw a flush: 2.4–3.1× over 10–60 s became 45× over 180 s.
        let cfg = alertd_config(port, &dir, "5s", &Delivery::default(), alerts).replacen(
            "[engine]\n",
            "[engine]\ndebounce = \"5s\"\n",
            1,
        );
        let a = Alertd::start(&ctx.a.alertd, &dir, &cfg, port).await?;
        let pid = a.proc.pid();
        let guard = RssGuard::watch(pid, ctx.a.rss_cap_mib);
        let bodies: Vec<Bytes> = (0..load_s * 10)
            .map(|j| {
                let mut s = String::new();
                for k in 0..per {
                    guardrail_line(j * per + k, &mut s);
                    s.push('\n');
                }
                Bytes::from(s)
            })
            .collect();
        let t = Target::parse(&a.url("/v1/events"))?;
        let mut c = connect(t.addr).await?;
        let before = a.ticks().await;
        let m0 = a.metrics_text().await;
        let w0 = write_bytes(pid);
        let started = Instant::now();
        let mut iv = tokio::time::interval(every);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut bytes, mut events, mut refused) = (0usize, 0usize, BTreeMap::new());
        for b in bodies {
            iv.tick().await;
            guard.check()?;
            let len = b.len();
            let (st, _) = send(&mut c, &t, "POST", "application/x-ndjson", b).await?;
            if st == 202 {
                bytes += len;
                events += per;
            } else {
                *refused.entry(st).or_insert(0u64) += 1;
            }
        }
        let took = started.elapsed().as_secs_f64();
        let written = write_bytes(pid) - w0;
        let m1 = a.metrics_text().await;
        let d = a.ticks().await.since(&before);
        let (rss, hwm) = rss_kib(pid);
        if !refused.is_empty() {
            ctx.report
                .note(format!("{scen}: requests not answered 202: {refused:?}"));
        }
        let (g, rep) = ("perevent", &mut ctx.report);
        rep.add(
            g,
            &scen,
            "alertd",
            "accepted events/s",
            events as f64 / took,
        );
        rep.add(
            g,
            &scen,
            "alertd",
            "accepted KiB/s (request bytes)",
            bytes as f64 / took / 1024.0,
        );
        rep.add(
            g,
            &scen,
            "alertd",
            "disk write KiB/s (/proc write_bytes)",
            written / took / 1024.0,
        );
        rep.add(
            g,
            &scen,
            "alertd",
            "disk writes ÷ accepted bytes",
            written / (bytes as f64).max(1.0),
        );
        let name = "alertd_store_bytes_written_total";
        if let (Some(x0), Some(x1)) = (metric_opt(&m0, name, ""), metric_opt(&m1, name, "")) {
            rep.add(
                g,
                &scen,
                "alertd",
                "alertd_store_bytes_written KiB/s",
                (x1 - x0) / took / 1024.0,
            );
        }
        let kib_per_s = |m0: f64, m1: f64| (m1 - m0) / took / 1024.0;
        // Which commits wrote them.
        let commits = [
            ("append_log", "written by append-log records KiB/s"),
            ("append", "written by event commits KiB/s"),
            ("tick", "written by tick commits KiB/s"),
            (
                "delivery_results",
                "written by delivery-result commits KiB/s",
            ),
            ("housekeeping", "written by housekeeping KiB/s"),
        ];
        // Where the writes come from: the values inserted per table (before page overhead).
        let tables = [
            ("inbox", "inbox values inserted KiB/s"),
            (
                "bucket_item_blocks",
                "bucket_item_blocks values inserted KiB/s",
            ),
            ("alert_state", "alert_state values inserted KiB/s"),
            ("outbox", "outbox values inserted KiB/s"),
            ("delivery_log", "delivery_log values inserted KiB/s"),
            ("delivery_bodies", "delivery_bodies values inserted KiB/s"),
        ];
        for (name, label, series) in [
            ("alertd_store_commit_bytes_total", "commit", &commits[..]),
            ("alertd_store_row_bytes_total", "table", &tables[..]),
        ] {
            for (value, metric) in series {
                let filter = format!("{label}=\"{value}\"");
                let at = |m: &str| metric_opt(m, name, &filter).unwrap_or(0.0);
                rep.add(g, &scen, "alertd", metric, kib_per_s(at(&m0), at(&m1)));
            }
        }
        rep.add(g, &scen, "alertd", "tick mean ms", d.mean() * 1000.0);
        rep.add(
            g,
            &scen,
            "alertd",
            "tick p99 ms (interpolated)",
            d.quantile(0.99) * 1000.0,
        );
        rep.add(
            g,
            &scen,
            "alertd",
            "RSS MiB at the end",
            rss as f64 / 1024.0,
        );
        rep.add(g, &scen, "alertd", "RSS MiB (peak)", hwm as f64 / 1024.0);
        drop(a);
        ctx.cleanup(&dir);
        Ok(())
    }
}

/// Issue 21: batched ingest without client ids, with a unique id per event, and with ids that
/// expire during the load (`dedup_window = "3s"`); the data file after each, the disk cost of a
/// remembered id (redb pages of the id tables ÷ ids, read from the file after a graceful stop),
/// and the file after the id-free burst plus an idle period (compaction).
pub(crate) fn storage(ctx: &mut Ctx) -> Fut<'_> {
    Box::pin(async move {
        let load = Duration::from_secs(if ctx.a.quick { 5 } else { 10 });
        let idle = ctx
            .a
            .idle_secs
            .unwrap_or(if ctx.a.quick { 10.0 } else { 60.0 });
        let g = "storage";
        // The second load sends the third's bytes without ids (a field alertd ignores in place
        // of `"id"`): what an id costs beyond the bytes it adds to every event.
        for (variant, field, ingest) in [
            ("no client ids", None, ""),
            (
                "same bytes without client ids (an ignored 36-character field per event)",
                Some("pad"),
                "",
            ),
            ("unique client id per event", Some("id"), ""),
            (
                "unique client ids, dedup_window 3s (ids expire during the load)",
                Some("id"),
                "[ingest]\ndedup_window = \"3s\"\n",
            ),
        ] {
            let ids = field == Some("id");
            let scen = format!(
                "9 storage, batched ingest, {variant} ({} s)",
                load.as_secs()
            );
            let dir = ctx.fresh_dir("storage");
            let port = free_port();
            let alerts = format!("{ingest}{}", scale_alerts(10, &ctx.sink.url("/storage")));
            let mut cfg = alertd_config(port, &dir, "5s", &Delivery::default(), &alerts);
            if field.is_none() {
                // The burst-then-idle measurement: compaction after a third of the idle period
                // (housekeeping runs that often too), so "within one period" fits in the wait.
                let after = format!("{:.0}s", (idle / 3.0).max(1.0));
                cfg = cfg.replacen(
                    "[storage]\n",
                    &format!("[storage]\ncompact_when_idle = \"{after}\"\n"),
                    1,
                );
            }
            let mut a = Alertd::start(&ctx.a.alertd, &dir, &cfg, port).await?;
            let pid = a.proc.pid();
            let guard = RssGuard::watch(pid, ctx.a.rss_cap_mib);
            let spec = LoadSpec {
                target: Target::parse(&a.url("/v1/events"))?,
                content_type: "application/x-ndjson",
                bodies: Arc::new(Vec::new()),
                clients: 4,
                duration: load,
                warmup: Duration::from_millis(500),
                ok: 202,
                items_per_request: BATCH,
                stamp: Some(Arc::new(Stamper::with_field(16, BATCH, field))),
            };
            let r = run_load(&spec).await;
            guard.check()?;
            let (_, hwm) = rss_kib(pid);
            let file_end = a.file_bytes();
            let accepted = metric_opt(&a.metrics_text().await, "alertd_events_total", "accepted")
                .unwrap_or(f64::NAN);
            if !r.statuses.is_empty() || r.errors > 0 {
                ctx.report.note(format!(
                    "{scen}: non-202 answers {:?}, connection errors {}",
                    r.statuses, r.errors
                ));
            }
            let rep = &mut ctx.report;
            rep.add(g, &scen, "alertd", "events/s", r.rps() * BATCH as f64);
            rep.add(g, &scen, "alertd", "p99 ms", r.pct_ms(0.99));
            rep.add(g, &scen, "alertd", "RSS MiB (peak)", hwm as f64 / 1024.0);
            rep.add(
                g,
                &scen,
                "alertd",
                "data file MiB (end of load)",
                file_end / MIB,
            );
            rep.add(
                g,
                &scen,
                "alertd",
                "file bytes per accepted event",
                file_end / accepted,
            );
            match (ids, ingest.is_empty()) {
                (false, _) if field.is_some() => drop(guard),
                (false, _) => {
                    // The burst is over: wait idle, measure the file again, then the live data.
                    let bscen = format!(
                        "9 storage, data file after the burst above, then {idle:.0} s idle"
                    );
                    let until = Instant::now() + Duration::from_secs_f64(idle);
                    while Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        guard.check()?;
                    }
                    let file_idle = a.file_bytes();
                    let text = a.metrics_text().await;
                    drop(guard);
                    let clean = a.proc.terminate(Duration::from_secs(30)).await;
                    let live = live_bytes(&dir.join("alertd.redb"), clean);
                    let rep = &mut ctx.report;
                    rep.add(
                        g,
                        &bscen,
                        "alertd",
                        "file MiB at the end of the burst",
                        file_end / MIB,
                    );
                    rep.add(
                        g,
                        &bscen,
                        "alertd",
                        "file MiB after the idle period",
                        file_idle / MIB,
                    );
                    match live {
                        Ok(l) => rep.add(
                            g,
                            &bscen,
                            "alertd",
                            "live MiB (redb pages in use at stop)",
                            l / MIB,
                        ),
                        Err(e) => rep.note(format!("{bscen}: cannot read the table sizes: {e}")),
                    }
                    for (m, label) in [
                        (
                            "alertd_store_file_bytes",
                            "alertd_store_file_bytes MiB after idle",
                        ),
                        (
                            "alertd_store_live_bytes",
                            "alertd_store_live_bytes MiB after idle",
                        ),
                    ] {
                        if let Some(v) = metric_opt(&text, m, "") {
                            rep.add(g, &bscen, "alertd", label, v / MIB);
                        }
                    }
                }
                (true, true) => {
                    drop(guard);
                    let clean = a.proc.terminate(Duration::from_secs(30)).await;
                    match id_cost(&dir.join("alertd.redb"), clean) {
                        Ok((ids, bytes, breakdown)) => {
                            let rep = &mut ctx.report;
                            rep.add(g, &scen, "alertd", "remembered ids", ids);
                            rep.add(
                                g,
                                &scen,
                                "alertd",
                                "bytes on disk per remembered id",
                                bytes / ids,
                            );
                            rep.note(format!("{scen}: tables after a graceful stop: {breakdown}"));
                        }
                        Err(e) => ctx.report.note(format!("{scen}: no id cost: {e}")),
                    }
                }
                (true, false) => {}
            }
            drop(a);
            ctx.cleanup(&dir);
        }
        Ok(())
    })
}

pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// Ids in the log and runs of a schema-4 file; `None` for older layouts.
fn id_counts(path: &Path) -> Res<Option<u64>> {
    use redb::{ReadableDatabase, ReadableTable, TableHandle};
    let db = redb::ReadOnlyDatabase::open(path)?;
    let txn = db.begin_read()?;
    if !txn.list_tables()?.any(|t| t.name() == "ingest_id_runs") {
        return Ok(None);
    }
    let runs: redb::TableDefinition<u64, (i64, i64, u64)> =
        redb::TableDefinition::new("ingest_id_runs");
    let log: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("ingest_id_log");
    let mut n = 0;
    for row in txn.open_table(runs)?.iter()? {
        n += row?.1.value().2;
    }
    for row in txn.open_table(log)?.iter()? {
        n += (row?.1.value().len().saturating_sub(8) / 16) as u64;
    }
    Ok(Some(n))
}

/// Bytes of all redb pages in use by tables (the live data) of a stopped daemon's file.
pub(crate) fn live_bytes(path: &Path, clean_stop: bool) -> Res<f64> {
    if !clean_stop {
        return Err("alertd did not stop within 30 s after SIGTERM".into());
    }
    Ok(redb_tables(path)?.iter().map(|t| t.page_bytes as f64).sum())
}

/// (remembered ids, bytes of the id tables' pages, per-table breakdown) of a stopped daemon's
/// file. Ids are counted from the id log (8-byte time + 16 bytes an id per row) and the runs'
/// index `ingest_id_runs` (run → (oldest, newest, ids)) when the file has them (schema 4);
/// older layouts held one row per id, so there the largest id table's row count is used.
pub(crate) fn id_cost(path: &Path, clean_stop: bool) -> Res<(f64, f64, String)> {
    if !clean_stop {
        return Err("alertd did not stop within 30 s after SIGTERM".into());
    }
    let tables = redb_tables(path)?;
    let runs = tables
        .iter()
        .filter(|t| t.name.starts_with("ingest_id_run."))
        .count();
    let breakdown = tables
        .iter()
        .filter(|t| t.entries > 0 && !t.name.starts_with("ingest_id_run."))
        .map(|t| {
            format!(
                "`{}` {} rows, {:.1} MiB in pages ({:.0} B/row; keys+values {:.0} B/row)",
                t.name,
                t.entries,
                t.page_bytes as f64 / MIB,
                t.page_bytes as f64 / t.entries as f64,
                t.stored_bytes as f64 / t.entries as f64
            )
        })
        .chain((runs > 0).then(|| {
            let run_bytes: u64 = tables
                .iter()
                .filter(|t| t.name.starts_with("ingest_id_run."))
                .map(|t| t.page_bytes)
                .sum();
            format!(
                "{runs} run tables `ingest_id_run.*`, {:.1} MiB in pages",
                run_bytes as f64 / MIB
            )
        }))
        .collect::<Vec<_>>()
        .join(", ");
    let id_tables: Vec<&TableInfo> = tables.iter().filter(|t| is_id_table(&t.name)).collect();
    let ids = match id_counts(path)? {
        Some(n) => n,
        None => id_tables.iter().map(|t| t.entries).max().unwrap_or(0),
    };
    if ids == 0 {
        return Err(format!("no id table recognised (tables: {breakdown})").into());
    }
    let bytes = id_tables.iter().map(|t| t.page_bytes).sum::<u64>();
    Ok((ids as f64, bytes as f64, breakdown))
}
