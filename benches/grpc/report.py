"""Rows and summary for benches/grpc/run.sh (standard library only):

    report.py row SERVER PROTOCOL C H2LOAD_OUT H2LOAD_LOG METRICS_BEFORE METRICS_AFTER OK FAILED RESULTS
        One markdown row from an h2load run: req/s as h2load gives it (requests done / elapsed),
        p50 and p99 from its --log-file (per-request time to the end of the response; h2load's
        own summary has min/max/mean/sd only), and `failed`: h2load's failed + errored + timeout
        plus the requests h2load counted as succeeded that the server's own counters do not
        count as ok. gRPC answers errors with HTTP 200 and the status in the trailers, which
        h2load counts as success; the server's counters (METRICS_BEFORE/AFTER, Prometheus text
        read around the run) are the check. OK and FAILED are the names of the counters of
        successful and failed inferences, summed over every series whose labels include
        model="iris" (FAILED may be "*other*": every other value of the `outcome` label of the
        OK counter). A second row, WARNING, follows when the counters disagree with h2load
        beyond the requests still in flight when h2load stopped (started - done). Appends
        "SERVER PROTOCOL C REQ/S P50_MS FAILED" to RESULTS. Exits 1 if no request was done.
    report.py summary RESULTS
        Best of the rounds per (server, protocol, c): maas gRPC against maas HTTP, and maas
        gRPC against PyTriton gRPC where PyTriton ran.
"""

import re
import sys

SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def counters(path: str, ok: str, failed: str) -> tuple[float, float]:
    """(ok, failed) summed over the series of model="iris"."""
    good = bad = 0.0
    with open(path) as f:
        for line in f:
            m = SERIES.match(line)
            if not m or 'model="iris"' not in (m.group(2) or ""):
                continue
            name, labels, value = m.group(1), m.group(2), float(m.group(3))
            if failed == "*other*":
                if name == ok:
                    if 'outcome="ok"' in labels:
                        good += value
                    else:
                        bad += value
            elif name == ok:
                good += value
            elif name == failed:
                bad += value
    return good, bad


def h2load_numbers(path: str) -> dict:
    text = open(path).read()
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    )
    r = re.search(r"finished in [^,]+, ([\d.]+) req/s", text)
    if not m or not r:
        sys.exit(f"cannot read h2load's summary in {path}:\n{text[-2000:]}")
    keys = ["total", "started", "done", "succeeded", "failed", "errored", "timeout"]
    numbers = dict(zip(keys, map(int, m.groups())))
    numbers["rps"] = float(r.group(1))
    return numbers


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100)
    return sorted_values[int(rank) - 1]


def row(argv: list[str]) -> None:
    server, protocol, c, out, log, before, after, ok_name, failed_name, results = argv
    h = h2load_numbers(out)
    if h["done"] == 0:
        print(f"| {server} | {protocol} | {c} | no request was done | | | |")
        sys.exit(f"{server} {protocol} c={c}: h2load finished no request:\n" + open(out).read()[-2000:])
    latencies = []
    with open(log) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3:
                latencies.append(int(parts[2]))
    if len(latencies) != h["done"]:
        print(f"{log}: {len(latencies)} requests logged, h2load says {h['done']} done", file=sys.stderr)
    latencies.sort()
    ok0, bad0 = counters(before, ok_name, failed_name)
    ok1, bad1 = counters(after, ok_name, failed_name)
    ok, bad = ok1 - ok0, bad1 - bad0
    in_flight = h["started"] - h["done"]
    hidden = max(0, h["succeeded"] - ok)  # "successes" the server does not count as ok
    failed = h["failed"] + h["errored"] + h["timeout"] + int(hidden)
    p50, p99 = percentile(latencies, 50) / 1000, percentile(latencies, 99) / 1000
    print(f"| {server} | {protocol} | {c} | {h['rps']:,.0f} | {p50:.3f} | {p99:.3f} | {failed} |")
    if ok < h["succeeded"] or ok > h["succeeded"] + in_flight or bad > 0:
        print(
            f"| WARNING {server} | {protocol} | {c} | server counted {ok:.0f} ok and {bad:.0f} failed; "
            f"h2load: {h['succeeded']} succeeded, {h['done']} done, {in_flight} in flight at stop | | | |"
        )
    with open(results, "a") as f:
        f.write(f"{server} {protocol} {c} {h['rps']} {p50} {failed}\n")


def summary(argv: list[str]) -> None:
    (results,) = argv
    best = {}  # (server, protocol, c) -> (req/s, p50 ms): best of the rounds
    for line in open(results):
        server, protocol, c, rps, p50, _failed = line.split()
        key = (server, protocol, int(c))
        rps, p50 = float(rps), float(p50)
        old = best.get(key)
        best[key] = (max(rps, old[0]), min(p50, old[1])) if old else (rps, p50)
    cs = sorted({c for _, _, c in best})

    def table(title: str, a: tuple[str, str], b: tuple[str, str]) -> None:
        if not any((*b, c) in best for c in cs):
            return
        print(f"\n{title}\n")
        print(f"| c | {a[0]} {a[1]} req/s | {b[0]} {b[1]} req/s | req/s ratio | "
              f"{a[0]} {a[1]} p50 ms | {b[0]} {b[1]} p50 ms | p50 ratio |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for c in cs:
            if (*a, c) not in best or (*b, c) not in best:
                continue
            (ra, la), (rb, lb) = best[(*a, c)], best[(*b, c)]
            print(f"| {c} | {ra:,.0f} | {rb:,.0f} | {ra / rb:.2f} | {la:.3f} | {lb:.3f} | {la / lb:.2f} |")

    table("maas gRPC against maas HTTP (best of the rounds; req/s ratio > 1 and p50 ratio < 1 "
          "favour gRPC):", ("maas", "gRPC"), ("maas", "HTTP"))
    table("maas gRPC against Triton (PyTriton) gRPC (best of the rounds; req/s ratio > 1 and "
          "p50 ratio < 1 favour maas):", ("maas", "gRPC"), ("PyTriton", "gRPC"))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("row", "summary"):
        sys.exit(__doc__)
    {"row": row, "summary": summary}[sys.argv[1]](sys.argv[2:])
