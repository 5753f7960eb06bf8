"""Figures comparing several runs (pure functions of the runs' DataFrames).

Each run is a ``RunSeries``: a label, a group (runs sharing a group, e.g. one policy with several
seeds, are summarised together), its rounds (``round``, ``sim_end_s``, ``accuracy``), its clients
(``client_id``, ``device_class``, ``outcome``) and its population size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboards import aggregates as A
from dashboards.style import (
    RUN_COLORS,
    base_layout,
    device_colors,
    empty_figure,
    hex_rgba,
    time_unit,
)

GRID_POINTS = 400


@dataclass
class RunSeries:
    label: str
    group: str
    rounds: pd.DataFrame
    clients: pd.DataFrame
    population: int | None = None


def default_target(runs: list[RunSeries]) -> float:
    """90% of the best final accuracy across runs."""
    finals = [r.rounds["accuracy"].dropna().iloc[-1] for r in runs
              if len(r.rounds) and r.rounds["accuracy"].notna().any()]
    return 0.9 * float(max(finals)) if finals else float("nan")


def summary_table(runs: list[RunSeries], target: float) -> pd.DataFrame:
    """One row per run: group, final accuracy, simulated time, time to target, Jain's index."""
    rows = []
    for r in runs:
        acc = r.rounds["accuracy"].dropna() if len(r.rounds) else pd.Series(dtype=float)
        counts = A.participation_counts(r.clients) if len(r.clients) else pd.Series(dtype=float)
        rows.append({
            "label": r.label, "group": r.group,
            "final_accuracy": float(acc.iloc[-1]) if len(acc) else float("nan"),
            "sim_end_s": float(r.rounds["sim_end_s"].max()) if len(r.rounds) else float("nan"),
            "time_to_target_s": A.time_to_target(r.rounds, target) if len(r.rounds)
            else float("nan"),
            "jain": A.jain_index(counts.to_numpy(), r.population),
        })
    return pd.DataFrame(rows)


def _groups(runs: list[RunSeries]) -> dict[str, list[RunSeries]]:
    out: dict[str, list[RunSeries]] = {}
    for r in runs:
        out.setdefault(r.group, []).append(r)
    return out


def group_band(members: list[RunSeries], points: int = GRID_POINTS) -> pd.DataFrame:
    """Mean, min and max accuracy of a group's runs on a shared simulated-time grid.

    Each run's accuracy is a step function of time (known from the end of each round on); the
    grid spans from the latest first evaluation to the shortest run's end, so every point
    averages all runs.
    """
    evals = [m.rounds[m.rounds["accuracy"].notna()].sort_values("sim_end_s") for m in members]
    evals = [e for e in evals if len(e)]
    if not evals:
        return pd.DataFrame(columns=["t", "mean", "min", "max"])
    start = max(e["sim_end_s"].iloc[0] for e in evals)  # every run has a value on the grid
    grid = np.linspace(start, min(e["sim_end_s"].iloc[-1] for e in evals), points)
    vals = np.vstack([A.step_on_grid(e["sim_end_s"].to_numpy(float),
                                     e["accuracy"].to_numpy(float), grid) for e in evals])
    return pd.DataFrame({"t": grid, "mean": np.nanmean(vals, axis=0),
                         "min": np.nanmin(vals, axis=0), "max": np.nanmax(vals, axis=0)})


def accuracy_overlay_figure(runs: list[RunSeries], target: float | None = None) -> go.Figure:
    """Accuracy vs simulated time: one line per run, or mean and min-max band per group."""
    title = "Accuracy vs simulated time"
    runs = [r for r in runs if len(r.rounds)]
    if not runs:
        return empty_figure(title, "no rounds recorded yet")
    unit, div = time_unit(max(r.rounds["sim_end_s"].max() for r in runs))
    fig = go.Figure()
    for i, (g, members) in enumerate(_groups(runs).items()):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        if len(members) == 1:
            r = A.thin_rounds(members[0].rounds[members[0].rounds["accuracy"].notna()])
            fig.add_trace(go.Scatter(
                x=r["sim_end_s"] / div, y=r["accuracy"], mode="lines", name=members[0].label,
                line={"color": color, "width": 2.2},
                hovertemplate=f"{members[0].label}<br>%{{x:.2f}} {unit}: %{{y:.1%}}"
                              "<extra></extra>"))
            continue
        band = group_band(members)
        t = band["t"] / div
        fig.add_trace(go.Scatter(x=t, y=band["max"], mode="lines", line={"width": 0},
                                 legendgroup=g, showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=t, y=band["min"], mode="lines", line={"width": 0},
                                 fill="tonexty", fillcolor=hex_rgba(color, 0.18), legendgroup=g,
                                 name=f"{g} min-max", showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=t, y=band["mean"], mode="lines", name=f"{g} (mean of {len(members)})",
            legendgroup=g, line={"color": color, "width": 2.4},
            customdata=np.column_stack([band["min"], band["max"]]),
            hovertemplate=f"{g}<br>%{{x:.2f}} {unit}: mean %{{y:.1%}} "
                          "(min %{customdata[0]:.1%}, max %{customdata[1]:.1%})<extra></extra>"))
    if target is not None and target == target:
        fig.add_hline(y=target, line={"color": "#616e7c", "dash": "dash", "width": 1},
                      annotation_text=f"target {target:.1%}", annotation_position="bottom right")
    base_layout(fig, title, height=440)
    fig.update_xaxes(title_text=f"simulated time ({unit})")
    fig.update_yaxes(title_text="test accuracy", tickformat=".0%", rangemode="tozero")
    return fig


