#!/usr/bin/env python3
"""A soak of mixed traffic against one running maas (started by benches/soak/run.sh).

Standard library only. For DURATION seconds, at once:
- PREDICTORS closed-loop clients predict on `iris`, alternating v1 JSON and V2 JSON; iris was
  deployed with its training data, so every predict also runs the drift check;
- a drift client sends 150 shifted rows with a per-request ADWIN check every 0.5 s;
- a lifecycle client, every LIFECYCLE_SECS: deploys a new version of iris (the two fixtures in
  turn; it replaces the serving one, under the predictors' traffic), every third round rolls
  back to the version before, and deploys then deletes a scratch model;
- a jobs client submits a two-task script workflow every JOB_SECS and waits for it to finish.

Every SAMPLE_SECS the server's resident set, threads and open file descriptors are read from
/proc/PID. Answers are counted by kind and status; anything but 2xx (and 429, the expected
answer of a full queue) is an error, and the first few are printed. Writes samples.csv and
soak.svg into OUT, prints a summary as markdown, and exits 1 on any error.
"""

import collections
import csv
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

URL = urllib.parse.urlparse(os.environ["URL"])
TOKEN = os.environ["TOKEN"]
PID = int(os.environ["SERVER_PID"])
OUT = os.environ["OUT"]
DURATION = float(os.environ.get("DURATION", "600"))
PREDICTORS = int(os.environ.get("PREDICTORS", "4"))
LIFECYCLE_SECS = float(os.environ.get("LIFECYCLE_SECS", "3"))
JOB_SECS = float(os.environ.get("JOB_SECS", "5"))
SAMPLE_SECS = float(os.environ.get("SAMPLE_SECS", "5"))
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures")

counts = collections.Counter()  # (kind, status) -> answers
errors = []  # (kind, status, body) of the first errors
lock = threading.Lock()
stop = threading.Event()


class Client:
    """One keep-alive HTTP connection, reopened when the server closes it."""

    def __init__(self):
        self.conn = None

    def request(self, kind, method, path, body=None, content_type="application/json"):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if body is not None:
            headers["Content-Type"] = content_type
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=60)
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                break
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                self.conn = None
                # A keep-alive connection the server closed between two requests: once more.
                if attempt == 1:
                    status, data = 0, str(e).encode()
        with lock:
            counts[(kind, status)] += 1
            if not (200 <= status < 300 or status == 429) and len(errors) < 20:
                errors.append((kind, status, data[:300].decode(errors="replace")))
        return status, data


def multipart(fields):
    """A multipart/form-data body of (name, value, filename or None) fields."""
    boundary = "maas-soak-boundary"
    parts = []
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode())
        parts.append(value if isinstance(value, bytes) else value.encode())
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def deploy(client, model, file, extra=()):
    body, content_type = multipart([("model", fixture(file), file), *extra])
    status, data = client.request("deploy", "POST", f"/v1/models/{model}/versions", body, content_type)
    return json.loads(data)["version"] if status == 201 else None


