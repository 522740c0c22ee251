#!/usr/bin/env bash
# The Triton-compatibility suite: pytest (test_http.py, test_grpc.py with Triton's own
# tritonclient) then the perf_analyzer smoke (perf_smoke.sh). Exit status is non-zero if
# either fails.
#
#   scripts/conformance/run.sh [VENV]        VENV default .venv (tritonclient, pytest,
#                                            onnxruntime, onnx, numpy, perf_analyzer)
#
# Environment (see conftest.py and perf_smoke.sh):
#   LRAI_BIN            server binary (default target/release/lrai)
#   LRAI_TEST_BACKEND   auto (default), onnxruntime or tract
#   LRAI_CONFORMANCE_SKIP_PERF=1   skip the perf smoke (e.g. no perf_analyzer)
#   LRAI_CONFORMANCE_PYTEST_ARGS   extra pytest arguments (e.g. "-k grpc -x")
set -uo pipefail
cd "$(dirname "$0")/../.."
VENV=${1:-${LRAI_VENV:-.venv}}
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "conformance: $PY not found" >&2; exit 1; }
export LRAI_BIN=${LRAI_BIN:-target/release/lrai}
export PYTHONDONTWRITEBYTECODE=1
started=$(date +%s)

echo "=== conformance: pytest (server $LRAI_BIN, backend ${LRAI_TEST_BACKEND:-auto})"
BASETEMP=$(mktemp -d "${TMPDIR:-/tmp}/lrai-conformance.XXXXXX")
# shellcheck disable=SC2086
timeout -k 30 1200 "$PY" -m pytest scripts/conformance -q -p no:cacheprovider -rfE \
  --basetemp "$BASETEMP" ${LRAI_CONFORMANCE_PYTEST_ARGS:-}
pytest_rc=$?
if [ $pytest_rc -eq 0 ]; then
  rm -rf "$BASETEMP"
else
  echo "conformance: server logs and repositories kept in $BASETEMP"
fi
pytest_s=$(( $(date +%s) - started ))

perf_rc=0
perf_state=skipped
if [ "${LRAI_CONFORMANCE_SKIP_PERF:-0}" != 1 ]; then
  echo "=== conformance: perf_analyzer smoke"
  t=$(date +%s)
  timeout -k 30 900 scripts/conformance/perf_smoke.sh "$VENV"
  perf_rc=$?
  perf_state="exit $perf_rc in $(( $(date +%s) - t ))s"
fi

echo "=== conformance summary"
if [ $pytest_rc -eq 0 ]; then
  echo "  pytest:     PASS (${pytest_s}s)"
else
  echo "  pytest:     FAIL (exit $pytest_rc, ${pytest_s}s)"
fi
if [ "$perf_state" = skipped ]; then
  echo "  perf smoke: skipped (LRAI_CONFORMANCE_SKIP_PERF=1)"
elif [ $perf_rc -eq 0 ]; then
  echo "  perf smoke: PASS ($perf_state)"
else
  echo "  perf smoke: FAIL ($perf_state)"
fi
echo "  total:      $(( $(date +%s) - started ))s"
[ $pytest_rc -eq 0 ] && [ $perf_rc -eq 0 ]