def time_to_target_figure(summary: pd.DataFrame, target: float) -> go.Figure:
    """Bars of simulated time to reach ``target`` per group (mean, whiskers min-max)."""
    title = f"Simulated time to reach {target:.1%} accuracy" if target == target else \
        "Simulated time to target"
    if not len(summary):
        return empty_figure(title, "no runs")
    unit, div = time_unit(summary["sim_end_s"].max())
    agg = summary.groupby("group", sort=False).agg(
        mean=("time_to_target_s", "mean"), lo=("time_to_target_s", "min"),
        hi=("time_to_target_s", "max"), n=("time_to_target_s", "size"),
        reached=("time_to_target_s", lambda s: int(s.notna().sum())),
        end=("sim_end_s", "max"))
    colors = [RUN_COLORS[i % len(RUN_COLORS)] for i in range(len(agg))]
    missing = agg["mean"].isna()
    # A label no run of which reached the target is drawn as a hatched bar up to its run length.
    y = agg["mean"].where(~missing, agg["end"]) / div
    text = [f"not reached in {v:.1f} {unit}" if m else f"{v:.1f} {unit}"
            for v, m in zip(y, missing, strict=True)]
    fig = go.Figure(go.Bar(
        x=agg.index, y=y, text=text, textposition="outside", cliponaxis=False, showlegend=False,
        marker={"color": [hex_rgba(c, 0.25) if m else c
                           for c, m in zip(colors, missing, strict=True)],
                "line": {"color": colors, "width": 1.5},
                "pattern": {"shape": ["/" if m else "" for m in missing], "fgcolor": colors}},
        error_y={"type": "data", "symmetric": False,
                 "array": ((agg["hi"] - agg["mean"]) / div).fillna(0.0),
                 "arrayminus": ((agg["mean"] - agg["lo"]) / div).fillna(0.0), "color": "#52606d",
                 "visible": bool((agg["n"] > 1).any())},
        customdata=np.column_stack([agg["reached"], agg["n"]]),
        hovertemplate=f"%{{x}}<br>%{{y:.2f}} {unit}<br>reached in %{{customdata[0]}} of "
                      "%{customdata[1]} runs<extra></extra>"))
    base_layout(fig, title, height=400, legend=False)
    fig.update_yaxes(title_text=f"simulated time ({unit})", rangemode="tozero")
    return fig


def fairness_speed_figure(summary: pd.DataFrame, target: float) -> go.Figure:
    """Jain's index of per-client participation vs simulated time to target, one point per run."""
    title = "Fairness vs speed"
    if not len(summary):
        return empty_figure(title, "no runs")
    unit, div = time_unit(summary["sim_end_s"].max())
    fig = go.Figure()
    for i, (g, sub) in enumerate(summary.groupby("group", sort=False)):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        hit = sub["time_to_target_s"].notna()
        x = np.where(hit, sub["time_to_target_s"], sub["sim_end_s"]) / div
        fig.add_trace(go.Scatter(
            x=x, y=sub["jain"], mode="markers", name=g,
            marker={"color": color, "size": 12, "symbol": np.where(hit, "circle", "circle-open"),
                    "line": {"width": 2, "color": color}},
            customdata=np.column_stack([sub["label"], np.where(hit, "", " (target not reached: "
                                                               "time = run length)")]),
            hovertemplate=f"%{{customdata[0]}}<br>%{{x:.2f}} {unit}%{{customdata[1]}}<br>"
                          "Jain's index %{y:.3f}<extra></extra>"))
    base_layout(fig, title, height=400)
    fig.update_xaxes(title_text=f"simulated time to target ({unit}); open = not reached",
                     rangemode="tozero")
    fig.update_yaxes(title_text="Jain's index of participation counts", range=[0, 1.02])
    return fig


def participation_by_class_figure(runs: list[RunSeries]) -> go.Figure:
    """Completed share of invitations per device class, one bar colour per group."""
    title = "Participation (completed / invited) by device class"
    rows = []
    for r in runs:
        if len(r.clients):
            rates = A.outcome_rates_by_class(r.clients)
            for cls, row in rates.iterrows():
                rows.append({"group": r.group, "device_class": cls, "completed":
                             row["participation"] * row["invited"], "invited": row["invited"]})
    if not rows:
        return empty_figure(title, "no clients recorded yet")
    df = pd.DataFrame(rows).groupby(["group", "device_class"], sort=False).sum().reset_index()
    df["rate"] = df["completed"] / df["invited"]
    fig = go.Figure()
    for i, (g, sub) in enumerate(df.groupby("group", sort=False)):
        fig.add_trace(go.Bar(x=sub["device_class"], y=sub["rate"], name=g,
                             marker={"color": RUN_COLORS[i % len(RUN_COLORS)]},
                             customdata=sub["invited"].astype(int),
                             hovertemplate=f"{g}<br>%{{x}}: %{{y:.1%}} of %{{customdata:,}} "
                                           "invitations<extra></extra>"))
    base_layout(fig, title, height=400)
    fig.update_layout(barmode="group", bargap=0.25)
    order = sorted(device_colors(df["device_class"]))
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    fig.update_yaxes(title_text="completed / invited", tickformat=".0%", range=[0, 1.05])
    return fig
