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
from dashboards.style import (
    OUTCOME_COLORS,
    PHASE_COLORS,
    PHASES,
    RUN_COLORS,
    WORKLOAD_COLORS,
    base_layout,
    bytes_unit,
    color_for,
    device_colors,
    empty_figure,
    energy_unit,
    hex_rgba,
    menu_y,
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


def has_evaluation(rounds: pd.DataFrame) -> bool:
    """Whether any round recorded a test accuracy or loss (analytic runs train nothing)."""
    cols = [c for c in ("accuracy", "loss") if c in rounds]
    return bool(len(rounds) and cols and rounds[cols].notna().any().any())


def x_modes(rounds: pd.DataFrame) -> dict[str, tuple[str, pd.Series, str, float]]:
    """The x axes a per-round line can use: key -> (axis title, values, link key, seconds per
    unit). ``sim``: simulated time at the round's end; ``round``; ``wall``: cumulative wall
    time (when recorded)."""
    unit, div = time_unit(rounds["sim_end_s"].max())
    out = {"sim": (f"simulated time ({unit})", rounds["sim_end_s"] / div, "sim", div),
           "round": ("round", rounds["round"].astype(float), "round", 1.0)}
    if "wall_s" in rounds and rounds["wall_s"].notna().any():
        wall = rounds["wall_s"].fillna(0.0).cumsum()
        wunit, wdiv = time_unit(wall.max())
        out["wall"] = (f"wall time ({wunit})", wall / wdiv, "wall", wdiv)
    return out


MODE_LABELS = {"sim": "simulated time", "round": "round", "wall": "wall time"}
# Client-side evaluation (``evaluation.clients_per_round``, docs/strategies.md): a band from the
# worst-10 % to the median of the evaluated clients' held-out accuracy, and the fine-tuned median.
CLIENT_BAND = (
    ("client_acc_worst10", "clients: worst 10%", {"color": "#59a14f", "width": 1}, None),
    ("client_acc_median", "clients: worst 10% to median", {"color": "#59a14f", "width": 1.5},
     "tonexty"),
    ("personalized_acc_median", "clients fine-tuned: median",
     {"color": "#59a14f", "width": 1.5, "dash": "dash"}, None))


def accuracy_figure(rounds: pd.DataFrame) -> go.Figure:
    """Test accuracy (top) and loss (bottom) on one shared x axis, with a switch between
    simulated time, round and wall time, and a smoothing weight (TensorBoard's debiased EMA)."""
    title = "Model quality"
    if not _has(rounds, "round", "sim_end_s", "accuracy"):
        return empty_figure(title, "no rounds recorded yet")
    if not has_evaluation(rounds):
        return empty_figure(title, "no evaluation recorded (an analytic run trains no model)")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("Test accuracy", "Loss"))
    series = (("accuracy", "test accuracy", 1, {"color": "#4e79a7", "width": 2.2}, ".1%"),
              ("loss", "test loss", 2, {"color": "#e15759", "width": 2}, ".3f"),
              ("train_loss", "train loss", 2, {"color": "#f28e2b", "width": 2, "dash": "dot"},
               ".3f"))
    rounds = rounds.reset_index(drop=True)
    modes = x_modes(rounds)  # one divisor per axis for every trace (wall time: all rounds)
    xs: dict[str, list[list[float]]] = {k: [] for k in modes}
    ys: dict[float, list[list[float]]] = {w: [] for w in A.SMOOTHING}
    for col_name, name, row, line, fmt in series:
        if col_name not in rounds:
            continue
        r = A.thin_rounds(rounds[rounds[col_name].notna()])  # rounds without evaluation: skipped
        if not len(r):
            continue
        for key, (_t, v, _l, _d) in modes.items():
            xs[key].append(v.loc[r.index].tolist())
        y = r[col_name].to_numpy(float)
        for w in A.SMOOTHING:
            ys[w].append(A.ema(y, w).tolist())
        fig.add_trace(go.Scatter(
            x=xs["sim"][-1], y=y, name=name, mode="lines+markers" if len(r) == 1 else "lines",
            line=line, legendgroup=col_name, customdata=r["round"],
            hovertemplate=f"{name} %{{y:{fmt}}} (round %{{customdata}})<extra></extra>"),
            row=row, col=1)
    for col_name, name, line, fill in CLIENT_BAND:  # client-side evaluation, when recorded
        if col_name not in rounds or not rounds[col_name].notna().any():
            continue
        r = A.thin_rounds(rounds[rounds[col_name].notna()])
        for key, (_t, v, _l, _d) in modes.items():
            xs[key].append(v.loc[r.index].tolist())
        y = r[col_name].to_numpy(float)
        for w in A.SMOOTHING:
            ys[w].append(A.ema(y, w).tolist())
        fig.add_trace(go.Scatter(
            x=xs["sim"][-1], y=y, name=name, mode="lines+markers" if len(r) == 1 else "lines",
            line=line, fill=fill, fillcolor="rgba(89, 161, 79, 0.2)" if fill else None,
            legendgroup="client_acc", customdata=r["round"],
            hovertemplate=f"{name} %{{y:.1%}} (round %{{customdata}})<extra></extra>"),
            row=1, col=1)
    buttons = []
    for key, (xt, _v, link, div) in modes.items():
        buttons.append({"label": MODE_LABELS[key], "method": "update",
                        "args": [{"x": xs[key]},
                                 {"xaxis2.title.text": xt, "xaxis.autorange": True,
                                  "xaxis2.autorange": True,
                                  "meta": {"xlinks": {"xaxis": [link, div],
                                                      "xaxis2": [link, div]}}}]})
    smooth = [{"label": f"smoothing {w:g}" if w else "no smoothing", "method": "restyle",
               "args": [{"y": ys[w]}]} for w in A.SMOOTHING]
    menu = {"type": "buttons", "direction": "right", "y": menu_y(560),
            "yanchor": "top", "pad": {"l": 8}, "font": {"size": 11}, "active": 0,
            "showactive": True}
    base_layout(fig, title, height=560)
    fig.update_layout(updatemenus=[{**menu, "x": 0.0, "xanchor": "left", "buttons": buttons},
                                   {**menu, "x": 0.45, "xanchor": "left", "buttons": smooth}],
                      hovermode="x unified", margin={"t": 120},
                      meta={"xlinks": {"xaxis": ["sim", modes["sim"][3]],
                                       "xaxis2": ["sim", modes["sim"][3]]}})
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", title_text="accuracy", row=1)
    fig.update_yaxes(title_text="loss", row=2, col=1)
    fig.update_xaxes(title_text=modes["sim"][0], row=2, col=1)
    return fig


