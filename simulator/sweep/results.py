"""Per-trial results of a sweep: the rows of ``sweep.parquet`` (pandas/pyarrow, no Ray)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from simulator.sweep.grid import Variant


def jain_index(counts: np.ndarray, population: int) -> float:
    """(sum x)^2 / (n sum x^2) over all ``population`` clients (absent clients count as 0)."""
    x = np.asarray(counts, np.float64)
    sq = float(np.sum(x * x))
    n = max(int(population), len(x))
    return float(np.sum(x) ** 2 / (n * sq)) if sq > 0 and n > 0 else math.nan


def run_metrics(run_dir: Path, population: int, target: float) -> dict[str, Any]:
    import pyarrow.parquet as pq

    r = pd.read_parquet(run_dir / "rounds.parquet")
    done = pq.read_table(run_dir / "clients.parquet", columns=["client_id", "outcome"],
                         filters=[("outcome", "==", "completed")])
    counts = np.bincount(done.column("client_id").to_numpy(), minlength=population)
    acc = r["accuracy"].dropna()
    hit = r[r["accuracy"] >= target] if not math.isnan(target) else r.iloc[:0]
    return {
        "time_to_target_s": float(hit["sim_end_s"].iloc[0]) if len(hit) else math.nan,
        "rounds_to_target": int(hit["round"].iloc[0]) + 1 if len(hit) else -1,
        "final_accuracy": float(acc.iloc[-1]) if len(acc) else math.nan,
        "best_accuracy": float(acc.max()) if len(acc) else math.nan,
        "rounds": len(r),
        "sim_time_s": float(r["sim_end_s"].max()) if len(r) else 0.0,
        "completed_tasks": int(r["completed"].sum()),
        "jain_fairness": jain_index(counts, population),
        "clients_participated": int(np.count_nonzero(counts)),
        "wasted_device_s": float(r["wasted_device_s"].sum()),
        "bytes_up": float(r["bytes_up"].sum()),
        "bytes_down": float(r["bytes_down"].sum()),
        "energy_j": float(r["energy_j"].sum()),
    }


def default_target(finals: list[float]) -> float:
    """90% of the best final accuracy (the dashboards' default)."""
    ok = [f for f in finals if not math.isnan(f)]
    return 0.9 * max(ok) if ok else math.nan


def summarise(records: list[tuple[Variant, Path | None, str]], keys: list[str],
              target: float | None) -> tuple[pd.DataFrame, float]:
    """One row per trial ``(variant, run_dir or None, error)``; returns (table, target used)."""
    finals, pops = {}, {}
    for v, d, _ in records:
        if d is not None:
            acc = pd.read_parquet(d / "rounds.parquet", columns=["accuracy"])["accuracy"].dropna()
            finals[v.name] = float(acc.iloc[-1]) if len(acc) else math.nan
            pops[v.name] = int(json.loads((d / "manifest.json").read_text())["population"])
    tgt = float(target) if target is not None else default_target(list(finals.values()))
    rows = []
    for v, d, err in records:
        row: dict[str, Any] = {"variant": v.name, "label": v.label, "seed": v.seed}
        for k in keys:
            row[k] = v.overrides.get(k)
        row["target_accuracy"] = tgt
        if d is not None:
            row.update(status="ok", error="", run_dir=str(d))
            row.update(run_metrics(d, pops[v.name], tgt))
        else:
            row.update(status="error" if err else "stopped", error=err, run_dir="")
        rows.append(row)
    df = pd.DataFrame(rows)
    for k in keys:  # a column mixing types (1, "x", True) is stored as text
        types = {type(x) for x in df[k] if x is not None}
        if len(types) > 1 and not types <= {int, float}:
            df[k] = [None if x is None else str(x) for x in df[k]]
    return df, tgt
