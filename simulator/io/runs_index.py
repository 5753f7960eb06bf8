"""Runs in a runs directory (complete and unfinished) with their key results; `fedfleet runs`
prints them (simulator/cli/runs.py).

A sweep directory (``NAME/sweep.json``, written by `fedfleet sweep`) is listed as its trials,
named ``NAME/TRIAL`` and carrying ``sweep``, ``label`` (the variant without its seed) and
``seed``, so a listing groups them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _run_row(d: Path, name: str) -> dict[str, Any] | None:
    row: dict[str, Any] = {"name": name, "path": str(d)}
    man = d / "manifest.json"
    if man.exists():
        try:
            m = json.loads(man.read_text())
        except (OSError, ValueError):
            row["status"] = "unreadable"
            return row
        row.update(status="complete", rounds=m.get("rounds"), population=m.get("population"),
                   sim_end_s=m.get("sim_end_s"), final_accuracy=m.get("final_accuracy"),
                   wall_s=m.get("wall_s"), started_at=m.get("started_at"))
    elif d.name.endswith(".partial"):
        done = 0
        for part in (d / "parts").glob("rounds-*.parquet"):
            try:
                done += pq.ParquetFile(part).metadata.num_rows
            except (OSError, pa.ArrowException):  # a chunk being replaced right now
                continue
        row.update(status="unfinished", rounds_done=done)
    else:
        return None
    return row


def _subdirs(d: Path, skip: tuple[str, ...] = (".",)) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(skip))


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not runs_dir.is_dir():
        return out
    for d in _subdirs(runs_dir):
        if (d / "sweep.json").exists() and not (d / "manifest.json").exists():
            meta = _read_json(d / "sweep.json")
            variants = {str(v.get("name")): v for v in meta.get("variants", [])
                        if isinstance(v, dict)}
            trials = []
            for t in _subdirs(d, (".", "_")):  # _tune: Ray Tune's own files
                row = _run_row(t, f"{d.name}/{t.name}")
                if row is None:
                    continue
                v = variants.get(t.name[: -len(".partial")] if t.name.endswith(".partial")
                                 else t.name, {})
                row.update(sweep=d.name, label=v.get("label", t.name), seed=v.get("seed"))
                trials.append(row)
            # grouped: a label's seeds together, in seed order
            trials.sort(key=lambda r: (str(r["label"]), r["seed"] if isinstance(r["seed"], int)
                                       else -1, r["name"]))
            out.extend(trials)
            continue
        row = _run_row(d, d.name)
        if row is not None:
            out.append(row)
    return out
