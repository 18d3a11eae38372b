#!/usr/bin/env bash
# The full load comparison (issue 9): Warmline, the bare tokio + tungstenite relay and,
# when Node and loadtest/node's `ws` module are installed, a Node `ws` relay, run
# interleaved (A B C A B C) under the same load; then every Warmline scenario at full
# size. Loopback only; every run is bounded in count and time (about 12-15 minutes on
# 2 cores).
#
#   scripts/bench.sh                 # writes loadtest-report.json and loadtest-summary.md
#   OUT=/tmp/bench scripts/bench.sh  # elsewhere
#   ROUNDS=3 scripts/bench.sh        # more rounds (each about 3.5 min)
#   SCENARIOS=0 scripts/bench.sh     # the comparison only
#
# Extra arguments go to `warmline-loadtest compare` (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-.}
ROUNDS=${ROUNDS:-2}
SCENARIOS=${SCENARIOS:-1}
mkdir -p "$OUT"

cargo build --release -p warmline -p warmline-loadtest
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN="$TARGET_DIR/release/warmline-loadtest"

# The Node baseline, when Node is here (node_modules is not committed).
if command -v node >/dev/null && command -v npm >/dev/null \
  && [ ! -d loadtest/node/node_modules/ws ]; then
  (cd loadtest/node && npm ci --no-audit --no-fund) || echo "npm ci failed: no Node baseline"
fi

# 19,000 idle connections need file descriptors on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

args=(compare --rounds "$ROUNDS" --json "$OUT/loadtest-report.json" --markdown "$OUT/loadtest-summary.md")
if [ "$SCENARIOS" != 0 ]; then
  args+=(--scenarios)
fi
"$BIN" "${args[@]}" "$@" 2> >(tee "$OUT/loadtest-progress.log" >&2)
echo "wrote $OUT/loadtest-report.json and $OUT/loadtest-summary.md"
