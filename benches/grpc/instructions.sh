#!/usr/bin/env bash
# User-space instructions per call of maas's gRPC ModelInfer against its REST V2 infer, single-row
# iris, counted by valgrind's callgrind (the same count whatever else the machine does), both
# driven by h2load (gRPC over HTTP/2, REST over HTTP/1.1), 4 connections, N calls each route.
#
#   cargo build --release -p maas-gateway --bin maas
#   apt-get install valgrind nghttp2-client
#   benches/grpc/instructions.sh            # N=1000
#
# maas is prepared outside valgrind (admin, token, deploy), then restarted under it on the same
# data folder with the inline budget lifted to 1 s, as benches/http/instructions.sh does. Note
# that valgrind counts each byte `rep movsb` moves as one instruction, so memcpy weighs more here
# than on the CPU. Environment: N (1000), MAAS_BIN (target/release/maas), PORT (18500; gRPC
# PORT+1), PYTHON (target/ci-venv/bin/python, with tritonclient[grpc]), KEEP (a folder: keep the
# dumps there, grpc/ and v2/, for `callgrind_annotate --inclusive=yes`).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000}
BIN=${MAAS_BIN:-target/release/maas}
PORT=${PORT:-18500}
GRPC_PORT=$((PORT + 1))
PYTHON=${PYTHON:-target/ci-venv/bin/python}
PASSWORD=bench-password-for-maas
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
command -v h2load >/dev/null || { echo "h2load is missing: apt-get install nghttp2-client" >&2; exit 1; }
work=$(mktemp -d)
cg=$work/cg
mkdir -p "$cg"
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

# Prepare outside valgrind.
MAAS_ADMIN_PASSWORD=$PASSWORD MAAS__LOG__LEVEL=warn "$BIN" serve --data-dir "$work/data" \
  --bind "127.0.0.1:$PORT" --grpc-bind "" >"$work/prepare.log" 2>&1 &
plain=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -sf -X POST "http://127.0.0.1:$PORT/v1/auth/token" -H 'Content-Type: application/json' \
  -d "{\"username\": \"admin\", \"password\": \"$PASSWORD\"}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -F model=@tests/fixtures/iris_logreg.onnx \
  -F 'serving={"inline_max_us": 1000000}' "http://127.0.0.1:$PORT/v1/models/iris/versions"
kill $plain
wait $plain 2>/dev/null || true

MAAS__LOG__LEVEL=warn valgrind --tool=callgrind --callgrind-out-file="$cg/maas.%p" "$BIN" serve \
  --data-dir "$work/data" --bind "127.0.0.1:$PORT" --grpc-bind "127.0.0.1:$GRPC_PORT" >"$work/maas.log" 2>&1 &
for _ in $(seq 1 600); do
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v2/models/iris/ready" && break
  sleep 0.2
done
"$PYTHON" benches/grpc/payload.py write "$work/infer.bin" >/dev/null
echo '{"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}' >"$work/v2.json"
grpc() {
  h2load -c 4 -m 1 -n "$1" -d "$work/infer.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$GRPC_PORT/inference.GRPCInferenceService/ModelInfer"
}
v2() {
  h2load --h1 -c 4 -m 1 -n "$1" -d "$work/v2.json" -H 'content-type: application/json' \
    -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v2/models/iris/infer"
}
count() { # label function
  callgrind_control --zero >/dev/null 2>&1
  "$2" "$N" | grep -q "$N succeeded" || { echo "$1: not every call succeeded" >&2; exit 1; }
  callgrind_control --dump >/dev/null 2>&1
  sleep 1
  local total
  total=$(cat "$cg"/*.[0-9]*.[0-9]* | grep -E '^summary:' | awk '{s += $2} END {print s}')
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP/$1" && cp "$cg"/*.[0-9]*.[0-9]* "$KEEP/$1/"; fi
  rm -f "$cg"/*.[0-9]*.[0-9]*
  printf '| %s | %s |\n' "$1" "$((total / N))"
}
grpc 200 >/dev/null
v2 200 >/dev/null
echo "| route | instructions per call |"
echo "|---|---:|"
count grpc grpc
count v2 v2
