"""Statistics over seeds and the policy leaderboard (pandas only: no plotting, no simulator).

A comparison groups runs by label (one policy, several seeds). Each group's metric is reported
as its mean with a 95% confidence interval over seeds: Student's t-interval
``mean +- t(0.975, n - 1) * s / sqrt(n)`` with ``s`` the sample standard deviation (ddof 1).
One run gives no interval (half-width NaN). Time and rounds to target are averaged over the
seeds that reached the target; ``reached`` says how many did.

The leaderboard (``leaderboard``) is shared by the comparison page, the live app's Compare tab
and the end of ``fedfleet sweep``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

CONFIDENCE = 0.95

# Leaderboard columns: (key, title, better). ``better`` is "low" or "high".
METRICS: dict[str, tuple[str, str]] = {
    "time_to_target_s": ("time to target", "low"),
    "rounds_to_target": ("rounds to target", "low"),
    "final_accuracy": ("final accuracy", "high"),
    "jain": ("fairness (Jain)", "high"),
    "energy_j": ("client energy", "low"),
    "wasted_device_s": ("wasted device time", "low"),
    "mean_round_s": ("mean round", "low"),
}
SORT_KEYS = ("time_to_target_s", "final_accuracy", "jain", "energy_j")


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided Student t quantile ``t((1 + confidence) / 2, df)``."""
    if df < 1:
        return math.nan
    from scipy.stats import t  # scipy comes with scikit-learn, a dependency

    return float(t.ppf((1.0 + confidence) / 2.0, df))


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float  # half-width of the confidence interval (NaN for fewer than 2 values)
    n: int

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half


