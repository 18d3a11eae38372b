#!/bin/bash
# The chaos runs of docs/reliability.md, with the history checker (tests/chaos.rs):
#   scripts/chaos.sh small   # the CI sizes (they also run in the normal test suite)
#   scripts/chaos.sh full    # the sizes of the table in docs/reliability.md
# One scenario at a time (so timings and peak memory are the gateway's own), then
# the table rows. Needs root for the disk-full run (a tmpfs is mounted), and
# PostgreSQL + Redis for the rolling restart (features postgres,redis).
set -euo pipefail
SIZE=${1:-small}
case "$SIZE" in small|full) ;; *) echo "usage: $0 [small|full]" >&2; exit 64 ;; esac
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/warmline-target}
export CHAOS_SIZE=$SIZE
ROWS=$(mktemp)
trap 'rm -f "$ROWS"' EXIT
export CHAOS_ROWS=$ROWS
status=0
cargo nextest run --all-features --test chaos --test-threads 1 --no-fail-fast \
    --success-output final || status=$?
echo
echo "| scenario | size | clients | acked | lost | duplicated | foreign | gaps | resync p50 / p99 | peak memory (gateway VmHWM) | duration |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
cat "$ROWS"
exit $status