def round_time_figure(rounds: pd.DataFrame, clients: pd.DataFrame) -> go.Figure:
    """Each round's duration split along the critical path (see ``A.round_phase_split``).

    Hover shows a round's four parts and its total together; clicking a round opens it in the
    client timeline (dashboards/linking.py)."""
    title = "Where round time goes (critical path)"
    if not _has(rounds, "round", "duration_s", "sim_start_s") or not _has(
            clients, "round", "outcome", "download_s", "compute_s", "upload_s"):
        return empty_figure(title, "no rounds recorded yet")
    split, k = A.bin_rounds(A.round_phase_split(rounds, clients))
    unit, div = time_unit(split["duration_s"].max())
    fig = go.Figure()
    crit = split.get("critical_class")
    for p in (*PHASES, "waiting"):
        fig.add_trace(_stack(split["round"], split[p] / div, p, PHASE_COLORS[p],
                             f"{p}: %{{y:.2f}} {unit}<extra></extra>", "phases"))
    total_hover = f"<b>total: %{{y:.2f}} {unit}</b>"
    if crit is not None and k == 1:
        total_hover += "<br>critical client: %{customdata}"
    fig.add_trace(go.Scatter(
        x=split["round"], y=split["duration_s"] / div, name="total", mode="markers",
        marker={"symbol": "line-ew-open", "size": 10 if len(split) <= MAX_BARS else 4,
                "color": "#1f2933", "line": {"width": 1.5}},
        customdata=crit if k == 1 else None, hovertemplate=total_hover + "<extra></extra>"))
    note = f" (mean of {k} consecutive rounds per bar)" if k > 1 else ""
    base_layout(fig, title + note, height=400)
    fig.update_layout(barmode="stack", bargap=0.15 if len(split) < 80 else 0.0,
                      legend={"traceorder": "normal"}, hovermode="x unified",
                      meta={"role": "round-time", "xlinks": {"xaxis": ["round", 1.0]}})
    fig.update_xaxes(title_text="round (click a round to open it in the timeline)",
                     **round_ticks(len(split)))
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
    fig.update_layout(barmode="stack", bargap=0.1, meta={"xlinks": {"xaxis": ["round", 1.0]}})
    fig.update_xaxes(title_text="round", row=1, col=1, **round_ticks(len(rounds)))
    fig.update_yaxes(title_text="clients", row=1, col=1)
    fig.update_xaxes(title_text="share of invitations", tickformat=".0%", range=[0, 1], row=1,
                     col=2)
    return fig


