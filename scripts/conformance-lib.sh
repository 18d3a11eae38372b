# Shared by scripts/schemathesis.sh and scripts/autobahn.sh (sourced, not run):
# the pinned Python tools in a reused venv, and a real warmline on an ephemeral port.
#
#   conformance_venv                 installs tests/conformance/requirements.txt
#   warmline_start CONFIG [ENV=V...] starts the debug binary; sets SERVER_ADDR, SERVER_LOG
#   warmline_stop                    SIGTERM, then waits for it (the EXIT trap does it too)

CONFORMANCE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warmline-target}"
VENV="${CONFORMANCE_VENV:-$HOME/.cache/warmline-venv}"
CONFORMANCE_BIN="${CONFORMANCE_BIN:-$CARGO_TARGET_DIR/debug/warmline}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/warmline-conformance.XXXXXX")"
SERVER_PID=""
SERVER_ADDR=""
SERVER_LOG="$WORK/server.log"

conformance_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$CONFORMANCE_ROOT/tests/conformance/requirements.txt"
}

# Starts warmline with CONFIG (TOML text) and extra environment; returns once it
# prints the address it listens on (read from its stdout, no polling).
warmline_start() {
    local config="$1"
    shift
    if [ ! -x "$CONFORMANCE_BIN" ]; then
        echo "no binary at $CONFORMANCE_BIN: cargo build --all-features --bin warmline" >&2
        return 1
    fi
    printf '%s\n' "$config" >"$WORK/warmline.toml"
    mkfifo "$WORK/stdout"
    env -u RUST_LOG "$@" "$CONFORMANCE_BIN" serve --config "$WORK/warmline.toml" \
        --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/stdout" 2>"$SERVER_LOG" &
    SERVER_PID=$!
    exec 9<"$WORK/stdout"
    local line
    while IFS= read -r -t 60 -u 9 line; do
        case "$line" in
        "Warmline listening on http://"*)
            SERVER_ADDR="${line#Warmline listening on http://}"
            break
            ;;
        esac
    done
    if [ -z "$SERVER_ADDR" ]; then
        echo "warmline did not start; its log:" >&2
        tail -n 50 "$SERVER_LOG" >&2
        return 1
    fi
    # Keep draining its stdout so it never blocks on a full pipe.
    cat <&9 >/dev/null &
    exec 9<&-
    echo "warmline (pid $SERVER_PID) listening on $SERVER_ADDR"
}

warmline_stop() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" || true
    fi
    SERVER_PID=""
}

# On exit: stop the server; on failure, show the tail of its log.
conformance_exit() {
    local status=$?
    warmline_stop
    if [ "$status" != 0 ] && [ -s "$SERVER_LOG" ]; then
        echo "== the last 40 lines of warmline's log ($SERVER_LOG)" >&2
        tail -n 40 "$SERVER_LOG" >&2
    fi
    if [ "$status" = 0 ]; then
        rm -rf "$WORK"
    else
        echo "(kept $WORK)" >&2
    fi
    exit "$status"
}
trap conformance_exit EXIT
