"""Export a complete run to the tools people use: TensorBoard event files, an MLflow store, CSV.

Every numeric column of ``rounds.parquet`` (accuracy, loss, train_loss, duration_s, bytes_up,
energy_j, wasted_device_s, completed, ...) becomes one per-round scalar series:

- **TensorBoard** (``tensorboard`` package, its own ``EventFileWriter`` and protos; no torch):
  ``round/<column>`` with step = the round (0-based, as in ``rounds.parquet``) and
  ``sim_time/<column>`` with step = simulated seconds at the round's end (rounded to whole
  seconds). Every event's wall time is the run's start plus the simulated time, so TensorBoard's
  *relative* x-axis also reads simulated time. Values are float32 (TensorBoard's
  ``simple_value``). NaN values (a round that was not evaluated) are left out.
- **MLflow** (``mlflow-skinny``'s ``MlflowClient``): one MLflow run per FedFleet run in an
  experiment (default ``fedfleet``); metric ``<column>`` with step = the round and timestamp =
  start + simulated time (``sim_end_s`` is itself a metric, for an x-axis by simulated time);
  the scenario flattened into params; manifest.json and rounds.parquet as artifacts. By default
  a file store in the output directory (``file:`` URI; MLflow 3 keeps that backend in
  maintenance mode and asks for ``MLFLOW_ALLOW_FILE_STORE=true``, which is set while exporting),
  or any tracking URI (``sqlite:///...``, ``http://...``).
- **CSV**: ``rounds.csv``, ``clients.csv`` and ``manifest.json``, every value as recorded.

The output directory is never overwritten unless asked (``overwrite=True``), and then only when
it is an earlier export (it holds ``.fedfleet-export.json``): nothing else is ever deleted.
``tensorboard`` and ``mlflow`` are imported only inside the function that needs them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from simulator import FedFleetError, InputError

FORMATS = ("tensorboard", "mlflow", "csv")
DEFAULT_DIR = {"tensorboard": "tensorboard", "mlflow": "mlruns", "csv": "csv"}
MARKER = ".fedfleet-export.json"
MLFLOW_PARAM_MAX = 6000  # characters in an MLflow param value
MLFLOW_BATCH = 1000  # metrics + params + tags in one log_batch


def _need(module: str, fmt: str, package: str) -> None:
    """A missing optional library is a one-line error naming what to install."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InputError("--to", f"{fmt} needs the '{package}' package (pip install "
                                 f"'{package}', or the 'export' extra: pip install "
                                 "'fedfleet[export]')")


def check_run(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise InputError("RUN", f"'{run_dir}' does not exist")
    if not (run_dir / "manifest.json").exists() or not (run_dir / "rounds.parquet").exists():
        how = (f"; finish it with `fedfleet resume {run_dir}`"
               if run_dir.name.endswith(".partial") else "")
        raise InputError("RUN", f"'{run_dir}' is not a complete run (no manifest.json and "
                                f"rounds.parquet){how}")


def scalar_columns(table: pa.Table) -> list[str]:
    """The per-round numeric columns, in table order (``round`` is the step, not a scalar)."""
    return [f.name for f in table.schema if f.name != "round"
            and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))]


def start_epoch(manifest: dict[str, Any], run_dir: Path) -> float:
    """The run's start as Unix seconds (manifest ``started_at``; else the manifest's mtime)."""
    try:
        return datetime.fromisoformat(str(manifest["started_at"])).timestamp()
    except (KeyError, ValueError):
        return (run_dir / "manifest.json").stat().st_mtime


def _series(table: pa.Table, col: str) -> Iterator[tuple[int, float, float]]:
    """(round, sim_end_s, value) for the non-NaN, non-null values of ``col``."""
    rounds = table.column("round").to_pylist()
    ends = table.column("sim_end_s").to_pylist()
    for r, e, v in zip(rounds, ends, table.column(col).to_pylist(), strict=True):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        yield int(r), float(e), float(v)