def workload_figure(clients: pd.DataFrame) -> go.Figure:
    """Which workload each device class was assigned: the kind (left) and, when the run records
    the rank / blocks / cut / width, what exactly (right: "LoRA r8", "split at block 3",
    "partial top 2 blocks", ...; see ``A.workload_labels``)."""
    title = "Workload assignment by device class"
    if not _has(clients, "device_class", "workload"):
        return empty_figure(title, "no workload assignments recorded")
    labels = A.workload_labels(clients)
    detail = labels is not None and bool(
        (labels.astype(str) != clients["workload"].astype(str)).any())
    cols: list[tuple[str, pd.Series]] = [("workload", clients["workload"])]
    if detail and labels is not None:
        cols.append(("assignment", labels))
    entries = 0
    fig = make_subplots(rows=1, cols=len(cols), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"by {c}" for c, _ in cols])
    for i, (col, values_s) in enumerate(cols, start=1):
        frame = pd.DataFrame({"device_class": clients["device_class"], col: values_s})
        mix = A.assignment_mix_by_class(frame, col)
        share = mix.div(mix.sum(axis=1).where(lambda s: s > 0), axis=0).fillna(0.0)
        values = list(mix.columns)
        entries += len(values) + 2  # items and the group title
        if col == "workload":
            values = [w for w in WORKLOAD_COLORS if w in values] + [
                v for v in values if v not in WORKLOAD_COLORS]
        else:
            values = sorted(values, key=A.workload_label_order)
        for j, v in enumerate(values):
            kind = v.split(" ")[0].lower() if col == "assignment" else v
            color = (color_for(WORKLOAD_COLORS, v, j) if col == "workload"
                     else hex_rgba(color_for(WORKLOAD_COLORS, kind, j),
                                   0.45 + 0.55 * (j + 1) / len(values)))
            fig.add_trace(go.Bar(
                y=share.index, x=share[v], orientation="h", name=v, legendgroup=col,
                legendgrouptitle_text=col, customdata=mix[v].to_numpy(),
                marker={"color": color, "line": {"width": 0.5, "color": "white"}},
                hovertemplate=f"%{{y}}<br>{v}: %{{x:.1%}} (%{{customdata:,}})"
                              "<extra></extra>"), row=1, col=i)
        fig.update_xaxes(tickformat=".0%", range=[0, 1], title_text="share of invitations",
                         row=1, col=i)
    n_classes = clients["device_class"].nunique()
    base_layout(fig, title, height=int(max(360, 160 + 26 * n_classes, 120 + 19 * entries)))
    fig.update_layout(barmode="stack", bargap=0.25,
                      legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0,
                              "yanchor": "top", "yref": "paper", "traceorder": "grouped"})
    fig.update_layout(margin={"r": 170})
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
    fig.update_layout(meta={"xlinks": {"xaxis": ["sim", div], "xaxis2": ["sim", div]}})
    fig.update_xaxes(title_text=f"simulated time ({unit})")
    fig.update_yaxes(title_text=bunit, rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text=eunit, rangemode="tozero", row=1, col=2)
    return fig


def tokens_per_sample(manifest: dict | None) -> int | None:
    """Tokens in one training sample of a language-model run (the scenario's model.seq_len for
    a transformer), else None."""
    sc = (manifest or {}).get("scenario")
    model = (sc if isinstance(sc, dict) else (manifest or {})).get("model") or {}
    if isinstance(model, dict) and model.get("kind") == "transformer":
        seq = model.get("seq_len")
        if isinstance(seq, (int, float)) and seq > 0:
            return int(seq)
    return None


