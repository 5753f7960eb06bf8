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
from plotly.subplots import make_subplots

from dashboards import aggregates as A
from dashboards import figures as F
from dashboards import stats as S
from dashboards.style import (
    RUN_COLORS,
    base_layout,
    device_colors,
    empty_figure,
    energy_unit,
    hex_rgba,
    menu_y,
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
    """One row per run: group, final accuracy, simulated time, time and rounds to target,
    Jain's index, client energy, wasted device time and mean round duration."""
    rows = []
    for r in runs:
        rd = r.rounds
        acc = rd["accuracy"].dropna() if len(rd) else pd.Series(dtype=float)
        counts = A.participation_counts(r.clients) if len(r.clients) else pd.Series(dtype=float)
        hit = rd[rd["accuracy"] >= target] if len(rd) and target == target else rd.iloc[:0]

        def total(col: str, rd: pd.DataFrame = rd) -> float:
            return float(rd[col].sum()) if col in rd and len(rd) else float("nan")

        rows.append({
            "label": r.label, "group": r.group,
            "final_accuracy": float(acc.iloc[-1]) if len(acc) else float("nan"),
            "sim_end_s": float(rd["sim_end_s"].max()) if len(rd) else float("nan"),
            "time_to_target_s": float(hit["sim_end_s"].iloc[0]) if len(hit) else float("nan"),
            # rounds done when the target was first reached (round numbers start at 0)
            "rounds_to_target": float(hit["round"].iloc[0]) + 1 if len(hit) else float("nan"),
            "jain": A.jain_index(counts.to_numpy(), r.population),
            "energy_j": total("energy_j"),
            "wasted_device_s": total("wasted_device_s"),
            "mean_round_s": float(rd["duration_s"].mean()) if "duration_s" in rd and len(rd)
            else float("nan"),
            "rounds": len(rd),
        })
    return pd.DataFrame(rows)


def _groups(runs: list[RunSeries]) -> dict[str, list[RunSeries]]:
    out: dict[str, list[RunSeries]] = {}
    for r in runs:
        out.setdefault(r.group, []).append(r)
    return out


def group_band(members: list[RunSeries], points: int = GRID_POINTS, x: str = "sim_end_s",
               smoothing: float = 0.0) -> pd.DataFrame:
    """Mean, min, max and 95% t-interval (``lo``, ``hi``) of a group's accuracy on a shared grid.

    ``x`` is ``sim_end_s`` (simulated time) or ``round``. Each run's accuracy is a step function
    of ``x`` (known from the end of each round on); the grid spans from the latest first
    evaluation to the shortest run's end, so every point averages all runs. ``smoothing`` is the
    weight of an exponential moving average applied to each run's evaluations first (0 = off).
    """
    evals = [m.rounds[m.rounds["accuracy"].notna()].sort_values(x) for m in members]
    evals = [e for e in evals if len(e)]
    if not evals:
        return pd.DataFrame(columns=["t", "mean", "min", "max", "lo", "hi"])
    start = max(e[x].iloc[0] for e in evals)  # every run has a value on the grid
    stop = min(e[x].iloc[-1] for e in evals)
    if x == "round":
        grid = np.arange(start, stop + 1, max(1, int(np.ceil((stop - start + 1) / points))),
                         dtype=float)
    else:
        grid = np.linspace(start, stop, points)
    vals = np.vstack([A.step_on_grid(e[x].to_numpy(float),
                                     A.ema(e["accuracy"].to_numpy(float), smoothing), grid)
                      for e in evals])
    mean, lo, hi = S.band_over_seeds(vals)
    return pd.DataFrame({"t": grid, "mean": mean, "min": np.nanmin(vals, axis=0),
                         "max": np.nanmax(vals, axis=0), "lo": lo, "hi": hi})




def _accuracy_traces(runs: list[RunSeries], smoothing: float, units: dict[str, tuple[str, float]]
                     ) -> list[dict]:
    """Plain trace dicts for both columns (round, simulated time) at one smoothing weight.

    Each dict carries ``_role`` ("line", "band" or "seed"), removed before plotting."""
    traces: list[dict] = []
    for i, (g, members) in enumerate(_groups(runs).items()):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        for col, (x, (unit, div)) in enumerate(units.items(), start=1):
            xa, ya = ("x", "y") if col == 1 else ("x2", "y2")
            xfmt = "round %{x}" if x == "round" else f"%{{x:.2f}} {unit}"
            if len(members) == 1:
                r = A.thin_rounds(members[0].rounds[members[0].rounds["accuracy"].notna()])
                traces.append(dict(
                    _role="line", type="scatter", x=(r[x] / div).tolist(),
                    y=A.ema(r["accuracy"].to_numpy(float), smoothing).tolist(), mode="lines",
                    name=members[0].label, legendgroup=g, showlegend=col == 1, xaxis=xa,
                    yaxis=ya, line={"color": color, "width": 2.2},
                    hovertemplate=f"{members[0].label}: %{{y:.1%}} ({xfmt})<extra></extra>"))
                continue
            band = group_band(members, x=x, smoothing=smoothing)
            t = (band["t"] / div).tolist()
            # accuracy lies in [0, 1]: the interval is clipped to it
            lo = band["lo"].fillna(band["mean"]).clip(0.0, 1.0)
            hi = band["hi"].fillna(band["mean"]).clip(0.0, 1.0)
            traces.append(dict(_role="band", type="scatter", x=t, y=hi.tolist(), mode="lines",
                               line={"width": 0}, legendgroup=g, showlegend=False,
                               hoverinfo="skip", xaxis=xa, yaxis=ya))
            traces.append(dict(_role="band", type="scatter", x=t, y=lo.tolist(), mode="lines",
                               line={"width": 0}, fill="tonexty",
                               fillcolor=hex_rgba(color, 0.2), legendgroup=g, showlegend=False,
                               hoverinfo="skip", xaxis=xa, yaxis=ya))
            for m in members:
                r = A.thin_rounds(m.rounds[m.rounds["accuracy"].notna()])
                traces.append(dict(
                    _role="seed", type="scatter", x=(r[x] / div).tolist(),
                    y=A.ema(r["accuracy"].to_numpy(float), smoothing).tolist(), mode="lines",
                    name=m.label, legendgroup=g, showlegend=False, visible=False, xaxis=xa,
                    yaxis=ya, line={"color": color, "width": 1, "dash": "dot"}, opacity=0.8,
                    hovertemplate=f"{m.label}: %{{y:.1%}} ({xfmt})<extra></extra>"))
            traces.append(dict(
                _role="line", type="scatter", x=t, y=band["mean"].tolist(), mode="lines",
                name=f"{g} (mean of {len(members)}, 95% CI)", legendgroup=g,
                showlegend=col == 1, xaxis=xa, yaxis=ya, line={"color": color, "width": 2.4},
                customdata=np.column_stack([band["lo"], band["hi"]]).tolist(),
                hovertemplate=f"{g}: mean %{{y:.1%}} (95% CI %{{customdata[0]:.1%}} to "
                              f"%{{customdata[1]:.1%}}) ({xfmt})<extra></extra>"))
    return traces


def accuracy_overlay_figure(runs: list[RunSeries], target: float | None = None) -> go.Figure:
    """Accuracy vs round (left) beside accuracy vs simulated time (right).

    One line per run, or per group (e.g. one policy over seeds) its mean with a 95% t-interval
    band over seeds; the per-seed lines and a smoothing weight are chosen with the buttons."""
    title = "Accuracy vs round and vs simulated time"
    runs = [r for r in runs if len(r.rounds) and r.rounds["accuracy"].notna().any()]
    if not runs:
        return empty_figure(title, "no evaluation recorded yet")
    units = {"round": ("round", 1.0),
             "sim_end_s": time_unit(max(r.rounds["sim_end_s"].max() for r in runs))}
    levels = {w: _accuracy_traces(runs, w, units) for w in A.SMOOTHING}
    traces = levels[0.0]
    roles = [t.pop("_role") for t in traces]
    for w in A.SMOOTHING[1:]:
        for t in levels[w]:
            t.pop("_role")
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.05,
                        subplot_titles=("Accuracy vs round",
                                        f"Accuracy vs simulated time ({units['sim_end_s'][0]})"))
    fig.add_traces(traces)
    seeds = [i for i, r in enumerate(roles) if r == "seed"]
    my = menu_y(470)  # below the title and the legend
    menus = [{"type": "buttons", "direction": "right", "x": 0.0, "xanchor": "left", "y": my,
              "yanchor": "top", "pad": {"l": 8},
              "showactive": True, "font": {"size": 11}, "active": 0,
              "buttons": [{"label": f"smoothing {w:g}" if w else "no smoothing",
                           "method": "restyle",
                           "args": [{"y": [t["y"] for t in levels[w]]}]} for w in A.SMOOTHING]}]
    if seeds:
        menus.append({"type": "buttons", "direction": "right", "x": 0.42, "xanchor": "left",
                      "y": my, "yanchor": "top",
                      "pad": {"l": 8}, "showactive": True, "font": {"size": 11},
                      "active": 0,
                      "buttons": [{"label": "mean and 95% CI", "method": "restyle",
                                   "args": [{"visible": False}, seeds]},
                                  {"label": "with per-seed lines", "method": "restyle",
                                   "args": [{"visible": True}, seeds]}]})
    if target is not None and target == target:
        for col in (1, 2):
            fig.add_hline(y=target, line={"color": "#616e7c", "dash": "dash", "width": 1},
                          row=1, col=col)
        fig.add_annotation(text=f"target {target:.1%}", x=1, xref="paper", y=target, yref="y",
                           xanchor="right", yanchor="bottom", showarrow=False,
                           font={"size": 11, "color": "#616e7c"})
    base_layout(fig, title, height=470)
    fig.update_layout(updatemenus=menus, hovermode="x unified", margin={"t": 120},
                      meta={"xlinks": {"xaxis": "round", "xaxis2": "sim"}})
    fig.update_xaxes(title_text="round", col=1, tickformat=",d")
    fig.update_xaxes(title_text=f"simulated time ({units['sim_end_s'][0]})", col=2)
    fig.update_yaxes(title_text="test accuracy", tickformat=".0%", rangemode="tozero", col=1)
    fig.update_yaxes(tickformat=".0%", col=2)
    return fig