def predictor(index):
    client = Client()
    v1 = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    v2 = json.dumps({"inputs": [{"name": "float_input", "shape": [2, 4], "datatype": "FP32",
                                 "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]})
    n = index
    while not stop.is_set():
        if n % 2:
            client.request("predict v1", "POST", "/v1/models/iris/predict", v1)
        else:
            client.request("predict V2", "POST", "/v2/models/iris/infer", v2)
        n += 1


def drifter():
    client = Client()
    shifted = fixture("iris_shifted.json")
    while not stop.wait(0.5):
        client.request("predict with drift", "POST", "/v1/models/iris/predict", shifted)


def lifecycle():
    client = Client()
    files = ["iris_logreg_v2.onnx", "iris_logreg.onnx"]
    round_ = 0
    while not stop.wait(LIFECYCLE_SECS):
        version = deploy(client, "iris", files[round_ % 2])
        if version and round_ % 3 == 2:
            client.request("rollback", "POST", f"/v1/models/iris/versions/{version - 1}/deploy", "{}")
        if deploy(client, "scratch", "iris_logreg.onnx"):
            client.request("delete", "DELETE", "/v1/models/scratch")
        round_ += 1


WORKFLOW = """
name: soak
tasks:
  - name: first
    kind: script
    script: |
      echo "first of $MAAS_JOB_ID"
      echo "WORD=soak" >> "$MAAS_EXPORTS"
  - name: second
    kind: script
    depends_on: [first]
    script: echo "second says $WORD"
"""


def jobs():
    client = Client()
    while not stop.wait(JOB_SECS):
        status, data = client.request("job submit", "POST", "/v1/jobs", json.dumps({"workflow": WORKFLOW}))
        if status != 202:
            continue
        job = json.loads(data)["id"]
        deadline = time.time() + 60
        while time.time() < deadline and not stop.is_set():
            status, data = client.request("job poll", "GET", f"/v1/jobs/{job}")
            state = json.loads(data).get("state") if status == 200 else None
            if state in ("finished", "failed", "canceled", "killed", "in_error"):
                with lock:
                    counts[(f"job {state}", 200)] += 1
                    if state != "finished" and len(errors) < 20:
                        errors.append(("job", state, data[:300].decode(errors="replace")))
                break
            time.sleep(0.2)


def sample(started, rows):
    with open(f"/proc/{PID}/status") as f:
        status = dict(line.split(":", 1) for line in f)
    rows.append({
        "seconds": round(time.time() - started, 1),
        "rss_mib": round(int(status["VmRSS"].split()[0]) / 1024, 1),
        "threads": int(status["Threads"]),
        "fds": len(os.listdir(f"/proc/{PID}/fd")),
    })


def svg(rows, path):
    """Three small line charts (RSS, threads, fds) against time, as one SVG."""
    width, height, pad = 720, 170, 40
    series = [("rss_mib", "resident set (MiB)"), ("threads", "threads"), ("fds", "open file descriptors")]
    end = max(r["seconds"] for r in rows) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height * 3}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height * 3}" fill="white"/>']
    for i, (key, title) in enumerate(series):
        top = i * height
        values = [r[key] for r in rows]
        high = max(values) * 1.1 or 1
        points = " ".join(
            f"{pad + (r['seconds'] / end) * (width - 2 * pad):.1f},"
            f"{top + height - pad + 10 - (r[key] / high) * (height - pad - 20):.1f}"
            for r in rows)
        base = top + height - pad + 10
        out += [f'<text x="{pad}" y="{top + 16}">{title}: {min(values)} to {max(values)}</text>',
                f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" stroke="#999"/>',
                f'<line x1="{pad}" y1="{top + 20}" x2="{pad}" y2="{base}" stroke="#999"/>',
                f'<text x="{pad - 4}" y="{top + 30}" text-anchor="end">{high:.0f}</text>',
                f'<text x="{pad - 4}" y="{base}" text-anchor="end">0</text>',
                f'<text x="{width - pad}" y="{base + 14}" text-anchor="end">{end:.0f} s</text>',
                f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>']
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    # iris with its training data: every predict also runs the drift check.
    client = Client()
    if deploy(client, "iris", "iris_logreg.onnx",
              [("training_data", fixture("iris_train.csv"), "iris_train.csv"),
               ("label_column", "species", None)]) is None:
        sys.exit(f"the first deploy failed: {errors}")
    started = time.time()
    rows = []
    sample(started, rows)
    threads = [threading.Thread(target=predictor, args=(i,)) for i in range(PREDICTORS)]
    threads += [threading.Thread(target=f) for f in (drifter, lifecycle, jobs)]
    for t in threads:
        t.start()
    while time.time() - started < DURATION:
        time.sleep(SAMPLE_SECS)
        sample(started, rows)
    stop.set()
    for t in threads:
        t.join()
    sample(started, rows)

    with open(os.path.join(OUT, "samples.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    svg(rows, os.path.join(OUT, "soak.svg"))

    elapsed = time.time() - started
    print(f"soak: {elapsed:.0f} s, {PREDICTORS} predictors\n")
    print("| kind | status | answers | per second |")
    print("|---|---:|---:|---:|")
    for (kind, status), n in sorted(counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"| {kind} | {status} | {n} | {n / elapsed:.1f} |")
    print()
    first, last = rows[1] if len(rows) > 1 else rows[0], rows[-1]
    print("| resource | at start | after warm-up (first sample) | max | at end |")
    print("|---|---:|---:|---:|---:|")
    for key in ("rss_mib", "threads", "fds"):
        print(f"| {key} | {rows[0][key]} | {first[key]} | {max(r[key] for r in rows)} | {last[key]} |")
    if errors:
        print("\nerrors (first 20):")
        for e in errors:
            print(" ", e)
        sys.exit(1)


if __name__ == "__main__":
    main()
