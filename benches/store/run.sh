#!/usr/bin/env bash
# Store benchmark: what one durable write costs through the HTTP API, with a read as the
# reference measured in the same run (the machines are shared and noisy: compare ratios).
#
# Starts `target/release/maas serve` on a fresh SQLite data folder and times, over one
# keep-alive connection:
#   1. WRITES sequential `PATCH /v1/settings` (one write transaction and its audit row each);
#   2. READS sequential `GET /v1/models` (a store read each).
#
#   cargo build --release -p maas-gateway
#   benches/store/run.sh
#
# Environment: WRITES (default 1000), READS (default 3000), ROUNDS (default 3), PORT (default
# 18091), MAAS_BIN (another build to compare).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${MAAS_BIN:-target/release/maas}
WRITES=${WRITES:-1000}
READS=${READS:-3000}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18091}
. benches/serve.sh
python3 - "$WRITES" "$READS" "$ROUNDS" <<'PY'
import http.client, json, os, sys, time
writes, reads, rounds = map(int, sys.argv[1:4])
host = os.environ["URL"].split("//", 1)[1]
headers = {"Authorization": "Bearer " + os.environ["TOKEN"], "Content-Type": "application/json"}
conn = http.client.HTTPConnection(host)

def call(method, path, body=None):
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    assert response.status == 200, (method, path, response.status)

for r in range(1, rounds + 1):
    start = time.perf_counter()
    for i in range(writes):
        call("PATCH", "/v1/settings", json.dumps({"debug": i % 2 == 0}))
    write_ms = (time.perf_counter() - start) * 1000 / writes
    start = time.perf_counter()
    for _ in range(reads):
        call("GET", "/v1/models")
    read_ms = (time.perf_counter() - start) * 1000 / reads
    print(f"round {r}: write {write_ms:.2f} ms, read {read_ms:.2f} ms, write/read {write_ms / read_ms:.1f}")
PY
