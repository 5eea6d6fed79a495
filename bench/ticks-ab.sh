#!/usr/bin/env bash
# Interleaved A/B of two alertd binaries on the ticks scenario (10,000 alerts × 2 one-hour
# triggers, 20,000 events, six ticks): one `bench all --only ticks --runs 1` each, in turn, with
# the scheduler's per-tick debug line on, so each run also prints its slowest tick split into
# the wait for the router, the alerts' answers and the store commit.
#
#   bench/ticks-ab.sh BIN_A BIN_B [PAIRS]   (default 3 pairs; ≈ 1 min a pair on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1 B=$2 PAIRS=${3:-3}
BENCH=${CARGO_TARGET_DIR:-$(pwd)/target}/release/examples/bench
WORK=$(mktemp -d /tmp/alertd-ticks-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT INT TERM

run() { # BIN -> "mean_ms p99_ms | slowest tick's debug fields"
    local w
    w=$(mktemp -d "$WORK/r.XXXX")
    RUST_LOG=info,alertd::scheduler=debug "$BENCH" all --alertd "$1" --workdir "$w" \
        --out "$w/r.md" --only ticks --runs 1 >"$w/log" 2>&1
    local mean p99 slowest
    mean=$(awk -F'|' '/tick mean ms/ { gsub(/ /, "", $5); print $5 }' "$w/r.md")
    p99=$(awk -F'|' '/tick p99 ms/ { gsub(/ /, "", $5); print $5 }' "$w/r.md")
    slowest=$(find "$w" -name 'alertd.*.log' -exec grep -h 'scheduler: tick ' {} + |
        sed 's/.*scheduler: tick //' | awk '{ split($1, a, "\""); print a[2], $0 }' |
        sort -g -r | head -1 | cut -d' ' -f2-)
    rm -rf "$w"
    echo "mean $mean ms, p99 $p99 ms | slowest: $slowest"
}

echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg); $PAIRS pairs"
for _ in $(seq 1 "$PAIRS"); do
    echo "A $(run "$A")"
    echo "B $(run "$B")"
done
echo "# end load $(cut -d' ' -f1-3 /proc/loadavg)"
