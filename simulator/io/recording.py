"""Run directories: tidy parquet tables plus a manifest, written atomically.

A run is written under ``runs/<name>.partial/`` (round chunks in ``parts/``) and renamed to
``runs/<name>/`` only when complete, so an interrupted run never looks complete. Every file is
written to a temporary name, fsynced and renamed.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simulator import FedFleetError
from simulator.io.runlock import LOCK_NAME, RunLock

# Declared schemas (required columns; workloads may add documented extra columns).
ROUND_COLUMNS: dict[str, pa.DataType] = {
    "round": pa.int64(),
    "sim_start_s": pa.float64(),
    "sim_end_s": pa.float64(),
    "duration_s": pa.float64(),
    "wall_s": pa.float64(),
    "candidates": pa.int64(),
    "selected": pa.int64(),
    "completed": pa.int64(),
    "dropped": pa.int64(),
    "offline": pa.int64(),
    "straggled": pa.int64(),
    "overcommitted": pa.int64(),
    "out_of_memory": pa.int64(),
    "low_battery": pa.int64(),
    "accuracy": pa.float64(),
    "loss": pa.float64(),
    "train_loss": pa.float64(),
    "bytes_down": pa.float64(),
    "bytes_up": pa.float64(),
    "energy_j": pa.float64(),
    "wasted_device_s": pa.float64(),
}
CLIENT_COLUMNS: dict[str, pa.DataType] = {
    "round": pa.int64(),
    "client_id": pa.int64(),
    "device_class": pa.string(),
    "link": pa.string(),
    "outcome": pa.string(),
    "workload": pa.string(),
    "n_samples": pa.int64(),
    "start_s": pa.float64(),
    "stop_s": pa.float64(),
    "download_s": pa.float64(),
    "compute_s": pa.float64(),
    "upload_s": pa.float64(),
    "bytes_down": pa.float64(),
    "bytes_up": pa.float64(),
    "energy_j": pa.float64(),
    "memory_bytes": pa.float64(),
    "train_loss": pa.float64(),
    # Event log (absolute simulated seconds; NaN where a phase never started):
    # simulator/core/clock.py
    "download_start_s": pa.float64(),
    "download_end_s": pa.float64(),
    "compute_start_s": pa.float64(),
    "compute_end_s": pa.float64(),
    "upload_start_s": pa.float64(),
    "upload_end_s": pa.float64(),
    "model_version": pa.int64(),  # the global version the client trained from
    "staleness": pa.int64(),  # versions published while it worked (0 in sync rounds)
    "battery_fraction": pa.float64(),  # charge when invited; NaN for mains power
}


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """``write(tmp)`` a sibling temp file, fsync it, rename it over ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_table(path: Path, table: pa.Table) -> None:
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _strings(values: list[Any]) -> pa.Array | None:
    """A utf-8 arrow array of ``str``/None items from its buffers; None for other items."""
    if not all(v is None or type(v) is str for v in values):
        return None
    enc = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(enc) + 1, np.int32)
    np.cumsum([len(b) for b in enc], out=offsets[1:])
    valid = None
    nulls = sum(v is None for v in values)
    if nulls:
        valid = pa.py_buffer(np.packbits(np.array([v is not None for v in values]),
                                         bitorder="little"))
    return pa.Array.from_buffers(pa.string(), len(enc), [valid, pa.py_buffer(offsets),
                                                         pa.py_buffer(b"".join(enc))],
                                 null_count=nulls)


def _to_arrow(values: np.ndarray, typ: pa.DataType | None) -> pa.Array:
    """``pa.array(values, type=typ)`` without its detour through pandas: pyarrow imports pandas
    (0.3 s, more than a short run's rounds) on the first ``pa.array`` of any numpy array or list.
    Numbers and booleans of the declared type and lists of strings are wrapped from their
    buffers (the same values, NaN kept as NaN); anything else goes through ``pa.array``."""
    if len(values) == 0 and typ is not None:
        return pa.nulls(0, type=typ)
    if values.dtype == object:
        arr = _strings(values.tolist()) if typ is None or typ == pa.string() else None
        return arr if arr is not None else pa.array(values.tolist(), type=typ or pa.string())
    if values.dtype.kind in "iuf":
        target = typ if typ is not None else pa.from_numpy_dtype(values.dtype)
        if target == pa.from_numpy_dtype(values.dtype):
            data = np.ascontiguousarray(values)
            return pa.Array.from_buffers(target, len(data), [None, pa.py_buffer(data)])
    if values.dtype.kind == "b" and typ in (None, pa.bool_()):
        return pa.Array.from_buffers(pa.bool_(), len(values), [
            None, pa.py_buffer(np.packbits(values, bitorder="little"))])
    return pa.array(values, type=typ) if typ is not None else pa.array(values)


