"""Single-run figures: pure functions from the run's DataFrames to plotly figures.

``rounds`` is rounds.parquet (one row per round) and ``clients`` is clients.parquet (one row per
invited client per round). Everything is aggregated before plotting (see ``aggregates``), so a
figure's size depends on rounds, classes and bins, never on the number of client rows. Extra
columns are used when present and never required.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboards import aggregates as A
from dashboards.data import EXTRA_ASSIGNMENT_COLUMNS
from dashboards.style import (
    OUTCOME_COLORS,
    PHASE_COLORS,
    PHASES,
    SEQUENTIAL,
    WORKLOAD_COLORS,
    base_layout,
    bytes_unit,
    color_for,
    device_colors,
    empty_figure,
    energy_unit,
    hex_rgba,
    round_ticks,
    time_unit,
)
from dashboards.timeline import timeline_figure

__all__ = [
    "accuracy_figure", "round_time_figure", "timeline_figure", "rates_by_class_figure",
    "outcomes_figure", "workload_figure", "traffic_energy_figure", "population_figure",
    "staleness_privacy_figure",
]

ROUND_OUTCOME_COLUMNS = {"completed": "completed", "dropped": "dropped", "offline": "offline",
                         "straggled": "straggler", "overcommitted": "overcommitted",
                         "out_of_memory": "out_of_memory", "low_battery": "low_battery"}


MAX_BARS = 150  # beyond this many rounds, per-round stacks are drawn as stepped areas


def _has(df: pd.DataFrame, *cols: str) -> bool:
    return len(df) > 0 and all(c in df.columns for c in cols)


def _stack(x: pd.Series, y: pd.Series, name: str, color: str, hover: str, group: str,
           **kw: object) -> go.Bar | go.Scatter:
    """One layer of a per-round stack: bars for short runs; for long ones a stepped area (one
    SVG path instead of a rectangle per round: much faster to draw, same picture)."""
    if len(x) <= MAX_BARS:
        return go.Bar(x=x, y=y, name=name, marker={"color": color, "line": {"width": 0}},
                      hovertemplate=hover, **kw)
    return go.Scatter(x=x, y=y, name=name, mode="lines", stackgroup=group, fillcolor=color,
                      line={"color": color, "width": 0.5, "shape": "hvh"}, hovertemplate=hover,
                      **kw)


def accuracy_figure(rounds: pd.DataFrame) -> go.Figure:
    """Test accuracy and loss against simulated time (left) and against round (right)."""
    title = "Model quality"
    if not _has(rounds, "round", "sim_end_s", "accuracy"):
        return empty_figure(title, "no rounds recorded yet")
    if not rounds[[c for c in ("accuracy", "loss") if c in rounds]].notna().any().any():
        return empty_figure(title, "no evaluation recorded (an analytic run trains no model)")
    unit, div = time_unit(rounds["sim_end_s"].max())
    fig = make_subplots(rows=2, cols=2, shared_yaxes=False, vertical_spacing=0.14,
                        horizontal_spacing=0.08,
                        subplot_titles=("Accuracy vs simulated time", "Accuracy vs round",
                                        "Loss vs simulated time", "Loss vs round"))
    series = (("accuracy", "test accuracy", 1, {"color": "#4e79a7", "width": 2.2}, ".1%"),
              ("loss", "test loss", 2, {"color": "#e15759", "width": 2}, ".3f"),
              ("train_loss", "train loss", 2, {"color": "#f28e2b", "width": 2, "dash": "dot"},
               ".3f"))
    for col_name, name, row, line, fmt in series:
        if col_name not in rounds:
            continue
        r = A.thin_rounds(rounds[rounds[col_name].notna()])  # rounds without evaluation: skipped
        if not len(r):
            continue
        for col, x, xfmt in ((1, r["sim_end_s"] / div, f"%{{x:.2f}} {unit}"),
                             (2, r["round"], "round %{x}")):
            fig.add_trace(go.Scatter(
                x=x, y=r[col_name], name=name, mode="lines+markers" if len(r) == 1 else "lines",
                line=line, legendgroup=col_name, showlegend=col == 1,
                hovertemplate=f"{xfmt}<br>{name} %{{y:{fmt}}}<extra></extra>"), row=row, col=col)
    _client_band(fig, rounds, div, unit)
    base_layout(fig, title, height=560)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1)
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    fig.update_yaxes(title_text="loss", row=2, col=1)
    fig.update_xaxes(title_text=f"simulated time ({unit})", col=1, row=2)
    fig.update_xaxes(title_text="round", col=2, row=2)
    fig.update_xaxes(col=2, **round_ticks(len(rounds)))
    return fig


def _client_band(fig: go.Figure, rounds: pd.DataFrame, div: float, unit: str) -> None:
    """Client-side evaluation (``evaluation.clients_per_round``): a band from the worst-10 %
    to the median of the evaluated clients' held-out accuracy, and the personalised median."""
    if not _has(rounds, "client_acc_worst10", "client_acc_median"):
        return
    r = A.thin_rounds(rounds[rounds["client_acc_median"].notna()])
    if not len(r):
        return
    color, mode = "#59a14f", "lines+markers" if len(r) == 1 else "lines"
    for col, x, xfmt in ((1, r["sim_end_s"] / div, f"%{{x:.2f}} {unit}"),
                         (2, r["round"], "round %{x}")):
        fig.add_trace(go.Scatter(
            x=x, y=r["client_acc_worst10"], name="clients: worst 10%", mode=mode,
            line={"color": color, "width": 1}, legendgroup="client_acc", showlegend=False,
            hovertemplate=f"{xfmt}<br>clients' worst 10% %{{y:.1%}}<extra></extra>"),
            row=1, col=col)
        fig.add_trace(go.Scatter(
            x=x, y=r["client_acc_median"], name="clients: worst 10% to median", mode=mode,
            fill="tonexty", fillcolor="rgba(89, 161, 79, 0.2)", line={"color": color, "width": 1.5},
            legendgroup="client_acc", showlegend=col == 1,
            hovertemplate=f"{xfmt}<br>clients' median %{{y:.1%}}<extra></extra>"), row=1, col=col)
        if "personalized_acc_median" in r and r["personalized_acc_median"].notna().any():
            fig.add_trace(go.Scatter(
                x=x, y=r["personalized_acc_median"], name="clients fine-tuned: median", mode=mode,
                line={"color": color, "width": 1.5, "dash": "dash"}, legendgroup="personalized",
                showlegend=col == 1,
                hovertemplate=f"{xfmt}<br>fine-tuned median %{{y:.1%}}<extra></extra>"),
                row=1, col=col)


