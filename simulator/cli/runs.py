"""`fedfleet runs`: the table of runs (complete and unfinished) with their key results.

Listing is library code (simulator/io/runs_index.py ``list_runs``); printing is the CLI's.
Trials of a sweep are listed together under their sweep, grouped by label (variant) and seed.
"""

from __future__ import annotations

import sys
from typing import Any

from simulator.io.runs_index import list_runs

__all__ = ["list_runs", "print_runs"]


def print_runs(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    sweeps = any("sweep" in r for r in rows)
    t = Table(title="FedFleet runs")
    # names are never cut: the column is as wide as the longest name
    width = max((len(str(r["name"])) for r in rows), default=4)
    t.add_column("name", no_wrap=True, min_width=width)
    if sweeps:
        t.add_column("label", no_wrap=True,
                     min_width=max((len(str(r.get("label", ""))) for r in rows), default=5))
        t.add_column("seed")
    for col in ("status", "rounds", "clients", "sim time", "final acc", "wall"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        acc = r.get("final_accuracy")
        sim = r.get("sim_end_s")
        extra = [str(r.get("label", "")), "" if r.get("seed") is None else str(r["seed"])] \
            if sweeps else []
        t.add_row(
            r["name"], *extra, r.get("status", ""),
            str(r.get("rounds", r.get("rounds_done", ""))), str(r.get("population", "")),
            f"{sim / 3600:.2f} h" if isinstance(sim, (int, float)) else "",
            f"{acc:.3f}" if isinstance(acc, (int, float)) else "",
            f"{r['wall_s']:.1f} s" if isinstance(r.get("wall_s"), (int, float)) else "",
        )
    # without a terminal, wide enough for every column (a pipe or a log never truncates)
    Console(width=None if sys.stdout.isatty() else 400).print(t if rows else "no runs found")