def _per_group(summary: pd.DataFrame, col: str) -> pd.DataFrame:
    """Mean, 95% t-interval half-width and count of ``col`` per group (first-seen order)."""
    rows = []
    for g, sub in summary.groupby("group", sort=False):
        iv = S.t_interval(sub[col].to_numpy(float))
        rows.append({"group": g, "mean": iv.mean, "ci": iv.half, "n": iv.n, "runs": len(sub)})
    return pd.DataFrame(rows)


def _bars_with_seeds(fig: go.Figure, summary: pd.DataFrame, col: str, div: float, unit: str,
                     fmt: str, row: int, column: int, fallback: str | None = None) -> None:
    """Bars of the group mean with 95% t-interval whiskers and one dot per run.

    ``fallback``: a column shown (hatched) for groups where no run has ``col`` (e.g. the run
    length when the target was never reached)."""
    agg = _per_group(summary, col)
    colors = [RUN_COLORS[i % len(RUN_COLORS)] for i in range(len(agg))]
    missing = agg["mean"].isna().to_numpy()
    y = agg["mean"].to_numpy(float)
    if fallback is not None:
        fb = summary.groupby("group", sort=False)[fallback].max().reindex(agg["group"])
        y = np.where(missing, fb.to_numpy(float), y)
    y = y / div
    text = [("not reached" if m and fallback else "–") if m else format(v, fmt)
            for v, m in zip(y, missing, strict=True)]
    custom = [[f"{n} of {r}", "–" if c != c else format(c / div, fmt)]
              for n, r, c in zip(agg["n"], agg["runs"], agg["ci"], strict=True)]
    fig.add_trace(go.Bar(
        x=agg["group"], y=y, text=text, textposition="inside", insidetextanchor="start",
        showlegend=False, customdata=custom,
        marker={"color": [hex_rgba(c, 0.25) if m else hex_rgba(c, 0.75)
                          for c, m in zip(colors, missing, strict=True)],
                "line": {"color": colors, "width": 1.5},
                "pattern": {"shape": ["/" if m else "" for m in missing], "fgcolor": colors}},
        error_y={"type": "data", "array": (agg["ci"] / div).fillna(0.0).tolist(),
                 "color": "#334e68", "thickness": 1.5, "width": 6,
                 "visible": bool(agg["ci"].notna().any())},
        hovertemplate=f"%{{x}}<br>mean %{{y:{fmt}}} {unit} ± %{{customdata[1]}} (95% CI)"
                      "<br>runs with a value: %{customdata[0]}<extra></extra>"),
        row=row, col=column)
    dots = summary[summary[col].notna()]
    if len(dots):
        fig.add_trace(go.Scatter(
            x=dots["group"], y=dots[col] / div, mode="markers", showlegend=False,
            marker={"color": "#1f2933", "size": 6, "opacity": 0.7}, customdata=dots["label"],
            hovertemplate=f"%{{customdata}}: %{{y:{fmt}}} {unit}<extra></extra>"),
            row=row, col=column)
    fig.update_yaxes(title_text=unit, rangemode="tozero", row=row, col=column)


