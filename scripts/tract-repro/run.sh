#!/usr/bin/env bash
# Runs the tract reproducers written by make.py: each case with `lrai run` on tract and on
# ONNX Runtime (outputs printed in full, or the error), then on tract alone without LRAI's
# workarounds (crates/lrai-backend/examples/tract_raw.rs: fresh state per run, then one
# reused SimpleState). Results and causes: docs/tract-upstream.md.
#
#   .venv/bin/python scripts/tract-repro/make.py /tmp/tract-repro
#   cargo build --release -p lrai-backend --example tract_raw
#   LRAI_ORT_LIB=.../libonnxruntime.so.1.31.1 scripts/tract-repro/run.sh /tmp/tract-repro [CASE...]
#
# LRAI (default target/release/lrai), TRACT_RAW (default target/release/examples/tract_raw)
# and PYTHON (default .venv/bin/python) override the tools. Exits 0 once every case ran:
# the cases are defects, so their failures are the expected output, not this script's.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:?usage: run.sh DIR [CASE...] (DIR written by make.py)}
shift
lrai=${LRAI:-$root/target/release/lrai}
raw=${TRACT_RAW:-$root/target/release/examples/tract_raw}
python=${PYTHON:-$root/.venv/bin/python}
[[ -f $dir/cases.json ]] || { echo "no $dir/cases.json: run make.py $dir first" >&2; exit 2; }
[[ -x $lrai ]] || { echo "no lrai at $lrai: cargo build --release" >&2; exit 2; }
[[ -n ${LRAI_ORT_LIB:-} ]] || echo "note: LRAI_ORT_LIB unset; lrai looks for ONNX Runtime itself" >&2
[[ -x $raw ]] || echo "note: no $raw (cargo build --release -p lrai-backend --example tract_raw): tract-alone runs skipped" >&2

cases=("$@")
if ((${#cases[@]} == 0)); then
    mapfile -t cases < <("$python" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))))' "$dir/cases.json")
fi
out=$(mktemp -d)
declare -A status
trap 'rm -rf "$out"' EXIT

# Prints every output `lrai run --output-dir` wrote, in full.
show_outputs() {
    "$python" - "$1" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
np.set_printoptions(precision=6, linewidth=120, threshold=10_000)
d = Path(sys.argv[1])
for o in json.loads((d / "outputs.json").read_text())["outputs"]:
    a = np.load(d / o["file"], allow_pickle=False)
    print(f"  {o['name']}: {o['dtype']} {list(a.shape)} {np.array2string(a.ravel(), separator=', ')}")
EOF
}

# One line: do the two backends' outputs agree (same shape and dtype; integers exactly,
# floats within |t-o| <= 1e-5 + 1e-4*|o|)?
compare() {
    "$python" - "$1" "$2" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
t, o = (Path(p) for p in sys.argv[1:])
worst, bad = 0.0, []
for spec in json.loads((o / "outputs.json").read_text())["outputs"]:
    b = np.load(o / spec["file"])
    a = np.load(t / spec["file"]) if (t / spec["file"]).exists() else None
    if a is None or a.shape != b.shape or a.dtype != b.dtype:
        bad.append(f"{spec['name']} (shape or dtype)")
        continue
    if a.dtype.kind in "biu":  # integers exactly (float64 would hide a difference of 1 at 2^62)
        diff = np.abs(a.astype(object) - b.astype(object))
        worst = max(worst, float(diff.max(initial=0)))
        if not np.array_equal(a, b):
            bad.append(spec["name"])
        continue
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    worst = max(worst, float(diff.max(initial=0.0)))
    if np.any(diff > 1e-5 + 1e-4 * np.abs(b.astype(np.float64))):
        bad.append(spec["name"])
verdict = "DIFFER in " + ", ".join(bad) if bad else "match"
print(f"--- tract vs onnxruntime: {verdict} (max |diff| {worst:.3g})")
EOF
}

for name in "${cases[@]}"; do
    what=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$dir/cases.json" "$name")
    echo "=== $name: $what"
    for backend in tract onnxruntime; do
        rm -rf "${out:?}/$backend"
        log=$("$lrai" run "$dir/$name.onnx" -i "$dir/$name.npz" --backend "$backend" \
            --log-level warn --output-dir "$out/$backend" 2>&1 >/dev/null)
        rc=$?
        echo "--- lrai run --backend $backend (exit $rc)"
        [[ -n $log ]] && sed 's/^/  /' <<<"$log"
        ((rc == 0)) && show_outputs "$out/$backend"
        status[$backend]=$rc
    done
    ((status[tract] == 0 && status[onnxruntime] == 0)) && compare "$out/tract" "$out/onnxruntime"
    if [[ -f $dir/$name.ref.onnx ]] && ((status[tract] == 0)); then
        # The same model without the attribute tract ignores: does tract compute exactly that?
        rm -rf "${out:?}/ref"
        "$lrai" run "$dir/$name.ref.onnx" -i "$dir/$name.npz" --backend onnxruntime \
            --log-level error --output-dir "$out/ref" >/dev/null 2>&1 &&
            compare "$out/tract" "$out/ref" | sed "s/onnxruntime:/onnxruntime on $name.ref.onnx (attribute removed):/"
    fi
    if [[ -x $raw ]]; then
        echo "--- tract alone (tract_raw --runs 2)"
        RUST_BACKTRACE=0 "$raw" "$dir/$name.onnx" "$dir/$name.npz" --runs 2 2>&1 | sed 's/^/  /'
    fi
    echo
done
