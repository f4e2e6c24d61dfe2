#!/usr/bin/env bash
# User-space instructions per request of maas and of the floor (benches/src/bin/floor.rs), counted
# by valgrind's callgrind: the same count for the same binaries whatever else the machine does,
# so a change to the per-request cost can be measured on a noisy shared machine. Kernel time
# (the socket calls, about the same for both) is not counted.
#
#   cargo build --release -p maas-gateway -p maas-benches --bin maas --bin floor
#   benches/http/instructions.sh            # N=1000 requests per route, 4 keep-alive clients
#
# maas is prepared outside valgrind (admin, token, deploy: password hashing under valgrind takes
# minutes), then restarted under it on the same data folder. Under valgrind every run is ~50x
# slower, so the inline budget is lifted to 1 s (SERVING) to keep the path a real machine takes.
# Environment: N (1000), MAAS_BIN (target/release/maas), FLOOR_BIN (target/release/floor),
# SERVING (the deploy's serving JSON; default {"inline_max_us": 1000000}), PORT (18400; the floor
# takes PORT+10), KEEP (a folder: keep each route's callgrind dumps there, one folder per row, for
# `callgrind_annotate --inclusive=yes`).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
N=${N:-1000}
BIN=${MAAS_BIN:-target/release/maas}
FLOOR_BIN=${FLOOR_BIN:-target/release/floor}
SERVING=${SERVING:-'{"inline_max_us": 1000000}'}
PORT=${PORT:-18400}
FLOOR_PORT=$((PORT + 10))
PASSWORD=bench-password-for-maas
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
echo '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' >"$work/v1.json"
echo '{"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}' >"$work/v2.json"
cg=$work/cg
mkdir -p "$cg"

# Prepare maas outside valgrind.
MAAS_ADMIN_PASSWORD=$PASSWORD MAAS__LOG__LEVEL=warn "$BIN" serve --data-dir "$work/data" \
  --bind "127.0.0.1:$PORT" --grpc-bind "" >"$work/prepare.log" 2>&1 &
plain=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/health/ready" && break; sleep 0.1; done
TOKEN=$(curl -sf -X POST "http://127.0.0.1:$PORT/v1/auth/token" -H 'Content-Type: application/json' \
  -d "{\"username\": \"admin\", \"password\": \"$PASSWORD\"}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -F "model=@tests/fixtures/iris_logreg.onnx" \
  -F "serving=$SERVING" "http://127.0.0.1:$PORT/v1/models/iris/versions"
kill $plain; wait $plain || true

(cd "$cg" && exec valgrind --tool=callgrind --dump-instr=no --collect-jumps=no \
  --callgrind-out-file="$cg/floor.%p" "$(cd "$root" && realpath "$FLOOR_BIN")" "127.0.0.1:$FLOOR_PORT" >/dev/null 2>&1) &
(cd "$cg" && MAAS__LOG__LEVEL=warn exec valgrind --tool=callgrind --dump-instr=no --collect-jumps=no \
  --callgrind-out-file="$cg/maas.%p" "$(cd "$root" && realpath "$BIN")" serve --data-dir "$work/data" \
  --bind "127.0.0.1:$PORT" --grpc-bind "" >"$work/maas.log" 2>&1) &
for _ in $(seq 1 600); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/v2/models/iris/ready" &&
    curl -s -o /dev/null "http://127.0.0.1:$FLOOR_PORT/" && break
  sleep 0.2
done

load() { # url body token n
  python3 - "$1" "$2" "$3" "$4" <<'PY'
import http.client, sys, threading, urllib.parse
url, body, token, n = sys.argv[1], open(sys.argv[2], "rb").read(), sys.argv[3], int(sys.argv[4])
u = urllib.parse.urlparse(url)
def client(k):
    c = http.client.HTTPConnection(u.hostname, u.port)
    for _ in range(k):
        c.request("POST", u.path, body, {"Content-Type": "application/json", "Authorization": "Bearer " + token})
        r = c.getresponse()
        r.read()
        assert r.status == 200, (url, r.status)
threads = [threading.Thread(target=client, args=(n // 4,)) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
PY
}
count() { # label url body
  callgrind_control --zero >/dev/null 2>&1
  load "$2" "$3" "$TOKEN" "$N"
  callgrind_control --dump >/dev/null 2>&1
  sleep 1
  local total
  total=$(cat "$cg"/*.[0-9]*.[0-9]* 2>/dev/null | grep -E '^summary:' | awk '{s += $2} END {print s}')
  if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP/${1// /-}" && cp "$cg"/*.[0-9]*.[0-9]* "$KEEP/${1// /-}/"
  fi
  rm -f "$cg"/*.[0-9]*.[0-9]*
  printf '| %s | %s |\n' "$1" "$((total / N))"
}
# Warm both (first runs allocate pools and caches), uncounted.
load "http://127.0.0.1:$PORT/v1/models/iris/predict" "$work/v1.json" "$TOKEN" 200
load "http://127.0.0.1:$FLOOR_PORT/v1/models/iris/predict" "$work/v1.json" "$TOKEN" 200
echo "| server and route | instructions per request |"
echo "|---|---:|"
count "floor v1" "http://127.0.0.1:$FLOOR_PORT/v1/models/iris/predict" "$work/v1.json"
count "maas v1" "http://127.0.0.1:$PORT/v1/models/iris/predict" "$work/v1.json"
count "floor V2" "http://127.0.0.1:$FLOOR_PORT/v2/models/iris/infer" "$work/v2.json"
count "maas V2" "http://127.0.0.1:$PORT/v2/models/iris/infer" "$work/v2.json"
