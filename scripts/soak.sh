#!/usr/bin/env bash
# Long crash-safety soak, outside CI: the torture test of tests/crash_e2e.rs with more batches
# and kills, in release mode. Usage: scripts/soak.sh [MINUTES]   (default 10)
# It prints the number of kills, the events counted exactly once, and the data file size over
# time (it must stay flat: the inbox is pruned once every alert applied it).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
# Measured on the 2-core machine (debug build): ~13 batches/s and ~5 kills/s while posting;
# size both to the time asked, asking for about half the kills seen.
export TORTURE_BATCHES=$(( minutes * 60 * 12 ))
export TORTURE_MIN_KILLS=$(( minutes * 60 * 5 / 2 ))
echo "soak: ${minutes} min target, ${TORTURE_BATCHES} batches of 40 events, at least ${TORTURE_MIN_KILLS} kill -9s"
start=$(date +%s)
cargo test --release --test crash_e2e kill_nine_at_random_moments -- --nocapture 2>&1 | grep -E "torture:|test result|panicked|FAILED" 
echo "soak: took $(( $(date +%s) - start )) s"
