"""Generate the data files of the bring-your-own scenarios (docs/bring-your-own.md).

    python scenarios/byo/make_data.py data/

writes ``data/credit-default.csv`` (scenarios/byo/credit-default-banks.yaml) and
``data/shapes.npz`` (scenarios/byo/shapes-cnn-phones.yaml). The data are synthetic and made here
on purpose: nothing is downloaded and no data file is committed to the repository."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

BANKS = 40


def credit_default(path: Path, n: int = 12_000, banks: int = BANKS, seed: int = 0) -> Path:
    """A credit-default table in the shape of the UCI "default of credit card clients" data:
    one row a card holder, numeric features, ``default`` (yes / no) and the ``bank`` that holds
    the account. Banks differ in size (Zipf-like) and in their customers (income level and
    default rate shift by bank), so a natural partition by ``bank`` is non-IID."""
    g = np.random.default_rng(seed)
    size = 1.0 / np.arange(1, banks + 1) ** 0.8
    bank = g.choice(banks, n, p=size / size.sum())
    wealth = g.normal(0.0, 0.5, banks)[bank]  # each bank's customers are richer or poorer
    income = np.exp(10.3 + wealth + g.normal(0.0, 0.6, n))
    limit = np.round(income * g.uniform(0.1, 0.5, n), -2)
    utilisation = np.clip(g.beta(2.0, 3.0, n) - 0.15 * wealth, 0.0, 1.2)
    age = np.clip(g.normal(40.0, 11.0, n), 21, 79).round()
    late = g.poisson(np.clip(0.4 + 1.2 * utilisation - 0.4 * wealth, 0.05, None))
    debt_ratio = np.clip(utilisation * limit / income + g.normal(0.0, 0.05, n), 0.0, None)
    z = (-2.2 + 2.5 * utilisation + 0.8 * late + 1.5 * debt_ratio - 0.015 * (age - 40)
         - 0.6 * wealth)
    default = g.random(n) < 1.0 / (1.0 + np.exp(-z))
    df = pd.DataFrame({
        "income": income.round(2), "credit_limit": limit, "utilisation": utilisation.round(4),
        "age": age, "late_payments": late, "debt_ratio": debt_ratio.round(4),
        "region": g.choice(["north", "south", "east", "west"], n),  # not a feature
        "bank": [f"bank-{b:02d}" for b in bank],
        "default": np.where(default, "yes", "no"),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def shapes(path: Path, n: int = 6_000, n_test: int = 1_000, size: int = 16,
           seed: int = 0) -> Path:
    """Grey 16x16 images of four classes (a bright bar at the top, bottom, left or right edge)
    over noise, with jitter in the bar's position and brightness: ``x`` [n, H, W] uint8, ``y``,
    and a held-out ``x_test`` / ``y_test``."""
    g = np.random.default_rng(seed)

    def make(m: int) -> tuple[np.ndarray, np.ndarray]:
        y = g.integers(0, 4, m)
        x = g.normal(70.0, 35.0, size=(m, size, size))
        w = size // 4
        for i in range(m):
            o = int(g.integers(0, 3))  # bar offset from the edge
            b = float(g.uniform(50.0, 120.0))
            if y[i] == 0:
                x[i, o:o + w, :] += b
            elif y[i] == 1:
                x[i, size - o - w:size - o, :] += b
            elif y[i] == 2:
                x[i, :, o:o + w] += b
            else:
                x[i, :, size - o - w:size - o] += b
        return np.clip(x, 0, 255).astype(np.uint8), y

    x, y = make(n)
    xt, yt = make(n_test)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=x, y=y, x_test=xt, y_test=yt)
    return path


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "data")
    for f in (credit_default(out / "credit-default.csv"), shapes(out / "shapes.npz")):
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