def round_time_figure(rounds: pd.DataFrame, clients: pd.DataFrame) -> go.Figure:
    """Each round's duration split along the critical path (see ``A.round_phase_split``)."""
    title = "Where round time goes (critical path)"
    if not _has(rounds, "round", "duration_s", "sim_start_s") or not _has(
            clients, "round", "outcome", "download_s", "compute_s", "upload_s"):
        return empty_figure(title, "no rounds recorded yet")
    split, k = A.bin_rounds(A.round_phase_split(rounds, clients))
    unit, div = time_unit(split["duration_s"].max())
    fig = go.Figure()
    crit = split.get("critical_class")
    for p in (*PHASES, "waiting"):
        hover = f"round %{{x}}<br>{p}: %{{y:.1f}} {unit}"
        if crit is not None and k == 1:
            hover += "<br>critical client: %{customdata}"
        fig.add_trace(_stack(split["round"], split[p] / div, p, PHASE_COLORS[p],
                             hover + "<extra></extra>", "phases",
                             customdata=crit if k == 1 else None))
    note = f" (mean of {k} consecutive rounds per bar)" if k > 1 else ""
    base_layout(fig, title + note, height=400)
    fig.update_layout(barmode="stack", bargap=0.15 if len(split) < 80 else 0.0,
                      legend={"traceorder": "normal"})
    fig.update_xaxes(title_text="round", **round_ticks(len(split)))
    fig.update_yaxes(title_text=f"simulated time ({unit})")
    return fig


def rates_by_class_figure(clients: pd.DataFrame) -> go.Figure:
    """Participation, dropout, straggler and out-of-memory rates per device class."""
    title = "Outcome rates by device class (share of invitations)"
    if not _has(clients, "device_class", "outcome"):
        return empty_figure(title, "no clients recorded yet")
    rates = A.outcome_rates_by_class(clients)
    colors = device_colors(rates.index)
    labels = {"participation": "participation<br>(completed)",
              "dropout": "dropout<br>(dropped, offline, battery)",
              "straggler": "straggler<br>(deadline or over-commit)",
              "out_of_memory": "out of memory"}
    fig = go.Figure()
    for cls, row in rates.iterrows():
        fig.add_trace(go.Bar(
            x=list(labels.values()), y=[row[k] for k in labels], name=str(cls),
            marker={"color": colors[str(cls)]}, customdata=[int(row["invited"])] * len(labels),
            hovertemplate=f"<b>{cls}</b><br>%{{x}}: %{{y:.1%}}<br>of %{{customdata:,}} "
                          "invitations<extra></extra>"))
    base_layout(fig, title, height=400)
    fig.update_layout(barmode="group", bargap=0.2, bargroupgap=0.05)
    fig.update_yaxes(title_text="share of invitations", tickformat=".0%", rangemode="tozero")
    return fig


