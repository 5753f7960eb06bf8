"""Malformed scenarios, profiles and traces: exit code 2, one line per problem, no traceback.

Every case goes through the CLI (``simulator.cli.main.main``, in-process) and checks that each
stderr
line starts with ``fedfleet: error: ``, names the field, and that no run directory was created.
A few cases also run as a real subprocess (``python -m simulator.cli.main``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.cli.main import main
from tests.conftest import ROOT, small_doc

PREFIX = "fedfleet: error: "
MAX_LINE = 400  # a "one-line error" stays readable


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def _bomb(levels: int, field: str = "data:\n  dataset: *b{last}\n") -> str:
    """A billion-laughs document: 9**levels leaves through aliases, used in ``field``."""
    lines = ["defs:", "  - &b0 [" + ", ".join(["lol"] * 9) + "]"]
    for i in range(1, levels):
        lines.append(f"  - &b{i} [" + ", ".join([f"*b{i - 1}"] * 9) + "]")
    doc = small_doc()
    del doc["data"]
    return "\n".join(lines) + "\n" + _dump(doc) + field.format(last=levels - 1)


def _deep(depth: int) -> str:
    return _dump(small_doc()) + "description: " + "[" * depth + "]" * depth + "\n"


# (id, file content (text/bytes/dict), text each error must contain)
SCENARIO_CASES: list[tuple[str, Any, str]] = [
    ("invalid-yaml", "name: [unclosed\nrounds: 3\n", "invalid YAML"),
    ("tab-indent", "name:\tx\n\trounds: 3\n", "invalid YAML"),
    ("not-a-mapping", "- 1\n- 2\n", "(top level)"),
    ("scalar", "42\n", "(top level)"),
    ("empty-file", "", "(top level)"),
    ("wrong-type-int", small_doc(rounds="many"), "rounds"),
    ("wrong-type-float", small_doc(**{"training.lr": "fast"}), "training.lr"),
    ("wrong-type-bool-as-int", "rounds: yes\n" + _dump({k: v for k, v in small_doc().items()
                                                      if k != "rounds"}), "rounds"),
    ("wrong-type-bool-in-float", small_doc(overcommit=True), "overcommit"),
    ("wrong-type-bool-in-list", small_doc(**{"model.hidden": [True, 8]}), "model.hidden"),
    ("wrong-type-mapping", small_doc(population=[1, 2]), "population"),
    ("wrong-type-list", small_doc(**{"population.mix": "phone"}), "population.mix"),
    ("unknown-key", small_doc(bogus=1), "bogus"),
    ("unknown-nested-key", small_doc(**{"training.epochz": 2}), "training.epochz"),
    ("missing-required", {k: v for k, v in small_doc().items() if k != "rounds"}, "rounds"),
    ("negative-size", small_doc(**{"population.size": -5}), "population.size"),
    ("zero-size", small_doc(**{"population.size": 0}), "population.size"),
    ("huge-size", small_doc(**{"population.size": 10**30}), "population.size"),
    ("huge-rounds", small_doc(rounds=10**12), "rounds"),
    ("negative-lr", small_doc(**{"training.lr": -0.1}), "training.lr"),
    ("nan-overcommit", small_doc(overcommit=float("nan")), "overcommit"),
    ("inf-deadline", small_doc(deadline_s=float("inf")), "deadline_s"),
    ("huge-hidden", small_doc(**{"model.hidden": [10**9]}), "model.hidden"),
    ("probability-above-1", small_doc(**{"data.test_fraction": 1.5}), "data.test_fraction"),
    ("probability-negative", small_doc(**{"training.momentum": -0.5}), "training.momentum"),
    ("share-above-1", small_doc(**{"population.mix": [{"profile": "rpi4", "share": 1.5}]}),
     "population.mix[0].share"),
    ("shares-not-summing", small_doc(**{"population.mix": [{"profile": "rpi4", "share": 0.5}]}),
     "population"),
    ("empty-population", small_doc(**{"population.mix": []}), "population.mix"),
    ("more-per-round-than-clients", small_doc(clients_per_round=500), "clients_per_round"),
    ("unknown-profile", small_doc(**{"population.mix": [{"profile": "nokia-3310", "share": 1}]}),
     "population.mix[0].profile"),
    ("unknown-policy", small_doc(**{"selection.policy": "best-ever"}), "selection.policy"),
    ("plugin-not-listed", small_doc(**{"selection.policy": "evil.module.Selector"}),
     "selection.policy"),
    ("unknown-model", small_doc(**{"model.kind": "resnet"}), "model.kind"),
    ("unknown-dataset", small_doc(**{"data.dataset": "cifar"}), "data.dataset"),
    ("unknown-executor", small_doc(**{"executor.kind": "spark"}), "executor.kind"),
    ("negative-resources", small_doc(**{"executor.resources": {"accel": -1}}),
     "executor.resources"),
    ("nan-resources", small_doc(**{"executor.resources": {"accel": float("nan")}}),
     "executor.resources"),
    ("missing-profiles-dir", small_doc(**{"population.profiles_dir": "/nonexistent/profiles"}),
     "population.profiles_dir"),
    ("profiles-dir-is-a-file", small_doc(**{"population.profiles_dir": "/etc/hostname"}),
     "population.profiles_dir"),
    ("profiles-dir-too-long", small_doc(**{"population.profiles_dir": "p" * 5000}),
     "population.profiles_dir"),
    ("missing-data-file", small_doc(**{"data.path": "/nonexistent/data.txt"}), "data.path"),
    ("data-path-too-long", small_doc(**{"data.path": "d" * 5000}), "data.path"),
    ("bad-scenario-name", small_doc(name="../../etc"), "name"),
    ("non-utf8", b"name: caf\xe9\nrounds: 3\n", "not UTF-8"),
    ("binary-garbage", bytes(range(256)) * 8, "not UTF-8"),
    ("nul-bytes", b"name: a\x00b\n", "invalid YAML"),
    ("python-tag", "name: !!python/object/apply:os.system ['echo pwned']\n", "invalid YAML"),
    ("yaml-bomb-unknown-key", _bomb(9, ""), "defs"),
    ("yaml-bomb-in-literal", _bomb(8), "data.dataset"),
    ("deeply-nested", _deep(600), "nesting too deep"),
    # PyYAML's scalar constructors raise ValueError / IndexError / AttributeError on these:
    ("yaml-int-too-long", "rounds: " + "9" * 5000 + "\n", "invalid YAML"),
    ("yaml-bad-date", _dump(small_doc()) + "description: 2001-13-45\n", "invalid YAML"),
    ("yaml-empty-int-tag", "rounds: !!int\n", "invalid YAML"),
    ("yaml-bad-timestamp-tag", "description: !!timestamp soon\n", "invalid YAML"),
    ("unknown-key-with-newline", small_doc(**{"bo\ngus": 1}), "bo\\ngus"),
    ("nested-garbage", _deep(300), "description"),
]


def _write(path: Path, content: Any) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else _dump(content), encoding="utf-8")
    return path


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err.splitlines()


def _assert_clean_error(rc: int, lines: list[str], needle: str, echo: int = 0) -> None:
    """``echo``: length of user text a message may legitimately repeat (e.g. a long path)."""
    assert rc == 2, lines
    for line in lines:
        assert line.startswith(PREFIX), line
        assert "Traceback" not in line
        assert len(line) <= MAX_LINE + echo, f"line of {len(line)} characters: {line[:200]}..."
    assert any(needle in line for line in lines), (needle, lines)


def _assert_no_run_dirs(tmp_path: Path) -> None:
    assert not (tmp_path / "runs").exists(), list((tmp_path / "runs").rglob("*"))
    assert not any(p.name.endswith(".partial") for p in tmp_path.rglob("*"))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # a stray default "runs/" would land here
    return tmp_path


@pytest.mark.parametrize("content,needle", [c[1:] for c in SCENARIO_CASES],
                         ids=[c[0] for c in SCENARIO_CASES])
def test_bad_scenario_run(workdir: Path, capsys: pytest.CaptureFixture[str], content: Any,
                          needle: str) -> None:
    f = _write(workdir / "scenario.yaml", content)
    rc, lines = _cli(["run", str(f), "--runs-dir", str(workdir / "runs"), "--no-dashboard"],
                     capsys)
    _assert_clean_error(rc, lines, needle)
    _assert_no_run_dirs(workdir)


@pytest.mark.parametrize("content,needle", [c[1:] for c in SCENARIO_CASES[:12]],
                         ids=[c[0] for c in SCENARIO_CASES[:12]])
def test_bad_scenario_validate(workdir: Path, capsys: pytest.CaptureFixture[str], content: Any,
                               needle: str) -> None:
    f = _write(workdir / "scenario.yaml", content)
    rc, lines = _cli(["validate", str(f)], capsys)
    _assert_clean_error(rc, lines, needle)


def test_every_problem_is_reported(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = small_doc(rounds=-1, bogus=1, **{"training.lr": "x", "data.test_fraction": 2})
    rc, lines = _cli(["validate", str(_write(workdir / "s.yaml", doc))], capsys)
    assert rc == 2
    for field in ("rounds", "bogus", "training.lr", "data.test_fraction"):
        assert any(line.startswith(PREFIX + field + ":") for line in lines), (field, lines)


# --- files that are not scenario files ------------------------------------------------------------
def _missing(p: Path) -> str:
    return str(p / "nope.yaml")


def _directory(p: Path) -> str:
    (p / "adir.yaml").mkdir()
    return str(p / "adir.yaml")


def _fifo_free_unreadable(p: Path) -> str:
    # Running as root, chmod cannot make a file unreadable; /proc/self/mem fails on read (EIO).
    return "/proc/self/mem"


FILE_CASES: list[tuple[str, Callable[[Path], str], str]] = [
    ("missing", _missing, "file not found"),
    ("directory", _directory, "is a directory"),
    ("unreadable", _fifo_free_unreadable, "cannot read"),
]


@pytest.mark.parametrize("make,needle", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_scenario_file(workdir: Path, capsys: pytest.CaptureFixture[str],
                           make: Callable[[Path], str], needle: str) -> None:
    path = make(workdir)
    if path.startswith("/proc") and not Path(path).exists():
        pytest.skip("no /proc on this system")
    rc, lines = _cli(["run", path, "--runs-dir", str(workdir / "runs"), "--no-dashboard"], capsys)
    _assert_clean_error(rc, lines, needle)
    assert any(path in line for line in lines)
    _assert_no_run_dirs(workdir)


def test_permission_denied(workdir: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    f = _write(workdir / "s.yaml", small_doc())

    real_open = os.open

    def deny(path: Any, *a: Any, **k: Any) -> int:  # only the scenario file is unreadable
        if str(path) == str(f):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    rc, lines = _cli(["validate", str(f)], capsys)
    _assert_clean_error(rc, lines, "permission denied")


# --- run names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "/abs", "..", ".", "a/b", "a\\b", "-rf", "", "x" * 200,
                                  "na\x00me", "ü"])
def test_run_name_cannot_escape_runs_dir(workdir: Path, capsys: pytest.CaptureFixture[str],
                                         name: str) -> None:
    f = _write(workdir / "s.yaml", small_doc())
    rc, lines = _cli(["run", str(f), f"--name={name}", "--runs-dir", str(workdir / "runs"),
                      "--no-dashboard"], capsys)
    _assert_clean_error(rc, lines, "--name", echo=len(name))
    _assert_no_run_dirs(workdir)
    assert not (workdir.parent / "x").exists() and not Path("/abs").exists()


# --- --set overrides ------------------------------------------------------------------------------
@pytest.mark.parametrize("item,needle", [
    ("rounds", "--set"),
    ("rounds=[1,2", "rounds"),
    ("rounds=!!python/object/apply:os.system [ls]", "rounds"),
    ("rounds=!!int", "rounds"),
    ("rounds=2001-13-45", "rounds"),
    ("population.size.x=3", "population.size"),
    ("nonsense.key=1", "nonsense"),
])
def test_bad_set_override(workdir: Path, capsys: pytest.CaptureFixture[str], item: str,
                          needle: str) -> None:
    f = _write(workdir / "s.yaml", small_doc())
    rc, lines = _cli(["run", str(f), "--set", item, "--runs-dir", str(workdir / "runs"),
                      "--no-dashboard"], capsys)
    _assert_clean_error(rc, lines, needle)
    _assert_no_run_dirs(workdir)


# --- errors found only when the run starts (checkpointed runs included) --------------------------
def test_unimportable_plugin_leaves_no_partial_run(workdir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    doc = small_doc(plugins=["no_such_pkg.selectors.Mine"],
                    **{"selection.policy": "no_such_pkg.selectors.Mine",
                       "output.checkpoint_every": 2})
    f = _write(workdir / "s.yaml", doc)
    rc, lines = _cli(["run", str(f), "--runs-dir", str(workdir / "runs"), "--no-dashboard"],
                     capsys)
    _assert_clean_error(rc, lines, "selection.policy")
    _assert_no_run_dirs(workdir)


# --- device profiles ------------------------------------------------------------------------------
def _profile_doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "device_profiles" / "rpi4.yaml").read_text())


PROFILE_CASES: list[tuple[str, Any, str]] = [
    ("invalid-yaml", "name: [x\n", "invalid YAML"),
    ("not-a-mapping", "- a\n", "mapping"),
    ("non-utf8", b"name: \xff\xfe\n", "UTF-8"),
    ("binary-garbage", bytes(range(256)) * 4, "UTF-8"),
    ("python-tag", "name: !!python/object/apply:os.system ['echo pwned']\n", "invalid YAML"),
    ("deeply-nested", "name: " + "[" * 600 + "]" * 600 + "\n", "nesting"),
    ("yaml-bad-date", "name: 2001-13-45\n", "invalid YAML"),
    ("missing-field", {k: v for k, v in _profile_doc().items() if k != "compute"}, "compute"),
    ("unknown-field", dict(_profile_doc(), colour="red"), "colour"),
    ("negative-memory", dict(_profile_doc(), memory=dict(_profile_doc()["memory"],
                                                       memory_bytes=-1)), "memory"),
    ("probability-above-1", dict(_profile_doc(), memory=dict(_profile_doc()["memory"],
                                                           usable_fraction=1.5)), "memory"),
]


@pytest.mark.parametrize("content,needle", [c[1:] for c in PROFILE_CASES],
                         ids=[c[0] for c in PROFILE_CASES])
def test_bad_profile(workdir: Path, capsys: pytest.CaptureFixture[str], content: Any,
                     needle: str) -> None:
    pdir = workdir / "profiles"
    pdir.mkdir()
    bad = _write(pdir / "my-device.yaml", content)
    doc = small_doc(**{"population.profiles_dir": str(pdir)})
    f = _write(workdir / "s.yaml", doc)
    rc, lines = _cli(["run", str(f), "--runs-dir", str(workdir / "runs"), "--no-dashboard"],
                     capsys)
    _assert_clean_error(rc, lines, needle)
    assert any(str(bad) in line for line in lines), lines
    _assert_no_run_dirs(workdir)


def test_profile_directory_entry(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pdir = workdir / "profiles"
    (pdir / "sub.yaml").mkdir(parents=True)
    f = _write(workdir / "s.yaml", small_doc(**{"population.profiles_dir": str(pdir)}))
    rc, lines = _cli(["validate", str(f)], capsys)
    _assert_clean_error(rc, lines, "sub.yaml")


# --- FedScale traces ------------------------------------------------------------------------------
def _pickle(obj: Any) -> bytes:
    import pickle

    return pickle.dumps(obj)


TRACE_CASES: list[tuple[str, Any, str]] = [
    ("binary-garbage", bytes(range(256)) * 4, "pickle"),
    ("empty", b"", "pickle"),
    ("truncated", _pickle({1: {"computation": 1.0, "communication": 2.0}})[:-5], "pickle"),
    ("python-object", _pickle(Path("/etc")), "Python object"),
    ("wrong-structure", _pickle([1, 2, 3]), "capacity"),
    ("negative-bandwidth", _pickle({1: {"computation": 1.0, "communication": -2.0}}),
     "client 1: 'communication' must be a finite positive number, got -2.0"),
]


@pytest.mark.parametrize("content,needle", [c[1:] for c in TRACE_CASES],
                         ids=[c[0] for c in TRACE_CASES])
def test_bad_trace(workdir: Path, capsys: pytest.CaptureFixture[str], content: bytes,
                   needle: str) -> None:
    src = workdir / "capacity.pkl"
    src.write_bytes(content)
    out = workdir / "fleet.parquet"
    rc, lines = _cli(["profiles", "import", str(src), "--out", str(out)], capsys)
    _assert_clean_error(rc, lines, str(src))
    assert any(needle.lower() in line.lower() for line in lines), lines
    assert not out.exists()
    assert not [p for p in workdir.iterdir() if p.name.startswith(".") and "tmp" in p.name]


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_trace_file_not_a_file(workdir: Path, capsys: pytest.CaptureFixture[str],
                               kind: str) -> None:
    src = workdir / "capacity.pkl"
    if kind == "directory":
        src.mkdir()
    rc, lines = _cli(["profiles", "import", str(src), "--out", str(workdir / "o.parquet")], capsys)
    _assert_clean_error(rc, lines, str(src))


# --- real subprocesses ----------------------------------------------------------------------------
SUBPROCESS_CASES = [
    ("invalid-yaml", "name: [unclosed\n", [], "invalid YAML"),
    ("unknown-key", small_doc(bogus=1), [], "bogus"),
    ("name-escape", small_doc(), ["--name", "../../x"], "--name"),
    ("python-tag", "name: !!python/object/apply:os.system ['touch pwned']\n", [], "invalid YAML"),
]


@pytest.mark.parametrize("content,extra,needle", [c[1:] for c in SUBPROCESS_CASES],
                         ids=[c[0] for c in SUBPROCESS_CASES])
def test_bad_input_subprocess(tmp_path: Path, content: Any, extra: list[str], needle: str) -> None:
    f = _write(tmp_path / "s.yaml", content)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run(
        [sys.executable, "-m", "simulator.cli.main", "run", str(f), "--runs-dir",
         str(tmp_path / "runs"), "--no-dashboard", *extra],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    _assert_clean_error(res.returncode, res.stderr.splitlines(), needle)
    assert not (tmp_path / "pwned").exists()
    _assert_no_run_dirs(tmp_path)
