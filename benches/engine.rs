//! Alert engine benchmark (issue 3): evaluation cost per event and resident memory.
//!
//! Not a timed test: it prints numbers for the README and the issue, it asserts nothing.
//! Run with `cargo bench --bench engine`. Every figure is the median of [`RUNS`] runs.
//!
//! - **Evaluation cost**: events go through [`AlertState::apply`] for every configured alert, as
//!   the router delivers them (its index is workspace × event type, so all alerts on
//!   `trace:errors` receive every error trace), then every alert runs one [`AlertState::tick`].
//!   "every alert matches": unscoped triggers, every event counts in every alert.
//!   "one alert matches": each alert is scoped to its own project, so each event counts once and
//!   the other alerts only check the scope.
//! - **Memory**: a child process (so each run starts from a clean heap) builds 10,000 alerts with
//!   two threshold triggers each (`trace:errors` and `trace:cost`, 1 h windows), feeds them events
//!   spread over the hour so every ring is allocated, ticks, and reports `VmRSS` from
//!   `/proc/self/status`.

use alertd::alert::AlertState;
use alertd::config::{AlertSpec, Config};
use alertd::event::{Event, EventBody};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Runs per figure; the median is reported.
const RUNS: usize = 5;
const HOUR_MS: i64 = 3_600_000;
/// An arbitrary fixed "now" so runs are identical.
const T0: i64 = 1_800_000_000_000;
/// Roughly how many `apply` calls one timing run makes, whatever the alert count.
const APPLIES_PER_RUN: usize = 2_000_000;
/// Flag that makes the process the memory-measuring child.
const MEMORY_CHILD: &str = "--memory-child";

/// One alert with `triggers` (TOML `[[alert.trigger]]` tables), validated like a real config.
fn template(triggers: &str) -> AlertSpec {
    let text = format!("[[alert]]\nid = \"t\"\nurl = \"http://127.0.0.1:9/\"\n{triggers}");
    let cfg = Config::from_toml(Path::new("bench.toml"), &text, false).expect("valid bench config");
    cfg.alerts[0].as_ref().clone()
}

/// `n` alerts cloned from `spec`; with `scoped`, alert `i` only counts project `p{i}`.
fn alerts(spec: &AlertSpec, n: usize, scoped: bool) -> Vec<AlertState> {
    (0..n)
        .map(|i| {
            let mut s = spec.clone();
            s.id = format!("a{i}");
            if scoped {
                for t in &mut s.triggers {
                    t.projects = vec![format!("p{i}")];
                }
            }
            AlertState::new(Arc::new(s), 0)
        })
        .collect()
}