def outcomes_figure(rounds: pd.DataFrame, clients: pd.DataFrame) -> go.Figure:
    """Outcome counts per round (left) and outcome shares per device class (right)."""
    title = "Client outcomes"
    if not _has(rounds, "round") and not _has(clients, "outcome"):
        return empty_figure(title, "no rounds recorded yet")
    fig = make_subplots(rows=1, cols=2, column_widths=[0.58, 0.42], horizontal_spacing=0.12,
                        subplot_titles=("Invited clients per round, by outcome",
                                        "Outcome share by device class"))
    shown: set[str] = set()
    if _has(rounds, "round"):
        split, k = A.bin_rounds(rounds[["round", *[c for c in ROUND_OUTCOME_COLUMNS
                                                   if c in rounds]]].astype(float))
        for col, name in ROUND_OUTCOME_COLUMNS.items():
            if col in split and split[col].sum() > 0:
                shown.add(name)
                fig.add_trace(_stack(split["round"], split[col], name, OUTCOME_COLORS[name],
                                     f"round %{{x}}<br>{name}: %{{y:,.0f}}<extra></extra>",
                                     "outcomes", legendgroup=name), row=1, col=1)
    if _has(clients, "device_class", "outcome"):
        rates = A.outcome_rates_by_class(clients)
        counts = A.outcome_counts_by_class(clients)
        for o in counts.columns:
            fig.add_trace(go.Bar(
                y=rates.index, x=rates[f"share_{o}"], orientation="h", name=o, legendgroup=o,
                showlegend=o not in shown, customdata=counts[o].to_numpy(),
                marker={"color": color_for(OUTCOME_COLORS, o), "line": {"width": 0}},
                hovertemplate=f"%{{y}}<br>{o}: %{{x:.1%}} (%{{customdata:,}})<extra></extra>"),
                row=1, col=2)
    base_layout(fig, title, height=420)
    fig.update_layout(barmode="stack", bargap=0.1)
    fig.update_xaxes(title_text="round", row=1, col=1, **round_ticks(len(rounds)))
    fig.update_yaxes(title_text="clients", row=1, col=1)
    fig.update_xaxes(title_text="share of invitations", tickformat=".0%", range=[0, 1], row=1,
                     col=2)
    return fig


def workload_figure(clients: pd.DataFrame) -> go.Figure:
    """Which workload (and rank / blocks / cut / width / tier when recorded) each device class
    was assigned. An extra column with one value for every invitation is left out."""
    title = "Workload assignment by device class"
    if not _has(clients, "device_class", "workload"):
        return empty_figure(title, "no workload assignments recorded")
    extras = [c for c in EXTRA_ASSIGNMENT_COLUMNS
              if c in clients and pd.unique(clients[c].dropna().to_numpy()).size > 1]
    cols = ["workload", *extras]
    entries = 0
    fig = make_subplots(rows=1, cols=len(cols), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"by {c}" for c in cols])
    for i, col in enumerate(cols, start=1):
        mix = A.assignment_mix_by_class(clients, col)
        share = mix.div(mix.sum(axis=1).where(lambda s: s > 0), axis=0).fillna(0.0)
        values = list(mix.columns)
        entries += len(values) + 2  # items and the group title
        if col == "workload":
            values = [w for w in WORKLOAD_COLORS if w in values] + [
                v for v in values if v not in WORKLOAD_COLORS]
        for j, v in enumerate(values):
            color = (color_for(WORKLOAD_COLORS, v, j) if col == "workload"
                     else SEQUENTIAL[int(round(j * (len(SEQUENTIAL) - 1) / max(len(values) - 1,
                                                                                   1)))])
            fig.add_trace(go.Bar(
                y=share.index, x=share[v], orientation="h", name=v, legendgroup=col,
                legendgrouptitle_text=col, customdata=mix[v].to_numpy(),
                marker={"color": color, "line": {"width": 0.5, "color": "white"}},
                hovertemplate=f"%{{y}}<br>{col} = {v}: %{{x:.1%}} (%{{customdata:,}})"
                              "<extra></extra>"), row=1, col=i)
        fig.update_xaxes(tickformat=".0%", range=[0, 1], title_text="share of invitations",
                         row=1, col=i)
    n_classes = clients["device_class"].nunique()
    base_layout(fig, title, height=int(max(360, 160 + 26 * n_classes, 120 + 19 * entries)))
    fig.update_layout(barmode="stack", bargap=0.25,
                      legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0,
                              "yanchor": "top", "yref": "paper", "traceorder": "grouped"})
    fig.update_layout(margin={"r": 140})
    return fig


