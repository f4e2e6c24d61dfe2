#!/usr/bin/env bash
# maas against the floor (and, with PEERS=1, MLServer and Triton through PyTriton), single-row
# iris, in one sitting on this machine's own cores: issue #16's table.
#
#   cargo build --release -p maas-gateway -p maas-benches --bin maas --bin floor
#   apt-get install wrk
#   benches/http/compare.sh                       # floor and maas, c=1 and c=32, ROUNDS=2
#   PEERS=1 benches/http/compare.sh               # also MLServer and PyTriton
#                                                 # (benches/peers/install.sh first)
#
# Every row is one wrk run (one thread, DURATION each, default 10s); the servers take turns,
# ROUNDS times over, so drift in the machine's load touches them alike. maas runs with its
# defaults (tract, auth on, metrics and request ids on) and a JWT bearer on every request; the
# floor is benches/src/bin/floor.rs (no auth, no metrics, no queue). Prints one markdown row per
# run and, at the end, each server's best run against the floor's.
#
# Environment: DURATION (10s), ROUNDS (2), PORT (18080; the others take PORT+10..PORT+30),
# MAAS_BIN (target/release/maas), FLOOR_BIN (target/release/floor), PEERS (0), BACKEND (tract),
# MODEL (tests/fixtures/iris_logreg.onnx; any model taking the iris rows as `float_input`),
# PERF (0; 1: each floor and maas run under `perf stat` on the server, adding its CPU time (all
# threads, kernel included) and context switches per request to the row; needs linux-perf. This
# VM counts no hardware events, so cycles and instructions are not asked for).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${MAAS_BIN:-target/release/maas}
FLOOR_BIN=${FLOOR_BIN:-target/release/floor}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-18080}
PEERS=${PEERS:-0}
BACKEND=${BACKEND:-tract}
MODEL=${MODEL:-tests/fixtures/iris_logreg.onnx}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
[ -x "$FLOOR_BIN" ] || { echo "$FLOOR_BIN is missing: cargo build --release -p maas-benches --bin floor" >&2; exit 1; }
. benches/serve.sh

pids=()
cleanup_others() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
trap 'cleanup_others; kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT

