"""Read run directories (complete or in progress) into pandas, touching only the needed columns.

This module never imports the simulator: a run is just files.

- a complete run ``NAME/`` holds ``rounds.parquet``, ``clients.parquet`` and ``manifest.json``;
- an unfinished run ``NAME.partial/`` holds ``scenario.json`` and chunks
  ``parts/rounds-FIRST-LAST.parquet`` / ``parts/clients-FIRST-LAST.parquet``.

String columns are read as pandas categoricals (parquet dictionaries), which keeps group-bys over
millions of client rows fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

STRING_COLUMNS = ("device_class", "link", "outcome", "workload", "tier")
EXTRA_ASSIGNMENT_COLUMNS = ("rank", "blocks", "cut", "width", "tier")

# Columns the single-run dashboard reads (optional ones only when present).
ROUND_READ = ["round", "sim_start_s", "sim_end_s", "duration_s", "wall_s", "selected",
              "completed", "dropped", "offline", "straggled", "overcommitted", "out_of_memory",
              "low_battery", "accuracy", "loss", "train_loss", "bytes_down", "bytes_up",
              "energy_j", "wasted_device_s", "epsilon", "tier",
              # secure aggregation and hierarchy (dashboards/secagg_hierarchy.py)
              "secagg_failed", "secagg_participants", "secagg_threshold", "secagg_bytes_up",
              "secagg_bytes_down", "secagg_client_s", "secagg_server_s", "cloud_round",
              "edges_active", "edge_round_s", "backhaul_s", "cloud_wait_s", "backhaul_bytes"]
PHASE_EVENT_COLUMNS = ["download_start_s", "download_end_s", "compute_start_s", "compute_end_s",
                       "upload_start_s", "upload_end_s"]
CLIENT_READ = ["round", "client_id", "device_class", "link", "outcome", "workload", "n_samples",
               "start_s", "stop_s", "download_s", "compute_s", "upload_s", "bytes_down",
               "bytes_up", "energy_j", *EXTRA_ASSIGNMENT_COLUMNS, *PHASE_EVENT_COLUMNS, "staleness",
               "edge_id"]
# Columns the comparison dashboard reads.
COMPARE_ROUND_READ = ["round", "sim_start_s", "sim_end_s", "duration_s", "wall_s", "accuracy",
                      "energy_j", "wasted_device_s"]
COMPARE_CLIENT_READ = ["round", "client_id", "device_class", "outcome", "stop_s", "download_s",
                       "compute_s", "upload_s", "energy_j"]


@dataclass
class RunData:
    name: str
    path: Path
    status: str  # "complete" | "running"
    manifest: dict[str, Any] = field(default_factory=dict)
    rounds: pd.DataFrame = field(default_factory=pd.DataFrame)
    clients: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def scenario(self) -> dict[str, Any]:
        sc = self.manifest.get("scenario")
        return sc if isinstance(sc, dict) else self.manifest

    @property
    def population(self) -> int | None:
        pop = self.manifest.get("population")
        if isinstance(pop, (int, float)):
            return int(pop)
        p = self.scenario.get("population")
        if isinstance(p, dict) and isinstance(p.get("size"), (int, float)):
            return int(p["size"])
        return None

    @property
    def group(self) -> str | None:
        """The label runs are grouped by: the manifest's, else the sweep variant's (the seeds of
        one variant of a sweep form one group)."""
        g = self.manifest.get("group") or self.scenario.get("group")
        if not g:
            g = sweep_variant(self.path).get("label")
        return str(g) if g else None


def run_name(path: Path) -> str:
    n = path.name
    return n[: -len(".partial")] if n.endswith(".partial") else n


def read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """manifest.json of a complete run; for an unfinished one, one built from scenario.json."""
    man = read_json(run_dir / "manifest.json")
    if man:
        return man
    sc = read_json(run_dir / "scenario.json")
    if not sc:
        return {"name": run_name(run_dir)}
    return {"name": sc.get("name", run_name(run_dir)), "scenario": sc, "seed": sc.get("seed"),
            "rounds": sc.get("rounds"), "status": "running"}


def _chunks(run_dir: Path, prefix: str) -> list[Path]:
    """Round chunks of an unfinished run, skipping any chunk whose rounds an earlier one covers."""
    parts = []
    for p in (run_dir / "parts").glob(f"{prefix}-*.parquet"):
        try:
            first, last = (int(x) for x in p.stem.split("-", 1)[1].split("-"))
        except ValueError:
            continue
        parts.append((first, -last, p))
    out, covered = [], -1
    for _first, neg_last, p in sorted(parts):
        if -neg_last <= covered:
            continue
        out.append(p)
        covered = max(covered, -neg_last)
    return out


def read_columns(paths: list[Path], wanted: list[str]) -> pd.DataFrame:
    """Read the ``wanted`` columns that exist from one or more parquet files."""
    tables = []
    for p in paths:
        try:
            names = pq.read_schema(p).names
            cols = [c for c in wanted if c in names]
            dict_cols = [c for c in cols if c in STRING_COLUMNS]
            tables.append(pq.read_table(p, columns=cols, read_dictionary=dict_cols))
        except (OSError, pa.ArrowException):
            continue  # a chunk being replaced right now; the next refresh picks it up
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in wanted[:1]})
    if len(tables) == 1:
        table = tables[0]
    else:
        table = pa.concat_tables(tables, promote_options="permissive").unify_dictionaries()
    df = table.to_pandas()
    for c in STRING_COLUMNS:
        if c in df.columns and not isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype("category")
    return df


def table_paths(run_dir: Path, table: str) -> list[Path]:
    full = run_dir / f"{table}.parquet"
    if full.exists():
        return [full]
    return _chunks(run_dir, table)


def load_run(run_dir: str | Path, rounds_cols: list[str] | None = None,
             clients_cols: list[str] | None = None) -> RunData:
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    status = "complete" if (run_dir / "manifest.json").exists() else "running"
    rounds = read_columns(table_paths(run_dir, "rounds"), rounds_cols or ROUND_READ)
    if "round" in rounds.columns and len(rounds):
        rounds = rounds.drop_duplicates("round", keep="last").sort_values("round")
        rounds = rounds.reset_index(drop=True)
    clients = read_columns(table_paths(run_dir, "clients"), clients_cols or CLIENT_READ)
    return RunData(name=run_name(run_dir), path=run_dir,
                   status=status, manifest=manifest, rounds=rounds, clients=clients)


def signature(run_dir: Path) -> str:
    """Cheap change detector for a run directory: a digest of file names, sizes and mtimes.

    A string, so it survives a JSON round trip through the browser unchanged (nanosecond
    mtimes are beyond JavaScript's exact integers).
    """
    files = [run_dir / "manifest.json", run_dir / "rounds.parquet", run_dir / "clients.parquet"]
    parts = run_dir / "parts"
    if parts.is_dir():
        files += sorted(parts.glob("*.parquet"))
    sig = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        sig.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("|".join(sig).encode()).hexdigest()


def _run_entry(d: Path, name: str) -> dict[str, Any] | None:
    if (d / "manifest.json").exists():
        m = read_json(d / "manifest.json")
        return {"name": name, "path": str(d), "status": "complete",
                "rounds": m.get("rounds"), "final_accuracy": m.get("final_accuracy"),
                "sim_end_s": m.get("sim_end_s")}
    if d.name.endswith(".partial"):
        done = 0
        for part in _chunks(d, "rounds"):
            with contextlib.suppress(OSError, pa.ArrowException):
                done += pq.ParquetFile(part).metadata.num_rows
        sc = read_json(d / "scenario.json")
        return {"name": name, "path": str(d), "status": "running",
                "rounds": sc.get("rounds"), "rounds_done": done}
    return None


def _subdirs(d: Path, skip: tuple[str, ...] = (".",)) -> list[Path]:
    try:
        return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(skip))
    except OSError:
        return []


def sweep_variant(run_dir: Path) -> dict[str, Any]:
    """The sweep variant (``label``, ``seed``) a trial directory ``SWEEP/TRIAL`` ran, from
    ``SWEEP/sweep.json``; empty for a run outside a sweep."""
    meta = read_json(run_dir.parent / "sweep.json")
    name = run_name(run_dir)
    for v in meta.get("variants", []) if isinstance(meta.get("variants"), list) else []:
        if isinstance(v, dict) and v.get("name") == name:
            return {"sweep": run_dir.parent.name, "label": str(v.get("label", name)),
                    "seed": v.get("seed")}
    return {"sweep": run_dir.parent.name, "label": name, "seed": None} if meta else {}


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Runs in ``runs_dir``: complete ones (manifest.json) and unfinished ``*.partial`` ones.

    The trials of a sweep (``NAME/sweep.json``) are listed as ``NAME/TRIAL`` with ``sweep``,
    ``label`` and ``seed``, a label's seeds next to each other."""
    runs_dir = Path(runs_dir)
    out: list[dict[str, Any]] = []
    if not runs_dir.is_dir():
        return out
    for d in _subdirs(runs_dir):
        if (d / "sweep.json").exists() and not (d / "manifest.json").exists():
            trials = []
            for t in _subdirs(d, (".", "_")):  # _tune: Ray Tune's own files
                e = _run_entry(t, f"{d.name}/{t.name}")
                if e is not None:
                    trials.append({**e, **sweep_variant(t)})
            trials.sort(key=lambda e: (e["label"], e["seed"] if isinstance(e["seed"], int)
                                       else -1, e["name"]))
            out.extend(trials)
            continue
        e = _run_entry(d, d.name)
        if e is not None:
            out.append(e)
    return out
