"""Checkpoint and resume: a killed run finishes with `fedfleet resume` and its tables equal those
of an uninterrupted run (wall-clock columns aside): no round lost, none duplicated.

The checkpoint holds the global model, selector (and other policy) state and the clock; random
streams are derived from (seed, purpose, round[, client]) so no generator state is saved. Tests
here check that claim both statically (no global RNG in the simulator) and by resuming with every
global generator perturbed.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from simulator import FedFleetError
from simulator.cli.main import main
from simulator.config.scenario import parse_scenario
from simulator.loop.runner import resume_run, run_scenario
from tests.conftest import ROOT, small_doc


class Crash(Exception):
    """Stands in for a crash at a chosen point of a run."""


def _tables(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    r = pd.read_parquet(run_dir / "rounds.parquet")
    c = pd.read_parquet(run_dir / "clients.parquet")
    wall = [col for col in (*r.columns, *c.columns) if "wall" in col]
    return (r.drop(columns=[x for x in wall if x in r.columns]),
            c.drop(columns=[x for x in wall if x in c.columns]))


def _assert_same_run(a: Path, b: Path, rounds: int) -> None:
    ra, ca = _tables(a)
    rb, cb = _tables(b)
    assert ra["round"].tolist() == list(range(rounds))  # none lost, none duplicated
    # (a buffered run may record one client twice in an aggregation: two tasks, two starts)
    assert not ca.duplicated(["round", "client_id", "start_s"]).any()
    pd.testing.assert_frame_equal(ra, rb, check_exact=True)
    pd.testing.assert_frame_equal(ca, cb, check_exact=True)


def _assert_clean_final_dir(run: Path) -> None:
    names = {p.name for p in run.rglob("*")}
    assert "manifest.json" in names
    leftovers = [n for n in names if n.endswith(".tmp") or n.startswith("checkpoint")
                 or n == "parts"]
    assert not leftovers, leftovers
    assert not run.with_name(run.name + ".partial").exists()


def _reference(tmp_path: Path, doc: dict[str, Any]) -> Path:
    """The same scenario, uninterrupted (local: executors give identical tables)."""
    ref = dict(doc, output={**doc.get("output", {}), "checkpoint_every": 0},
               executor={"kind": "local"})
    return run_scenario(parse_scenario(ref), name="reference", runs_dir=str(tmp_path / "ref"))


def _crash_at(round_index: int):  # type: ignore[no-untyped-def]
    def on_round(rep: Any) -> None:
        if rep.round == round_index:
            raise Crash(f"crash after round {round_index}")
    return on_round


def _perturb_global_rngs() -> None:
    """Resuming must not depend on any process-global generator."""
    import torch

    np.random.seed(12345)
    np.random.rand(7)
    random.seed(999)
    torch.manual_seed(4242)
    torch.rand(3)


# --- a real process, really killed ---------------------------------------------------------------
RAY_EXECUTOR = {"executor.kind": "ray", "executor.num_actors": 2,
                "executor.num_cpus_per_actor": 1}


# The Ray variant starts two private Ray instances (run, resume) with fresh actors: 30-50 s on
# two cores, so it is opt-in (FEDFLEET_LONG_TESTS=1). Ray checkpoint + resume is also covered
# in-process by tests/test_actor_failure.py.
LONG = pytest.mark.skipif(os.environ.get("FEDFLEET_LONG_TESTS") != "1",
                          reason="long test: set FEDFLEET_LONG_TESTS=1")


# Every trigger checkpoints: the buffered one saves its event heap, tasks in flight and the model
# versions they train from (simulator/loop/buffered.py).
TRIGGER_DOCS: dict[str, dict[str, Any]] = {
    "sync": {},
    "buffered": {"aggregation.method": "fedbuff",
                 "aggregation.fedbuff": {"concurrency": 12, "buffer_size": 4, "max_staleness": 3}},
}


@pytest.mark.parametrize("executor,trigger", [
    ("local", "sync"),
    ("local", "buffered"),
    pytest.param("ray", "sync", marks=[pytest.mark.ray, pytest.mark.slow, LONG]),
])
def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path, executor: str,
                                                   trigger: str) -> None:
    rounds = 40 if executor == "local" else 24
    _sigkill_and_resume(tmp_path, executor, trigger, rounds=rounds, kill_at=6,
                        over=RAY_EXECUTOR if executor == "ray" else {})


def _sigkill_and_resume(tmp_path: Path, executor: str, trigger: str, *, rounds: int,
                        kill_at: int, over: dict[str, Any]) -> None:
    doc = small_doc(name="crashy", rounds=rounds, **{"output.checkpoint_every": 2}, **over,
                    **TRIGGER_DOCS[trigger])
    scenario = tmp_path / "crashy.yaml"
    scenario.write_text(yaml.safe_dump(doc))
    runs = tmp_path / "runs"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "simulator.cli.main"]
    proc = subprocess.Popen([*cmd, "run", str(scenario), "--runs-dir", str(runs), "--no-dashboard"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    partial = runs / "crashy.partial"
    deadline = time.monotonic() + 180
    try:
        while True:
            ck = partial / "checkpoint.json"
            # checkpoint.json is replaced atomically, so a read sees a whole file or none.
            if ck.exists() and json.loads(ck.read_text())["next_round"] >= kill_at:
                break
            assert proc.poll() is None, f"run ended before it was killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (runs / "crashy").exists() and partial.is_dir()
    killed_at = json.loads((partial / "checkpoint.json").read_text())["next_round"]
    assert killed_at < rounds

    res = subprocess.run([*cmd, "resume", str(runs / "crashy"), "--no-dashboard"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    run = runs / "crashy"
    _assert_clean_final_dir(run)
    assert json.loads((run / "manifest.json").read_text())["resumed"] is True
    _assert_same_run(run, _reference(tmp_path, doc), rounds)


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_ray_sigkill_then_resume_short(tmp_path: Path) -> None:
    """The Ray variant, short enough for `make test` (not slow, not opt-in): one actor, six
    rounds, killed with SIGKILL after the checkpoint at round 2, resumed on a fresh Ray."""
    _sigkill_and_resume(tmp_path, "ray", "sync", rounds=6, kill_at=2,
                        over={"executor.kind": "ray", "executor.num_actors": 1,
                              "executor.num_cpus_per_actor": 1})


# --- crashes at chosen points, in-process ---------------------------------------------------------
def test_crash_between_checkpoints_resumes_identically(tmp_path: Path) -> None:
    doc = small_doc(name="c1", rounds=8, **{"output.checkpoint_every": 3})
    with pytest.raises(Crash):
        run_scenario(parse_scenario(doc), runs_dir=str(tmp_path), on_round=_crash_at(4))
    partial = tmp_path / "c1.partial"
    assert json.loads((partial / "checkpoint.json").read_text())["next_round"] == 3
    # Round 3 and 4 were recorded after the checkpoint; resume must redo them exactly once.
    _perturb_global_rngs()
    run = resume_run(tmp_path / "c1")
    _assert_clean_final_dir(run)
    _assert_same_run(run, _reference(tmp_path, doc), 8)


def test_crash_while_writing_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between the npz and the JSON of a checkpoint falls back to the previous one."""
    import simulator.io.checkpoint as ckmod

    real = ckmod.atomic_write_bytes
    calls = {"json": 0}

    def flaky(path: Path, data: bytes) -> None:
        if path.name == "checkpoint.json":
            calls["json"] += 1
            if calls["json"] == 2:
                raise Crash("power cut while writing checkpoint.json")
        real(path, data)

    monkeypatch.setattr(ckmod, "atomic_write_bytes", flaky)
    doc = small_doc(name="c2", rounds=7, **{"output.checkpoint_every": 2})
    with pytest.raises(Crash):
        run_scenario(parse_scenario(doc), runs_dir=str(tmp_path))
    monkeypatch.setattr(ckmod, "atomic_write_bytes", real)
    partial = tmp_path / "c2.partial"
    assert json.loads((partial / "checkpoint.json").read_text())["next_round"] == 2
    run = resume_run(tmp_path / "c2")
    _assert_same_run(run, _reference(tmp_path, doc), 7)


