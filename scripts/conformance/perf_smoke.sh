#!/usr/bin/env bash
# Short, bounded perf_analyzer runs against LRAI: HTTP binary, HTTP JSON, gRPC, gRPC
# streaming, and the ensemble ens_pipeline over HTTP and gRPC when it starts its own server;
# concurrency 4, -p 1000 -r 3 -s 50. Fails if perf_analyzer exits non-zero or
# reports an error. It checks that Triton's load generator works; it measures nothing.
#
#   scripts/conformance/perf_smoke.sh [VENV]      (VENV default .venv; needs VENV/bin/perf_analyzer,
#                                                  see scripts/setup-perf-analyzer.sh)
#
# Without LRAI_PERF_HTTP/LRAI_PERF_GRPC it starts its own server: $LRAI_BIN (default
# target/release/lrai) on free 127.0.0.1 ports, --backend $LRAI_TEST_BACKEND (default auto),
# a temporary repository with examples/models/digits_mlp and tests/fixtures/ensemble/repo,
# and stops it on exit.
# With LRAI_PERF_HTTP=host:port and LRAI_PERF_GRPC=host:port it uses that server (which must
# serve $LRAI_PERF_MODEL, default digits_mlp) and starts nothing.
#
# Environment: LRAI_PERF_TIMEOUT (seconds per perf_analyzer run, default 120),
# LRAI_PERF_STRICT=1 (also fail when a run never reaches a stable measurement; by default
# that is retried once and then only warned about: it is a property of a busy machine, not
# of the server).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=${1:-${LRAI_VENV:-.venv}}
PY="$VENV/bin/python"
PA="$VENV/bin/perf_analyzer"
MODEL=${LRAI_PERF_MODEL:-digits_mlp}
RUN_TIMEOUT=${LRAI_PERF_TIMEOUT:-120}
STRICT=${LRAI_PERF_STRICT:-0}

die() { echo "perf_smoke: $*" >&2; exit 1; }
[ -x "$PA" ] || die "$PA not found (run scripts/setup-perf-analyzer.sh $VENV)"
[ -x "$PY" ] || die "$PY not found"
timeout 30 "$PA" --version >/dev/null 2>&1 || die "$PA does not run"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lrai-perf-smoke.XXXXXX")
SERVER_PID=""
ENSEMBLE=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM -- "-$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${LRAI_PERF_HTTP:-}" ] && [ -n "${LRAI_PERF_GRPC:-}" ]; then
  HTTP=$LRAI_PERF_HTTP
  GRPC=$LRAI_PERF_GRPC
  echo "perf_smoke: using the server at http $HTTP, grpc $GRPC"
else
  BIN=${LRAI_BIN:-target/release/lrai}
  [ -x "$BIN" ] || die "server binary $BIN not found (set LRAI_BIN)"
  mkdir -p "$WORK/models"
  cp -r examples/models/digits_mlp "$WORK/models/"
  # The ensemble and its step models (docs/ensembles.md): perf_analyzer reads its steps.
  cp -r tests/fixtures/ensemble/repo/. "$WORK/models/"
  ENSEMBLE=ens_pipeline
  MODEL=digits_mlp
  read -r HP GP MP < <("$PY" -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')
  BACKEND=${LRAI_TEST_BACKEND:-auto}
  if [ -z "${LRAI_ORT_LIB:-}" ]; then
    LIB=$(ls "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1)
    [ -n "$LIB" ] && export LRAI_ORT_LIB="$ROOT/$LIB"
  fi
  setsid "$BIN" serve --model-repository "$WORK/models" --address 127.0.0.1 \
    --http-port "$HP" --grpc-port "$GP" --metrics-port "$MP" --backend "$BACKEND" \
    >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  HTTP=127.0.0.1:$HP
  GRPC=127.0.0.1:$GP
  ready=0
  for _ in $(seq 1 600); do  # 600 x 0.2 s = 120 s at most
    kill -0 "$SERVER_PID" 2>/dev/null || break
    if "$PY" -c "import urllib.request,sys; sys.exit(0 if all(urllib.request.urlopen(f'http://$HTTP/v2/models/{m}/ready', timeout=2).status == 200 for m in '$MODEL $ENSEMBLE'.split()) else 1)" 2>/dev/null; then
      ready=1; break
    fi
    sleep 0.2
  done
  if [ "$ready" != 1 ]; then
    tail -n 30 "$WORK/server.log" >&2
    die "server did not get $MODEL ready"
  fi
  echo "perf_smoke: started $BIN (pid $SERVER_PID, backend $BACKEND) on http $HTTP, grpc $GRPC"
fi

COMMON=(-m "$MODEL" --concurrency-range 4 -p 1000 -r 3 -s 50)
failures=0
summary=()

# run NAME ARGS...: one perf_analyzer run, retried once if it only failed to stabilise.
run() {
  local name=$1; shift
  local out="$WORK/$name.out" rc attempt
  for attempt in 1 2; do
    timeout -k 10 "$RUN_TIMEOUT" "$PA" "${COMMON[@]}" "$@" >"$out" 2>&1
    rc=$?
    if [ $rc -eq 0 ] && ! grep -qiE 'error|failed|exception' "$out"; then
      local tput
      tput=$(grep -oE 'throughput: [0-9.]+ infer/sec' "$out" | tail -n1)
      if [ -z "$tput" ]; then
        rc=1
      else
        summary+=("PASS $name: $tput")
        echo "perf_smoke: PASS $name ($tput)"
        return 0
      fi
    fi
    # Instability alone (exit 2, no other error line) is retried, then warned about.
    if [ $rc -eq 2 ] && grep -q 'Failed to obtain stable measurement' "$out" \
       && ! grep -iE 'error|exception' "$out" | grep -qv 'stable measurement'; then
      if [ "$attempt" = 1 ]; then
        echo "perf_smoke: $name did not stabilise; retrying once"
        continue
      fi
      if [ "$STRICT" != 1 ]; then
        summary+=("WARN $name: no stable measurement (machine busy?)")
        echo "perf_smoke: WARN $name never stabilised (not a server error; LRAI_PERF_STRICT=1 fails on this)"
        return 0
      fi
    fi
    break
  done
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    summary+=("FAIL $name: timed out after ${RUN_TIMEOUT}s")
  else
    summary+=("FAIL $name: exit $rc")
  fi
  echo "perf_smoke: FAIL $name (exit $rc); output:"
  sed 's/^/    /' "$out"
  failures=$((failures + 1))
  return 1
}

run http-binary -u "$HTTP" -i http
run http-json -u "$HTTP" -i http --input-tensor-format json --output-tensor-format json
run grpc -u "$GRPC" -i grpc
run grpc-streaming -u "$GRPC" -i grpc --streaming
if [ -n "$ENSEMBLE" ]; then
  COMMON=(-m "$ENSEMBLE" --concurrency-range 4 -p 1000 -r 3 -s 50)
  run ensemble-http -u "$HTTP" -i http
  run ensemble-grpc -u "$GRPC" -i grpc
fi

if [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
  summary+=("FAIL server: exited during the runs")
  tail -n 30 "$WORK/server.log" >&2
  failures=$((failures + 1))
fi

echo "perf_smoke summary:"
printf '  %s\n' "${summary[@]}"
[ "$failures" -eq 0 ]
