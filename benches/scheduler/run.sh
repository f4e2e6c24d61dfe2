#!/usr/bin/env bash
# Scheduler benchmark: how long jobs take from submit to the end, on this machine's own cores.
#
# Starts `target/release/maas serve` on a fresh data folder and measures, through the HTTP API:
#   1. the iris workflow (load, split, train, evaluate, deploy), RUNS times one after another:
#      submit-to-finished latency, mean and max;
#   2. JOBS one-task script jobs (`true`) submitted at once: time until all finished, and jobs/s
#      (dispatch overhead: claim, task folder, process start, result, settle).
#
#   cargo build --release -p maas-gateway
#   benches/scheduler/run.sh
#
# Environment: RUNS (default 20), JOBS (default 200), PORT (default 18090), MAAS_BIN.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${MAAS_BIN:-target/release/maas}
RUNS=${RUNS:-20}
JOBS=${JOBS:-200}
PORT=${PORT:-18090}
. benches/serve.sh
export RUNS JOBS

python3 - <<'PY'
import json, os, time, urllib.request

url, token = os.environ["URL"], os.environ["TOKEN"]

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)

def wait(job_id):
    while True:
        job = call("GET", f"/v1/jobs/{job_id}")
        if job["state"] in ("finished", "failed", "canceled", "killed", "in_error"):
            assert job["state"] == "finished", job
            return
        time.sleep(0.005)

iris = open("scheduler/workflows/iris-deploy.yaml").read()
times = []
for _ in range(int(os.environ["RUNS"])):
    start = time.perf_counter()
    wait(call("POST", "/v1/jobs", {"workflow": iris})["id"])
    times.append(time.perf_counter() - start)
print(f"| iris workflow, submit to finished (5 tasks, deploy included), {len(times)} runs "
      f"| mean {sum(times) / len(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms |")

hello = "name: hello\ntasks:\n  - name: t\n    kind: script\n    script: 'true'\n"
n = int(os.environ["JOBS"])
start = time.perf_counter()
ids = [call("POST", "/v1/jobs", {"workflow": hello})["id"] for _ in range(n)]
for job_id in ids:
    wait(job_id)
elapsed = time.perf_counter() - start
print(f"| {n} one-task script jobs submitted at once, until all finished "
      f"| {elapsed:.2f} s, {n / elapsed:.0f} jobs/s |")
PY
