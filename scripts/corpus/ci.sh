#!/usr/bin/env bash
# The compatibility corpus, small models only, for scripts/test.sh: fetch (cached in
# $LRAI_CORPUS_CACHE or ~/.cache/lrai-corpus), make the ONNX Runtime references, run the
# release `lrai` on onnxruntime, tract and auto. Fails on any onnxruntime mismatch, any
# panic, and any tract or auto result that differs from expected.json (a regression, or
# a fix that should take the model off the list).
#
#   scripts/corpus/ci.sh            # needs .venv (onnxruntime==1.31.1, onnx, numpy) and target/release/lrai
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
LRAI=${LRAI:-target/release/lrai}
"$PY" scripts/corpus/fetch.py --small
"$PY" scripts/corpus/refs.py --small
mkdir -p target/corpus
"$PY" scripts/corpus/check.py --small --lrai "$LRAI" --expected scripts/corpus/expected.json \
    --json target/corpus/small.json --markdown target/corpus/small.md