ready() { # url
  for _ in $(seq 1 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.2; done
  echo "$1 never became ready" >&2; exit 1
}

curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -F "model=@$MODEL" \
  -F "serving={\"backend\": \"$BACKEND\"}" "$URL/v1/models/iris/versions" || { echo "deploy failed" >&2; exit 1; }
FLOOR="http://127.0.0.1:$((PORT + 10))"
"$FLOOR_BIN" "127.0.0.1:$((PORT + 10))" >"$work/floor.log" 2>&1 &
pids+=($!)
targets=("floor|$FLOOR" "maas|$URL")
if [ "$PEERS" = 1 ]; then
  benches/peers/mlserver.sh $((PORT + 20)) >"$work/mlserver.log" 2>&1 &
  pids+=($!)
  benches/peers/pytriton.sh $((PORT + 30)) >"$work/pytriton.log" 2>&1 &
  pids+=($!)
  ready "http://127.0.0.1:$((PORT + 20))/v2/health/ready"
  ready "http://127.0.0.1:$((PORT + 30))/v2/health/ready"
  targets+=("MLServer|http://127.0.0.1:$((PORT + 20))" "PyTriton|http://127.0.0.1:$((PORT + 30))")
fi
for _ in $(seq 1 100); do curl -s -o /dev/null "$FLOOR/" && break; sleep 0.1; done

echo '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' >"$work/v1.json"
echo '{"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}' >"$work/v2.json"
for t in "${targets[@]}"; do # every server must answer both bodies it is measured with
  name=${t%%|*} base=${t#*|}
  if [ "$name" = floor ] || [ "$name" = maas ]; then
    curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      --data-binary @"$work/v1.json" "$base/v1/models/iris/predict" || { echo "$name: v1 predict failed" >&2; exit 1; }
  fi
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data-binary @"$work/v2.json" "$base/v2/models/iris/infer" || { echo "$name: V2 infer failed" >&2; exit 1; }
done

results="$work/results"
: >"$results"
pid_of() { # name
  case $1 in floor) echo "${pids[0]}" ;; maas) echo "$server" ;; *) echo "" ;; esac
}
run() { # name route base path body concurrency
  local out pid perf_out=""
  pid=$(pid_of "$1")
  if [ "${PERF:-0}" = 1 ] && [ -n "$pid" ]; then
    perf stat -x, -e task-clock,context-switches -p "$pid" -o "$work/perf.csv" &
    perf_out=$!
    sleep 0.2
  fi
  out=$(BODY=$5 wrk -t1 -c"$6" -d"$DURATION" -s benches/http/post.lua "$3$4" | grep '^RESULT')
  eval "${out#RESULT }"
  local extra=""
  if [ -n "$perf_out" ]; then
    kill -INT "$perf_out"; wait "$perf_out" 2>/dev/null || true
    extra=$(python3 - "$work/perf.csv" "$rps" "$DURATION" <<'PY'
import sys
vals = {}
for line in open(sys.argv[1]):
    parts = line.strip().split(',')
    if len(parts) > 2 and parts[0] and parts[0][0].isdigit():
        vals[parts[2].split(':')[0]] = float(parts[0])
seconds = float(sys.argv[3].rstrip('s'))
requests = float(sys.argv[2]) * seconds
per = lambda k: vals.get(k, 0) / requests
print(f" {per('task-clock') * 1000:.1f} | {per('context-switches'):.2f} |")
PY
)
  fi
  printf '| %s | %s | %s | %s | %s | %s | %s |%s\n' "$1" "$2" "$6" "$rps" "$p50_us" "$p99_us" "$errors" "$extra"
  echo "$1 $2 $6 $rps $p50_us" >>"$results"
}

if [ "${PERF:-0}" = 1 ]; then
  echo "| server | route | concurrency | requests/s | p50 (µs) | p99 (µs) | errors | server CPU µs/request | context switches/request |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
else
  echo "| server | route | concurrency | requests/s | p50 (µs) | p99 (µs) | errors |"
  echo "|---|---|---:|---:|---:|---:|---:|"
fi
for _ in $(seq 1 "$ROUNDS"); do
  for c in 1 32; do
    for t in "${targets[@]}"; do
      name=${t%%|*} base=${t#*|}
      if [ "$name" = floor ] || [ "$name" = maas ]; then
        run "$name" v1 "$base" /v1/models/iris/predict "$work/v1.json" "$c"
      fi
      run "$name" v2 "$base" /v2/models/iris/infer "$work/v2.json" "$c"
    done
  done
done

echo
echo "Best of $ROUNDS against the floor's best on the same route (throughput: higher is better;"
echo "p50: lower is better):"
echo
echo "| server | route | c=1 p50 (µs) | c=1 p50 / floor | c=32 requests/s | c=32 / floor |"
echo "|---|---|---:|---:|---:|---:|"
python3 - "$results" <<'PY'
import sys
rows = [line.split() for line in open(sys.argv[1])]
best = {}
for name, route, c, rps, p50 in rows:
    key = (name, route, int(c))
    rps, p50 = float(rps), float(p50)
    old = best.get(key)
    best[key] = (max(rps, old[0]), min(p50, old[1])) if old else (rps, p50)
order = []
for name, route, _, _, _ in rows:
    if (name, route) not in order:
        order.append((name, route))
for name, route in order:
    floor_route = route if ("floor", route, 1) in best else "v2"
    f1, f32 = best[("floor", floor_route, 1)], best[("floor", floor_route, 32)]
    one, many = best[(name, route, 1)], best[(name, route, 32)]
    print(f"| {name} | {route} | {one[1]:.0f} | {one[1] / f1[1]:.2f} | {many[0]:,.0f} | {many[0] / f32[0]:.2f} |")
PY
