#!/usr/bin/env bash
# The test command (README.md, .ci/run). Installs what the tests need into a local venv
# (ONNX Runtime's library comes from the onnxruntime wheel), then runs, cheapest first:
# fmt, clippy, the workspace tests, the tritonclient conformance suite on each backend, a
# check of each backend feature alone, and the README's first command with and without
# ONNX Runtime. Everything uses the release profile, so CI compiles tract once.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { echo "=== [$(( $(date +%s) - started ))s] $*"; }

VENV=${LRAI_VENV:-.venv}
step "system tools (openssl makes the TLS tests' certificates; curl is a real client)"
for tool in openssl curl; do
  if ! command -v "$tool" >/dev/null; then
    apt-get install -y "$tool" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y "$tool"; }
  fi
done
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

# The suite runs once per backend: a fresh machine without ONNX Runtime serves on tract.
step "Triton-compatibility suite (tritonclient) and perf_analyzer smoke, on each backend"
./scripts/setup-perf-analyzer.sh "$VENV"
cargo build --release --locked -j "$JOBS"
for backend in onnxruntime tract; do
  step "Triton-compatibility suite on $backend"
  LRAI_TEST_BACKEND=$backend ./scripts/conformance/run.sh "$VENV"
done

step "audit log: the independent Python verifier against a real server (10,000 tamperings)"
LRAI_BIN=target/release/lrai timeout -k 10 600 "$VENV/bin/python" -m pytest -q -p no:cacheprovider scripts/test_audit_verify.py

step "compatibility corpus, small models (third-party ONNX models on onnxruntime, tract, auto)"
PYTHON="$VENV/bin/python" ./scripts/corpus/ci.sh

step "each backend feature alone"
cargo check -p lrai-backend --no-default-features --features tract --locked --release -j "$JOBS"
cargo check -p lrai-backend --no-default-features --features onnxruntime --locked --release -j "$JOBS"

# The README's first command, as users run it: `auto` picks ONNX Runtime when its library
# is found, tract otherwise. Both ways serve digits_mlp and answer what ONNX Runtime
# answers, and stop cleanly on SIGTERM.
readme_serve() {
  local expect=$1; shift
  local log
  log=$(mktemp)
  env "$@" cargo run --release --locked -q -- serve >"$log" 2>&1 &
  local pid=$! ready=0
  for _ in $(seq 240); do
    if curl -sf -o /dev/null http://127.0.0.1:8000/v2/health/ready; then ready=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if [ "$ready" != 1 ]; then cat "$log"; kill "$pid" 2>/dev/null || true; echo "serve ($expect) never became ready"; exit 1; fi
  curl -sf -X POST http://127.0.0.1:8000/v2/models/digits_mlp/infer \
    -d '{"inputs":[{"name":"input","datatype":"FP32","shape":[1,64],"data":['"$(python3 -c 'print(",".join(["0.5"]*64))')"']}]}' \
    | "$VENV/bin/python" -c '
import json, sys
import numpy as np, onnxruntime as ort
got = np.array(json.load(sys.stdin)["outputs"][0]["data"], np.float32)
s = ort.InferenceSession("examples/models/digits_mlp/1/model.onnx", providers=["CPUExecutionProvider"])
want = s.run(None, {"input": np.full((1, 64), 0.5, np.float32)})[0].ravel()
assert np.allclose(got, want, rtol=1e-3, atol=1e-4), (got, want)
' || { cat "$log"; kill "$pid"; echo "serve ($expect) answered wrongly"; exit 1; }
  grep -q "backend=\"$expect\"\|backend=$expect" "$log" || { cat "$log"; kill "$pid"; echo "expected the $expect backend"; exit 1; }
  kill -TERM "$pid"
  wait "$pid" || { cat "$log"; echo "serve ($expect) did not exit 0 on SIGTERM"; exit 1; }
  grep -q "shutdown complete" "$log"
  rm -f "$log"
}

step "README command: cargo run --release -- serve (as on a fresh machine: no ONNX Runtime)"
readme_serve tract -u LRAI_ORT_LIB PATH="$(echo "$PATH" | sed "s#$PWD/$VENV/bin:##")"

step "README command: cargo run --release -- serve (ONNX Runtime installed)"
readme_serve onnxruntime

step "done"
