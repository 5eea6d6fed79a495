#!/usr/bin/env bash
# Checks systemd/alertd.service with Debian's systemd tools:
#   1. `systemd-analyze verify` (syntax, directives, executables), and
#   2. `systemd-analyze security` (the exposure score; lower is better, 10 = unprotected).
#
# `verify` insists that ExecStart's binary exists. When /usr/local/bin/alertd is not installed,
# the unit is verified as a copy whose ExecStart points at the freshly built binary instead;
# every other line is checked as written.
#
# Usage: scripts/verify-systemd.sh [path/to/alertd]   (default: cargo build --release output)
# Needs: systemd-analyze (apt-get install systemd).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
unit="$root/systemd/alertd.service"
installed=/usr/local/bin/alertd

command -v systemd-analyze >/dev/null || {
    echo "systemd-analyze not found: apt-get install systemd" >&2
    exit 2
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
check="$work/alertd.service"
if [[ -x "$installed" ]]; then
    cp "$unit" "$check"
else
    bin=${1:-}
    if [[ -z "$bin" ]]; then
        target=${CARGO_TARGET_DIR:-$root/target}
        bin="$target/release/alertd"
        [[ -x "$bin" ]] || (cd "$root" && cargo build --release --bin alertd)
    fi
    bin=$(realpath "$bin")
    echo "note: $installed is not installed; verifying with ExecStart=$bin"
    sed "s|$installed|$bin|g" "$unit" >"$check"
fi

echo "== alertd check-config systemd/alertd.toml (the config the unit expects)"
bin_used=$(grep -Eo '^ExecStart=[^ ]+' "$check" | cut -d= -f2)
"$bin_used" check-config -c "$root/systemd/alertd.toml"

echo "== systemd-analyze verify"
# verify prints problems and exits non-zero on errors; warnings about units it cannot see on a
# build machine (none expected) would show here too.
out=$(systemd-analyze verify "$check" 2>&1) || {
    echo "$out"
    echo "FAILED: systemd-analyze verify" >&2
    exit 1
}
if [[ -n "$out" ]]; then
    echo "$out"
    echo "FAILED: systemd-analyze verify printed warnings" >&2
    exit 1
fi
echo "ok"

echo "== systemd-analyze security"
# --offline reads the unit file instead of asking a running systemd (none on a build host).
systemd-analyze security --offline=true --no-pager "$check" | tee "$work/security.txt"
score=$(grep -Eo 'Overall exposure level for [^:]+: [0-9.]+' "$work/security.txt" | grep -Eo '[0-9.]+$')
echo "exposure score: $score"
