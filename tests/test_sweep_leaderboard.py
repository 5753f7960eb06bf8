"""`fedfleet sweep` ends with the policy leaderboard (issue 17 item 2).

A shortened sweep of the shipped scenarios/policy-comparison.yaml (random vs Oort, 2 seeds,
15 rounds, 200 clients) runs through the CLI in a subprocess; the leaderboard it prints must
order the policies by their mean time to target as computed here from sweep.parquet, show the
95% t-interval, and follow --sort-by.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from dashboards.stats import t_quantile

REPO = Path(__file__).resolve().parents[1]


def _sweep(tmp_path: Path, *extra: str) -> tuple[str, pd.DataFrame]:
    cmd = [sys.executable, "-m", "simulator.cli.main", "sweep",
           "scenarios/policy-comparison.yaml", "--grid", "selection.policy=random,oort",
           "--seeds", "2", "--set", "rounds=15", "--set", "population.size=200",
           "--target-accuracy", "0.3", "--name", "lb", "--runs-dir", str(tmp_path),
           "--no-dashboard", "--overwrite", "--max-concurrent", "2", *extra]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, pd.read_parquet(tmp_path / "lb" / "sweep.parquet")


def _board(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("leaderboard (by "))
    board = []
    for ln in lines[start + 1:]:
        if not ln.strip():
            break
        board.append(ln)
    return board


def test_sweep_prints_its_leaderboard(tmp_path: Path) -> None:
    out, table = _sweep(tmp_path)
    board = _board(out)
    head, rows = board[0], board[1:]
    assert head.split()[:2] == ["#", "label"] and "time to target" in head
    assert "final accuracy (%)" in head and "fairness (Jain)" in head and "client energy" in head
    means = table.groupby("label")["time_to_target_s"].mean()
    assert means.notna().all(), means  # both policies reach 30% in 15 rounds
    expected = list(means.sort_values().index)
    assert [r.split()[1] for r in rows] == expected, (board, means)
    # the best row's time to target: mean ± t(0.975, 1) s / sqrt(2), in the column's unit
    best = table[table["label"] == expected[0]]["time_to_target_s"].to_numpy()
    half = t_quantile(1) * best.std(ddof=1) / math.sqrt(2)
    unit = head.split("time to target (")[1].split(")")[0]
    div = {"s": 1.0, "min": 60.0, "h": 3600.0}[unit]
    assert f"{best.mean() / div:.2f} ± {half / div:.2f}" in rows[0]
    # the per-trial table is still printed above it
    assert out.index("variant") < out.index("leaderboard (by time")


def test_sweep_leaderboard_sort_by(tmp_path: Path) -> None:
    """--sort-by orders the same table by another metric (checked on a hand-made sweep table,
    so no second sweep runs)."""
    from simulator.cli.sweep import leaderboard_text

    table = pd.DataFrame({
        "label": ["a", "a", "b", "b"], "seed": [1, 2, 1, 2], "status": ["ok"] * 4,
        "time_to_target_s": [100.0, 120.0, 200.0, 220.0], "rounds_to_target": [5, 6, -1, 9],
        "final_accuracy": [0.80, 0.82, 0.90, 0.92], "jain_fairness": [0.5, 0.6, 0.3, 0.2],
        "energy_j": [9e3, 9e3, 1e3, 1e3], "wasted_device_s": [1.0] * 4,
        "sim_time_s": [300.0] * 4, "rounds": [10] * 4})
    order = {k: [ln.split()[1] for ln in leaderboard_text(table, k).splitlines()[1:]]
             for k in ("time", "accuracy", "fairness", "energy")}
    assert order == {"time": ["a", "b"], "accuracy": ["b", "a"], "fairness": ["a", "b"],
                     "energy": ["b", "a"]}
    # rounds_to_target -1 (not reached) is left out of the mean: b's is 9 from one seed
    head, _, b_row = leaderboard_text(table).splitlines()
    cells = dict(zip(re.split(r"\s{2,}", head.strip()), re.split(r"\s{2,}", b_row.strip()),
                     strict=True))
    assert cells["rounds to target"] == "9.0" and cells["reached target"] == "2 of 2"
