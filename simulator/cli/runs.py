"""`fedfleet runs`: the table of runs (complete and unfinished) with their key results.

Listing is library code (simulator/io/runs_index.py ``list_runs``); printing is the CLI's.
"""

from __future__ import annotations

import sys
from typing import Any

from simulator.io.runs_index import list_runs

__all__ = ["list_runs", "print_runs"]


def print_runs(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="FedFleet runs")
    for col in ("name", "status", "rounds", "clients", "sim time", "final acc", "wall"):
        t.add_column(col)
    for r in rows:
        acc = r.get("final_accuracy")
        sim = r.get("sim_end_s")
        t.add_row(
            r["name"], r.get("status", ""),
            str(r.get("rounds", r.get("rounds_done", ""))), str(r.get("population", "")),
            f"{sim / 3600:.2f} h" if isinstance(sim, (int, float)) else "",
            f"{acc:.3f}" if isinstance(acc, (int, float)) else "",
            f"{r['wall_s']:.1f} s" if isinstance(r.get("wall_s"), (int, float)) else "",
        )
    Console(width=None if sys.stdout.isatty() else 160).print(t if rows else "no runs found")