/// `count` error traces with cost and latency, spread evenly over the hour before `T0`,
/// cycling through `projects` projects.
fn events(count: usize, projects: usize) -> Vec<Event> {
    (0..count)
        .map(|i| {
            let ts = T0 - HOUR_MS + (i as i64 * HOUR_MS) / count as i64;
            Event {
                id: format!("0193a000-0000-7000-8000-{i:012}"),
                workspace: "default".into(),
                project: Some(format!("p{}", i % projects)),
                project_id: None,
                timestamp_ms: ts,
                received_ms: ts,
                user: "system".into(),
                body: EventBody::Trace {
                    trace_id: None,
                    duration_s: Some(1.25),
                    cost: Some(0.0125),
                    error: true,
                },
            }
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Medians of one evaluation scenario.
struct Timing {
    events: usize,
    ns_per_event: f64,
    ns_per_counted: f64,
    tick_ns_per_alert: f64,
}

/// Feeds events to `n` alerts and ticks them, `RUNS` times.
fn time_scenario(n: usize, scoped: bool) -> Timing {
    // A threshold no test load reaches: this measures evaluation, not notification building.
    let spec = template(
        "[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 1e12\nwindow = \"1h\"\n",
    );
    let count = (APPLIES_PER_RUN / n).clamp(200, 200_000);
    let evs = events(count, if scoped { n } else { 1 });
    let counted_per_event = if scoped { 1.0 } else { n as f64 };
    let mut per_event = Vec::new();
    let mut per_counted = Vec::new();
    let mut per_tick = Vec::new();
    let mut ids = || String::from("n");
    for _ in 0..RUNS {
        let mut states = alerts(&spec, n, scoped);
        let start = Instant::now();
        for (i, e) in evs.iter().enumerate() {
            let seq = i as u64 + 1;
            for s in states.iter_mut() {
                black_box(s.apply(seq, e));
            }
        }
        let apply_ns = start.elapsed().as_nanos() as f64;
        let start = Instant::now();
        for s in states.iter_mut() {
            black_box(s.tick(T0, &mut ids));
            black_box(s.take_checkpoint_if_dirty());
        }
        let tick_ns = start.elapsed().as_nanos() as f64;
        per_event.push((apply_ns + tick_ns) / count as f64);
        per_counted.push(apply_ns / (count as f64 * counted_per_event));
        per_tick.push(tick_ns / n as f64);
    }
    Timing {
        events: count,
        ns_per_event: median(per_event),
        ns_per_counted: median(per_counted),
        tick_ns_per_alert: median(per_tick),
    }
}

/// `VmRSS` of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

const MEMORY_ALERTS: usize = 10_000;
const MEMORY_EVENTS: usize = 120;

/// The memory child: prints "baseline_kib after_kib".
fn memory_child() {
    let spec = template(
        "[[alert.trigger]]\nevent = \"trace:errors\"\nthreshold = 1e12\nwindow = \"1h\"\n\
         [[alert.trigger]]\nevent = \"trace:cost\"\nthreshold = 1e12\nwindow = \"1h\"\n",
    );
    let evs = events(MEMORY_EVENTS, 1);
    let baseline = rss_kib();
    let mut states = alerts(&spec, MEMORY_ALERTS, false);
    for (i, e) in evs.iter().enumerate() {
        for s in states.iter_mut() {
            s.apply(i as u64 + 1, e);
        }
    }
    let mut ids = || String::from("n");
    for s in states.iter_mut() {
        black_box(s.tick(T0, &mut ids));
        black_box(s.take_checkpoint_if_dirty());
    }
    let after = rss_kib();
    black_box(&states);
    println!("{baseline} {after}");
}

/// Runs the memory child `RUNS` times; medians of (baseline, after) in MiB.
fn memory() -> (f64, f64) {
    let exe = std::env::current_exe().expect("own executable");
    let mut base = Vec::new();
    let mut after = Vec::new();
    for _ in 0..RUNS {
        let out = std::process::Command::new(&exe)
            .arg(MEMORY_CHILD)
            .output()
            .expect("run the memory child");
        assert!(out.status.success(), "memory child failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<f64> = text
            .split_whitespace()
            .map(|x| x.parse::<f64>().expect("KiB") / 1024.0)
            .collect();
        base.push(v[0]);
        after.push(v[1]);
    }
    (median(base), median(after))
}

fn main() {
    if std::env::args().any(|a| a == MEMORY_CHILD) {
        memory_child();
        return;
    }
    println!("alertd engine benchmark: AlertState::apply + tick, median of {RUNS} runs");
    println!();
    println!(
        "{:<22} {:>7} {:>8} {:>12} {:>20} {:>14}",
        "scenario", "alerts", "events", "ns/event", "ns/counted trigger", "tick ns/alert"
    );
    for scoped in [false, true] {
        for n in [1, 100, 10_000] {
            let t = time_scenario(n, scoped);
            println!(
                "{:<22} {:>7} {:>8} {:>12.1} {:>20.1} {:>14.1}",
                if scoped {
                    "one alert matches"
                } else {
                    "every alert matches"
                },
                n,
                t.events,
                t.ns_per_event,
                t.ns_per_counted,
                t.tick_ns_per_alert
            );
        }
    }
    println!();
    println!("ns/event: apply to every alert the router delivers it to, plus the event's share of one tick");
    println!("ns/counted trigger: apply time divided by the triggers that counted the event");
    println!();
    let (base, after) = memory();
    println!(
        "memory: {MEMORY_ALERTS} alerts x 2 threshold triggers (1h windows), {MEMORY_EVENTS} events each:"
    );
    println!(
        "  VmRSS {after:.1} MiB (process baseline {base:.1} MiB, engine state {:.1} MiB)",
        after - base
    );
}
