"""`fedfleet runs`: list runs (complete and unfinished) with their key results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not runs_dir.is_dir():
        return out
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        row: dict[str, Any] = {"name": d.name, "path": str(d)}
        man = d / "manifest.json"
        if man.exists():
            try:
                m = json.loads(man.read_text())
            except (OSError, ValueError):
                row["status"] = "unreadable"
                out.append(row)
                continue
            row.update(status="complete", rounds=m.get("rounds"), population=m.get("population"),
                       sim_end_s=m.get("sim_end_s"), final_accuracy=m.get("final_accuracy"),
                       wall_s=m.get("wall_s"), started_at=m.get("started_at"))
        elif d.name.endswith(".partial"):
            done = 0
            for part in (d / "parts").glob("rounds-*.parquet"):
                done += pq.ParquetFile(part).metadata.num_rows
            row.update(status="unfinished", rounds_done=done)
        else:
            continue
        out.append(row)
    return out


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
