"""Runs in a runs directory (complete and unfinished) with their key results; `fedfleet runs`
prints them (simulator/cli/runs.py)."""

from __future__ import annotations

import json
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

