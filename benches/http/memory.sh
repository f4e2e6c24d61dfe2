#!/usr/bin/env bash
# Memory of maas: the resident set (VmRSS in /proc/<pid>/status) of a fresh server, what each
# loaded version adds, and whether it stays flat while serving many requests.
#
# Starts `target/release/maas serve` on a fresh data folder (benches/serve.sh), then, in order:
#   1. the fresh server's RSS (logged in, nothing deployed);
#   2. IRIS_VERSIONS (20) versions of tests/fixtures/iris_logreg.onnx, all serving (append),
#      on tract: (RSS after − before) / IRIS_VERSIONS;
#   3. CNN_VERSIONS (10) versions of tests/fixtures/cnn_mnist.onnx on tract, and as many on
#      ort-cpu when ORT_DYLIB_PATH is set: the same per version;
#   4. REQUESTS (1,000,000) single-row iris predicts at concurrency 32 with wrk, in slices of
#      SLICE (2s), printing the RSS after each slice: it must stay flat.
#
#   cargo build --release -p maas-gateway
#   benches/http/memory.sh
#   ORT_DYLIB_PATH=... benches/http/memory.sh            # with the ONNX Runtime rows
#   REQUESTS=200000 IRIS_VERSIONS=5 benches/http/memory.sh
#
# Environment: PORT (default 18080), MAAS_BIN (default target/release/maas), IRIS_VERSIONS,
# CNN_VERSIONS, REQUESTS, SLICE.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${MAAS_BIN:-target/release/maas}
PORT=${PORT:-18080}
IRIS_VERSIONS=${IRIS_VERSIONS:-20}
CNN_VERSIONS=${CNN_VERSIONS:-10}
REQUESTS=${REQUESTS:-1000000}
SLICE=${SLICE:-2s}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
. benches/serve.sh

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }

deploy_versions() { # model fixture serving-json count
  local i
  for i in $(seq 1 "$4"); do
    curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -F "model=@tests/fixtures/$2" \
      -F "serving=$3" -F append=true "$URL/v1/models/$1/versions" ||
      { echo "deploy $i of $1 failed" >&2; exit 1; }
  done
}

per_version() { # label model fixture serving-json count
  local before after
  before=$(rss_kib)
  deploy_versions "$2" "$3" "$4" "$5"
  after=$(rss_kib)
  printf '| %s | %s | %s → %s | %s |\n' "$1" "$5" "$(mib "$before")" "$(mib "$after")" \
    "$(awk -v d=$((after - before)) -v n="$5" 'BEGIN {printf "%.0f KiB", d / n}')"
}

ort=no
[ -n "${ORT_DYLIB_PATH:-}" ] && ort=yes
echo "fresh server (ONNX Runtime loaded: $ort): VmRSS $(mib "$(rss_kib)")"
echo
echo "| versions of | count | VmRSS before → after | per version |"
echo "|---|---:|---:|---:|"
per_version "iris_logreg (tract)" iris-mem iris_logreg.onnx '{"backend": "tract"}' "$IRIS_VERSIONS"
per_version "cnn_mnist (tract)" cnn-tract cnn_mnist.onnx '{"backend": "tract"}' "$CNN_VERSIONS"
if [ $ort = yes ]; then
  per_version "cnn_mnist (ort-cpu)" cnn-ort cnn_mnist.onnx '{"backend": "ort-cpu"}' "$CNN_VERSIONS"
fi

echo
echo "serving $REQUESTS single-row iris predicts (tract, concurrency 32), VmRSS after each $SLICE:"
deploy_versions iris iris_logreg.onnx '{"backend": "tract"}' 1
echo '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' >"$work/iris.json"
echo "| requests so far | VmRSS | errors |"
echo "|---:|---:|---:|"
printf '| 0 | %s | 0 |\n' "$(mib "$(rss_kib)")"
done_requests=0
failed=0
while [ "$done_requests" -lt "$REQUESTS" ]; do
  out=$(BODY="$work/iris.json" wrk -t1 -c32 -d"$SLICE" -s benches/http/post.lua \
    "$URL/v1/models/iris/predict" | grep '^RESULT')
  eval "${out#RESULT }" # rps, p50_us, p99_us, requests, errors
  done_requests=$((done_requests + requests))
  failed=$((failed + errors))
  printf '| %s | %s | %s |\n' "$done_requests" "$(mib "$(rss_kib)")" "$failed"
done
