"""No run is lost: a run directory (final or ``.partial``) is deleted only by an explicit
``--overwrite``; an unfinished run of the same name is a one-line error pointing at
``fedfleet resume``; an OS file lock makes a second run or resume of the same name fail at once;
the final rename is checked (a run that appeared meanwhile is never replaced)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator import FedFleetError
from simulator.cli.main import main
from simulator.config.scenario import parse_scenario
from simulator.loop.runner import resume_run, run_scenario
from tests.conftest import ROOT, small_doc

PREFIX = "fedfleet: error: "


class Crash(Exception):
    pass


def _crash_at(r: int) -> Any:
    def on_round(rep: Any) -> None:
        if rep.round == r:
            raise Crash(f"crash after round {r}")
    return on_round


def _digest(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err.splitlines()


def _crashed(tmp_path: Path, name: str = "keep") -> tuple[Path, Path]:
    doc = small_doc(name=name, rounds=8, **{"output.checkpoint_every": 2})
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(Crash):
        run_scenario(parse_scenario(doc), runs_dir=str(tmp_path / "runs"), on_round=_crash_at(4))
    partial = tmp_path / "runs" / f"{name}.partial"
    assert (partial / "checkpoint.json").is_file()
    return f, partial


def test_rerun_with_an_unfinished_run_is_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16: `fedfleet run ... --name keep` again deleted the resumable keep.partial/."""
    f, partial = _crashed(tmp_path)
    before = _digest(partial)
    rc, lines = _cli(["run", str(f), "--runs-dir", str(tmp_path / "runs"), "--name", "keep",
                      "--no-dashboard"], capsys)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(PREFIX), lines
    assert "fedfleet resume" in lines[0] and "--overwrite" in lines[0], lines
    assert _digest(partial) == before  # not a byte changed
    assert not (tmp_path / "runs" / "keep").exists()
    # ... and the run it kept finishes
    run = resume_run(tmp_path / "runs" / "keep")
    assert (run / "manifest.json").is_file()


def test_overwrite_replaces_an_unfinished_run(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    f, partial = _crashed(tmp_path)
    rc, lines = _cli(["run", str(f), "--runs-dir", str(tmp_path / "runs"), "--name", "keep",
                      "--overwrite", "--no-dashboard"], capsys)
    assert rc == 0, lines
    final = tmp_path / "runs" / "keep"
    assert (final / "manifest.json").is_file() and not partial.exists()
    assert not (final / ".lock").exists()


def _slow_run(tmp_path: Path, name: str, **over: Any) -> tuple[subprocess.Popen[bytes], Path]:
    """A real `fedfleet run` in another process, long enough to be caught running."""
    doc = small_doc(name=name, rounds=100_000, mode="analytic", **over)
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(doc))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli.main", "run", str(f),
                             "--runs-dir", str(tmp_path / "runs"), "--no-dashboard"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    lock = tmp_path / "runs" / f"{name}.partial" / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip()):
        assert proc.poll() is None, "the first run ended early"
        assert time.monotonic() < deadline, "the first run never took its lock"
        time.sleep(0.02)
    return proc, f


def test_a_running_run_is_locked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16: two runs started 4 s apart with the same name both 'succeeded'."""
    proc, f = _slow_run(tmp_path, "busy", **{"output.checkpoint_every": 50})
    try:
        runs = tmp_path / "runs"
        for argv in (["run", str(f), "--runs-dir", str(runs), "--no-dashboard"],
                     ["run", str(f), "--runs-dir", str(runs), "--overwrite", "--no-dashboard"],
                     ["resume", str(runs / "busy"), "--no-dashboard"]):
            t0 = time.monotonic()
            rc, lines = _cli(argv, capsys)
            assert time.monotonic() - t0 < 10  # at once, not after waiting
            assert rc == 2 and len(lines) == 1 and lines[0].startswith(PREFIX), (argv, lines)
            assert "in use by another fedfleet process" in lines[0], lines
            assert f"pid {proc.pid}" in lines[0], lines
            assert proc.poll() is None  # the first run is untouched and still going
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    # The kernel dropped the lock with the process: the checkpointed run resumes (the lock is
    # not stale), here checked by taking the lock again.
    from simulator.io.recording import Recorder

    rec = Recorder(tmp_path / "runs", "busy")
    rec.start(resume=True)
    rec.close()


def test_final_rename_never_replaces_a_run(tmp_path: Path) -> None:
    """A run of the same name that appears while a run runs is kept; the new run stays
    resumable and finishes once the other is moved away."""
    runs = tmp_path / "runs"

    def squatter(rep: Any) -> None:
        if rep.round == 5:
            (runs / "race").mkdir()
            (runs / "race" / "mine.txt").write_text("someone else's run")

    doc = small_doc(name="race", rounds=6, **{"output.checkpoint_every": 2})
    with pytest.raises(FedFleetError, match="appeared while this run was running.*resume"):
        run_scenario(parse_scenario(doc), runs_dir=str(runs), on_round=squatter)
    assert (runs / "race" / "mine.txt").read_text() == "someone else's run"
    assert (runs / "race.partial" / "checkpoint.json").is_file()
    # resume refuses too while it is there
    with pytest.raises(FedFleetError, match="appeared while"):
        resume_run(runs / "race")
    assert (runs / "race" / "mine.txt").read_text() == "someone else's run"
    (runs / "race").rename(runs / "race-other")
    run = resume_run(runs / "race")
    assert (run / "manifest.json").is_file()


def test_failed_resume_start_keeps_the_partial(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An output fault while a resume starts never deletes the run it was resuming."""
    _, partial = _crashed(tmp_path)
    before = _digest(partial)
    import simulator.io.recording as recording

    real = Path.write_bytes

    def refuse(self: Path, data: bytes) -> int:
        if self.name == ".write-test":
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(recording.Path, "write_bytes", refuse)
    with pytest.raises(FedFleetError, match="cannot write"):
        resume_run(tmp_path / "runs" / "keep")
    assert _digest(partial) == before