def test_stray_temp_files_do_not_reach_the_finished_run(tmp_path: Path) -> None:
    """SIGKILL during an atomic write leaves its temp file; the finished run must not keep it."""
    doc = small_doc(name="c3", rounds=5, **{"output.checkpoint_every": 2})
    with pytest.raises(Crash):
        run_scenario(parse_scenario(doc), runs_dir=str(tmp_path), on_round=_crash_at(2))
    partial = tmp_path / "c3.partial"
    (partial / ".checkpoint-00000004.npz.x1y2z3.tmp").write_bytes(b"half")
    (partial / "parts" / ".rounds-00000002-00000003.parquet.a1b2c3.tmp").write_bytes(b"half")
    (partial / ".rounds.parquet.tmp").write_bytes(b"half")
    run = resume_run(tmp_path / "c3")
    _assert_clean_final_dir(run)
    _assert_same_run(run, _reference(tmp_path, doc), 5)


def _policies() -> list[str]:
    from simulator.selection.base import known_policies

    return known_policies()


@pytest.mark.parametrize("policy", _policies())
def test_resume_keeps_selector_state(tmp_path: Path, policy: str) -> None:
    """Every registered policy: a crash + resume gives the uninterrupted run's tables."""
    doc = small_doc(name=f"p-{policy}", rounds=7, **{"selection.policy": policy,
                                                     "output.checkpoint_every": 2})
    with pytest.raises(Crash):
        run_scenario(parse_scenario(doc), runs_dir=str(tmp_path), on_round=_crash_at(4))
    _perturb_global_rngs()
    run = resume_run(tmp_path / f"p-{policy}")
    _assert_same_run(run, _reference(tmp_path, doc), 7)


# --- resume errors --------------------------------------------------------------------------------
def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err.splitlines()


