"""Secure-aggregation overhead and hierarchical (edge/cloud) timing panels.

Read only from rounds.parquet / clients.parquet columns (docs/privacy-hierarchy.md):
secagg_bytes_up/down, secagg_client_s, secagg_failed per round; tier, cloud_round, edge_round_s,
backhaul_s, cloud_wait_s per round and edge_id per client for hierarchical runs.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboards import aggregates as A
from dashboards.style import base_layout, bytes_unit, device_colors

SECAGG_COLUMNS = ["secagg_failed", "secagg_participants", "secagg_threshold", "secagg_bytes_up",
                  "secagg_bytes_down", "secagg_client_s", "secagg_server_s"]
HIERARCHY_COLUMNS = ["cloud_round", "edges_active", "edge_round_s", "backhaul_s", "cloud_wait_s",
                     "backhaul_bytes"]


def _has(df: pd.DataFrame, *cols: str) -> bool:
    return all(c in df.columns for c in cols) and len(df) > 0


def secagg_figure(rounds: pd.DataFrame) -> go.Figure | None:
    """Per round: secure-aggregation bytes (bars) and client seconds; failed rounds in red."""
    if not _has(rounds, "round", "secagg_bytes_up", "secagg_bytes_down", "secagg_failed"):
        return None
    r = A.thin_rounds(rounds)
    total = r["secagg_bytes_up"].fillna(0) + r["secagg_bytes_down"].fillna(0)
    unit, div = bytes_unit(float(total.max() or 1.0))
    failed = r["secagg_failed"].fillna(False).astype(bool)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("Secure-aggregation traffic per round",
                                        "Extra seconds (per client, and server)"))
    fig.add_trace(go.Bar(x=r["round"], y=total / div, name="secagg bytes",
                         marker={"color": ["#d62728" if f else "#4e79a7" for f in failed]},
                         customdata=r[["secagg_participants", "secagg_threshold"]]
                         if _has(r, "secagg_participants", "secagg_threshold") else None,
                         hovertemplate=f"round %{{x}}: %{{y:.3g}} {unit}<br>survivors "
                                       "%{customdata[0]} / threshold %{customdata[1]}"
                                       "<extra></extra>"), row=1, col=1)
    if _has(r, "secagg_client_s"):
        fig.add_trace(go.Scatter(x=r["round"], y=r["secagg_client_s"], mode="lines",
                                 name="client s", line={"color": "#f28e2b"}), row=1, col=2)
    if _has(r, "secagg_server_s"):
        fig.add_trace(go.Scatter(x=r["round"], y=r["secagg_server_s"], mode="lines",
                                 name="server s", line={"color": "#59a14f"}), row=1, col=2)
    fig.update_xaxes(title_text="round (red: failed, survivors below the threshold)", row=1, col=1)
    fig.update_yaxes(title_text=f"extra traffic ({unit})", row=1, col=1)
    fig.update_xaxes(title_text="round", row=1, col=2)
    fig.update_yaxes(title_text="simulated seconds", rangemode="tozero", row=1, col=2)
    return base_layout(fig, f"Secure aggregation: {int(failed.sum())} of {len(rounds)} rounds "
                            "failed", height=380)


def hierarchy_figure(rounds: pd.DataFrame, clients: pd.DataFrame) -> go.Figure | None:
    """Per cloud round: slowest edge round, backhaul and cloud wait; clients per edge by class."""
    if not _has(rounds, "tier", "cloud_round", "edge_round_s", "backhaul_s", "cloud_wait_s"):
        return None
    cloud = rounds[rounds["tier"].astype(str) == "cloud"]
    edge = rounds[rounds["tier"].astype(str) == "edge"]
    per = edge.groupby("cloud_round")["edge_round_s"].sum() if len(edge) else pd.Series(dtype=float)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("Time per cloud round, by tier",
                                        "Clients invited per edge aggregator"))
    x = cloud["cloud_round"]
    parts = (("edge rounds (slowest edge each)",
              per.reindex(x).fillna(0).to_numpy() + cloud["edge_round_s"].to_numpy(), "#4e79a7"),
             ("edge -> cloud backhaul", cloud["backhaul_s"].to_numpy(), "#f28e2b"),
             ("cloud waits for the slowest edge", cloud["cloud_wait_s"].to_numpy(), "#bab0ac"))
    for name, y, color in parts:
        fig.add_trace(go.Bar(x=x, y=y, name=name, marker={"color": color},
                             hovertemplate="cloud round %{x}: %{y:.1f} s<extra>" + name
                                           + "</extra>"), row=1, col=1)
    if _has(clients, "edge_id", "device_class"):
        counts = clients.groupby(["edge_id", "device_class"], observed=True).size().unstack(
            fill_value=0)
        colors = device_colors(counts.columns)
        for cls in counts.columns:
            fig.add_trace(go.Bar(x=counts.index.astype(int), y=counts[cls], name=str(cls),
                                 marker={"color": colors[str(cls)]}), row=1, col=2)
    fig.update_xaxes(title_text="cloud round", row=1, col=1)
    fig.update_yaxes(title_text="simulated seconds", row=1, col=1)
    fig.update_xaxes(title_text="edge aggregator", row=1, col=2)
    fig.update_yaxes(title_text="client invitations", row=1, col=2)
    base_layout(fig, "Hierarchy: clients -> edge aggregators -> cloud", height=420)
    fig.update_layout(barmode="stack")
    return fig
