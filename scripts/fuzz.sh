#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each (default 60) and prints executions and
# crashes per target. Needs the nightly toolchain (already installed beside stable) and
# cargo-fuzz (installed from crates.io into ./.tools when missing). Targets build with -O
# (release, no debug assertions); FUZZ_BUILD_ARGS=--debug-assertions checks overflows too.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Crashes are left in fuzz/artifacts/TARGET/; copy each into fuzz/regressions/TARGET/ so
# the test command replays it, and fix it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
export PATH="$PWD/.tools/bin:$PATH"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz into .tools ..."
    cargo install --locked --root .tools cargo-fuzz
fi
if [ -z "${SKIP_SEEDS:-}" ]; then cargo run --release -q -p lrai-fuzz --example write_seeds fuzz/corpus; fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi
mkdir -p fuzz/logs
printf '%-16s %14s %10s %8s\n' target executions exec/s crashes
for t in "${targets[@]}"; do
    log=fuzz/logs/$t.log
    set +e
    (cd fuzz && cargo +nightly fuzz run ${FUZZ_BUILD_ARGS:--O} "$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -max_len=65536) >"$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    crashes=$(ls "fuzz/artifacts/$t" 2>/dev/null | grep -c '^crash-\|^oom-\|^timeout-' || true)
    printf '%-16s %14s %10s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$crashes"
    if [ $rc -ne 0 ] && [ "$crashes" = 0 ]; then
        echo "  $t exited with $rc; see $log"
    fi
done
