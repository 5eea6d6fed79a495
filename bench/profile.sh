#!/usr/bin/env bash
# Profiles alertd under the benchmark's loads with `perf` (apt-get install linux-perf) and prints
# the hottest symbols (self and children). Run after bench/run.sh built the binaries.
#
#   bench/profile.sh [batch|single|fanout|ids|pad|nats ...]  (default: batch single fanout; ~30 s each)
#
# batch   – 10 alerts, NDJSON batches of 1,000 trace events, 4 clients
# single  – 10 alerts, one event per request, 64 clients
# fanout  – 10,000 alerts over 100 projects, batched ingest (the router/alert fan-out)
# ids     – 10 alerts, batched ingest with a unique client id on every event (issue 21)
# pad     – as ids, the same bytes without ids (the id field renamed): what ids cost is ids − pad
# nats    – 10 alerts, a JetStream backlog of NATS_MESSAGES (default 2,000) NDJSON messages of
#           1,000 trace events drained by the source (needs nats-server, Debian package)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$(pwd)/target}
ALERTD=$TARGET/release/alertd
BENCH=$TARGET/release/examples/bench
SECS=${PROFILE_SECS:-8}
OUT=${PROFILE_OUT:-$(mktemp -d /tmp/alertd-profile.XXXXXX)}
command -v perf >/dev/null || { echo "perf is not installed (apt-get install -y linux-perf)"; exit 1; }
PID=""
NATS_PID=""
cleanup() {
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true
    [ -n "$NATS_PID" ] && kill -KILL "$NATS_PID" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

profile() {
    local name=$1 alerts=$2 mode=$3
    local dir=$OUT/$name port
    port=$(( 20000 + RANDOM % 20000 ))
    mkdir -p "$dir"
    "$BENCH" gen-config --alerts "$alerts" --port "$port" --data "$dir" >"$dir/alertd.toml"
    RUST_LOG=info "$ALERTD" run -c "$dir/alertd.toml" 2>"$dir/alertd.log" &
    PID=$!
    for _ in $(seq 1 500); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.02
    done
    perf record -F 299 --call-graph dwarf,16384 -p "$PID" -o "$dir/perf.data" -- sleep "$((SECS + 2))" 2>/dev/null &
    local perf_pid=$!
    sleep 0.5
    "$BENCH" load --url "http://127.0.0.1:$port/v1/events" --mode "$mode" --duration "$SECS" | tee "$dir/load.txt"
    wait "$perf_pid" || true
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
    report "$name"
}

report() {
    local name=$1 dir=$OUT/$1
    echo "== $name: top symbols by self time"
    perf report -i "$dir/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
        | grep -E '^ +[0-9]' | head -25 | tee "$dir/self.txt" || true
    echo "== $name: top symbols including callees"
    perf report -i "$dir/perf.data" --children --sort symbol --stdio -g none 2>/dev/null \
        | grep -E '^ +[0-9]' | head -40 | tee "$dir/children.txt" || true
}

# The NATS source: publish a backlog first, then start alertd under perf and let it drain.
profile_nats() {
    local dir=$OUT/nats port nport nats_bin messages=${NATS_MESSAGES:-2000}
    nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
    [ -x "$nats_bin" ] || { echo "nats-server is not installed (apt-get install nats-server)"; exit 1; }
    port=$(( 20000 + RANDOM % 20000 ))
    nport=$(( port + 1 ))
    mkdir -p "$dir"
    "$nats_bin" -js -a 127.0.0.1 -p "$nport" -sd "$dir/jetstream" >"$dir/nats-server.log" 2>&1 &
    NATS_PID=$!
    for _ in $(seq 1 100); do
        "$BENCH" nats-publish --url "nats://127.0.0.1:$nport" --messages "$messages" && break
        sleep 0.1
    done
    "$BENCH" gen-config --alerts 10 --port "$port" --data "$dir" --nats "nats://127.0.0.1:$nport" >"$dir/alertd.toml"
    local t0 acked=0
    t0=$(date +%s.%N)
    RUST_LOG=info "$ALERTD" run -c "$dir/alertd.toml" 2>"$dir/alertd.log" &
    PID=$!
    perf record -F 299 --call-graph dwarf,16384 -p "$PID" -o "$dir/perf.data" 2>/dev/null &
    local perf_pid=$!
    for _ in $(seq 1 3000); do    # at most 10 minutes
        sleep 0.2
        acked=$(curl -sf "http://127.0.0.1:$port/metrics" 2>/dev/null \
            | awk '/^alertd_source_messages_total.*outcome="acked"/ {print $2}')
        acked=${acked:-0}
        [ "${acked%.*}" -ge "$messages" ] && break
    done
    echo "nats: $messages messages of 1,000 events drained in $(echo "$(date +%s.%N) - $t0" | bc) s (incl. start-up, under perf)" | tee "$dir/load.txt"
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    kill -KILL "$PID" "$NATS_PID" 2>/dev/null || true
    wait "$PID" "$NATS_PID" 2>/dev/null || true
    PID=""; NATS_PID=""
    report nats
    # The stream and the data file hold the whole backlog (~140 MB per 1,000 messages).
    rm -rf "$dir/jetstream" "$dir"/*.redb
}

[ $# -eq 0 ] && set -- batch single fanout
for s in "$@"; do
    case $s in
        batch) profile batch 10 batch ;;
        single) profile single 10 single ;;
        fanout) profile fanout 10000 batch ;;
        ids) profile ids 10 batch-ids ;;
        pad) profile pad 10 batch-pad ;;
        nats) profile_nats ;;
        *) echo "unknown profile $s"; exit 2 ;;
    esac
done
echo "perf data and reports in $OUT"