def _crashed_run(tmp_path: Path, name: str = "bad") -> Path:
    doc = small_doc(name=name, rounds=5, **{"output.checkpoint_every": 2})
    with pytest.raises(Crash):
        run_scenario(parse_scenario(doc), runs_dir=str(tmp_path), on_round=_crash_at(2))
    return tmp_path / f"{name}.partial"


@pytest.mark.parametrize("damage", ["garbage-json", "json-list", "missing-npz", "garbage-npz",
                                    "missing-keys", "pickled-npz"])
def test_damaged_checkpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             damage: str) -> None:
    partial = _crashed_run(tmp_path)
    ck = partial / "checkpoint.json"
    meta = json.loads(ck.read_text())
    npz = partial / meta["arrays"]
    if damage == "garbage-json":
        ck.write_bytes(b"\x00{not json")
    elif damage == "json-list":
        ck.write_text("[1, 2]")
    elif damage == "missing-npz":
        npz.unlink()
    elif damage == "garbage-npz":
        npz.write_bytes(os.urandom(256))
    elif damage == "missing-keys":
        ck.write_text(json.dumps({"arrays": meta["arrays"]}))
    else:  # an object array needs pickle, which the loader refuses
        np.savez(npz, global_flat=np.array([object()], dtype=object))
    rc, lines = _cli(["resume", str(tmp_path / "bad"), "--no-dashboard"], capsys)
    assert rc == 2, lines
    assert len(lines) == 1 and lines[0].startswith("fedfleet: error: "), lines
    assert "checkpoint" in lines[0]
    assert partial.is_dir()  # nothing is thrown away


@pytest.mark.parametrize("what", ["complete", "missing", "no-scenario"])
def test_resume_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str) -> None:
    if what == "complete":
        run_scenario(parse_scenario(small_doc(name="done", rounds=2)), runs_dir=str(tmp_path))
        target, needle = tmp_path / "done", "already complete"
    elif what == "missing":
        target, needle = tmp_path / "ghost", "no unfinished run"
    else:
        partial = _crashed_run(tmp_path, "nosc")
        (partial / "scenario.json").unlink()
        target, needle = tmp_path / "nosc", "scenario.json"
    rc, lines = _cli(["resume", str(target), "--no-dashboard"], capsys)
    assert rc == 2 and len(lines) == 1 and needle in lines[0], lines


# --- the "no RNG state" claim ---------------------------------------------------------------------
GLOBAL_RNG = re.compile(
    r"np\.random\.(rand|randn|randint|random|choice|shuffle|permutation|normal|uniform|seed|"
    r"get_state|set_state)\b|np\.random\.default_rng\(\s*\)|\bimport random\b|\bfrom random\b|"
    r"torch\.(rand|randn|randint|randperm|bernoulli|normal|multinomial)\(")
# workloads/calibration.py measures the local machine (random matrices to time matmuls); it never
# decides a simulated outcome, so it is not part of the determinism contract.
NOT_SIMULATION = {"calibration.py"}


def test_simulator_uses_no_global_rng() -> None:
    hits = []
    for path in sorted((ROOT / "simulator").rglob("*.py")):
        if path.name in NOT_SIMULATION:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            m = GLOBAL_RNG.search(code)
            # a torch draw from an explicit, seeded generator is not the global stream
            if m and not (m.group(0).startswith("torch.") and "generator=" in code):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "draw from simulator.core.rng streams instead:\n" + "\n".join(hits)


def test_training_ignores_global_rng_state() -> None:
    """Client jobs are reproducible whatever the process-global RNGs hold: the MLP draws its
    batch order from the job's seed and has no other randomness (no dropout)."""
    import torch

    from simulator.core import rng as R
    from simulator.core.jobs import JobBatch
    from simulator.workloads import build_workload

    sc = parse_scenario(small_doc())
    wl = build_workload(sc, sc.population.size)
    ids = np.array([3, 17, 42, 101], np.int64)
    seeds = np.array([R.int_seed(sc.seed, R.TRAINING, 0, c) for c in ids], np.uint64)
    jobs = JobBatch(0, ids, seeds, {})
    flat = wl.initial_state()
    first = wl.train(flat, jobs)
    torch.manual_seed(1)
    np.random.seed(1)
    second = wl.train(flat, jobs)
    first, second = first.sorted(), second.sorted()
    for field in ("sum_q", "weight", "client_ids", "loss_mean", "loss_sq_mean"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    # A different job seed changes the batch order, hence the update.
    other = JobBatch(0, ids, seeds + np.uint64(1), {})
    third = wl.train(flat, other).sorted()
    assert not np.array_equal(first.sum_q, third.sum_q)


def test_output_fault_in_checkpoint_is_a_clear_error(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while saving a checkpoint: a FedFleetError naming output.runs_dir."""
    import simulator.io.checkpoint as ckmod

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ckmod, "atomic_write_bytes", full)
    doc = small_doc(name="full", rounds=4, **{"output.checkpoint_every": 2})
    with pytest.raises(FedFleetError, match="output.runs_dir.*No space left"):
        run_scenario(parse_scenario(doc), runs_dir=str(tmp_path))