def time_to_target_figure(summary: pd.DataFrame, target: float) -> go.Figure:
    """Rounds to target beside simulated time to target, and the mean round duration that
    links them (time = rounds x round length): per group the mean with a 95% t-interval over
    its runs, dots for the runs; hatched: no run reached the target (bar = run length)."""
    title = (f"Rounds vs simulated time to reach {target:.1%} accuracy" if target == target
             else "Rounds vs simulated time to target")
    if not len(summary):
        return empty_figure(title, "no runs")
    unit, div = time_unit(summary["sim_end_s"].max())
    runit, rdiv = time_unit(summary["mean_round_s"].max() if "mean_round_s" in summary else 0)
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                        subplot_titles=("Rounds to target", f"Time to target ({unit})",
                                        f"Mean round duration ({runit})"))
    _bars_with_seeds(fig, summary, "rounds_to_target", 1.0, "rounds", ".0f", 1, 1,
                     fallback="rounds")
    _bars_with_seeds(fig, summary, "time_to_target_s", div, unit, ".2f", 1, 2,
                     fallback="sim_end_s")
    if "mean_round_s" in summary:
        _bars_with_seeds(fig, summary, "mean_round_s", rdiv, runit, ".2f", 1, 3)
    base_layout(fig, title, height=420, legend=False)
    return fig


