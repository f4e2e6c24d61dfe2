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
#   RUNS=cnn-binary benches/http/run.sh  # the CNN image as a V2 binary tensor, batching on and off
#
# Environment: DURATION (default 10s), PORT (default 18080), BACKEND (default tract),
# MAAS_BIN (default target/release/maas), RUNS (a space-separated subset of: iris cnn
# cnn-instances2 cnn-binary; default "iris cnn"). cnn-instances2 is the CNN's JSON run with two
# instances per version; cnn-binary sends the same image as the Open Inference Protocol's binary
# tensor extension (a JSON header, then 3136 little-endian FP32 bytes), so no JSON numbers are
# parsed.
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

load() { # label concurrency path body-file [content-type] [extra "Name: value" header]
  local out
  out=$(BODY=$4 CONTENT_TYPE=${5:-application/json} EXTRA_HEADER=${6:-} \
    wrk -t1 -c"$2" -d"$DURATION" -s benches/http/post.lua "$URL$3" | grep '^RESULT')
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
if [[ " $RUNS " == *" cnn"* ]]; then
  python3 - "$work/cnn.json" <<'PY'
import json, sys
image = [[[round((i * 7919 % 1000) / 1000, 3) for i in range(r * 28, r * 28 + 28)] for r in range(28)]]
json.dump({"instances": [image]}, open(sys.argv[1], "w"))
PY
fi
cnn_runs() { # model-name-suffix extra-serving-json
  deploy "cnn-batched$1" cnn_mnist.onnx "{\"backend\": \"$BACKEND\", \"max_batch_size\": 32$2}"
  deploy "cnn-single$1" cnn_mnist.onnx "{\"backend\": \"$BACKEND\", \"max_batch_size\": 1$2}"
}
if [[ " $RUNS " == *" cnn "* ]]; then
  cnn_runs "" ""
  load "cnn, batching on ($BACKEND)" 32 /v1/models/cnn-batched/predict "$work/cnn.json"
  load "cnn, batching off ($BACKEND)" 32 /v1/models/cnn-single/predict "$work/cnn.json"
fi
if [[ " $RUNS " == *" cnn-instances2 "* ]]; then
  cnn_runs "-2" ", \"instances\": 2"
  load "cnn, 2 instances, batching on ($BACKEND)" 32 /v1/models/cnn-batched-2/predict "$work/cnn.json"
  load "cnn, 2 instances, batching off ($BACKEND)" 32 /v1/models/cnn-single-2/predict "$work/cnn.json"
fi
if [[ " $RUNS " == *" cnn-binary "* ]]; then
  [[ " $RUNS " == *" cnn "* ]] || cnn_runs "" ""
  # The same image as cnn.json: a JSON header naming the model's input (from its V2 metadata),
  # then 784 little-endian float32s. Prints the header's length.
  header_len=$(curl -sf -H "Authorization: Bearer $TOKEN" "$URL/v2/models/cnn-batched" |
    python3 -c '
import json, struct, sys
name = json.load(sys.stdin)["inputs"][0]["name"]
image = json.load(open(sys.argv[1]))["instances"][0]
data = struct.pack("<784f", *[v for plane in image for row in plane for v in row])
header = json.dumps({"inputs": [{"name": name, "shape": [1, 1, 28, 28], "datatype": "FP32",
                                 "parameters": {"binary_data_size": len(data)}}]}).encode()
open(sys.argv[2], "wb").write(header + data)
print(len(header))' "$work/cnn.json" "$work/cnn.bin")
  for model in cnn-batched cnn-single; do
    # One request first, so a body the server refuses fails here rather than as wrk errors.
    curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
      -H 'Content-Type: application/octet-stream' -H "Inference-Header-Content-Length: $header_len" \
      --data-binary "@$work/cnn.bin" "$URL/v2/models/$model/infer" ||
      { echo "binary infer on $model failed" >&2; exit 1; }
  done
  for mode in on off; do
    model=cnn-batched; [ $mode = off ] && model=cnn-single
    load "cnn V2 binary, batching $mode ($BACKEND)" 32 "/v2/models/$model/infer" "$work/cnn.bin" \
      application/octet-stream "Inference-Header-Content-Length: $header_len"
  done
fi
