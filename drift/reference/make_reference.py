"""Generate cases.json: river's drift and warning indices for the maas-drift reference test.

Usage (from this folder):

    python3 -m venv /tmp/river-venv
    /tmp/river-venv/bin/pip install -r requirements.txt
    /tmp/river-venv/bin/python make_reference.py

Every stream is run through every detector with several parameter sets; a case records the
0-based indices at which river set `drift_detected` (and, for the HDDM detectors,
`warning_detected`) after `update`. `drift/tests/reference.rs` replays each case through the Rust
port and requires the same index lists. Stream values are rounded to a few decimals so the file
stays small and every value is a short decimal that any correct parser (and serde_json's fast
path) turns into the same f64; `sum` (the plain left-to-right f64 sum, written as text because
serde_json's default parser does not round 17-digit decimals correctly) lets the Rust test check
that it parsed every value bit for bit. Parameters are written as text (`repr` for floats, `true` /
`false` for booleans) and fed to `DetectorConfig::from_params`.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import random
from pathlib import Path

import numpy as np
import river
from river import drift

SEED = 20240605


def rounded(values, decimals: int) -> list[float]:
    return [float(round(float(v), decimals)) for v in values]


def build_streams() -> dict[str, list[float]]:
    rng = np.random.default_rng(SEED)
    s: dict[str, list[float]] = {}

    def normal(mean, std, n):
        return rng.normal(mean, std, n)

    s["gauss_stationary"] = rounded(normal(0.0, 1.0, 2000), 4)
    s["gauss_abrupt_shift"] = rounded(np.concatenate([normal(0, 1, 1000), normal(3, 1, 1000)]), 4)
    s["gauss_small_shift"] = rounded(np.concatenate([normal(0, 1, 1500), normal(0.5, 1, 1500)]), 4)
    ramp = np.concatenate([np.zeros(800), np.linspace(0.0, 2.0, 800), np.full(800, 2.0)])
    s["gauss_gradual_shift"] = rounded(ramp + normal(0, 1, 2400), 4)
    s["gauss_variance_change"] = rounded(
        np.concatenate([normal(0, 1, 1000), normal(0, 4, 1000)]), 4
    )
    s["gauss_down_shift"] = rounded(np.concatenate([normal(5, 1, 1000), normal(2, 1, 1000)]), 4)
    steps = np.concatenate([normal(m, 1, 400) for m in (0, 4, 0, 4, -3, 0)])
    s["gauss_repeated_steps"] = rounded(steps, 4)
    s["uniform01_shift"] = rounded(
        np.concatenate([rng.uniform(0.0, 0.5, 1000), rng.uniform(0.4, 1.0, 1000)]), 4
    )
    s["bernoulli_stationary_0.2"] = [float(v) for v in (rng.random(2000) < 0.2)]
    s["bernoulli_0.1_to_0.4"] = [
        float(v) for v in np.concatenate([rng.random(1500) < 0.1, rng.random(1000) < 0.4])
    ]
    s["bernoulli_0.3_to_0.05"] = [
        float(v) for v in np.concatenate([rng.random(1500) < 0.3, rng.random(1500) < 0.05])
    ]
    s["bernoulli_0.05_to_0.5_to_0.05"] = [
        float(v)
        for v in np.concatenate(
            [rng.random(800) < 0.05, rng.random(800) < 0.5, rng.random(800) < 0.05]
        )
    ]
    s["alternating_01"] = [float(i % 2) for i in range(1000)]
    s["constant_zero"] = [0.0] * 1000
    s["constant_one"] = [1.0] * 1000
    s["constant_five"] = [5.0] * 600
    s["huge_1e12"] = rounded(np.concatenate([1e12 + normal(0, 1e9, 800), 2e12 + normal(0, 1e9, 800)]), 0)
    s["huge_negative"] = rounded(-1e12 + normal(0, 1e10, 600), 0)
    s["tiny_1e-9"] = [
        float(f"{v:.4e}") for v in np.concatenate([normal(0, 1e-9, 700), normal(5e-9, 1e-9, 700)])
    ]
    s["sawtooth"] = [float((i % 100) / 10.0) for i in range(1500)]
    s["spike_outliers"] = rounded(
        [v if i % 97 else 50.0 for i, v in enumerate(normal(0, 1, 1500))], 4
    )
    # river's own ADWIN docstring example (drift at index 1023 with the defaults).
    py_rng = random.Random(12345)
    s["river_adwin_doc"] = [
        float(v) for v in py_rng.choices([0, 1], k=1000) + py_rng.choices(range(4, 8), k=1000)
    ]
    s["empty"] = []
    s["single"] = [1.0]
    s["five"] = [0.0, 1.0, 0.0, 1.0, 1.0]
    s["short_shift_40"] = [0.0] * 20 + [10.0] * 20
    s["short_shift_10"] = [0.0] * 10 + [10.0] * 30 + [0.0] * 30
    return s


PARAM_SETS: dict[str, tuple[type, list[dict]]] = {
    "adwin": (
        drift.ADWIN,
        [
            {},
            {"delta": 0.01, "clock": 1},
            {"delta": 0.1, "clock": 4, "max_buckets": 3, "min_window_length": 10, "grace_period": 50},
            {"delta": 1e-05, "clock": 16, "max_buckets": 2, "min_window_length": 1, "grace_period": 0},
            # Checked on every value: the first test happens exactly when the window passes
            # grace_period (see short_shift_10).
            {"delta": 0.1, "clock": 1, "grace_period": 20, "min_window_length": 3},
        ],
    ),
    "page_hinkley": (
        drift.PageHinkley,
        [
            {},
            {"mode": "up"},
            {"mode": "down", "threshold": 20.0},
            {"min_instances": 10, "delta": 0.05, "threshold": 10.0, "alpha": 0.99},
        ],
    ),
    "hddm_a": (
        drift.binary.HDDMA,
        [
            {},
            {"two_sided_test": True},
            {"drift_confidence": 0.01, "warning_confidence": 0.05, "two_sided_test": True},
            {"drift_confidence": 0.0001, "warning_confidence": 0.001},
        ],
    ),
    "hddm_w": (
        drift.binary.HDDMW,
        [
            {},
            {"two_sided_test": True},
            {"lambda_val": 0.1, "drift_confidence": 0.01, "warning_confidence": 0.05, "two_sided_test": True},
            {"lambda_val": 0.01},
            # A lambda for which Python's (1 - lambda) ** 2 (libm pow) differs from the product
            # (1 - lambda) * (1 - lambda) in the last bit.
            {"lambda_val": 0.10378146764427269, "two_sided_test": True},
        ],
    ),
}


def left_fold_sum(values: list[float]) -> float:
    """Plain left-to-right f64 sum (Python 3.12's `sum` compensates, so it is not used)."""
    return functools.reduce(operator.add, values, 0.0)


def param_text(value) -> str:
    """Parameters travel as text, the way `DetectorConfig::from_params` takes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def run(cls, params: dict, stream: list[float]) -> tuple[list[int], list[int] | None]:
    detector = cls(**params)
    drifts: list[int] = []
    warnings: list[int] = []
    has_warning = hasattr(detector, "warning_detected")
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            drifts.append(i)
        if has_warning and detector.warning_detected:
            warnings.append(i)
    return drifts, (warnings if has_warning else None)


def main() -> None:
    streams = build_streams()
    for name, values in streams.items():
        assert all(math.isfinite(v) for v in values), name
        assert len(values) <= 3000, name
    cases = []
    for detector_name, (cls, param_sets) in PARAM_SETS.items():
        for params in param_sets:
            for stream_name, values in streams.items():
                drifts, warnings = run(cls, params, values)
                case = {
                    "detector": detector_name,
                    "params": {key: param_text(value) for key, value in params.items()},
                    "stream": stream_name,
                    "drift": drifts,
                }
                if warnings is not None:
                    case["warning"] = warnings
                cases.append(case)
    out = {
        "generator": "drift/reference/make_reference.py",
        "river_version": river.__version__,
        "numpy_version": np.__version__,
        "streams": {name: {"sum": repr(left_fold_sum(v)), "values": v} for name, v in streams.items()},
        "cases": cases,
    }
    path = Path(__file__).with_name("cases.json")
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    n_drift = sum(len(c["drift"]) for c in cases)
    n_warn = sum(len(c.get("warning", [])) for c in cases)
    print(f"{len(cases)} cases, {len(streams)} streams, {n_drift} drifts, {n_warn} warnings")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
