#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ one after another, each for a set time, and prints how
# many inputs each executed and what it found. Fuzzing stays out of CI; every crash it finds
# belongs in tests/fuzz_regressions.rs once fixed.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 600 s each, every target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). cargo-fuzz passes nightly-only flags
# (-Zsanitizer=address, -Cpasses=sancov-module); on a stable toolchain RUSTC_BOOTSTRAP=1 lets
# rustc accept them, so no nightly is needed. One fuzzer runs at a time, in one process
# (libFuzzer's default; the machine is shared), with a 2 GiB memory cap per process.
# New interesting inputs go to fuzz/target/corpus/<target> (not committed); the seeds in
# fuzz/corpus/<target> are only read. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(ingest_json ingest_ndjson config_toml checkpoint_decode otlp_decode)
fi
export RUSTC_BOOTSTRAP=1
rss_mb="${FUZZ_RSS_MB:-2048}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
cargo fuzz build

summary=()
status=0
for t in "${targets[@]}"; do
    work="target/corpus/$t"
    mkdir -p "$work" "artifacts/$t" "corpus/$t"
    log="target/fuzz-$t.log"
    before=$(find "artifacts/$t" -type f | wc -l)
    echo "== $t: ${secs}s (log: fuzz/$log)"
    set +e
    cargo fuzz run "$t" "$work" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb="$rss_mb" -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
    corpus=$(find "$work" -type f | wc -l)
    new=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
    line="$t: ${runs:-?} executions (${speed:-?}/s), coverage ${cov:-?}, corpus $corpus, findings $new, exit $rc"
    if [ "$new" -gt 0 ] || [ "$rc" -ne 0 ]; then
        status=1
        grep -m1 -A3 -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log" || true
        ls -t "artifacts/$t" | head -n "$((new > 0 ? new : 1))" | sed "s|^|    fuzz/artifacts/$t/|"
    fi
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit "$status"
