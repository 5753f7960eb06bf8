"""Output faults: an unwritable or full output location gives one clear line (exit 2 via the CLI)
and leaves nothing half-written: no ``runs/<name>/`` that looks complete, no temp files, and a
``.partial`` directory only when it holds a checkpoint to resume from.

Tests run as root, so ``chmod`` cannot make a directory unwritable: the faults are a path under a
regular file (NotADirectoryError), a path under /proc, and ENOSPC injected into the writers.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import simulator.io.recording as recording
from simulator import FedFleetError
from simulator.cli.main import main
from simulator.config.scenario import parse_scenario
from simulator.io.recording import Recorder
from simulator.loop.runner import resume_run, run_scenario
from tests.conftest import small_doc

PREFIX = "fedfleet: error: "


def _enospc(path: Any = "") -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def _run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], runs_dir: Path | str,
             **over: Any) -> tuple[int, list[str]]:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(small_doc(name="out", rounds=3, **over)))
    capsys.readouterr()
    rc = main(["run", str(f), "--runs-dir", str(runs_dir), "--no-dashboard"])
    return rc, capsys.readouterr().err.splitlines()


def _assert_one_line(rc: int, lines: list[str], *needles: str) -> None:
    assert rc == 2, lines
    assert len(lines) == 1 and lines[0].startswith(PREFIX), lines
    for n in needles:
        assert n in lines[0], (n, lines)


def _leftovers(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _temp_files(root: Path) -> list[str]:
    return [p for p in _leftovers(root) if p.endswith(".tmp") or ".tmp" in Path(p).name]


# --- an output location that cannot exist ---------------------------------------------------------
@pytest.mark.parametrize("where", ["under-a-file", "file-itself", "proc"])
def test_unwritable_runs_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             where: str) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("I am a file")
    runs = {"under-a-file": blocker / "runs", "file-itself": blocker,
            "proc": Path("/proc/fedfleet-cannot-write-here")}[where]
    if where == "proc" and not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    rc, lines = _run_cli(tmp_path, capsys, runs)
    _assert_one_line(rc, lines, "output.runs_dir", "cannot write")
    assert blocker.read_text() == "I am a file"
    assert not runs.exists() or runs == blocker
    assert _leftovers(tmp_path) == ["not-a-dir", "s.yaml"]


def test_unwritable_runs_dir_from_the_scenario(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(small_doc(**{"output.runs_dir": str(blocker / "runs")})))
    capsys.readouterr()
    rc = main(["run", str(f), "--no-dashboard"])
    _assert_one_line(rc, capsys.readouterr().err.splitlines(), "output.runs_dir")


# --- a disk that fills up -------------------------------------------------------------------------
def _fail_nth_parquet_write(monkeypatch: pytest.MonkeyPatch, n: int) -> dict[str, int]:
    """ENOSPC from the n-th parquet chunk write (1-based), after creating a partial temp file."""
    real: Callable[..., Any] = recording.pq.write_table
    calls = {"n": 0}

    def write_table(table: Any, where: Any, *a: Any, **k: Any) -> None:
        calls["n"] += 1
        if calls["n"] >= n:
            Path(where).write_bytes(b"PAR1 half a file")
            raise _enospc(where)
        real(table, where, *a, **k)

    monkeypatch.setattr(recording.pq, "write_table", write_table)
    return calls


def test_disk_full_without_checkpoints_leaves_nothing(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_nth_parquet_write(monkeypatch, 1)
    runs = tmp_path / "runs"
    rc, lines = _run_cli(tmp_path, capsys, runs)
    _assert_one_line(rc, lines, "output.runs_dir", "No space left on device")
    assert _leftovers(runs) == []  # not even an empty runs/ (it was created by this run)
    # The message must not send the user to a directory that was removed.
    assert "kept" not in lines[0] and "resume" not in lines[0]


def test_disk_full_while_finishing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while combining the chunks into the final tables (ParquetWriter)."""
    real = recording.pq.ParquetWriter

    class FullWriter(real):  # type: ignore[misc, valid-type]
        def write_table(self, *a: Any, **k: Any) -> None:
            raise _enospc()

    monkeypatch.setattr(recording.pq, "ParquetWriter", FullWriter)
    runs = tmp_path / "runs"
    rc, lines = _run_cli(tmp_path, capsys, runs)
    _assert_one_line(rc, lines, "output.runs_dir", "No space left on device")
    assert not (runs / "out").exists()
    assert _temp_files(runs) == []


