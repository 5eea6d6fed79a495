#!/usr/bin/env bash
# Interleaved A/B of two alertd binaries under one load: on a machine whose speed drifts by tens of
# percent within minutes, only runs taken in turn compare. Each run starts a fresh daemon on a
# fresh data dir (`bench gen-config --alerts 10`), loads it for SECS seconds and reads its CPU
# from /proc/PID/stat; the end prints each binary's medians.
#
#   bench/ab.sh BIN_A BIN_B [MODE] [SECS] [PAIRS]   (defaults: single 8 8)
#
# MODE is a `bench load --mode` (batch, batch-pad, batch-ids, single, otlp). CLIENTS=N in the
# environment sets the load's concurrent clients (default: the mode's, 64 single, 4 batched).
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1 B=$2 MODE=${3:-single} SECS=${4:-8} PAIRS=${5:-8}
BENCH=${CARGO_TARGET_DIR:-$(pwd)/target}/release/examples/bench
TICK=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/alertd-ab.XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT INT TERM

run() { # BIN -> "items/s p99_ms cpu_us_per_item"
    local bin=$1 dir port c0 c1 out
    dir=$(mktemp -d "$WORK/d.XXXX")
    port=$(( 20000 + RANDOM % 20000 ))
    "$BENCH" gen-config --alerts 10 --port "$port" --data "$dir" >"$dir/alertd.toml"
    "$bin" run -c "$dir/alertd.toml" 2>"$dir/log" &
    PID=$!
    for _ in $(seq 1 500); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.02
    done
    c0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
    out=$("$BENCH" load --url "http://127.0.0.1:$port/v1/events" --mode "$MODE" --duration "$SECS" \
        ${CLIENTS:+--clients "$CLIENTS"} | grep items)
    c1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
    kill -KILL "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    rm -rf "$dir"
    # `ok requests/s R items/s I p50 X ms p99 Y ms ...`
    echo "$out" | awk -v c=$((c1 - c0)) -v t="$TICK" -v s="$SECS" \
        '{ printf "%d %s %.2f\n", $5, $10, c / t * 1e6 / ($5 * s) }'
}

echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg); $MODE, ${CLIENTS:-default} clients, $SECS s, $PAIRS pairs"
echo "# binary items/s p99_ms cpu_us_per_item"
for _ in $(seq 1 "$PAIRS"); do
    echo "A $(run "$A")" | tee -a "$WORK/all"
    echo "B $(run "$B")" | tee -a "$WORK/all"
done
echo "# end load $(cut -d' ' -f1-3 /proc/loadavg)"
for side in A B; do
    for col in 2 3 4; do
        awk -v s=$side -v c=$col '$1 == s { print $c }' "$WORK/all" | sort -g |
            awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s ", m }'
    done | awk -v s=$side '{ printf "median %s: %d items/s, p99 %s ms, %s µs CPU an item\n", s, $1, $2, $3 }'
done
