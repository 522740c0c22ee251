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

step "each backend feature alone"
cargo check -p lrai-backend --no-default-features --features tract --locked --release -j "$JOBS"
cargo check -p lrai-backend --no-default-features --features onnxruntime --locked --release -j "$JOBS"

step "README command"
cargo run --release --locked -q -- run examples/models/digits_mlp/1/model.onnx --random

step "done"