def _table(cols: dict[str, list[np.ndarray]], declared: dict[str, pa.DataType]) -> pa.Table:
    arrays, names = [], []
    for name, chunks in cols.items():
        values = np.concatenate(chunks) if chunks else np.zeros(0)
        arrays.append(_to_arrow(values, declared.get(name)))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


class Recorder:
    """Buffers rows per round and flushes them as parquet chunks."""

    def __init__(self, runs_dir: str | Path, name: str, overwrite: bool = False,
                 flush_rows: int = 50_000, flush_rounds: int = 100,
                 flush_seconds: float = 5.0) -> None:
        # Chunks of at most flush_rows client rows or flush_rounds rounds: the driver's memory
        # stays flat over long runs (benchmarks/bench_soak.py) and live readers see progress.
        # A chunk is also written once flush_seconds of wall time have passed since the last
        # one, so slow rounds (or many small FedBuff steps) reach `fedfleet serve` within
        # seconds. Chunk boundaries never change the final tables.
        self.runs_dir = Path(runs_dir)
        self.name = name
        self.final_dir = self.runs_dir / name
        self.partial_dir = self.runs_dir / f"{name}.partial"
        self.parts_dir = self.partial_dir / "parts"
        self.overwrite = overwrite
        self.flush_rows = flush_rows
        self.flush_rounds = flush_rounds
        self.flush_seconds = flush_seconds
        self._clock: Callable[[], float] = time.monotonic
        self._last_flush = self._clock()
        self._buffered_rounds = 0
        self._rounds: dict[str, list[np.ndarray]] = {}
        self._clients: dict[str, list[np.ndarray]] = {}
        self._buffered_rows = 0
        self._first_round: int | None = None
        self._last_round: int | None = None
        self._created = False
        self._lock = RunLock(self.partial_dir)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self, resume: bool = False) -> None:
        """Create (or, resuming, reopen) ``<name>.partial`` and lock it (simulator/io/runlock.py).

        Nothing existing is deleted unless ``overwrite`` was asked for: an unfinished run of the
        same name is an error that points at ``fedfleet resume``."""
        if self.final_dir.exists() and not self.overwrite and not resume:
            raise FedFleetError(
                f"run '{self.name}' already exists in {self.runs_dir} "
                "(choose another --name, or pass --overwrite)"
            )
        self._created = False
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            try:
                self.partial_dir.mkdir()
                self._created = True
            except FileExistsError:
                pass
            self._lock.acquire("run directory")
        except OSError as exc:
            self._cleanup_quietly()
            raise FedFleetError(
                f"output.runs_dir: cannot write to '{self.runs_dir}' ({exc.strerror or exc}); "
                "choose a writable directory with output.runs_dir"
            ) from None
        except BaseException:
            self._cleanup_quietly()
            raise
        if not self._created and not resume:
            if not self.overwrite:
                self._lock.release()
                raise FedFleetError(
                    f"an unfinished run '{self.name}' exists in '{self.partial_dir}'; finish it "
                    f"with `fedfleet resume {self.final_dir}`, or pass --overwrite to delete it "
                    "and start over")
            self._created = True  # asked for by name: its contents are ours to replace
            for child in self.partial_dir.iterdir():
                if child.name != LOCK_NAME:
                    _remove(child)
        try:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            probe = self.partial_dir / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            self._cleanup_quietly()
            raise FedFleetError(
                f"output.runs_dir: cannot write to '{self.runs_dir}' ({exc.strerror or exc}); "
                "choose a writable directory with output.runs_dir"
            ) from None

    def _cleanup_quietly(self) -> None:
        """Remove the partial directory only if this recorder created it (or was told to
        overwrite it); a run directory that existed before is never deleted."""
        try:
            if self._created and self.partial_dir.exists():
                shutil.rmtree(self.partial_dir)
            if self.runs_dir.exists() and not any(self.runs_dir.iterdir()):
                self.runs_dir.rmdir()
        except OSError:
            pass
        finally:
            self._lock.release()

    def abort(self) -> None:
        """Drop an unfinished run without a resumable checkpoint."""
        self._cleanup_quietly()

    def close(self) -> None:
        """Release the run's lock (the partial directory, if any, stays)."""
        self._lock.release()

    # --- rows -----------------------------------------------------------------------------------
    def append(self, round_row: dict[str, Any], client_cols: dict[str, np.ndarray]) -> None:
        r = int(round_row["round"])
        if self._first_round is None:
            self._first_round = r
        self._last_round = r
        for k, v in round_row.items():
            self._rounds.setdefault(k, []).append(np.asarray([v]))
        for k, v in client_cols.items():
            self._clients.setdefault(k, []).append(np.asarray(v))
        self._buffered_rows += len(next(iter(client_cols.values()), []))
        self._buffered_rounds += 1
        if (self._buffered_rows >= self.flush_rows or self._buffered_rounds >= self.flush_rounds
                or self._clock() - self._last_flush >= self.flush_seconds):
            self.flush()

    def flush(self) -> None:
        if self._first_round is None:
            return
        tag = f"{self._first_round:08d}-{self._last_round:08d}"
        try:
            atomic_write_table(self.parts_dir / f"clients-{tag}.parquet",
                               _table(self._clients, CLIENT_COLUMNS))
            atomic_write_table(self.parts_dir / f"rounds-{tag}.parquet",
                               _table(self._rounds, ROUND_COLUMNS))
        except OSError as exc:
            # Whether the completed rounds stay (resumable) is the runner's call, not ours.
            raise FedFleetError(
                f"output.runs_dir: writing results to '{self.partial_dir}' failed "
                f"({exc.strerror or exc})"
            ) from None
        self._rounds, self._clients = {}, {}
        self._buffered_rows = self._buffered_rounds = 0
        self._first_round = self._last_round = None
        self._last_flush = self._clock()

    def truncate_after(self, last_round: int) -> None:
        """On resume: delete chunks holding rounds after the checkpoint (they will be redone)."""
        for p in sorted(self.parts_dir.glob("*.parquet")):
            first, last = (int(x) for x in p.stem.split("-", 1)[1].split("-"))
            if last > last_round:
                if first <= last_round:
                    t = pq.ParquetFile(p).read()  # not read_table: its dataset layer imports pandas
                    t = t.filter(pa.compute.less_equal(t["round"], last_round))
                    renamed = p.name.replace(f"-{last:08d}", f"-{last_round:08d}")
                    atomic_write_table(p.with_name(renamed), t)
                p.unlink(missing_ok=True)

    # --- finalisation ---------------------------------------------------------------------------
    def _combine(self, prefix: str, out: Path) -> int:
        parts = sorted(self.parts_dir.glob(f"{prefix}-*.parquet"))
        rows = 0
        writer = None
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            for p in parts:
                t = pq.ParquetFile(p).read()  # not read_table: its dataset layer imports pandas
                if writer is None:
                    writer = pq.ParquetWriter(tmp, t.schema, compression="zstd")
                writer.write_table(t.cast(writer.schema))
                rows += t.num_rows
            if writer is None:
                decl = ROUND_COLUMNS if prefix == "rounds" else CLIENT_COLUMNS
                pq.write_table(pa.schema(list(decl.items())).empty_table(), tmp)
            else:
                writer.close()
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return rows

    def finalize(self, manifest: dict[str, Any]) -> Path:
        if self.final_dir.exists() and not self.overwrite:
            # Created while this run ran (or left there before a resume): never replaced
            # without --overwrite; the checkpoint stays, so the run can still be finished.
            raise FedFleetError(
                f"run '{self.final_dir}' appeared while this run was running; nothing was "
                f"replaced: move it away, then finish this run with `fedfleet resume "
                f"{self.final_dir}`")
        try:
            self.flush()
            n_rounds = self._combine("rounds", self.partial_dir / "rounds.parquet")
            n_clients = self._combine("clients", self.partial_dir / "clients.parquet")
            manifest = dict(manifest, status="complete",
                            tables={"rounds.parquet": n_rounds, "clients.parquet": n_clients})
            atomic_write_bytes(self.partial_dir / "manifest.json",
                               json.dumps(manifest, indent=2, default=str).encode())
            shutil.rmtree(self.parts_dir, ignore_errors=True)
            for leftover in self.partial_dir.glob("checkpoint*"):
                leftover.unlink(missing_ok=True)
            # Temp files of writes cut short by a crash before a resume (atomic_write_*).
            for leftover in self.partial_dir.glob(".*.tmp"):
                leftover.unlink(missing_ok=True)
            if self.final_dir.exists():  # --overwrite: swap, then drop the old run
                trash = self.runs_dir / f".{self.name}.old-{os.getpid()}"
                os.replace(self.final_dir, trash)
                os.replace(self.partial_dir, self.final_dir)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(self.partial_dir, self.final_dir)
            fsync_dir(self.runs_dir)
            # The rename is checked: the finished run is where it should be, complete.
            if self.partial_dir.exists() or not (self.final_dir / "manifest.json").is_file():
                raise OSError(errno.EIO, f"'{self.final_dir}' is not the finished run after "
                                         "the rename")
            (self.final_dir / LOCK_NAME).unlink(missing_ok=True)
        except OSError as exc:
            raise FedFleetError(
                f"output.runs_dir: finishing the run in '{self.partial_dir}' failed "
                f"({exc.strerror or exc})"
            ) from None
        finally:
            self._lock.release()
        return self.final_dir


