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
    MUTED,
    OUTCOME_COLORS,
    OUTCOME_SYMBOLS,
    PHASE_COLORS,
    PHASES,
    VALIDATE,
    base_layout,
    color_for,
    empty_figure,
    time_unit,
)

FADED = 0.35


def _round_traces(sub: pd.DataFrame, div: float, unit: str, first: bool) -> list[dict]:
    """Plain trace dicts (up to 40 rounds x 9 traces: building plotly objects would be slow)."""
    done = (sub["outcome"].astype(str) == "completed").to_numpy()
    opacity = np.where(done, 1.0, FADED)
    link = (" · " + sub["link"].astype(str)) if "link" in sub else ""
    # one hover string per client, shared by its segments (keeps the figure small)
    custom = ("client " + sub["client_id"].astype(str) + " · " + sub["device_class"].astype(str)
              + link + "<br>outcome: " + sub["outcome"].astype(str)).to_numpy()
    y = sub["row"].to_numpy()
    traces: list[dict] = []
    for p in PHASES:
        length = sub[p].to_numpy(float)
        start = sub[f"{p}_t0"].to_numpy(float)
        traces.append(dict(
            type="bar", x=length / div, base=start / div, y=y, orientation="h", name=p,
            legendgroup=p, showlegend=True, visible=first, customdata=custom,
            marker={"color": PHASE_COLORS[p], "opacity": opacity, "line": {"width": 0}},
            hovertemplate=f"%{{customdata}}<br>{p}: %{{x:.2f}} {unit}<extra></extra>"))
    stop = sub["t_stop"].to_numpy(float)
    outcome = sub["outcome"].astype(str).to_numpy()
    for i, o in enumerate(sorted(set(outcome) - {"completed"})):
        m = outcome == o
        traces.append(dict(
            type="scatter", x=stop[m] / div, y=y[m], mode="markers", name=o, legendgroup=f"o-{o}",
            visible=first, customdata=custom[m],
            marker={"symbol": OUTCOME_SYMBOLS.get(o, "circle"), "size": 8,
                    "color": color_for(OUTCOME_COLORS, o, i),
                    "line": {"width": 1.5, "color": color_for(OUTCOME_COLORS, o, i)}},
            hovertemplate=f"%{{customdata}}<br>stopped at %{{x:.2f}} {unit}<extra></extra>"))
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
    unit, div = time_unit(max(sample["t_stop"].max(), dur.max() if len(dur) else 0.0))
    invited = clients.groupby("round").size()

    data: list[dict] = []
    groups: list[tuple[int, int, int]] = []  # (round, first trace index, trace count)
    round_ids = list(dict.fromkeys(sample["round"].tolist()))
    for k, (r, sub) in enumerate(sample.groupby("round", sort=True)):
        traces = _round_traces(sub, div, unit, first=k == 0)
        groups.append((int(r), len(data), len(traces)))
        data.extend(traces)
    n = len(data)
    fig = go.Figure(data=data, _validate=VALIDATE)

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
    fig.update_xaxes(title_text=f"simulated time since round start ({unit}); negative: started "
                                "in an earlier round" if (sample["t0"] < 0).any() else
                     f"simulated time since round start ({unit})", rangemode="tozero")
    fig.update_yaxes(title_text="clients, in order of stopping", autorange="reversed",
                     showticklabels=False, showgrid=False, ticks="")
    fig.layout.meta = {"timeline_rounds": round_ids, "role": "timeline"}
    return fig