@contextlib.contextmanager
def _claim(out: Path, overwrite: bool) -> Iterator[Path]:
    """``out`` free to write: refuses an existing directory unless ``overwrite`` and it is an
    earlier export; an earlier export is moved aside and deleted only once the new one is
    written (put back on failure). A failed export leaves nothing behind."""
    old: Path | None = None
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise InputError("--out", f"'{out}' already exists; choose another --out or pass "
                                      "--overwrite to replace an earlier export")
        if not (out / MARKER).exists():
            raise InputError("--out", f"'{out}' exists and is not a fedfleet export (no {MARKER})"
                                      "; it is never replaced: choose another --out")
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        out.rename(old)
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _marker(out: Path, fmt: str, runs: list[Path]) -> None:
    (out / MARKER).write_text(json.dumps({"format": fmt, "runs": [str(r) for r in runs]},
                                         indent=2))


def _load(run_dir: Path) -> tuple[dict[str, Any], pa.Table]:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return manifest, pq.read_table(run_dir / "rounds.parquet")


# --- TensorBoard ----------------------------------------------------------------------------------
def write_tensorboard(run_dir: Path, logdir: Path) -> int:
    """Event file for one run in ``logdir``; returns the number of scalar events written."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    manifest, table = _load(run_dir)
    t0 = start_epoch(manifest, run_dir)
    writer = EventFileWriter(str(logdir), filename_suffix=".fedfleet")
    n = 0
    try:
        for col in scalar_columns(table):
            for rnd, end, v in _series(table, col):
                for tag, step in ((f"round/{col}", rnd), (f"sim_time/{col}", int(round(end)))):
                    value = Summary.Value(tag=tag, simple_value=v)
                    writer.add_event(Event(wall_time=t0 + end, step=step,
                                           summary=Summary(value=[value])))
                    n += 1
    finally:
        writer.close()
    return n


# --- MLflow ---------------------------------------------------------------------------------------
def flatten(doc: Any, prefix: str = "") -> dict[str, str]:
    """Nested scenario -> {"population.mix.0.profile": "phone-lowend", ...} (MLflow params)."""
    out: dict[str, str] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(doc, list) and doc and any(isinstance(x, (dict, list)) for x in doc):
        for i, v in enumerate(doc):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        text = json.dumps(doc) if isinstance(doc, list) else str(doc)
        out[prefix[:-1]] = text[:MLFLOW_PARAM_MAX]
    return out


@contextlib.contextmanager
def _file_store_allowed() -> Iterator[None]:
    key = "MLFLOW_ALLOW_FILE_STORE"
    before = os.environ.get(key)
    os.environ[key] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def write_mlflow(run_dir: Path, tracking_uri: str, experiment: str = "fedfleet") -> str:
    """Log one run to ``tracking_uri``; returns the MLflow run id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    manifest, table = _load(run_dir)
    t0 = start_epoch(manifest, run_dir)
    with _file_store_allowed():
        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
        tags = {"fedfleet.run_dir": str(run_dir.resolve()), "fedfleet.mode": str(manifest.get(
            "mode", "")), "fedfleet.seed": str(manifest.get("seed", "")),
            "fedfleet.version": str(manifest.get("versions", {}).get("fedfleet", ""))}
        if manifest.get("git_commit"):
            tags["mlflow.source.git.commit"] = str(manifest["git_commit"])
        run = client.create_run(exp_id, start_time=int(t0 * 1000), tags=tags,
                                run_name=str(manifest.get("name", run_dir.name)))
        rid = run.info.run_id
        try:
            params = [Param(k, v) for k, v in flatten(manifest.get("scenario", {})).items()]
            for i in range(0, len(params), 100):
                client.log_batch(rid, params=params[i:i + 100])
            metrics = [Metric(col, v, int(round((t0 + end) * 1000)), rnd)
                       for col in scalar_columns(table) for rnd, end, v in _series(table, col)]
            for i in range(0, len(metrics), MLFLOW_BATCH):
                client.log_batch(rid, metrics=metrics[i:i + MLFLOW_BATCH])
            final = manifest.get("final_accuracy")
            client.log_batch(rid, tags=[RunTag("fedfleet.final_accuracy", str(final))])
            for name in ("manifest.json", "rounds.parquet"):
                client.log_artifact(rid, str(run_dir / name))
        except BaseException:
            client.set_terminated(rid, status="FAILED")
            raise
        end_ms = int((t0 + float(manifest.get("wall_s") or 0.0)) * 1000)
        client.set_terminated(rid, status="FINISHED", end_time=end_ms)
    return str(rid)


