"""Special files and sizes: scenario, profile and trace inputs must be regular files under a
stated size limit (simulator/io/files.py). A FIFO, a device or a directory is a one-line error,
exit 2, never a hang (each test has a timeout) or a MemoryError."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from simulator import InputError
from simulator.cli.main import main
from simulator.io import files
from tests.conftest import small_doc

pytestmark = pytest.mark.timeout(30)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err.splitlines()


def _one_line_error(rc: int, lines: list[str], *needles: str) -> None:
    assert rc == 2, lines
    assert len(lines) == 1 and lines[0].startswith("fedfleet: error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _special(tmp_path: Path, kind: str, name: str) -> Path:
    if kind == "fifo":
        p = tmp_path / name
        os.mkfifo(p)  # no writer: a plain open() would block forever
        return p
    if kind == "device":
        return Path("/dev/zero")  # a read() of it never ends
    p = tmp_path / name
    p.mkdir()
    return p


WHAT = {"fifo": "FIFO", "device": "a device", "directory": "a directory"}


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_scenario_file_must_be_regular(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       kind: str, command: str) -> None:
    p = _special(tmp_path, kind, "scenario.yaml")
    argv = [command, str(p)] + (["--runs-dir", str(tmp_path / "runs"), "--no-dashboard"]
                                if command == "run" else [])
    rc, lines = _cli(argv, capsys)
    _one_line_error(rc, lines, str(p), WHAT[kind], "regular file")
    assert not (tmp_path / "runs").exists()


def test_oversized_scenario_is_refused_unread(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "huge.yaml"
    with open(p, "wb") as f:  # sparse: 5 GiB on paper, nothing on disk
        f.truncate(5 << 30)
    rc, lines = _cli(["validate", str(p)], capsys)
    _one_line_error(rc, lines, str(p), "limit")


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_profile_file_must_be_regular(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      kind: str) -> None:
    prof = tmp_path / "profiles"
    prof.mkdir()
    if kind == "device":
        (prof / "zero.yaml").symlink_to("/dev/zero")
    else:
        _special(prof, kind, "bad.yaml")
    doc = small_doc(**{"population.profiles_dir": str(prof),
                       "population.mix": [{"profile": "rpi4", "share": 1.0}]})
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump(doc))
    rc, lines = _cli(["validate", str(sc)], capsys)
    _one_line_error(rc, lines, WHAT[kind], "regular file")


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_trace_table_must_be_regular(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     kind: str) -> None:
    p = _special(tmp_path, kind, "fleet.parquet")
    doc = small_doc(**{"mode": "analytic", "population.trace": {"path": str(p)}})
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump(doc))
    rc, lines = _cli(["validate", str(sc)], capsys)
    _one_line_error(rc, lines, "population.trace.path", WHAT[kind])


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_pickle_and_trace_readers_refuse_special_files(tmp_path: Path, kind: str) -> None:
    from simulator.fleet.traces import load_trace_table
    from simulator.io.safe_pickle import safe_load_pickle

    p = _special(tmp_path, kind, "trace.bin")
    for reader in (safe_load_pickle, load_trace_table):
        with pytest.raises(InputError, match=WHAT[kind]) as err:
            reader(p)
        assert "\n" not in str(err.value)


def test_import_cli_refuses_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _special(tmp_path, "fifo", "capacity.pkl")
    out = tmp_path / "o.parquet"
    rc, lines = _cli(["profiles", "import", str(p), "--out", str(out)], capsys)
    _one_line_error(rc, lines, str(p), "FIFO")
    assert not out.exists()


def test_limit_counts_bytes_actually_read(tmp_path: Path) -> None:
    p = tmp_path / "f.yaml"
    p.write_bytes(b"x" * 101)
    with pytest.raises(InputError, match="over the 100 bytes limit"):
        files.read_regular_file(p, 100, what="scenario file")
    assert files.read_regular_file(p, 101) == b"x" * 101
