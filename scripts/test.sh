#!/usr/bin/env bash
# The test command (README.md, .ci/run). Installs what the tests need into a local venv
# (ONNX Runtime's library comes from the onnxruntime wheel), then runs, cheapest first:
# fmt, clippy, the workspace tests, a check of each backend feature alone, and the
# README's first command. Everything uses the release profile, so CI compiles tract once.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { echo "=== [$(( $(date +%s) - started ))s] $*"; }

VENV=${LRAI_VENV:-.venv}
step "python venv ($VENV)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-test.txt
ORT_LIB=$(ls "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)
export LRAI_ORT_LIB="$PWD/$ORT_LIB"
# ONNX Runtime tests must run, not skip, here.
export LRAI_REQUIRE_ORT=1
export PATH="$PWD/$VENV/bin:$PATH"
JOBS=${LRAI_JOBS:-2}

step "cargo fmt"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked --release -j "$JOBS" -- -D warnings

step "cargo test"
cargo test --workspace --locked --release -j "$JOBS"

step "Triton-compatibility suite (tritonclient) and perf_analyzer smoke"
./scripts/setup-perf-analyzer.sh "$VENV"
cargo build --release --locked -j "$JOBS"
./scripts/conformance/run.sh "$VENV"

step "compatibility corpus, small models (third-party ONNX models on onnxruntime, tract, auto)"
PYTHON="$VENV/bin/python" ./scripts/corpus/ci.sh

step "each backend feature alone"
cargo check -p lrai-backend --no-default-features --features tract --locked --release -j "$JOBS"
cargo check -p lrai-backend --no-default-features --features onnxruntime --locked --release -j "$JOBS"

step "README command: cargo run --release -- serve (as on a fresh machine: no ONNX Runtime)"
LOG=$(mktemp)
env -u LRAI_ORT_LIB PATH="$(echo "$PATH" | sed "s#$PWD/$VENV/bin:##")" \
  cargo run --release --locked -q -- serve >"$LOG" 2>&1 &
SERVE_PID=$!
ready=0
for _ in $(seq 240); do
  if curl -sf -o /dev/null http://127.0.0.1:8000/v2/health/ready; then ready=1; break; fi
  kill -0 "$SERVE_PID" 2>/dev/null || break
  sleep 0.5
done
if [ "$ready" != 1 ]; then cat "$LOG"; kill "$SERVE_PID" 2>/dev/null || true; echo "serve never became ready"; exit 1; fi
curl -sf -X POST http://127.0.0.1:8000/v2/models/digits_mlp/infer \
  -d '{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":['"$(python3 -c 'print(",".join(["0.5"]*64))')"']}]}' \
  | grep -q '"logits"'
grep -q 'backend="tract"\|backend=tract' "$LOG" || { cat "$LOG"; echo "expected the embedded tract backend"; exit 1; }
kill -TERM "$SERVE_PID"
wait "$SERVE_PID" || { cat "$LOG"; echo "serve did not exit 0 on SIGTERM"; exit 1; }
grep -q "shutdown complete" "$LOG"
rm -f "$LOG"

step "done"
