"""River's detectors on the stream benches/drift.rs uses, for the comparison in benches/README.md.

    python3 -m venv /tmp/river && /tmp/river/bin/pip install -r benches/requirements-river.txt
    /tmp/river/bin/python benches/river_bench.py [N]

Prints elements per second per detector (and the drift count, to compare with maas).
"""

import sys
import time

from river import drift
from river.drift import binary

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000


def stream(n):
    state = 42
    out = []
    mask = (1 << 64) - 1
    for i in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) & mask
        u = (state >> 11) / float(1 << 53)
        mean = 0.3 if i < n // 2 else 0.7
        out.append(min(1.0, max(0.0, mean + (u - 0.5) * 0.4)))
    return out


def main():
    data = stream(N)
    detectors = {
        "adwin": drift.ADWIN,
        "page_hinkley": drift.PageHinkley,
        "hddm_a": binary.HDDMA,
        "hddm_w": binary.HDDMW,
    }
    print(f"river, {N} elements")
    for name, make in detectors.items():
        d = make()
        drifts = 0
        start = time.perf_counter()
        for x in data:
            d.update(x)
            drifts += d.drift_detected
        elapsed = time.perf_counter() - start
        print(f"{name:13s} {N / elapsed:14,.0f} elements/s  ({elapsed:.2f} s, {drifts} drifts)")


if __name__ == "__main__":
    main()