def round_duration_figure(runs: list[RunSeries]) -> go.Figure:
    """Distribution of round durations per group (all rounds of its runs pooled): box with the
    mean (dashed) and a histogram of the same durations."""
    title = "Round durations"
    runs = [r for r in runs if len(r.rounds) and "duration_s" in r.rounds]
    if not runs:
        return empty_figure(title, "no rounds recorded yet")
    groups = _groups(runs)
    allv = np.concatenate([r.rounds["duration_s"].to_numpy(float) for r in runs])
    unit, div = time_unit(np.nanmax(allv) if len(allv) else 0.0)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.08,
                        subplot_titles=(f"Round duration by label ({unit})",
                                        f"Histogram of round durations ({unit})"))
    edges = np.histogram_bin_edges(allv[np.isfinite(allv)] / div, bins=40)
    medians = {}
    for i, (g, members) in enumerate(groups.items()):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        d = np.concatenate([m.rounds["duration_s"].to_numpy(float) for m in members]) / div
        d = d[np.isfinite(d)]
        medians[g] = float(np.median(d)) if len(d) else float("nan")
        sample = d if len(d) <= 5000 else d[:: int(np.ceil(len(d) / 5000))]
        fig.add_trace(go.Box(y=sample, name=g, marker={"color": color}, boxmean=True,
                             boxpoints=False, line={"width": 1.5}, legendgroup=g,
                             showlegend=False,
                             hovertemplate=f"{g}<br>%{{y:.2f}} {unit}<extra></extra>"),
                      row=1, col=1)
        counts, _ = np.histogram(d, bins=edges)
        share = counts / max(len(d), 1)
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=share, name=g,
                             width=float(edges[1] - edges[0]) if len(edges) > 1 else None,
                             marker={"color": hex_rgba(color, 0.55), "line": {"width": 0}},
                             legendgroup=g, customdata=counts,
                             hovertemplate=f"{g}<br>%{{x:.2f}} {unit}: %{{y:.1%}} of its rounds "
                                           "(%{customdata})<extra></extra>"), row=1, col=2)
    if len(medians) > 1:
        ok = {g: m for g, m in medians.items() if m == m and m > 0}
        if len(ok) > 1:
            fast, slow = min(ok, key=ok.__getitem__), max(ok, key=ok.__getitem__)
            title += (f": median {slow} {ok[slow]:.2f} {unit} vs {fast} {ok[fast]:.2f} {unit} "
                      f"({ok[slow] / ok[fast]:.1f}x)")
    base_layout(fig, title, height=400)
    fig.update_layout(barmode="overlay")
    fig.update_yaxes(title_text=unit, rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="share of the label's rounds", tickformat=".0%", row=1, col=2)
    fig.update_xaxes(title_text=unit, row=1, col=2)
    return fig


