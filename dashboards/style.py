"""Shared look of every dashboard figure: colours, units and the plotly layout template.

Colours are fixed per device class, phase, outcome and workload so that the same thing has the
same colour in every panel (and in every dashboard). Unknown device classes get colours from a
spare palette in sorted-name order, so a given set of classes always gets the same colours.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import plotly.graph_objects as go

# Figures with many traces are built from plain dicts without plotly's per-property validation
# (much faster); FEDFLEET_VALIDATE_FIGURES=1 turns validation back on (the tests do).
VALIDATE = os.environ.get("FEDFLEET_VALIDATE_FIGURES") == "1"

FONT = "Inter, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
INK = "#1f2933"
MUTED = "#616e7c"
GRID = "#e4e7eb"

DEVICE_COLORS: dict[str, str] = {
    "phone-lowend": "#e15759",
    "phone-midrange": "#ff9d9a",
    "phone-flagship": "#f28e2b",
    "phone-flagship-android": "#ffbe7d",
    "tablet": "#edc948",
    "rpi4": "#59a14f",
    "rpi5": "#8cd17d",
    "jetson-orin-nano": "#499894",
    "jetson-agx-orin": "#86bcb6",
    "laptop-cpu": "#4e79a7",
    "laptop-rtx4060": "#a0cbe8",
    "edge-server-l4": "#b07aa1",
    "cloud-a100": "#9d7660",
}
SPARE_COLORS = ["#76b7b2", "#d37295", "#bab0ac", "#79706e", "#d4a6c8", "#fabfd2", "#b6992d",
                "#f1ce63", "#d7b5a6", "#17becf", "#bcbd22", "#7f7f7f"]

PHASE_COLORS: dict[str, str] = {
    "download": "#4e79a7",
    "compute": "#f28e2b",
    "upload": "#59a14f",
    "waiting": "#c9ced6",
}
PHASES = ("download", "compute", "upload")

OUTCOMES = ("completed", "dropped", "offline", "straggler", "overcommitted", "out_of_memory",
            "low_battery")
OUTCOME_COLORS: dict[str, str] = {
    "completed": "#59a14f",
    "dropped": "#e15759",
    "offline": "#9c755f",
    "straggler": "#b6992d",
    "overcommitted": "#8c9db5",
    "out_of_memory": "#b07aa1",
    "low_battery": "#edc948",
}
OUTCOME_SYMBOLS: dict[str, str] = {
    "dropped": "x",
    "offline": "circle-open",
    "straggler": "triangle-left",
    "overcommitted": "diamond-tall",
    "out_of_memory": "square",
    "low_battery": "diamond",
}

WORKLOADS = ("full", "lora", "partial", "split", "width", "none")
WORKLOAD_COLORS: dict[str, str] = {
    "full": "#4e79a7",
    "lora": "#f28e2b",
    "partial": "#59a14f",
    "split": "#b07aa1",
    "width": "#76b7b2",
    "none": "#bab0ac",
}
SEQUENTIAL = ["#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b"]
RUN_COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
              "#ff9da7", "#9c755f", "#bab0ac"]


def device_colors(classes: Iterable[str]) -> dict[str, str]:
    """Colour per device class: fixed for known profiles, spare palette (sorted) for the rest."""
    out: dict[str, str] = {}
    spare = iter(SPARE_COLORS * 10)
    for c in sorted({str(c) for c in classes}):
        out[c] = DEVICE_COLORS.get(c) or next(spare)
    return out


def color_for(mapping: dict[str, str], key: str, i: int = 0) -> str:
    return mapping.get(key, SPARE_COLORS[i % len(SPARE_COLORS)])


def hex_rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# --- units ----------------------------------------------------------------------------------------
def time_unit(max_seconds: float) -> tuple[str, float]:
    """Display unit for a span of simulated seconds: (label, divisor)."""
    m = float(max_seconds) if max_seconds == max_seconds else 0.0
    if m < 120:
        return "s", 1.0
    if m < 7200:
        return "min", 60.0
    if m < 3 * 86400:
        return "h", 3600.0
    return "days", 86400.0


def bytes_unit(max_bytes: float) -> tuple[str, float]:
    m = float(max_bytes) if max_bytes == max_bytes else 0.0
    for label, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if m >= div:  # 5 TB, not 5000 GB
            return label, div
    return ("MB", 1e6) if m >= 1e5 else ("kB", 1e3)


def energy_unit(max_joules: float) -> tuple[str, float]:
    m = float(max_joules) if max_joules == max_joules else 0.0
    for label, div in (("GJ", 1e9), ("MJ", 1e6), ("kJ", 1e3)):
        if m >= 10 * div:
            return label, div
    return ("kJ", 1e3) if m >= 100 else ("J", 1.0)


def fmt_duration(s: float | None) -> str:
    if s is None or s != s:
        return "–"
    s = float(s)
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.2f} h"
    return f"{s / 86400:.2f} days"


# --- layout ---------------------------------------------------------------------------------------
def base_layout(fig: go.Figure, title: str, height: int = 420, legend: bool = True) -> go.Figure:
    """Apply the common look to ``fig`` and return it."""
    top = 12 / height  # title on the first line, legend on the second (container coordinates)
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left", "xref": "container", "pad": {"l": 8},
               "y": 1 - top, "yanchor": "top", "yref": "container",
               "font": {"size": 16, "color": INK}},
        font={"family": FONT, "size": 12, "color": INK},
        paper_bgcolor="white",
        plot_bgcolor="white",
        height=height,
        margin={"l": 64, "r": 24, "t": 96, "b": 56},
        hovermode="closest",
        showlegend=legend,
        legend={"orientation": "h", "yref": "container", "yanchor": "top", "y": 1 - 42 / height,
                "xanchor": "right", "x": 1.0,
                "bgcolor": "rgba(255,255,255,0)", "font": {"size": 11}},
        hoverlabel={"font": {"family": FONT}},
    )
    fig.update_xaxes(showgrid=True, gridcolor=GRID, zeroline=False, linecolor="#9aa5b1",
                     ticks="outside", tickcolor="#9aa5b1", title_font={"size": 12, "color": MUTED})
    fig.update_yaxes(showgrid=True, gridcolor=GRID, zeroline=False, linecolor="#9aa5b1",
                     ticks="outside", tickcolor="#9aa5b1", title_font={"size": 12, "color": MUTED})
    fig.update_annotations(font={"size": 13, "color": INK})
    return fig


def round_ticks(n_rounds: int) -> dict:
    """Axis settings for a round-number axis: whole numbers only."""
    return {"dtick": 1} if n_rounds <= 12 else {"tickformat": ",d"}


def empty_figure(title: str, message: str, height: int = 260) -> go.Figure:
    """A figure that says why there is nothing to show (it still carries one empty trace)."""
    fig = go.Figure(go.Scatter(x=[], y=[], mode="markers", showlegend=False))
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 13, "color": MUTED})
    base_layout(fig, title, height=height, legend=False)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def menu_y(height: int, top: int = 120, bottom: int = 56, from_top: int = 64) -> float:
    """Paper y of a button row ``from_top`` pixels below the figure's top edge (updatemenus
    have no container coordinates), for a figure of ``height`` with margins ``top``/``bottom``."""
    return 1.0 + (top - from_top) / max(height - top - bottom, 1)
