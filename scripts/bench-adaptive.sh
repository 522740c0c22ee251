#!/usr/bin/env bash
# Issue 7's scenario: does the adaptive scheduler beat every static batching setting?
#
# For mobilenet_v2 (examples/models) and minilm_l6 (../shared/models/minilm_l6.onnx, sequence
# lengths log-normal in 8..256), one `lrai serve` per (model, configuration), one at a time:
#   none        max_batch_size set, no dynamic_batching (every request runs alone)
#   default     dynamic_batching {} (Triton's default: no queue delay)
#   s<B>_<D>us  dynamic_batching with max_batch_size B, max_queue_delay_microseconds D
#               (the static sweep; the best of none/default/s* is "best static")
#   adaptive    parameters lrai.slo_p95_ms = SLO (and, for minilm, lrai.pad_buckets); a
#               server that does not know the keys warns and batches statically
# Loads, from `lrai bench` (open loop, latency from the scheduled send time):
#   steady      Poisson at rates = single-request capacity (calibrated first) x factors
#   burst       on/off bursts 200 ms on / 800 ms off at peak rates x factors
# Per configuration: the highest offered rate with p95 <= SLO (steady and burst) and SLO
# attainment at each rate. Output in $OUT (default out/bench-adaptive): report.md, raw/*.json
# (lrai bench reports), plots/*.{svg,png}.
#
# Usage: scripts/bench-adaptive.sh                (about 30 min on 2 cores)
#   BENCH_QUICK=1     3 s points, fewer rates and configurations (about 5 min)
#   MODELS="minilm_l6"  only these models
#   POINT_S=8 WARMUP_S=1  seconds measured / warmed up per load point
#   SLO_MS_mobilenet_v2=.. SLO_MS_minilm_l6=..  objectives (default: 4 x the calibrated
#                     single-request p50 and at least 2 x its p95 (so that every
#                     configuration meets it at light load, mixed lengths included), >= 10 ms)
#   LRAI_BIN=path     use this lrai binary instead of building one
#   REPORT_ONLY=1     only rewrite the report and plots from $OUT/raw
#   BACKEND="--backend tract"  server backend flags (default: ONNX Runtime from .venv if found)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
OUT=${OUT:-$ROOT/out/bench-adaptive}
QUICK=${BENCH_QUICK:-0}
MODELS=${MODELS:-"mobilenet_v2 minilm_l6"}
if [ "$QUICK" = 1 ]; then
  POINT_S=${POINT_S:-3}; STEADY_FACTORS=${STEADY_FACTORS:-"0.5 0.8 1.1"}; BURST_FACTORS=${BURST_FACTORS:-"0.75 1.5"}
  STATIC_SWEEP=${STATIC_SWEEP:-"8:2000"}
else
  POINT_S=${POINT_S:-8}; STEADY_FACTORS=${STEADY_FACTORS:-"0.4 0.55 0.7 0.85 1.0 1.2 1.5"}; BURST_FACTORS=${BURST_FACTORS:-"0.5 0.75 1 1.25 1.5 2"}
  STATIC_SWEEP=${STATIC_SWEEP:-"4:1000 4:5000 MAX:1000 MAX:5000"}
