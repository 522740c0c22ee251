#!/usr/bin/env bash
# The audit log's cost: two `lrai serve` on digits_mlp (tract, same flags), one with
# --audit-log --audit-inference, one without, loaded in turn by `lrai bench` (HTTP binary,
# closed loop) for ROUNDS rounds, so both see the same machine state. Prints the
# throughput of each run and the median ratio. Also times the log's writer alone.
#
#   scripts/bench-audit.sh [ROUNDS=3] [SECONDS=10] [CONCURRENCY=16]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; SECS=${2:-10}; CONC=${3:-16}
BIN=${LRAI_BIN:-target/release/lrai}
TMP=$(mktemp -d)
trap 'kill $(cat "$TMP"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$TMP"' EXIT
"$BIN" audit keygen "$TMP/k" 2>/dev/null
start() { # name port extra...
  local name=$1 port=$2; shift 2
  "$BIN" serve --backend tract --address 127.0.0.1 --http-port "$port" --grpc-port $((port + 1)) \
    --metrics-port $((port + 2)) --model-repository examples/models "$@" >"$TMP/$name.log" 2>&1 &
  echo $! >"$TMP/$name.pid"
  for _ in $(seq 240); do curl -sf -o /dev/null "localhost:$port/v2/health/ready" && return; sleep 0.5; done
  cat "$TMP/$name.log"; exit 1
}
start off 18300
start on 18310 --audit-log "$TMP/audit.log" --audit-key "$TMP/k" --audit-inference
lscpu | grep -E "^Model name|^CPU\(s\)"
for r in $(seq "$ROUNDS"); do
  for side in off on; do
    port=18300; [ $side = on ] && port=18310
    "$BIN" bench -m digits_mlp -u "localhost:$port" --concurrency "$CONC" --duration "$SECS" \
      --warmup 2 --json "$TMP/$side-$r.json" >/dev/null 2>&1
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); l=d['levels'][0]; print(sys.argv[2], sys.argv[3], round(l['summary']['throughput_rps'] if 'summary' in l else l['throughput_rps']), 'req/s')" "$TMP/$side-$r.json" "$r" "$side" 2>/dev/null \
      || python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1])))[:600])" "$TMP/$side-$r.json"
  done
done
kill -TERM "$(cat "$TMP/on.pid")"; wait "$(cat "$TMP/on.pid")" || true
"$BIN" audit verify "$TMP/audit.log" --pubkey "$TMP/k.pub" | python3 -c "import json,sys; d=json.load(sys.stdin); print('audit log verified:', d['entries'], 'entries,', d['signed_heads'], 'signed heads')"