def traffic_energy_figure(rounds: pd.DataFrame) -> go.Figure:
    """Cumulative bytes downloaded/uploaded and energy spent by clients against simulated time."""
    title = "Traffic and energy"
    if not _has(rounds, "round", "sim_end_s"):
        return empty_figure(title, "no rounds recorded yet")
    te = A.thin_rounds(A.traffic_energy(rounds))
    unit, div = time_unit(te["sim_end_s"].max())
    bunit, bdiv = bytes_unit(max(te["cum_bytes_down"].max(), te["cum_bytes_up"].max()))
    eunit, ediv = energy_unit(te["cum_energy_j"].max())
    t = te["sim_end_s"] / div
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=(f"Data moved, cumulative ({bunit})",
                                        f"Client energy, cumulative ({eunit})"))
    for c, name, color in (("bytes_down", "downloaded", PHASE_COLORS["download"]),
                           ("bytes_up", "uploaded", PHASE_COLORS["upload"])):
        fig.add_trace(go.Scatter(
            x=t, y=te[f"cum_{c}"] / bdiv, name=name, mode="lines",
            line={"color": color, "width": 2.2}, customdata=te[c] / bdiv,
            hovertemplate=f"%{{x:.2f}} {unit}<br>{name}: %{{y:,.2f}} {bunit} "
                          f"(this round %{{customdata:,.2f}} {bunit})<extra></extra>"),
            row=1, col=1)
    fig.add_trace(go.Scatter(
        x=t, y=te["cum_energy_j"] / ediv, name="energy", mode="lines", fill="tozeroy",
        line={"color": "#b07aa1", "width": 2.2}, fillcolor="rgba(176,122,161,0.15)",
        customdata=te["energy_j"] / ediv,
        hovertemplate=f"%{{x:.2f}} {unit}<br>energy: %{{y:,.2f}} {eunit} "
                      f"(this round %{{customdata:,.3f}} {eunit})<extra></extra>"), row=1, col=2)
    base_layout(fig, title, height=380)
    fig.update_xaxes(title_text=f"simulated time ({unit})")
    fig.update_yaxes(title_text=bunit, rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text=eunit, rangemode="tozero", row=1, col=2)
    return fig


def population_figure(clients: pd.DataFrame) -> go.Figure:
    """Device-class mix of the clients seen, and their bandwidth and compute distributions."""
    title = "Population: device classes, bandwidth and compute"
    if not _has(clients, "client_id", "device_class"):
        return empty_figure(title, "no clients recorded yet")
    mix = A.population_mix(clients)
    quant = A.rate_quantiles(clients) if "outcome" in clients else {}
    colors = device_colors(mix.index)
    fig = make_subplots(rows=2, cols=2, vertical_spacing=0.2, horizontal_spacing=0.14,
                        subplot_titles=("Distinct clients invited, by class",
                                        "Effective downlink (completed invitations)",
                                        "Effective uplink (completed invitations)",
                                        "Training throughput (completed invitations)"))
    total = mix.sum(axis=1)
    links = ["<br>".join(f"{lk}: {n:,}" for lk, n in row.items() if n) for _, row in mix.iterrows()]
    fig.add_trace(go.Bar(y=mix.index, x=total, orientation="h", showlegend=False,
                         marker={"color": [colors[c] for c in mix.index]}, customdata=links,
                         text=[f"{v:,}" for v in total], textposition="auto",
                         hovertemplate="<b>%{y}</b>: %{x:,} clients<br>%{customdata}"
                                       "<extra></extra>"), row=1, col=1)
    panes = (("downlink", 1, 2, "Mbit/s"), ("uplink", 2, 1, "Mbit/s"),
             ("throughput", 2, 2, "samples/s"))
    for key, r, c, unit in panes:
        q = quant.get(key)
        if q is None or not len(q):
            continue
        for cls, row in q.iterrows():
            color = colors.get(str(cls)) or device_colors([cls])[str(cls)]
            fig.add_trace(go.Box(
                y=[cls], q1=[row["p25"]], median=[row["p50"]], q3=[row["p75"]],
                lowerfence=[row["p5"]], upperfence=[row["p95"]], mean=[row["mean"]],
                orientation="h", name=str(cls), showlegend=False, boxpoints=False,
                fillcolor=hex_rgba(color, 0.35), line={"color": color, "width": 1.6},
                hoverinfo="x", hovertemplate=None), row=r, col=c)
        lo, hi = float(q["p5"].min()), float(q["p95"].max())
        pad = {"range": [np.log10(lo) - 0.3, np.log10(hi) + 0.3]} if hi < lo * 1.05 else {}
        fig.update_xaxes(type="log", title_text=f"{unit} (box: 25-75%, whiskers: 5-95%)",
                         row=r, col=c, **pad)  # pad: all values equal, e.g. one fixed link
    base_layout(fig, title, height=620, legend=False)
    fig.update_xaxes(title_text="clients", row=1, col=1)
    fig.update_yaxes(categoryorder="array", categoryarray=sorted(mix.index, reverse=True))
    return fig


