"""Per-round client timeline (Gantt) with a round slider.

One horizontal bar per client and phase (download, compute, upload: the part really done before
the client stopped), clients sorted by stop time, x = seconds after the round started. Clients
that did not complete are drawn faded and marked at their stop time with a symbol per outcome.
The slider switches between at most ``max_rounds`` evenly spaced rounds; at most ``max_clients``
clients per round are drawn (evenly spaced in stop-time order, so the fastest and the slowest are
always there).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboards import aggregates as A
from dashboards.style import (
    MUTED, OUTCOME_COLORS, OUTCOME_SYMBOLS, PHASE_COLORS, PHASES, base_layout, color_for,
    empty_figure, time_unit,
)

FADED = 0.35


def _round_traces(sub: pd.DataFrame, div: float, unit: str, first: bool) -> list[go.BaseTraceType]:
    done = (sub["outcome"].astype(str) == "completed").to_numpy()
    opacity = np.where(done, 1.0, FADED)
    link = sub["link"].astype(str) if "link" in sub else pd.Series("", index=sub.index)
    custom = np.column_stack([sub["client_id"].to_numpy(), sub["device_class"].astype(str),
                              link.to_numpy(), sub["outcome"].astype(str)])
    y = sub["row"].to_numpy()
    traces: list[go.BaseTraceType] = []
    start = sub["t0"].to_numpy(float)
    for p in PHASES:
        length = sub[p].to_numpy(float)
        traces.append(go.Bar(
            x=length / div, base=start / div, y=y, orientation="h", name=p, legendgroup=p,
            showlegend=True, visible=first, customdata=custom,
            marker={"color": PHASE_COLORS[p], "opacity": opacity, "line": {"width": 0}},
            hovertemplate=(f"client %{{customdata[0]}} · %{{customdata[1]}} · %{{customdata[2]}}"
                           f"<br>outcome: %{{customdata[3]}}<br>{p}: %{{x:.2f}} {unit} "
                           f"(from %{{base:.2f}})<extra></extra>")))
        start = start + length
    stop = sub["t0"].to_numpy(float) + sub[list(PHASES)].sum(axis=1).to_numpy(float)
    outcome = sub["outcome"].astype(str).to_numpy()
    for i, o in enumerate(sorted(set(outcome) - {"completed"})):
        m = outcome == o
        traces.append(go.Scatter(
            x=stop[m] / div, y=y[m], mode="markers", name=o, legendgroup=f"o-{o}",
            visible=first, customdata=custom[m],
            marker={"symbol": OUTCOME_SYMBOLS.get(o, "circle"), "size": 8,
                    "color": color_for(OUTCOME_COLORS, o, i),
                    "line": {"width": 1.5, "color": color_for(OUTCOME_COLORS, o, i)}},
            hovertemplate=("client %{customdata[0]} · %{customdata[1]}<br>"
                           f"{o} at %{{x:.2f}} {unit}<extra></extra>")))
    return traces


def timeline_figure(clients: pd.DataFrame, rounds: pd.DataFrame, max_rounds: int = 40,
                    max_clients: int = 200) -> go.Figure:
    """Gantt chart of sampled clients in sampled rounds, with a round slider."""
    title = "Client timeline per round"
    need = {"round", "client_id", "device_class", "outcome", "start_s", "stop_s", "download_s",
            "compute_s", "upload_s"}
    if not len(clients) or not need <= set(clients.columns):
        return empty_figure(title, "no clients recorded yet")
    sample = A.sample_timeline(clients, rounds, max_rounds=max_rounds, max_clients=max_clients)
    if not len(sample):
        return empty_figure(title, "no clients recorded yet")
    dur = (rounds.set_index("round")["duration_s"]
           if {"round", "duration_s"} <= set(rounds.columns) else pd.Series(dtype=float))
    span = sample["t0"] + sample[list(PHASES)].sum(axis=1)
    unit, div = time_unit(max(span.max(), dur.max() if len(dur) else 0.0))
    invited = clients.groupby("round").size()

    fig = go.Figure()
    groups: list[tuple[int, int, int]] = []  # (round, first trace index, trace count)
    round_ids = list(dict.fromkeys(sample["round"].tolist()))
    for k, (r, sub) in enumerate(sample.groupby("round", sort=True)):
        traces = _round_traces(sub, div, unit, first=k == 0)
        groups.append((int(r), len(fig.data), len(traces)))
        fig.add_traces(traces)
    n = len(fig.data)

    def _layout_for(r: int, shown: int) -> dict:
        end = float(dur.get(r, np.nan)) if len(dur) else float("nan")
        shapes, notes = [], []
        if end == end:
            shapes.append({"type": "line", "x0": end / div, "x1": end / div, "yref": "paper",
                           "y0": 0, "y1": 1, "line": {"color": MUTED, "width": 1.5,
                                                       "dash": "dash"}})
            notes.append({"x": end / div, "y": 1.0, "yref": "paper", "yanchor": "bottom",
                          "text": "round end", "showarrow": False,
                          "font": {"size": 11, "color": MUTED}})
        total = int(invited.get(r, shown))
        sub_t = (f"Client timeline, round {r}: {shown} of {total} invited clients"
                 if shown < total else f"Client timeline, round {r}: {total} invited clients")
        return {"shapes": shapes, "annotations": notes, "title.text": sub_t}

    steps = []
    for r, first, count in groups:
        vis = [False] * n
        vis[first:first + count] = [True] * count
        shown = int((sample["round"] == r).sum())
        steps.append({"method": "update", "label": str(r),
                      "args": [{"visible": vis}, _layout_for(r, shown)]})
    base_layout(fig, title, height=620)
    r0 = groups[0][0]
    first_layout = _layout_for(r0, int((sample["round"] == r0).sum()))
    fig.update_layout(shapes=first_layout["shapes"], annotations=first_layout["annotations"],
                      title_text=first_layout["title.text"], barmode="overlay", bargap=0.2,
                      legend={"traceorder": "grouped"})
    if len(steps) > 1:
        fig.update_layout(sliders=[{
            "active": 0, "steps": steps, "x": 0.0, "len": 1.0, "y": -0.08, "yanchor": "top",
            "pad": {"t": 30, "b": 0}, "currentvalue": {"prefix": "round ", "font": {"size": 12}},
            "font": {"size": 10}, "tickcolor": "#9aa5b1",
        }], margin={"b": 120})
    fig.update_xaxes(title_text=f"simulated time since round start ({unit})", rangemode="tozero")
    fig.update_yaxes(title_text="clients, in order of stopping", autorange="reversed",
                     showticklabels=False, showgrid=False, ticks="")
    fig.layout.meta = {"timeline_rounds": round_ids}
    return fig
