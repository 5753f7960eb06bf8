"""What the terminal shows: per-round log lines without a TTY, start-up status, the final summary,
`dashboard` saying what it wrote, tables that never cut names, a missing runs directory."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simulator.cli.main import main
from simulator.cli.progress import RunProgress
from simulator.config.scenario import parse_scenario
from simulator.loop.runner import run_scenario
from simulator.loop.simulation import RoundReport
from tests.conftest import small_doc

ROOT = Path(__file__).resolve().parent.parent


def _cli(*argv: str, env: dict[str, str] | None = None,
         timeout: float = 240) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full.pop("FEDFLEET_PROGRESS", None)
    return subprocess.run([sys.executable, "-m", "simulator.cli.main", *argv], cwd=ROOT,
                          capture_output=True, text=True, env=full, timeout=timeout)


def _scenario(tmp_path: Path, **over: object) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(small_doc(**over)))
    return path


def test_run_without_a_tty_logs_every_round_and_a_summary(tmp_path: Path) -> None:
    sc = _scenario(tmp_path, name="logs", rounds=4)
    res = _cli("run", str(sc), "--runs-dir", str(tmp_path / "runs"), "--no-dashboard",
               "--target-accuracy", "0.05")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    rows = re.findall(r"^\[logs\] round (\d+)/4  sim \S+  accuracy (0\.\d{4})  loss (\d+\.\d{4})  "
                      r"completed (\d+)$", out, re.M)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4]
    table = __import__("pandas").read_parquet(tmp_path / "runs" / "logs" / "rounds.parquet")
    assert [float(r[1]) for r in rows] == [round(a, 4) for a in table["accuracy"]]
    assert [float(r[2]) for r in rows] == [round(v, 4) for v in table["loss"]]
    assert [int(r[3]) for r in rows] == list(table["completed"])
    assert "[logs] importing torch, building the model..." in out  # start-up status (local)
    assert out.index("importing torch") < out.index("round 1/4")
    final = table["accuracy"].iloc[-1]
    assert f"final accuracy {final:.4f}" in out
    hit = table[table["accuracy"] >= 0.05].iloc[0]
    assert "time to accuracy 0.05: " in out and f"(round {int(hit['round']) + 1})" in out
    assert f"files: {tmp_path / 'runs' / 'logs'}/ (rounds.parquet 4 rows" in out
    assert "run 'logs' finished: 4 rounds, simulated" in out


def test_plain_lines_are_flushed_one_by_one() -> None:
    class Spy(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.flushed_at: list[int] = []

        def isatty(self) -> bool:
            return False

        def flush(self) -> None:
            self.flushed_at.append(len(self.getvalue()))

    spy = Spy()
    with RunProgress(3, "x", out=spy, bar=False) as prog:
        for r in range(3):
            prog.on_round(RoundReport(r, 10.0 * (r + 1), float("nan"), 5))
            assert spy.flushed_at and spy.flushed_at[-1] == len(spy.getvalue())
    lines = spy.getvalue().splitlines()
    assert lines == [f"[x] round {r}/3  sim {10 * r:.1f}s  completed 5" for r in (1, 2, 3)]


def test_log_every_thins_the_lines_but_keeps_first_and_last() -> None:
    out = io.StringIO()
    with RunProgress(10, "x", out=out, bar=False, plain=True, log_every=4) as prog:
        for r in range(10):
            prog.on_round(RoundReport(r, 1.0, 0.5, 3))
    assert re.findall(r"round (\d+)/10", out.getvalue()) == ["1", "4", "8", "10"]


def test_status_lines_reach_the_bar_and_the_log() -> None:
    import logging

    out = io.StringIO()
    with RunProgress(2, "x", out=out, bar=False, plain=True):
        logging.getLogger("simulator.status").info("starting Ray (%d CPUs)...", 2)
    logging.getLogger("simulator.status").info("after the run: not shown")
    assert out.getvalue() == "[x] starting Ray (2 CPUs)...\n"


@pytest.mark.ray
@pytest.mark.slow
def test_ray_start_up_says_what_it_waits_for(tmp_path: Path) -> None:
    sc = _scenario(tmp_path, name="rayup", rounds=1, **{"executor.kind": "ray",
                                                        "executor.num_actors": 1})
    res = _cli("run", str(sc), "--runs-dir", str(tmp_path / "runs"), "--no-dashboard")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert re.search(r"^\[rayup\] starting Ray \(\d+ CPUs\)\.\.\.$", out, re.M), out
    assert "[rayup] starting 1 actor, importing torch..." in out
    assert re.search(r"^\[rayup\] 1 actor ready \(\d+\.\d s\)$", out, re.M), out
    assert out.index("starting Ray") < out.index("starting 1 actor") < out.index("round 1/1")


def test_analytic_summary_says_there_is_no_accuracy(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    sc = _scenario(tmp_path, name="ana", mode="analytic", rounds=3)
    assert main(["run", str(sc), "--runs-dir", str(tmp_path), "--no-dashboard",
                 "--target-accuracy", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "accuracy: none (analytic mode trains nothing)" in out
    assert "time to accuracy 0.5: n/a (no accuracy)" in out
    assert re.findall(r"^\[ana\] round (\d)/3  sim \S+  completed \d+$", out, re.M) == \
        ["1", "2", "3"]


def test_target_not_reached_and_bad_target(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    sc = _scenario(tmp_path, name="far", rounds=2)
    assert main(["run", str(sc), "--runs-dir", str(tmp_path), "--no-dashboard",
                 "--target-accuracy", "1.0"]) == 0
    assert "target accuracy 1 not reached in 2 rounds" in capsys.readouterr().out
    assert main(["run", str(sc), "--runs-dir", str(tmp_path), "--target-accuracy", "80"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--target-accuracy: must be in (0, 1]" in err


class Crash(Exception):
    pass


def test_resume_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = small_doc(name="again", rounds=4, **{"output.checkpoint_every": 2})

    def crash(rep: RoundReport) -> None:
        if rep.round == 2:
            raise Crash

    with pytest.raises(Crash):
        run_scenario(parse_scenario(doc), runs_dir=str(tmp_path), on_round=crash)
    capsys.readouterr()
    assert main(["resume", str(tmp_path / "again"), "--no-dashboard"]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"^\[again\] round (\d)/4", out, re.M) == ["3", "4"]
    man = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert "run 'again' finished: 4 rounds" in out and "(resumed)" in out
    assert f"final accuracy {man['final_accuracy']:.4f}" in out
    assert f"files: {tmp_path / 'again'}/" in out


def test_dashboard_says_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_scenario(parse_scenario(small_doc(mode="analytic", rounds=2)), name="d",
                       runs_dir=str(tmp_path))
    assert main(["dashboard", str(run)]) == 0
    out = capsys.readouterr().out.strip()
    html = run / "dashboard.html"
    assert out == f"wrote {html} ({html.stat().st_size / 1e6:.1f} MB): dashboard of d"
    assert main(["dashboard", str(run), str(run), "--out", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"wrote {tmp_path / 'c.html'} (") and out.endswith("comparison of d, d")


def test_runs_of_a_missing_directory_is_an_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["runs", str(tmp_path / "nonexistent")]) == 2
    err = capsys.readouterr().err
    assert err == f"fedfleet: error: RUNS_DIR: '{tmp_path / 'nonexistent'}' does not exist\n"
    (tmp_path / "file").write_text("x")
    assert main(["runs", str(tmp_path / "file")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["runs", str(tmp_path)]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # not named and no ./runs: nothing yet, not an error
    assert main(["runs"]) == 0
    assert "no runs found" in capsys.readouterr().out


def _names() -> list[str]:
    from simulator.fleet.profiles import catalog

    return sorted(catalog(None))


@pytest.mark.parametrize("columns", [80, 120])
def test_profiles_never_cut_names_on_a_terminal(columns: int) -> None:
    """In a pseudo-terminal of ``columns`` columns (rich sizes tables to it)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns), "TERM": "dumb"}
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli.main", "profiles"], cwd=ROOT,
                            stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=60) == 0
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode())
    cells = {c.strip() for line in text.splitlines() for c in line.split("\u2502")}
    missing = [n for n in _names() if n not in cells]
    assert not missing, f"names cut at {columns} columns: {missing}\n{text}"


def test_profiles_in_a_pipe_are_whole(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert "\u2026" not in out
    cells = {c.strip() for line in out.splitlines() for c in line.split("\u2502")}
    assert set(_names()) <= cells
