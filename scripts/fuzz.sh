#!/usr/bin/env bash
# Fuzzes every target of fuzz/ for SECONDS_PER_TARGET (default 20: the CI run; the
# long run of docs/fuzzing.md is 600). One job, one worker: the machine
# is shared. Exit status nonzero on any crash, with where its input was saved.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# Seeds: fuzz/corpus/<target>/ (checked in, never written). What the fuzzer finds
# grows in fuzz/work/<target>/ (ignored; kept between runs so coverage accumulates),
# crashes go to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-20}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(client_frame media_stream core_sequence)
fi
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/warmline-fuzz-target}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

echo "== cargo +$toolchain fuzz build (${targets[*]})"
# cargo-fuzz has no --locked: check the checked-in Cargo.lock is up to date first.
cargo "+$toolchain" metadata --locked --format-version 1 >/dev/null
cargo "+$toolchain" fuzz build

failed=()
for target in "${targets[@]}"; do
    mkdir -p "work/$target" "artifacts/$target"
    dict=()
    if [ -f "$target.dict" ]; then dict=("-dict=$target.dict"); fi
    log="artifacts/$target/last-run.log"
    echo "== $target: ${seconds}s"
    # libFuzzer writes new inputs to the first directory only: the seeds stay as they are.
    set +e
    cargo "+$toolchain" fuzz run "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 -print_final_stats=1 \
        -max_len=65536 -timeout=10 -rss_limit_mb=2048 "${dict[@]}" >"$log" 2>&1
    status=$?
    set -e
    # With -jobs the worker writes fuzz-0.log (echoed into $log at its end).
    rm -f fuzz-0.log
    # The figures: the last status line (executions, coverage, features) and speed.
    grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
    if [ "$status" -ne 0 ]; then
        echo "!! $target FAILED (exit $status); log: fuzz/$log"
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5 || true
        grep -E 'Test unit written to' "$log" | sed 's/^.*Test unit written to /!! crash input: /' || true
        echo "!! reproduce: cd fuzz && cargo +$toolchain fuzz run $target <crash input>"
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}"
    exit 1
fi
echo "fuzzing: no crash in ${targets[*]} (${seconds}s each)"
