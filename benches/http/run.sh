#!/usr/bin/env bash
# HTTP load benchmark of maas with wrk (Debian package `wrk`), on this machine's own cores.
#
# Starts `target/release/maas serve` on a fresh data folder, deploys the fixture models, and runs
# wrk against the native (/v1/models/{m}/predict) and Open Inference Protocol (/v2/.../infer)
# routes. Prints one markdown table row per run.
#
#   cargo build --release -p maas-gateway
#   benches/http/run.sh                 # iris c=1/8/32, native and V2; CNN batching on and off
#   DURATION=30s benches/http/run.sh    # longer runs
#   BACKEND=ort-cpu ORT_DYLIB_PATH=... benches/http/run.sh   # the same on ONNX Runtime
#
# Environment: DURATION (default 10s), PORT (default 18080), BACKEND (default tract),
# MAAS_BIN (default target/release/maas), RUNS (a space-separated subset of: iris cnn).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${MAAS_BIN:-target/release/maas}
DURATION=${DURATION:-10s}
PORT=${PORT:-18080}
BACKEND=${BACKEND:-tract}
RUNS=${RUNS:-iris cnn}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
. benches/serve.sh

deploy() { # name file serving-json
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -F "model=@tests/fixtures/$2" \
    -F "serving=$3" "$URL/v1/models/$1/versions" || { echo "deploy of $1 failed" >&2; exit 1; }
}

load() { # label concurrency path body-file
  local out
  out=$(BODY=$4 wrk -t1 -c"$2" -d"$DURATION" -s benches/http/post.lua "$URL$3" | grep '^RESULT')
  # RESULT rps=.. p50_us=.. p99_us=.. requests=.. errors=..
  eval "${out#RESULT }"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$rps" "$p50_us" "$p99_us" "$errors"
}

echo "| run | concurrency | requests/s | p50 (µs) | p99 (µs) | errors |"
echo "|---|---:|---:|---:|---:|---:|"
if [[ " $RUNS " == *" iris "* ]]; then
  deploy iris iris_logreg.onnx "{\"backend\": \"$BACKEND\"}"
  echo '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' >"$work/iris.json"
  echo '{"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}' >"$work/iris-v2.json"
  for c in 1 8 32; do
    load "iris native ($BACKEND)" "$c" /v1/models/iris/predict "$work/iris.json"
  done
  for c in 1 8 32; do
    load "iris V2 ($BACKEND)" "$c" /v2/models/iris/infer "$work/iris-v2.json"
  done
fi
if [[ " $RUNS " == *" cnn "* ]]; then
  deploy cnn-batched cnn_mnist.onnx "{\"backend\": \"$BACKEND\", \"max_batch_size\": 32}"
  deploy cnn-single cnn_mnist.onnx "{\"backend\": \"$BACKEND\", \"max_batch_size\": 1}"
  python3 - "$work/cnn.json" <<'PY'
import json, sys
image = [[[round((i * 7919 % 1000) / 1000, 3) for i in range(r * 28, r * 28 + 28)] for r in range(28)]]
json.dump({"instances": [image]}, open(sys.argv[1], "w"))
PY
  load "cnn, batching on ($BACKEND)" 32 /v1/models/cnn-batched/predict "$work/cnn.json"
  load "cnn, batching off ($BACKEND)" 32 /v1/models/cnn-single/predict "$work/cnn.json"
fi
