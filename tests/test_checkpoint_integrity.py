"""Checkpoints prove themselves (simulator/io/checkpoint.py): checkpoint.json records its round,
the sha256 of scenario.json, of its npz and of every round part it covers, plus a digest of
itself; `fedfleet resume` checks all of it before anything is written. Each edit below is a
one-line error naming the file, exit 2, and the run directory is byte for byte unchanged."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simulator.cli.main import main
from simulator.config.scenario import parse_scenario
from simulator.io.checkpoint import _digest
from simulator.loop.runner import resume_run, run_scenario
from tests.conftest import small_doc

ROUNDS = 14


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run killed after round 11 with its checkpoint at round 10."""
    root = tmp_path_factory.mktemp("pristine")
    doc = small_doc(name="ck", rounds=ROUNDS, mode="analytic",
                    **{"output.checkpoint_every": 10})

    def crash(rep: Any) -> None:
        if rep.round == 11:
            raise Crash

    with pytest.raises(Crash):
        run_scenario(parse_scenario(doc), runs_dir=str(root), on_round=crash)
    meta = json.loads((root / "ck.partial" / "checkpoint.json").read_text())
    assert meta["next_round"] == 10
    return root


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _edit_json(path: Path, change: Callable[[dict[str, Any]], None], forge: bool) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    if forge:  # an editor who also recomputes the digest: the content checks still catch it
        meta["digest"] = _digest(meta)
    path.write_text(json.dumps(meta))


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m.__setitem__(key, value)


def _first_part(partial: Path) -> Path:
    return sorted((partial / "parts").glob("rounds-*.parquet"))[0]


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "next-round-35": (lambda p: _edit_json(p / "checkpoint.json", _set("next_round", 35), False),
                      "checkpoint.json"),
    "next-round-35-forged": (
        lambda p: _edit_json(p / "checkpoint.json", _set("next_round", 35), True),
        "checkpoint.json"),
    "next-round-minus-3-forged": (
        lambda p: _edit_json(p / "checkpoint.json", _set("next_round", -3), True),
        "checkpoint.json"),
    "next-round-12-forged": (  # in range, npz renamed to match: the parts do not cover it
        lambda p: (_edit_json(p / "checkpoint.json", lambda m: m.update(
            next_round=12, arrays="checkpoint-00000012.npz"), True),
            (p / "checkpoint-00000010.npz").rename(p / "checkpoint-00000012.npz")),
        "parts"),
    "rounds-in-scenario": (
        lambda p: (p / "scenario.json").write_text(json.dumps(dict(
            json.loads((p / "scenario.json").read_text()), rounds=40), indent=2)),
        "scenario.json"),
    "edited-part": (lambda p: _first_part(p).write_bytes(_first_part(p).read_bytes()[:-9]
                                                         + b"\x00" * 9), "rounds-"),
    "missing-part": (lambda p: _first_part(p).unlink(), "rounds-"),
    "edited-npz": (lambda p: (p / "checkpoint-00000010.npz").write_bytes(b"PK\x03\x04junk"),
                   "checkpoint-00000010.npz"),
    "arrays-outside-forged": (
        lambda p: _edit_json(p / "checkpoint.json", _set("arrays", "../../outside.npz"), True),
        "checkpoint.json"),
    "part-outside-forged": (
        lambda p: _edit_json(p / "checkpoint.json", lambda m: m["parts"].update(
            {"../../scenario.json": "0" * 64}), True),
        "checkpoint.json"),
    "no-integrity-record": (
        lambda p: _edit_json(p / "checkpoint.json", lambda m: m.pop("digest"), False),
        "checkpoint.json"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_edited_run_is_refused_and_left_unchanged(
        pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    damage, names = CASES[case]
    shutil.copytree(pristine / "ck.partial", tmp_path / "ck.partial")
    partial = tmp_path / "ck.partial"
    (tmp_path / "outside.npz").write_bytes((partial / "checkpoint-00000010.npz").read_bytes())
    damage(partial)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    rc = main(["resume", str(tmp_path / "ck"), "--no-dashboard"])
    lines = capsys.readouterr().err.splitlines()
    assert rc == 2, lines
    assert len(lines) == 1 and lines[0].startswith("fedfleet: error: "), lines
    assert names in lines[0] and "nothing was changed" in lines[0], lines[0]
    assert "--overwrite" in lines[0]  # the advice that works (a plain re-run is refused)
    assert _snapshot(tmp_path) == before  # nothing changed on disk, byte for byte
    assert not (tmp_path / "ck").exists()


def test_the_untouched_run_resumes(pristine: Path, tmp_path: Path) -> None:
    """The checks pass on an honest checkpoint (else every case above would be vacuous)."""
    shutil.copytree(pristine / "ck.partial", tmp_path / "ck.partial")
    run = resume_run(tmp_path / "ck")
    assert json.loads((run / "manifest.json").read_text())["rounds_run"] == ROUNDS


def test_checkpoint_records_what_it_covers(pristine: Path) -> None:
    partial = pristine / "ck.partial"
    meta = json.loads((partial / "checkpoint.json").read_text())
    sha = hashlib.sha256((partial / "scenario.json").read_bytes()).hexdigest()
    assert meta["scenario_sha256"] == sha
    assert meta["digest"] == _digest(meta)
    assert sorted(meta["parts"]) == sorted(
        p.name for p in (partial / "parts").glob("*-00000009.parquet"))
