"""River's drift detectors on the stream benches/benches/drift.rs uses, for benches/README.md.

    python3 -m venv /tmp/river-venv
    /tmp/river-venv/bin/pip install -r benches/requirements-river.txt
    /tmp/river-venv/bin/python benches/river_bench.py [--n 1000000] [--repeat 3] [--dump FILE]

Prints a Markdown table: elements per second per detector (best of --repeat runs, river's default
parameters, one `update` call and one `drift_detected` read per element, as maas does), with the
drift and warning counts so they can be compared with `maas drift stream` on the same data.
`--dump FILE` also writes the stream, one value per line, for that comparison.
"""

from __future__ import annotations

import argparse
import time

import river
from river import drift
from river.drift import binary

DETECTORS = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "hddm_a": binary.HDDMA,
    "hddm_w": binary.HDDMW,
}


def stream(n: int) -> list[float]:
    """Uniform noise from a 64-bit LCG whose mean moves from 0.3 to 0.7 halfway, clamped to [0, 1]
    (so the HDDM detectors see valid input). Bit for bit the same as `stream` in drift.rs."""
    state = 42
    mask = (1 << 64) - 1
    out = []
    for i in range(n):
        state = (state * 6364136223846793005 + 1442695040888963407) & mask
        u = (state >> 11) / float(1 << 53)
        mean = 0.3 if i < n // 2 else 0.7
        out.append(min(1.0, max(0.0, mean + (u - 0.5) * 0.4)))
    return out


def run(make, data: list[float]) -> tuple[float, int, int]:
    detector = make()
    drifts = warnings = 0
    has_warning = hasattr(detector, "warning_detected")
    start = time.perf_counter()
    for x in data:
        detector.update(x)
        drifts += detector.drift_detected
        if has_warning:
            warnings += detector.warning_detected
    return time.perf_counter() - start, drifts, warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="stream length")
    parser.add_argument("--repeat", type=int, default=3, help="runs per detector; the best counts")
    parser.add_argument("--dump", help="also write the stream to this file, one value per line")
    args = parser.parse_args()

    data = stream(args.n)
    if args.dump:
        with open(args.dump, "w") as f:
            f.write("value\n")
            f.writelines(f"{x!r}\n" for x in data)

    print(f"river {river.__version__}, {args.n:,} elements, best of {args.repeat}\n")
    print("| detector | elements/s | seconds | drifts | warnings |")
    print("|---|---:|---:|---:|---:|")
    for name, make in DETECTORS.items():
        runs = [run(make, data) for _ in range(args.repeat)]
        seconds, drifts, warnings = min(runs)
        print(f"| {name} | {args.n / seconds:,.0f} | {seconds:.2f} | {drifts} | {warnings} |")


if __name__ == "__main__":
    main()