fi
WARMUP_S=${WARMUP_S:-1}
PORT=${PORT:-18900}
REPORT_ONLY=${REPORT_ONLY:-0}
mkdir -p "$OUT/raw" "$OUT/logs" "$OUT/plots"
[ "$REPORT_ONLY" = 1 ] || rm -f "$OUT"/raw/*.json

if [ -z "${LRAI_BIN:-}" ]; then
  cargo build -q --release --manifest-path "$ROOT/Cargo.toml"
  LRAI_BIN=$ROOT/target/release/lrai
fi
if [ -z "${BACKEND+x}" ]; then
  ORT_LIB=$(ls "$ROOT"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1 || true)
  if [ -n "$ORT_LIB" ]; then BACKEND="--backend onnxruntime --ort-lib $ORT_LIB"; else BACKEND="--backend tract"; fi
fi
echo "lrai: $LRAI_BIN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')), backend: $BACKEND" >&2

SERVER_PGID=""
start_server() { # REPO LOG
  setsid "$LRAI_BIN" serve --model-repository "$1" --address 127.0.0.1 --http-port "$PORT" \
    --grpc-port $((PORT + 1)) --metrics-port $((PORT + 2)) $BACKEND --log-level warn >"$2" 2>&1 </dev/null &
  SERVER_PGID=$!
  for _ in $(seq 600); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/v2/health/ready" && return 0
    kill -0 "$SERVER_PGID" 2>/dev/null || { echo "server died, see $2" >&2; return 1; }
    sleep 0.25
  done
  echo "server not ready after 150 s, see $2" >&2; return 1
}
stop_server() {
  [ -n "$SERVER_PGID" ] || return 0
  kill -TERM -- -"$SERVER_PGID" 2>/dev/null || true
  for _ in $(seq 40); do kill -0 -- -"$SERVER_PGID" 2>/dev/null || { SERVER_PGID=""; return 0; }; sleep 0.25; done
  kill -KILL -- -"$SERVER_PGID" 2>/dev/null || true
  SERVER_PGID=""
}
TMP=$(mktemp -d)
trap 'stop_server; rm -rf "$TMP"' EXIT INT TERM

# model_file MODEL; max_batch MODEL; gen_flags MODEL
model_file() { case $1 in mobilenet_v2) echo "$ROOT/examples/models/mobilenet_v2/1/model.onnx";; minilm_l6) echo "${MINILM:-$SHARED/models/minilm_l6.onnx}";; esac; }
max_batch() { case $1 in mobilenet_v2) echo 8;; *) echo 16;; esac; }
gen_flags() { case $1 in minilm_l6) echo "--seq-len-dist lognormal:8:256 --int-range 1000:30522";; *) echo "";; esac; }

# repo MODEL NAME BODY: a one-model repository whose config.pbtxt is BODY (inputs and outputs
# auto-completed from the ONNX file).
repo() {
  local dir=$TMP/$1-$2
  mkdir -p "$dir/$1/1"
  ln -sf "$(model_file "$1")" "$dir/$1/1/model.onnx"
  printf 'name: "%s"\nplatform: "onnxruntime_onnx"\n%s\ninstance_group [ { count: 1 kind: KIND_CPU } ]\n' "$1" "$3" >"$dir/$1/config.pbtxt"
  echo "$dir"
}

# bench MODEL TAG ARGS...: one lrai bench run against the server, JSON into raw/
bench() {
  local model=$1 tag=$2; shift 2
  # shellcheck disable=SC2046
  "$LRAI_BIN" bench -m "$model" -u "127.0.0.1:$PORT" $(gen_flags "$model") \
    --warmup "$WARMUP_S" --duration "$POINT_S" --max-in-flight 256 --timeout-ms 5000 \
    --metrics-url "http://127.0.0.1:$((PORT + 2))/metrics" --json "$OUT/raw/${model}__${tag}.json" "$@" \
    >"$OUT/logs/${model}__${tag}.txt" 2>&1 || { echo "  lrai bench failed, see $OUT/logs/${model}__${tag}.txt" >&2; return 1; }
}

csv() { echo "$*" | tr ' ' ','; }
times() { python3 -c "import sys; print(' '.join(f'{float(sys.argv[1])*float(f):.1f}' for f in sys.argv[2:]))" "$@"; }

[ "$REPORT_ONLY" = 1 ] && MODELS=""
for model in $MODELS; do
  file=$(model_file "$model")
  if [ ! -f "$file" ]; then echo "== $model: $file not found, skipped" >&2; continue; fi
  mb=$(max_batch "$model")
  echo "== $model: calibration (no batching, concurrency 1)" >&2
  dir=$(repo "$model" none "max_batch_size: $mb")
  start_server "$dir" "$OUT/logs/$model-none.log"
  bench "$model" calib --concurrency 1
  read -r MU P50 P95 < <(python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['levels'][0]['summary']; print(s['throughput_rps'], s['latency_ms']['p50'], s['latency_ms']['p95'])" "$OUT/raw/${model}__calib.json")
  slo_var=SLO_MS_$model
  SLO=${!slo_var:-$(python3 -c "import sys; print(max(10, round(4*float(sys.argv[1])), round(2*float(sys.argv[2]))))" "$P50" "$P95")}
  RATES=$(times "$MU" $STEADY_FACTORS); PEAKS=$(times "$MU" $BURST_FACTORS)
  BURSTS=$(for r in $PEAKS; do printf '200:800:%s ' "$r"; done)
  echo "   capacity alone ${MU}/s, p50 ${P50} ms, p95 ${P95} ms -> SLO ${SLO} ms; steady rates: $RATES; burst peaks: $PEAKS" >&2
  echo "{\"model\": \"$model\", \"slo_ms\": $SLO, \"capacity_rps\": $MU, \"p50_ms\": $P50}" >"$OUT/raw/${model}__meta.json"

  configs="none default"
  for s in $STATIC_SWEEP; do b=${s%%:*}; [ "$b" = MAX ] && b=$mb; configs="$configs s${b}_${s##*:}us"; done
  configs="$configs adaptive"
  for cfg in $configs; do
    case $cfg in
      none) body="max_batch_size: $mb";;
      default) body="max_batch_size: $mb
dynamic_batching { }";;
      s*) b=${cfg#s}; b=${b%%_*}; d=${cfg#*_}; d=${d%us}
          body="max_batch_size: $b
dynamic_batching { max_queue_delay_microseconds: $d }";;
      adaptive)
          pad=""; [ "$model" = minilm_l6 ] && pad='parameters { key: "lrai.pad_buckets" value: { string_value: "16,32,64,128,256" } }'
          body="max_batch_size: $mb
dynamic_batching { }
parameters { key: \"lrai.slo_p95_ms\" value: { string_value: \"$SLO\" } }
$pad";;
    esac
    if [ "$cfg" != none ]; then
      stop_server
      dir=$(repo "$model" "$cfg" "$body")
      start_server "$dir" "$OUT/logs/$model-$cfg.log"
    fi
    echo "-- $model $cfg" >&2
    bench "$model" "${cfg}__steady" --rate "$(csv $RATES)" --slo-ms "$SLO" || true
    bench "$model" "${cfg}__burst" --burst "$(csv $BURSTS)" --slo-ms "$SLO" || true
  done
  stop_server
done

# The report: per model, per configuration, the highest offered rate with p95 <= SLO (steady,
# and mean rate of the bursts) and SLO attainment per rate; then the comparison plots.
python3 - "$OUT" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
lines = ["# Adaptive vs static batching (issue 7)", ""]
def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None
for meta_path in sorted(glob.glob(f"{out}/raw/*__meta.json")):
    meta = json.load(open(meta_path))
    model, slo = meta["model"], meta["slo_ms"]
    lines += [f"## {model}", "",
              f"Single-request capacity {meta['capacity_rps']:.1f}/s (p50 {meta['p50_ms']:.2f} ms); SLO: p95 <= {slo} ms.", ""]
    runs = {}
    for p in sorted(glob.glob(f"{out}/raw/{model}__*__steady.json")):
        cfg = os.path.basename(p)[len(model) + 2:-len("__steady.json")]
        runs[cfg] = (load(p), load(p.replace("__steady.json", "__burst.json")))
    order = sorted(runs, key=lambda c: (c != "none", c != "default", c == "adaptive", c))
    def best(rep):
        # The highest offered rate up to which every tested rate held p95 <= SLO with
        # >= 99% of requests answered: one lucky point above a failed one doesn't count.
        if not rep:
            return None
        held = 0.0
        for l in sorted(rep["levels"], key=lambda l: l["summary"]["offered_rate"]):
            s = l["summary"]
            if not (s["latency_ms"] and s["latency_ms"]["p95"] <= slo and s["ok"] >= 0.99 * max(1, s["requests"])):
                break
            held = s["offered_rate"]
        return held
    def att(rep):
        if not rep:
            return []
        return [(l["summary"]["offered_rate"], l["summary"]["slo_attainment"], l["summary"].get("batch_size_mean"))
                for l in rep["levels"]]
    rates = [r for r, _, _ in att(next((s for s, _ in runs.values() if s), None))]
    brates = [r for r, _, _ in att(next((b for _, b in runs.values() if b), None))]
    head = "| configuration | steady rate held (p95<=SLO) | burst mean rate held | " + \
        " | ".join(f"steady {r:.0f}/s" for r in rates) + " | " + " | ".join(f"burst {r:.0f}/s" for r in brates) + " |"
    lines += ["SLO attainment (fraction of requests answered within the SLO) per offered rate; mean server batch size in brackets.", "",
              head, "|" + "---|" * (3 + len(rates) + len(brates))]
    maxes = {}
    for cfg in order:
        steady, burst = runs[cfg]
        maxes[cfg] = (best(steady), best(burst))
        cells = [f"{a*100:.1f}% [{b:.1f}]" if a is not None and b else (f"{a*100:.1f}%" if a is not None else "-")
                 for _, a, b in att(steady) + att(burst)]
        fmt = lambda v: "-" if v is None else f"{v:.1f}"
        lines.append(f"| {cfg} | {fmt(maxes[cfg][0])} | {fmt(maxes[cfg][1])} | " + " | ".join(cells) + " |")
    static = {c: v for c, v in maxes.items() if c != "adaptive"}
    if static and "adaptive" in maxes:
        for i, kind in ((0, "steady"), (1, "burst")):
            bc = max(static, key=lambda c: static[c][i] or 0)
            b, a = static[bc][i] or 0, maxes["adaptive"][i] or 0
            ratio = f"{a / b:.2f}x" if b else "n/a"
            goal = 0.95 if kind == "steady" else 1.3
            verdict = ("met" if a >= goal * b else "missed") if b else \
                ("met: no static setting held the SLO at any tested rate" if a else "no configuration held the SLO")
            lines += ["", f"- {kind}: best static is `{bc}` at {b:.1f}/s; adaptive {a:.1f}/s ({ratio}; goal >= {goal}x: {verdict})."]
    lines += ["", f"![{model} steady](plots/{model}-steady/compare.png) ![{model} burst](plots/{model}-burst/compare.png)", ""]
open(f"{out}/report.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF

for meta in "$OUT"/raw/*__meta.json; do
  [ -f "$meta" ] || continue
  model=$(basename "$meta" __meta.json)
  for kind in steady burst; do
    args=()
    for f in "$OUT"/raw/"$model"__*__"$kind".json; do
      [ -f "$f" ] || continue
      cfg=$(basename "$f" "__$kind.json"); cfg=${cfg#"$model"__}
      args+=(--compare "$cfg=$f")
    done
    [ ${#args[@]} -gt 0 ] && "$LRAI_BIN" bench "${args[@]}" --title "$model, $kind load" --plot-dir "$OUT/plots/$model-$kind" >/dev/null
  done
done
echo "report: $OUT/report.md" >&2
