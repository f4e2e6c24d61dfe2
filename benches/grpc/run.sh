#!/usr/bin/env bash
# maas's gRPC endpoint (Open Inference Protocol, Triton's `inference.GRPCInferenceService`
# ModelInfer) beside its REST V2 endpoint, single-row iris, at concurrency 1, 8 and 32, and with
# PEERS=1 the same gRPC load against Triton through PyTriton on the same model, in one sitting on
# this machine's own cores: issue #17 part 5.
#
#   cargo build --release -p maas-gateway --bin maas
#   apt-get install nghttp2-client                # h2load
#   benches/grpc/run.sh                           # maas gRPC and HTTP, c = 1, 8, 32
#   PEERS=1 benches/grpc/run.sh                   # also PyTriton's gRPC
#                                                 # (benches/peers/install.sh pytriton first)
#
# Every row is one h2load run (one thread, DURATION each, default 5s, -c C connections with one
# request in flight on each, so concurrency = connections): gRPC as HTTP/2 (h2c) POSTs of one
# framed ModelInferRequest (benches/grpc/payload.py: FP32 [1, 4] in raw_input_contents), HTTP as
# HTTP/1.1 keep-alive POSTs of the V2 JSON body to /v2/models/iris/infer. The same load generator
# on both protocols, and the same request bytes for maas and PyTriton. The servers take turns,
# ROUNDS times over. maas runs with its defaults (BACKEND tract, auth on, metrics and request ids
# on) and a JWT bearer on every request (gRPC: `authorization` metadata).
#
# Failures: h2load counts any HTTP 2xx as a success, and a gRPC error is an HTTP 200 with the
# status in its trailers. So each run reads the server's own counters before and after
# (maas: maas_predictions_total on /metrics; Triton: nv_inference_request_success/failure on
# its metrics port) and `failed` adds the requests h2load counted as succeeded that the server
# did not count as ok; a WARNING row follows any run where the counters and h2load disagree.
# Before the runs, payload.py check makes one ModelInfer with tritonclient and one with the
# payload file's exact bytes against each gRPC server, and the script stops if either fails.
#
# Prints one markdown row per run (p50 and p99 from h2load's per-request log) and, at the end,
# maas gRPC against maas HTTP and against PyTriton gRPC per concurrency.
#
# Environment: DURATION (5s), ROUNDS (1), PORT (18180: maas HTTP; its gRPC PORT+1; PyTriton
# PORT+30, its gRPC PORT+31, metrics PORT+32), CONCURRENCY ("1 8 32"), PEERS (0),
# MAAS_BIN (target/release/maas), BACKEND (tract), MODEL (tests/fixtures/iris_logreg.onnx),
# PYTHON (target/ci-venv/bin/python: needs tritonclient[grpc]), PYTRITON
# (benches/peers/pytriton.sh: a command taking the HTTP port that serves iris through PyTriton).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${MAAS_BIN:-target/release/maas}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-1}
PORT=${PORT:-18180}
CONCURRENCY=${CONCURRENCY:-1 8 32}
PEERS=${PEERS:-0}
BACKEND=${BACKEND:-tract}
MODEL=${MODEL:-tests/fixtures/iris_logreg.onnx}
PYTHON=${PYTHON:-target/ci-venv/bin/python}
PYTRITON=${PYTRITON:-benches/peers/pytriton.sh}
GRPC_PORT=$((PORT + 1))
METHOD=/inference.GRPCInferenceService/ModelInfer

die() { echo "$*" >&2; exit 1; }
command -v h2load >/dev/null || die "h2load is missing: apt-get install nghttp2-client"
[ -x "$BIN" ] || die "$BIN is missing: cargo build --release -p maas-gateway --bin maas"
"$BIN" serve --help 2>/dev/null | grep -q -- --grpc-bind ||
  die "$BIN has no gRPC server (no --grpc-bind in \`maas serve --help\`): rebuild it"
"$PYTHON" -c 'import tritonclient.grpc' 2>/dev/null ||
  die "$PYTHON cannot import tritonclient.grpc: set PYTHON to a Python with tritonclient[grpc]"
if [ "$PEERS" = 1 ] && [ "$PYTRITON" = benches/peers/pytriton.sh ]; then
  [ -x target/bench-peers/pytriton/bin/pytriton ] ||
    die "PEERS=1 needs PyTriton, and target/bench-peers/pytriton is missing: benches/peers/install.sh pytriton"
fi

# benches/serve.sh's start of maas, with the gRPC listener added.
URL="http://127.0.0.1:$PORT"
PASSWORD=bench-password-for-maas
work=$(mktemp -d)
pids=()
server=""
cleanup() {
  for p in "${pids[@]}" $server; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}" $server; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
MAAS_ADMIN_PASSWORD=$PASSWORD MAAS__LOG__LEVEL=warn "$BIN" serve --data-dir "$work/data" \
  --bind "127.0.0.1:$PORT" --grpc-bind "127.0.0.1:$GRPC_PORT" >"$work/server.log" 2>&1 &