def test_final_rename_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "out":
            raise OSError(errno.EIO, "Input/output error", str(dst))
        real(src, dst)

    monkeypatch.setattr(recording.os, "replace", replace)
    runs = tmp_path / "runs"
    rc, lines = _run_cli(tmp_path, capsys, runs)
    _assert_one_line(rc, lines, "output.runs_dir", "Input/output error")
    assert not (runs / "out").exists()
    assert _temp_files(runs) == []


def test_disk_full_after_a_checkpoint_is_resumable(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    doc = small_doc(name="ckpt", rounds=6, **{"output.checkpoint_every": 2})
    _fail_nth_parquet_write(monkeypatch, 3)  # chunks 1-2: first checkpoint; 3: the second one
    with pytest.raises(FedFleetError, match="No space left") as err:
        run_scenario(parse_scenario(doc), runs_dir=str(tmp_path))
    assert "fedfleet resume" in str(err.value) and "\n" not in str(err.value)
    partial = tmp_path / "ckpt.partial"
    assert not (tmp_path / "ckpt").exists() and (partial / "checkpoint.json").is_file()
    assert _temp_files(tmp_path) == []

    monkeypatch.undo()  # space was freed
    run = resume_run(tmp_path / "ckpt")
    ref = run_scenario(parse_scenario(dict(doc, output={})), name="ref",
                       runs_dir=str(tmp_path / "ref"))
    a = pd.read_parquet(run / "rounds.parquet").drop(columns=["wall_s"])
    b = pd.read_parquet(ref / "rounds.parquet").drop(columns=["wall_s"])
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(run / "clients.parquet"),
                                  pd.read_parquet(ref / "clients.parquet"), check_exact=True)


def test_atomic_writes_leave_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa

    def full_fsync(fd: int) -> None:
        raise _enospc()

    monkeypatch.setattr(recording.os, "fsync", full_fsync)
    with pytest.raises(OSError):
        recording.atomic_write_bytes(tmp_path / "a.json", b"{}")
    with pytest.raises(OSError):
        recording.atomic_write_table(tmp_path / "t.parquet", pa.table({"x": [1, 2]}))
    assert list(tmp_path.iterdir()) == []


# --- the recorder's buffer stays small (soak: driver memory must not grow) ------------------------
def test_recorder_flushes_at_least_every_flush_rounds(tmp_path: Path) -> None:
    """Rows reach disk in bounded chunks, whatever the round size: the driver's memory stays flat
    over long runs and a live dashboard sees progress (benchmarks/bench_soak.py)."""
    rec = Recorder(tmp_path, "buf")
    rec.start()
    cols = {"round": np.zeros(3, np.int64), "client_id": np.arange(3),
            "outcome": np.array(["completed"] * 3, dtype=object)}
    for r in range(250):
        rec.append({"round": r, "completed": 3}, dict(cols, round=np.full(3, r)))
    parts = sorted(p.name for p in (tmp_path / "buf.partial" / "parts").glob("rounds-*"))
    assert len(parts) >= 2, parts  # 250 tiny rounds still went out in chunks
    assert rec._buffered_rows <= 3 * 100


def test_recorder_flushes_by_time_as_well_as_rounds(tmp_path: Path) -> None:
    """Issue 17: slow rounds reach a live reader within seconds, not after 100 rounds."""
    now = [1000.0]
    rec = Recorder(tmp_path, "slow")
    rec._clock = lambda: now[0]
    rec._last_flush = now[0]
    rec.start()
    parts = tmp_path / "slow.partial" / "parts"
    cols = {"round": np.zeros(2, np.int64), "client_id": np.arange(2)}
    rec.append({"round": 0, "completed": 2}, cols)
    now[0] += 1.0  # one second later: still buffered
    rec.append({"round": 1, "completed": 2}, dict(cols, round=np.ones(2, np.int64)))
    assert list(parts.glob("rounds-*")) == []
    now[0] += rec.flush_seconds  # a few seconds on: the next round goes out with the others
    rec.append({"round": 2, "completed": 2}, dict(cols, round=np.full(2, 2)))
    assert [p.name for p in parts.glob("rounds-*")] == ["rounds-00000000-00000002.parquet"]
    rec.append({"round": 3, "completed": 2}, dict(cols, round=np.full(2, 3)))
    assert len(list(parts.glob("rounds-*"))) == 1  # the clock restarted at that flush
