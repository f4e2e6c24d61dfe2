#!/usr/bin/env bash
# A soak of mixed traffic on loopback (issue #19): predicts (v1 and V2, each with the drift
# check), per-request drift checks, deploys that replace the serving version under traffic,
# rollbacks, deploys and deletes of a scratch model, and two-task jobs, all at once for DURATION
# seconds, while the server's resident set, threads and file descriptors are sampled. See
# benches/soak/soak.py for the traffic; results go to OUT (samples.csv, soak.svg) and a summary
# is printed. Exits 1 if any answer was an error (anything but 2xx and 429).
#
#   cargo build --release -p maas-gateway
#   benches/soak/run.sh                              # 10 minutes
#   DURATION=60 OUT=/tmp/soak benches/soak/run.sh    # a short one
#
# Environment: DURATION (s, default 600), OUT (default benches/soak/results), PORT (default
# 18080), MAAS_BIN, PREDICTORS (4), LIFECYCLE_SECS (3), JOB_SECS (5), SAMPLE_SECS (5).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${MAAS_BIN:-target/release/maas}
PORT=${PORT:-18080}
OUT=${OUT:-benches/soak/results}
mkdir -p "$OUT"
. benches/serve.sh
SERVER_PID=$server OUT=$OUT python3 benches/soak/soak.py