def waste_energy_figure(summary: pd.DataFrame) -> go.Figure:
    """Device time spent on work that was thrown away (clients that did not complete) and the
    energy all invited clients spent, per group: mean and 95% t-interval over runs."""
    title = "Wasted device time and client energy (per run)"
    if not len(summary) or not summary[["wasted_device_s", "energy_j"]].notna().any().any():
        return empty_figure(title, "no runs")
    wunit, wdiv = time_unit(summary["wasted_device_s"].max())
    eunit, ediv = energy_unit(summary["energy_j"].max())
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=(f"Wasted device time ({wunit})",
                                        f"Client energy ({eunit})"))
    _bars_with_seeds(fig, summary, "wasted_device_s", wdiv, wunit, ",.1f", 1, 1)
    _bars_with_seeds(fig, summary, "energy_j", ediv, eunit, ",.1f", 1, 2)
    base_layout(fig, title, height=400, legend=False)
    return fig


def invitations_by_class_figure(runs: list[RunSeries]) -> go.Figure:
    """Invitations per device class, per group: the mean number per run (left) and the share of
    the group's invitations (right)."""
    title = "Invitations by device class"
    rows = []
    for r in runs:
        if len(r.clients) and "device_class" in r.clients:
            counts = r.clients["device_class"].astype(str).value_counts()
            for cls, n in counts.items():
                rows.append({"group": r.group, "label": r.label, "device_class": cls, "n": n})
    if not rows:
        return empty_figure(title, "no clients recorded yet")
    df = pd.DataFrame(rows)
    nruns = df.groupby("group", sort=False)["label"].nunique()
    tot = df.groupby(["group", "device_class"], sort=False)["n"].sum().reset_index()
    tot["per_run"] = tot["n"] / tot["group"].map(nruns)
    tot["share"] = tot["n"] / tot["group"].map(tot.groupby("group")["n"].sum())
    order = sorted(device_colors(tot["device_class"]))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=("Invitations per run", "Share of the label's invitations"))
    for i, (g, sub) in enumerate(tot.groupby("group", sort=False)):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        for col, ycol, fmt in ((1, "per_run", ",.0f"), (2, "share", ".1%")):
            fig.add_trace(go.Bar(x=sub["device_class"], y=sub[ycol], name=g, legendgroup=g,
                                 showlegend=col == 1, marker={"color": color},
                                 hovertemplate=f"{g}<br>%{{x}}: %{{y:{fmt}}}<extra></extra>"),
                          row=1, col=col)
    base_layout(fig, title, height=420)
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    fig.update_yaxes(title_text="invitations", row=1, col=1)
    fig.update_yaxes(title_text="share", tickformat=".0%", row=1, col=2)
    return fig


def class_drilldown_figure(runs: list[RunSeries]) -> go.Figure:
    """Per device class and group: how often the class held the critical (last completed)
    client, its share of round time, its participation and its share of client energy."""
    title = "Device classes: who makes rounds long"
    frames = []
    for r in runs:
        d = A.class_drilldown(r.rounds, r.clients)
        if len(d):
            frames.append(d.assign(group=r.group))
    if not frames:
        return empty_figure(title, "no clients recorded yet")
    return F.drilldown_figure(pd.concat(frames), title)


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