server=$!
server_died() { echo "maas: $1; its log:" >&2; tail -n 30 "$work/server.log" >&2; exit 1; }

ready() { # url pid log (HTTP readiness, polled for up to 120 s while pid lives)
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || { tail -n 30 "$3" >&2; die "the server for $1 exited (its log above)"; }
    sleep 0.2
  done
  die "$1 never became ready"
}
listening() { # port (TCP accept, polled for up to 20 s)
  for _ in $(seq 1 100); do (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.2; done
  return 1
}
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "$URL/health/ready" && break
  kill -0 "$server" 2>/dev/null || server_died "exited at startup"
  sleep 0.1
done
listening "$GRPC_PORT" || server_died "nothing listens on its gRPC port $GRPC_PORT"
TOKEN=$(curl -sf -X POST "$URL/v1/auth/token" -H 'Content-Type: application/json' \
  -d "{\"username\": \"admin\", \"password\": \"$PASSWORD\"}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') || server_died "login failed"
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -F "model=@$MODEL" \
  -F "serving={\"backend\": \"$BACKEND\"}" "$URL/v1/models/iris/versions" || die "deploy failed"

targets=("maas|HTTP" "maas|gRPC")
if [ "$PEERS" = 1 ]; then
  "$PYTRITON" $((PORT + 30)) >"$work/pytriton.log" 2>&1 &
  pids+=($!)
  ready "http://127.0.0.1:$((PORT + 30))/v2/health/ready" "${pids[0]}" "$work/pytriton.log"
  listening $((PORT + 31)) || die "PyTriton: nothing listens on its gRPC port $((PORT + 31))"
  targets+=("PyTriton|gRPC")
fi

# The request bodies, and one real call of each against every server that will be measured.
"$PYTHON" benches/grpc/payload.py write "$work/infer.grpc"
echo '{"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}' >"$work/v2.json"
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  --data-binary @"$work/v2.json" "$URL/v2/models/iris/infer" || die "maas: V2 infer failed"
"$PYTHON" benches/grpc/payload.py check "127.0.0.1:$GRPC_PORT" "$work/infer.grpc" --token "$TOKEN" >&2 ||
  die "maas: gRPC ModelInfer failed (above); nothing measured"
if [ "$PEERS" = 1 ]; then
  "$PYTHON" benches/grpc/payload.py check "127.0.0.1:$((PORT + 31))" "$work/infer.grpc" >&2 ||
    die "PyTriton: gRPC ModelInfer failed (above); nothing measured"
fi

results="$work/results"
: >"$results"
metrics() { # server file
  case $1 in
    maas) curl -sf -H "Authorization: Bearer $TOKEN" "$URL/metrics" >"$2" || die "maas: GET /metrics failed" ;;
    PyTriton) curl -sf "http://127.0.0.1:$((PORT + 32))/metrics" >"$2" || die "PyTriton: GET /metrics failed" ;;
  esac
}
run() { # server protocol concurrency
  local args=(-c "$3" -m 1 -t 1 -D "$DURATION" --log-file "$work/h2load.log")
  local ok=maas_predictions_total failed='*other*'
  case $1/$2 in
    maas/HTTP) args+=(--h1 -d "$work/v2.json" -H 'content-type: application/json'
                      -H "authorization: Bearer $TOKEN" "$URL/v2/models/iris/infer") ;;
    maas/gRPC) args+=(-d "$work/infer.grpc" -H 'content-type: application/grpc' -H 'te: trailers'
                      -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$GRPC_PORT$METHOD") ;;
    PyTriton/gRPC) args+=(-d "$work/infer.grpc" -H 'content-type: application/grpc' -H 'te: trailers'
                          "http://127.0.0.1:$((PORT + 31))$METHOD")
                   ok=nv_inference_request_success failed=nv_inference_request_failure ;;
  esac
  rm -f "$work/h2load.log" # h2load appends to it
  metrics "$1" "$work/before.prom"
  h2load "${args[@]}" >"$work/h2load.out" 2>&1 || { cat "$work/h2load.out" >&2; die "h2load failed"; }
  sleep 0.2 # let the requests in flight when h2load stopped finish before the counters are read
  metrics "$1" "$work/after.prom"
  python3 benches/grpc/report.py row "$1" "$2" "$3" "$work/h2load.out" "$work/h2load.log" \
    "$work/before.prom" "$work/after.prom" "$ok" "$failed" "$results"
}

echo "| server | protocol | c | req/s | p50 ms | p99 ms | failed |"
echo "|---|---|---:|---:|---:|---:|---:|"
for _ in $(seq 1 "$ROUNDS"); do
  for c in $CONCURRENCY; do
    for t in "${targets[@]}"; do
      run "${t%%|*}" "${t#*|}" "$c"
    done
  done
done
python3 benches/grpc/report.py summary "$results"
