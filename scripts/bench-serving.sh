#!/usr/bin/env bash
# Serving benchmark (issue 4), one script run, one server at a time so none share the
# 2 cores with another: the do-nothing ceiling server, LRAI (ONNX Runtime backend), then
# the peers of ../shared/bench/peers (FastAPI + onnxruntime, Triton via PyTriton, Seldon
# MLServer) and Python onnxruntime in-process, all under the same perf_analyzer 2.60.0.
# Results: $OUT/raw/*.csv (perf_analyzer -f), $OUT/report.md (scripts/bench_serving_report.py).
#
# Usage: scripts/bench-serving.sh            (~15 min on 2 cores, more on the first run, which installs the peers' venvs)
#   SKIP_PEERS=1   LRAI and the ceiling only
#   CONC="1 4 16 64"  concurrency levels (mobilenet defaults to "1 4 16")
#   LRAI_BIN=path  use this lrai binary instead of building one (e.g. a copy, while the
#                  tree is being edited)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
PEERS=$SHARED/bench/peers
export OUT=${OUT:-$ROOT/out/bench-serving}
export VENVS=${VENVS:-$HOME/.venvs}
mkdir -p "$OUT/raw" "$OUT/logs"

bash "$PEERS/setup.sh" >&2
# The peers' helpers (start_server, wait_ready, pa_sweep, stop_server), writing into $OUT.
export RESULTS=$OUT MODELS_DIR=$SHARED/models
# shellcheck source=/dev/null
source "$PEERS/common.sh"

echo "== ceiling (do-nothing v2 server)" >&2
cargo build -q --release --manifest-path "$SHARED/bench/ceiling/Cargo.toml" --target-dir /tmp/ceiling-target
start_server "$OUT/logs/ceiling.log" /tmp/ceiling-target/release/ceiling 18500
wait_ready "http://127.0.0.1:18500/v2/health/ready" 30 || wait_ready "http://127.0.0.1:18500/v2" 30
PA_HTTP_FORMAT=json pa_sweep ceiling digits_mlp http 18500
stop_server

echo "== LRAI" >&2
if [ -z "${LRAI_BIN:-}" ]; then
  cargo build -q --release --locked --manifest-path "$ROOT/Cargo.toml"
  LRAI_BIN=$ROOT/target/release/lrai
fi
ORT_LIB=$(ls "$VENVS"/peers/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)
start_server "$OUT/logs/lrai.log" "$LRAI_BIN" serve --model-repository "$ROOT/examples/models" \
  --address 127.0.0.1 --http-port 18600 --grpc-port 18601 --metrics-port 18602 \
  --backend onnxruntime --ort-lib "$ORT_LIB" --model-control-mode explicit --load-model digits_mlp,mobilenet_v2 --log-level warn
wait_ready "http://127.0.0.1:18600/v2/health/ready" 120
PA_HTTP_FORMAT=json pa_sweep lrai digits_mlp http 18600
PA_HTTP_FORMAT=binary pa_sweep lrai-binary digits_mlp http 18600
pa_sweep lrai digits_mlp grpc 18601
PA_HTTP_FORMAT=binary pa_sweep lrai-binary mobilenet_v2 http 18600
pa_sweep lrai mobilenet_v2 grpc 18601
# Where the time goes: the server's own split (Triton's statistics) of each request at
# concurrency 1 and 64 over HTTP JSON, against what perf_analyzer saw end to end.
for c in 1 64; do
  curl -sf http://127.0.0.1:18600/v2/models/digits_mlp/stats > "$OUT/profile_c${c}_before.json"
  "$PA" -m digits_mlp -u 127.0.0.1:18600 -i http --concurrency-range "$c:$c" -p 3000 -s 50 -r 5 \
    --input-data zero > "$OUT/raw/profile__digits_mlp__http__c${c}.log" 2>&1 || true
  curl -sf http://127.0.0.1:18600/v2/models/digits_mlp/stats > "$OUT/profile_c${c}_after.json"
done
# Which batch sizes the batcher formed, for the in-process comparison.
curl -sf http://127.0.0.1:18600/v2/models/mobilenet_v2/stats > "$OUT/lrai_mobilenet_stats.json"
curl -sf http://127.0.0.1:18602/metrics > "$OUT/lrai_metrics.txt"
stop_server

if [ -z "${SKIP_PEERS:-}" ]; then
  echo "== peers" >&2
  # Each peer script ends by running the peers' summarize.py, which writes into the
  # read-only shared tree and fails: the sweeps before it are what we keep.
  bash "$PEERS/run_inproc.sh" digits_mlp mobilenet_v2 || true
  bash "$PEERS/run_naive.sh" digits_mlp mobilenet_v2 || true
  bash "$PEERS/run_pytriton.sh" digits_mlp mobilenet_v2 || true
  bash "$PEERS/run_mlserver.sh" digits_mlp mobilenet_v2 || true
fi

"$VENVS/peers/bin/python" "$ROOT/scripts/bench_serving_report.py" "$OUT" | tee "$OUT/report.md"
