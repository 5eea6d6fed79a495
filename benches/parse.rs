//! Parsing benchmark (issue 17): the CPU an event costs to read from a body or a log message.
//!
//! Not a timed test: it prints numbers for the README and the issue, it asserts nothing.
//! Run with `cargo bench --bench parse`. Parsing is the largest part of batched ingest's CPU
//! (`bench/profile.sh batch`), and in-process timing separates a parser change from the rest of
//! the daemon on a machine whose speed drifts: each figure is the fastest of [`ROUNDS`] rounds
//! (the round least disturbed by anything else), the median beside it.
//!
//! Bodies are the bench's own (`examples/bench.rs`): NDJSON of 1,000 trace events, cost and
//! duration on each, `error_info` on one in twenty, a hundred projects.
//! - `POST /v1/events` NDJSON: [`ingest::parse_body`], the HTTP path.
//! - the log source's message: [`message::decode`], which reads a valid message's lines once,
//!   and [`message::decode_whole`], the reference path every other message takes.

use alertd::ingest::{self, Limits};
use alertd::source::message;
use std::fmt::Write;
use std::hint::black_box;
use std::time::Instant;

/// The daemon's allocator, so allocation costs what it costs in `alertd`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const ROUNDS: usize = 21;
const BODIES_PER_ROUND: usize = 200;
const EVENTS: usize = 1_000;
const NOW: i64 = 1_800_000_000_000;
const LIMITS: Limits = Limits {
    max_events: 10_000,
    max_line: 1 << 20,
};

/// An NDJSON body of [`EVENTS`] trace events, as `bench load --mode batch` sends.
fn body() -> String {
    let mut s = String::with_capacity(EVENTS * 140);
    for n in 0..EVENTS {
        let error = if n % 20 == 0 {
            r#","error_info":{"message":"rate limited"}"#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"{{"kind":"trace","project":"proj-{}","trace_id":"t-{n}","duration_ms":{},"total_estimated_cost":0.0{:03}{error}}}"#,
            n % 100,
            200 + n % 1800,
            1 + n % 997
        );
    }
    s
}

/// (fastest, median) ns an event of `parse` over `body`.
fn time(body: &[u8], parse: impl Fn(&[u8]) -> usize) -> (f64, f64) {
    let mut ns: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let mut n = 0;
            for _ in 0..BODIES_PER_ROUND {
                n += parse(black_box(body));
            }
            assert_eq!(n, BODIES_PER_ROUND * EVENTS, "every event parses");
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    (ns[0], ns[ROUNDS / 2])
}

fn main() {
    let body = body();
    let body = body.as_bytes();
    println!(
        "alertd parsing benchmark: ns an event, {EVENTS}-event NDJSON bodies, fastest and median of {ROUNDS} rounds"
    );
    println!();
    println!("{:<46} {:>9} {:>9}", "path", "fastest", "median");
    type Path = (&'static str, Box<dyn Fn(&[u8]) -> usize>);
    let paths: [Path; 3] = [
        (
            "POST /v1/events NDJSON (ingest::parse_body)",
            Box::new(|b| ingest::parse_body(b, true, NOW, LIMITS).unwrap().len()),
        ),
        (
            "log message, one pass a line (decode)",
            Box::new(|b| message::decode(b, NOW - 1_000, NOW, LIMITS).unwrap().len()),
        ),
        (
            "log message, read whole first (decode_whole)",
            Box::new(|b| {
                message::decode_whole(b, NOW - 1_000, NOW, LIMITS)
                    .unwrap()
                    .len()
            }),
        ),
    ];
    for (name, parse) in &paths {
        let (fastest, median) = time(body, parse);
        println!("{name:<46} {fastest:>9.0} {median:>9.0}");
    }
}
