#!/usr/bin/env bash
# WebSocket protocol conformance: the Autobahn test-suite cases (kosoku, pinned in
# tests/conformance/requirements.txt) against /ws/customer of a real warmline,
# each case's outcome compared with tests/conformance/autobahn-baseline.json
# (docs/conformance.md explains every category). Fails on any case
# worse than its baseline; prints the server's log tail on failure.
#
#   cargo build --all-features --bin warmline && scripts/autobahn.sh [--update]
set -euo pipefail
source "$(dirname "$0")/conformance-lib.sh"

conformance_venv

# Autobahn's client sends no Origin, and opens its 517 connections one after another
# from one address, faster than the per-address limit allows (20 a second, bursts of
# 200): that limit is off here, and so is shutting out an address after three abuse
# closes (cases that end in 1008 for bad frames would shut out the ones after them);
# every other limit at its default. Defaults otherwise:
# limits.max_message_bytes 65536, so the big-message cases end in 1009.
warmline_start '
[log]
level = "warn"
[rate_limits]
connections_per_ip_per_second = 0
abuse_closes_per_ip = 0
' WARMLINE_CUSTOMER__ALLOW_MISSING_ORIGIN=true

"$VENV/bin/python" "$CONFORMANCE_ROOT/scripts/autobahn.py" \
    "ws://$SERVER_ADDR/ws/customer" \
    "$CONFORMANCE_ROOT/tests/conformance/autobahn-baseline.json" \
    --results "$WORK/autobahn-results.json" "$@"