class MemoryRecorder:
    """Keeps a run's tables in memory (notebooks, tests, sweeps): the same ``append`` / ``flush``
    interface as :class:`Recorder`, nothing written to disk.

    ``rounds`` and ``clients`` are pandas DataFrames with the columns and types that
    ``rounds.parquet`` and ``clients.parquet`` would hold (pandas is imported on first use).
    Checkpoints need a run directory, so ``partial_dir`` and ``truncate_after`` raise
    :class:`FedFleetError`; a run with ``output.checkpoint_every > 0`` is refused by
    ``simulator.run(..., recorder="memory")`` before it starts.
    """

    name = "memory"

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._rounds: dict[str, list[np.ndarray]] = {}
        self._clients: dict[str, list[np.ndarray]] = {}
        self._n_rounds = 0
        self._frames: tuple[Any, Any] | None = None

    # --- the Recorder interface ----------------------------------------------------------------
    def start(self, resume: bool = False) -> None:
        if resume:
            raise FedFleetError(CHECKPOINT_NEEDS_DISK)

    def append(self, round_row: dict[str, Any], client_cols: dict[str, np.ndarray]) -> None:
        for k, v in round_row.items():
            self._rounds.setdefault(k, []).append(np.asarray([v]))
        for k, v in client_cols.items():
            self._clients.setdefault(k, []).append(np.asarray(v))
        self._n_rounds += 1
        self._frames = None

    def flush(self) -> None:
        """Nothing to write (kept for the Recorder interface)."""

    def abort(self) -> None:
        """Drop what was recorded."""
        self._reset()

    @property
    def partial_dir(self) -> Path:
        raise FedFleetError(CHECKPOINT_NEEDS_DISK)

    def truncate_after(self, last_round: int) -> None:
        raise FedFleetError(CHECKPOINT_NEEDS_DISK)

    # --- the tables ----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Rounds (aggregations) recorded so far."""
        return self._n_rounds

    def arrow_tables(self) -> tuple[pa.Table, pa.Table]:
        """(rounds, clients) as pyarrow tables with the declared column types."""
        return (_table_or_empty(self._rounds, ROUND_COLUMNS),
                _table_or_empty(self._clients, CLIENT_COLUMNS))

    def tables(self) -> tuple[Any, Any]:
        """(rounds, clients) as pandas DataFrames, as ``pd.read_parquet`` would give them."""
        if self._frames is None:
            r, c = self.arrow_tables()
            self._frames = (r.to_pandas(), c.to_pandas())
        return self._frames

    @property
    def rounds(self) -> Any:
        return self.tables()[0]

    @property
    def clients(self) -> Any:
        return self.tables()[1]


CHECKPOINT_NEEDS_DISK = (
    "output.checkpoint_every: checkpoints need a run directory, and the in-memory recorder keeps "
    "nothing on disk (set output.checkpoint_every to 0, or record to disk)")


def _table_or_empty(cols: dict[str, list[np.ndarray]],
                    declared: dict[str, pa.DataType]) -> pa.Table:
    if not cols:
        return pa.schema(list(declared.items())).empty_table()
    return _table(cols, declared)