def population_figure(clients: pd.DataFrame, tokens: int | None = None) -> go.Figure:
    """Device-class mix of the clients seen, and their bandwidth and compute distributions
    (compute in tokens/s when ``tokens`` per sample is given: language-model runs)."""
    title = "Population: device classes, bandwidth and compute"
    if not _has(clients, "client_id", "device_class"):
        return empty_figure(title, "no clients recorded yet")
    mix = A.population_mix(clients)
    quant = A.rate_quantiles(clients, tokens) if "outcome" in clients else {}
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
             ("throughput", 2, 2, "tokens/s" if tokens else "samples/s"))
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
        fig.update_layout(meta={"xlinks": {"xaxis" if col == 1 else "xaxis2": ["sim", div]}})
    base_layout(fig, "Staleness and privacy", height=380)
    fig.update_layout(barmode="stack", bargap=0.15)
    return fig


def class_figure(rounds: pd.DataFrame, clients: pd.DataFrame) -> go.Figure:
    """Per device class: critical-client share, share of round time, participation, energy."""
    title = "Device classes: who makes rounds long"
    d = A.class_drilldown(rounds, clients)
    if not len(d):
        return empty_figure(title, "no clients recorded yet")
    return drilldown_figure(d, title)


def drilldown_figure(d: pd.DataFrame, title: str) -> go.Figure:
    """Four panels per device class from ``A.class_drilldown`` rows (pooled per ``group`` when
    the frame has one)."""
    if "group" not in d:
        d = d.assign(group="")
    sums = ["invited", "completed", "critical_rounds", "critical_time_s", "energy_j"]
    agg = d.groupby(["group", "device_class"], sort=False)[sums].sum().reset_index()
    for _g, sub in agg.groupby("group", sort=False):
        idx = sub.index
        agg.loc[idx, "critical_share"] = sub["critical_rounds"] / max(
            sub["critical_rounds"].sum(), 1)
        agg.loc[idx, "time_share"] = sub["critical_time_s"] / max(
            sub["critical_time_s"].sum(), 1e-12)
        agg.loc[idx, "energy_share"] = sub["energy_j"] / max(sub["energy_j"].sum(), 1e-12)
    agg["participation"] = agg["completed"] / agg["invited"].where(agg["invited"] > 0)
    order = sorted(device_colors(agg["device_class"]))
    panels = (("critical_share", "Critical (last) client", "share of rounds"),
              ("time_share", "Share of round time", "share of total round time"),
              ("participation", "Participation", "completed / invited"),
              ("energy_share", "Share of client energy", "share of energy"))
    fig = make_subplots(rows=1, cols=4, horizontal_spacing=0.06,
                        subplot_titles=[p[1] for p in panels])
    colors = device_colors(order)
    groups = list(dict.fromkeys(agg["group"]))
    for i, g in enumerate(groups):
        sub = agg[agg["group"] == g]
        color = RUN_COLORS[i % len(RUN_COLORS)]
        one = len(groups) == 1
        custom = np.column_stack([sub["critical_rounds"], sub["invited"], sub["completed"],
                                  sub["energy_j"] / 1e3])
        for col, (key, _t, _y) in enumerate(panels, start=1):
            fig.add_trace(go.Bar(
                x=sub["device_class"], y=sub[key], name=g or "run", legendgroup=g,
                showlegend=col == 1 and not one, customdata=custom,
                marker={"color": [colors[c] for c in sub["device_class"]] if one else color},
                hovertemplate=(f"{g + '<br>' if g else ''}%{{x}}: %{{y:.1%}}<br>critical in "
                               "%{customdata[0]:,.0f} rounds · %{customdata[2]:,.0f} of "
                               "%{customdata[1]:,.0f} invitations completed · "
                               "%{customdata[3]:,.1f} kJ<extra></extra>")), row=1, col=col)
    base_layout(fig, title, height=420, legend=len(groups) > 1)
    fig.update_layout(barmode="group", bargap=0.2)
    fig.update_xaxes(categoryorder="array", categoryarray=order, tickangle=-35)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    for col, (_k, _t, ylab) in enumerate(panels, start=1):
        fig.update_yaxes(title_text=ylab if col == 1 else None, row=1, col=col)
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