# --- CSV ------------------------------------------------------------------------------------------
def write_csv(run_dir: Path, out: Path) -> list[Path]:
    import pyarrow.csv as pacsv

    written = []
    for name in ("rounds", "clients"):
        src = run_dir / f"{name}.parquet"
        if src.exists():
            dst = out / f"{name}.csv"
            pacsv.write_csv(pq.read_table(src), dst)
            written.append(dst)
    shutil.copy2(run_dir / "manifest.json", out / "manifest.json")
    written.append(out / "manifest.json")
    return written


# --- the command ----------------------------------------------------------------------------------
def export_runs(runs: list[Path], fmt: str, out: Path | None = None, *, overwrite: bool = False,
                tracking_uri: str | None = None, experiment: str = "fedfleet") -> dict[str, Any]:
    """Export ``runs`` as ``fmt``; returns what was written (``out``, per-run details).

    One run: ``out`` defaults to ``RUN/tensorboard``, ``RUN/mlruns`` or ``RUN/csv``, and
    TensorBoard and CSV files go straight into it. Several runs need ``out``; each gets its own
    sub-directory ``out/<run name>`` (TensorBoard shows them as runs), or its own MLflow run."""
    if fmt not in FORMATS:
        raise InputError("--to", f"unknown format '{fmt}' (allowed: {', '.join(FORMATS)})")
    if not runs:
        raise InputError("RUN", "name at least one run directory")
    runs = [Path(r) for r in runs]
    for r in runs:
        check_run(r)
    if fmt == "tensorboard":
        _need("tensorboard", fmt, "tensorboard")
    elif fmt == "mlflow":
        _need("mlflow", fmt, "mlflow-skinny")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise InputError("RUN", "two runs share a name; export them to separate --out")
    if tracking_uri is not None:
        if fmt != "mlflow":
            raise InputError("--tracking-uri", "only with --to mlflow")
        if out is not None:
            raise InputError("--tracking-uri", "give --out or --tracking-uri, not both")
        ids = {r.name: write_mlflow(r, tracking_uri, experiment) for r in runs}
        return {"format": fmt, "out": tracking_uri, "runs": ids}
    if out is None:
        if len(runs) > 1:
            raise InputError("--out", "required when exporting several runs")
        out = runs[0] / DEFAULT_DIR[fmt]
    out = Path(out)
    details: dict[str, Any] = {}
    try:
        with _claim(out, overwrite):
            for r in runs:
                if fmt == "mlflow":  # one store; the runs are MLflow runs in it
                    details[r.name] = write_mlflow(r, out.resolve().as_uri(), experiment)
                    continue
                sub = out if len(runs) == 1 else out / r.name
                sub.mkdir(parents=True, exist_ok=True)
                if fmt == "tensorboard":
                    details[r.name] = write_tensorboard(r, sub)
                else:
                    details[r.name] = [str(p) for p in write_csv(r, sub)]
            _marker(out, fmt, runs)
    except OSError as exc:
        raise FedFleetError(f"--out: cannot write '{out}' ({exc.strerror or exc})") from None
    return {"format": fmt, "out": str(out), "runs": details}
