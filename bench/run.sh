#!/usr/bin/env bash
# Benchmarks alertd side by side with Prometheus Alertmanager and the machine's limits (issue 8),
# with the numbers issues 12, 17 and 21 ask for.
#
#   bench/run.sh            full run: every scenario 5 times (≈ 35 min on 2 cores)
#   bench/run.sh --quick    one short run of each scenario (≈ 3 min)
#   extra arguments are passed to `bench all` (e.g. --only ingest,e2e --runs 3, --idle-secs 30)
#
# PEREVENT_SECS=60 lengthens the per-event disk-write load (group perevent; 10 s quick, 30 s full).
# Scenario groups for --only: ceiling, ingest, shipped, e2e, delivery, recovery, scale, ticks,
# fanout, noproject, storage, perevent, and am (the Alertmanager peer's ingest and end-to-end).
#
# Builds alertd and examples/bench.rs in release mode (honours CARGO_TARGET_DIR, default
# target/), installs Alertmanager from Debian if it is missing and we may (root + apt-get), then
# runs `bench all`, which starts each system on 127.0.0.1 with a fresh temp data dir and a
# generated config per run, and writes the markdown table to bench/results.md (raw samples in
# bench/results.jsonl). Everything started is killed on exit, and the run is bounded by a timeout.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/alertd-bench.XXXXXX)
LIMIT=${BENCH_TIME_LIMIT:-3000}   # seconds for the whole measurement phase
QUICK=0
for a in "$@"; do [ "$a" = "--quick" ] && QUICK=1; done
[ "$QUICK" = 1 ] && LIMIT=${BENCH_TIME_LIMIT:-600}

BENCH_PID=""
cleanup() {
    local rc=$?
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        sleep 1
        kill -KILL "$BENCH_PID" 2>/dev/null || true
    fi
    # Children the bench started (alertd, alertmanager, the empty server), by pid.
    if [ -f "$WORK/pids" ]; then
        while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$WORK/pids"
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT INT TERM

echo "== building (release, target dir $TARGET)"
cargo build --release --bin alertd --example bench

AM=$(command -v prometheus-alertmanager || true)
if [ -z "$AM" ]; then
    echo "== installing prometheus-alertmanager from Debian"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager) \
            >"$WORK/apt.log" 2>&1 || true
        # The package's service must not run on the default port during the benchmark.
        command -v systemctl >/dev/null && systemctl stop prometheus-alertmanager 2>/dev/null || true
    fi
    AM=$(command -v prometheus-alertmanager || true)
    if [ -z "$AM" ]; then
        echo "!! Alertmanager could not be installed (see apt-get output below); continuing without the peer"
        tail -5 "$WORK/apt.log" 2>/dev/null || true
    fi
fi
[ -n "$AM" ] && echo "== peer: $("$AM" --version 2>&1 | head -1)"

# The NATS JetStream source scenarios need a real nats-server (Debian package).
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing nats-server from Debian"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) \
            >"$WORK/apt-nats.log" 2>&1 || echo "!! nats-server could not be installed; NATS rows will be missing"
        command -v systemctl >/dev/null && systemctl stop nats-server 2>/dev/null || true
    fi
fi

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB, commit $(git rev-parse --short HEAD)"
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"

timeout --signal=TERM --kill-after=10 "$LIMIT" \
    "$TARGET/release/examples/bench" all \
    --alertd "$TARGET/release/alertd" \
    --alertmanager "${AM:-}" \
    --workdir "$WORK" \
    --out "$ROOT/bench/results.md" \
    "$@" &
BENCH_PID=$!
wait "$BENCH_PID"
BENCH_PID=""
echo "== wrote bench/results.md"
