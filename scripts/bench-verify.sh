#!/usr/bin/env bash
# Runs `lrai verify --instances` over the VNN-COMP ACAS Xu and MNIST fc benchmarks and
# compares every answer with the ground truth (expected.csv): solved, WRONG (must be 0),
# unknown, total and median time.
#
#   scripts/bench-verify.sh [acasxu|mnist_fc|all] [OUT_DIR]
#
# Environment: VERIFY_DATA (default ../shared/verification), LRAI (the binary, default
# target/release/lrai), TIMEOUT (override every instance's timeout, in seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
out=${2:-target/bench-verify}
data=${VERIFY_DATA:-../shared/verification}
lrai=${LRAI:-target/release/lrai}
mkdir -p "$out"
[ -x "$lrai" ] || cargo build --release -j2

run() {
  local bench=$1
  local extra=()
  [ -n "${TIMEOUT:-}" ] && extra=(--timeout "$TIMEOUT")
  echo "== $bench: $(grep -c . "$data/$bench/instances.csv") instances" >&2
  "$lrai" --log-level warn verify --instances "$data/$bench/instances.csv" \
    --results "$out/$bench-results.csv" "${extra[@]}" > "$out/$bench-stdout.txt"
  python3 - "$out/$bench-results.csv" "$data/$bench/expected.csv" "$bench" <<'PY'
import csv, statistics, sys
res = {(r["onnx"], r["vnnlib"]): r for r in csv.DictReader(open(sys.argv[1]))}
exp = {(r["onnx"], r["vnnlib"]): r["expected"] for r in csv.DictReader(open(sys.argv[2]))}
solved = wrong = unknown = 0
times = []
for key, r in res.items():
    t = float(r["time_s"]); times.append(t)
    e = exp.get(key, "unknown")
    if r["result"] in ("holds", "violated"):
        if e in ("holds", "violated") and r["result"] != e:
            wrong += 1
            print(f"WRONG {key[0]} {key[1]}: got {r['result']}, expected {e}")
        else:
            solved += 1
    else:
        unknown += 1
h = sum(1 for r in res.values() if r["result"] == "holds")
v = sum(1 for r in res.values() if r["result"] == "violated")
print(f"{sys.argv[3]}: {len(res)} instances, solved {solved} ({h} holds / {v} violated), "
      f"WRONG {wrong}, unknown {unknown}, total {sum(times):.1f} s, "
      f"solved-only total {sum(float(r['time_s']) for r in res.values() if r['result'] in ('holds','violated')):.1f} s, "
      f"median {statistics.median(times) if times else 0:.3f} s")
PY
}

case $which in
  acasxu) run acasxu ;;
  mnist_fc) run mnist_fc ;;
  all) run acasxu; run mnist_fc ;;
  *) echo "usage: $0 [acasxu|mnist_fc|all] [OUT_DIR]" >&2; exit 2 ;;
esac