def staleness_privacy_figure(rounds: pd.DataFrame, clients: pd.DataFrame) -> go.Figure | None:
    """Staleness of aggregated updates (asynchronous runs) and the privacy budget spent
    (differentially private runs); ``None`` when the run has neither."""
    stale = (clients.loc[clients["outcome"] == "completed", ["device_class", "staleness"]]
             if _has(clients, "staleness", "outcome", "device_class") else pd.DataFrame())
    stale = stale[stale["staleness"].notna()] if len(stale) else stale
    has_stale = len(stale) > 0 and bool((stale["staleness"] > 0).any())
    has_eps = _has(rounds, "epsilon", "sim_end_s") and rounds["epsilon"].notna().any()
    if not (has_stale or has_eps):
        return None
    titles = [t for t, ok in (("Staleness of aggregated updates", has_stale),
                              ("Privacy budget spent (epsilon)", has_eps)) if ok]
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.1)
    if has_stale:
        s = stale["staleness"].astype(float)
        if s.nunique() > 40:  # many distinct values: 40 equal-width bins
            s = pd.cut(s, bins=40).map(lambda iv: iv.mid).astype(float)
        mix = A.count_table(stale["device_class"], s.round(2))
        mix = mix[sorted(mix.columns, key=float)]
        colors = device_colors(mix.index)
        for cls, row in mix.iterrows():
            fig.add_trace(go.Bar(x=[float(v) for v in mix.columns], y=row.to_numpy(),
                                 name=str(cls), marker={"color": colors[str(cls)]},
                                 hovertemplate=f"{cls}<br>staleness %{{x}}: %{{y:,}} updates"
                                               "<extra></extra>"), row=1, col=1)
        fig.update_xaxes(title_text="staleness (model versions published while it trained)",
                         row=1, col=1)
        fig.update_yaxes(title_text="aggregated updates", row=1, col=1)
    if has_eps:
        r = A.thin_rounds(rounds[rounds["epsilon"].notna()])
        unit, div = time_unit(r["sim_end_s"].max())
        col = len(titles)
        fig.add_trace(go.Scatter(x=r["sim_end_s"] / div, y=r["epsilon"],
                                 mode="lines+markers" if len(r) <= 30 else "lines",
                                 name="epsilon", line={"color": "#b07aa1", "width": 2.2},
                                 showlegend=False, customdata=r["round"],
                                 hovertemplate=f"round %{{customdata}}, %{{x:.2f}} {unit}<br>"
                                               "epsilon %{y:.3g}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text=f"simulated time ({unit})", row=1, col=col)
        fig.update_yaxes(title_text="epsilon (cumulative)", rangemode="tozero", row=1, col=col)
    base_layout(fig, "Staleness and privacy", height=380)
    fig.update_layout(barmode="stack", bargap=0.15)
    return fig


def summary_numbers(rounds: pd.DataFrame, clients: pd.DataFrame) -> dict[str, float]:
    """Headline numbers for the header (all cheap aggregates)."""
    out: dict[str, float] = {}
    if _has(rounds, "accuracy"):
        acc = rounds["accuracy"].dropna()
        out["final_accuracy"] = float(acc.iloc[-1]) if len(acc) else float("nan")
        out["best_accuracy"] = float(acc.max()) if len(acc) else float("nan")
    if _has(rounds, "sim_end_s"):
        out["sim_end_s"] = float(rounds["sim_end_s"].max())
    if _has(rounds, "wall_s"):
        out["wall_s"] = float(np.nansum(rounds["wall_s"]))
    out["rounds_done"] = float(len(rounds))
    if _has(clients, "outcome"):
        out["completion_rate"] = float((clients["outcome"] == "completed").mean())
    return out