def t_interval(values: np.ndarray | pd.Series | list[float],
               confidence: float = CONFIDENCE) -> Interval:
    """Mean and t-interval half-width of the finite ``values``."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, 1)
    s = float(x.std(ddof=1))
    return Interval(mean, t_quantile(n - 1, confidence) * s / math.sqrt(n), n)


def band_over_seeds(values: np.ndarray, confidence: float = CONFIDENCE
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column-wise mean and t-interval (lo, hi) of a (seeds x points) array (NaN-aware)."""
    v = np.asarray(values, dtype=float)
    n = np.sum(np.isfinite(v), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(v, axis=0) if v.size else np.array([])
        s = np.nanstd(v, axis=0, ddof=1) if v.shape[0] > 1 else np.full(v.shape[1], np.nan)
        q = np.array([t_quantile(int(k) - 1, confidence) if k >= 2 else np.nan for k in n])
        half = q * s / np.sqrt(n)
    return mean, mean - half, mean + half


def leaderboard(per_run: pd.DataFrame, sort_by: str = "time_to_target_s") -> pd.DataFrame:
    """One row per group (``per_run['group']``), best first by ``sort_by``.

    ``per_run`` has one row per run with a ``group`` column and any of the ``METRICS`` columns.
    For each metric ``m`` the result has ``m`` (mean over the group's runs), ``m_ci`` (95%
    t-interval half-width) and ``m_n`` (values averaged), plus ``runs`` and ``reached`` (runs
    that reached the target). Ordering: by the mean of ``sort_by``, ascending for
    lower-is-better metrics and descending otherwise; groups without a value (e.g. no seed
    reached the target) come last; ties by final accuracy (higher first), then by group name.
    """
    if sort_by not in METRICS:
        raise ValueError(f"sort_by must be one of {', '.join(METRICS)}, not {sort_by!r}")
    rows = []
    for g, sub in per_run.groupby("group", sort=False):
        row: dict[str, object] = {"group": g, "runs": len(sub)}
        for m in METRICS:
            if m not in sub:
                continue
            iv = t_interval(sub[m].to_numpy(dtype=float))
            row[m], row[f"{m}_ci"], row[f"{m}_n"] = iv.mean, iv.half, iv.n
        row["reached"] = (int(np.isfinite(sub["time_to_target_s"].to_numpy(dtype=float)).sum())
                          if "time_to_target_s" in sub else 0)
        rows.append(row)
    lb = pd.DataFrame(rows)
    if not len(lb) or sort_by not in lb:
        return lb
    low = METRICS[sort_by][1] == "low"
    key = lb[sort_by].astype(float)
    primary = np.where(np.isfinite(key), key if low else -key, np.inf)
    acc = (-lb["final_accuracy"].astype(float).fillna(-np.inf) if "final_accuracy" in lb
           else pd.Series(0.0, index=lb.index))
    order = np.lexsort((lb["group"].astype(str).to_numpy(), acc.to_numpy(), primary))
    out = lb.iloc[order].reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def _time_unit(max_s: float) -> tuple[str, float]:
    m = float(max_s) if max_s == max_s else 0.0
    for label, div, below in (("s", 1.0, 120), ("min", 60.0, 7200), ("h", 3600.0, 3 * 86400)):
        if m < below:
            return label, div
    return "days", 86400.0


def _energy_unit(max_j: float) -> tuple[str, float]:
    m = float(max_j) if max_j == max_j else 0.0
    for label, div in (("GJ", 1e9), ("MJ", 1e6), ("kJ", 1e3)):
        if m >= div:
            return label, div
    return "J", 1.0


@dataclass(frozen=True)
class Column:
    key: str  # metric key, or "group" / "rank" / "reached"
    title: str  # with its unit, e.g. "time to target (h)"
    better: str  # "low", "high" or "" (not a metric)
    cells: list[str]  # formatted "mean ± half" (or mean alone), "–" when missing
    values: list[float]  # the means (NaN when missing), for sorting


def leaderboard_columns(lb: pd.DataFrame) -> list[Column]:
    """The leaderboard as display columns: one unit per column (chosen from the column's
    largest value), each cell the mean and, over two or more runs, ``± 95% CI half-width``."""
    if not len(lb):
        return []
    cols = [Column("rank", "#", "", [str(int(v)) for v in lb["rank"]],
                   [float(v) for v in lb["rank"]]),
            Column("group", "label", "", [str(g) for g in lb["group"]],
                   [math.nan] * len(lb))]
    n_runs = [int(v) for v in lb["runs"]]
    cols.append(Column("runs", "runs", "", [str(v) for v in n_runs], [float(v) for v in n_runs]))
    for key, (title, better) in METRICS.items():
        if key not in lb:
            continue
        mean = lb[key].astype(float).to_numpy()
        half = lb[f"{key}_ci"].astype(float).to_numpy()
        finite = mean[np.isfinite(mean)]
        top = float(np.max(np.abs(finite))) if len(finite) else 0.0
        if key in ("time_to_target_s", "wasted_device_s", "mean_round_s"):
            unit, div = _time_unit(top)
            fmt = ".2f"
        elif key == "energy_j":
            unit, div = _energy_unit(top)
            fmt = ",.1f"
        elif key == "final_accuracy":
            unit, div, fmt = "%", 0.01, ".1f"
        elif key == "rounds_to_target":
            unit, div, fmt = "", 1.0, ".1f"
        else:
            unit, div, fmt = "", 1.0, ".3f"
        cells = []
        for m, h in zip(mean, half, strict=True):
            if not math.isfinite(m):
                cells.append("–")
            elif math.isfinite(h):
                cells.append(f"{format(m / div, fmt)} ± {format(h / div, fmt)}")
            else:
                cells.append(format(m / div, fmt))
        cols.append(Column(key, f"{title} ({unit})" if unit else title, better, cells,
                           [float(v) for v in mean]))
        if key == "time_to_target_s":
            cols.append(Column("reached", "reached target", "",
                               [f"{int(r)} of {n}" for r, n in zip(lb["reached"], n_runs,
                                                                   strict=True)],
                               [float(r) / max(n, 1) for r, n in zip(lb["reached"], n_runs,
                                                                     strict=True)]))
    return cols


def leaderboard_text(lb: pd.DataFrame, width: int | None = None) -> str:
    """The leaderboard as plain aligned text (for the terminal), header first."""
    cols = leaderboard_columns(lb)
    if not cols:
        return ""
    widths = [max(len(c.title), *(len(x) for x in c.cells)) for c in cols]
    lines = ["  ".join(c.title.ljust(w) if i == 1 else c.title.rjust(w)
                       for i, (c, w) in enumerate(zip(cols, widths, strict=True)))]
    for r in range(len(lb)):
        lines.append("  ".join(c.cells[r].ljust(w) if i == 1 else c.cells[r].rjust(w)
                               for i, (c, w) in enumerate(zip(cols, widths, strict=True))))
    return "\n".join(lines)


__all__ = ["Column", "leaderboard_columns", "leaderboard_text", "CONFIDENCE", "METRICS",
           "SORT_KEYS", "Interval", "t_quantile", "t_interval",
           "band_over_seeds", "leaderboard"]
