"""Ray actor failures: a killed actor's jobs are re-run on a fresh actor and the run's tables are
identical to a run without the fault; ``executor.max_retries`` bounds the retries (a budget for
the whole run, like Ray's own ``max_restarts``); exhausting it fails the run with a one-line
FedFleetError and keeps the completed rounds (resumable when checkpoints are on).

Faults are injected deterministically: during chosen rounds the executor's ``ray`` module is
wrapped so that ``ray.kill`` hits actor 0 right before each ``ray.get`` -- after the round's
``train`` calls were submitted, i.e. while the round is running.
"""

from __future__ import annotations

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
from tests.conftest import small_doc

pytestmark = pytest.mark.ray

RAY = {"executor.kind": "ray", "executor.num_actors": 2, "executor.num_cpus_per_actor": 1}


def _dead(ray: Any, actor: Any) -> Any:
    """Kill ``actor`` and wait until calls to it fail, so the fault never races a fast task."""
    ray.kill(actor, no_restart=True)
    for _ in range(400):
        try:
            ray.get(actor.pid.remote(), timeout=10)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            return actor
        time.sleep(0.05)
    raise RuntimeError("killed actor still answers")


def _inject(monkeypatch: pytest.MonkeyPatch, kills_per_round: dict[int, int]) -> list[Any]:
    """Make ray executors lose an actor holding jobs in the given rounds: the actor is dead
    when the round's call reaches it, and the next ``kills - 1`` replacements die too."""
    from simulator.execution import ray_pool

    built: list[Any] = []

    class KillingExecutor(ray_pool.RayExecutor):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **k: Any) -> None:
            self.kills = 0
            self._kills_left = 0
            super().__init__(*a, **k)
            built.append(self)

        def _spawn(self) -> Any:
            actor = super()._spawn()
            if self._kills_left > 0:
                self._kills_left -= 1
                self.kills += 1
                return _dead(self.ray, actor)
            return actor

        def run(self, global_flat: np.ndarray, jobs: Any) -> Any:
            kills = kills_per_round.get(jobs.round, 0)
            if kills and len(jobs):
                owners = jobs.client_ids % self.n_actors
                a = 0 if (owners == 0).any() else int(owners[0])
                self.actors[a] = _dead(self.ray, self.actors[a])
                self.kills += 1
                self._kills_left = kills - 1
            try:
                return super().run(global_flat, jobs)
            finally:
                self._kills_left = 0

    monkeypatch.setattr(ray_pool, "RayExecutor", KillingExecutor)
    return built


def _tables(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    r = pd.read_parquet(run / "rounds.parquet").drop(columns=["wall_s"])
    return r, pd.read_parquet(run / "clients.parquet")


def _assert_same(a: Path, b: Path) -> None:
    ra, ca = _tables(a)
    rb, cb = _tables(b)
    pd.testing.assert_frame_equal(ra, rb, check_exact=True)
    pd.testing.assert_frame_equal(ca, cb, check_exact=True)


def _local_reference(tmp_path: Path, doc: dict[str, Any]) -> Path:
    ref = dict(doc, executor={"kind": "local"}, output={"checkpoint_every": 0})
    return run_scenario(parse_scenario(ref), name="local-ref", runs_dir=str(tmp_path / "ref"))


def test_killed_actor_is_replaced_and_results_are_identical(
        tmp_path: Path, ray_session: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = small_doc(name="faulty", rounds=3, **RAY, **{"executor.max_retries": 1})
    built = _inject(monkeypatch, {1: 1})  # actor 0 dies while round 1 runs
    run = run_scenario(parse_scenario(doc), runs_dir=str(tmp_path))
    (ex,) = built
    assert ex.kills == 1 and ex.retries_used == 1
    r, _ = _tables(run)
    assert r["completed"].sum() > 0
    _assert_same(run, _local_reference(tmp_path, doc))


def test_exhausted_retries_fail_cleanly_and_the_run_resumes(
        tmp_path: Path, ray_session: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = small_doc(name="doomed", rounds=5, **RAY,
                    **{"executor.max_retries": 1, "output.checkpoint_every": 2})
    _inject(monkeypatch, {3: 100})  # actor 0 keeps dying in round 3
    with pytest.raises(FedFleetError, match=r"executor.max_retries \(1\)") as err:
        run_scenario(parse_scenario(doc), runs_dir=str(tmp_path))
    assert "\n" not in str(err.value)
    partial = tmp_path / "doomed.partial"
    assert not (tmp_path / "doomed").exists() and (partial / "checkpoint.json").is_file()
    # The completed rounds' rows are on disk (rounds 0-2; round 2 after the checkpoint).
    done = pd.concat(pd.read_parquet(p) for p in sorted((partial / "parts").glob("rounds-*")))
    assert done["round"].tolist() == [0, 1, 2]

    monkeypatch.undo()  # the cluster is healthy again
    run = resume_run(tmp_path / "doomed")
    _assert_same(run, _local_reference(tmp_path, doc))


def test_exhausted_retries_without_checkpoints_via_cli(
        tmp_path: Path, ray_session: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    doc = small_doc(name="nockpt", rounds=3, **RAY, **{"executor.max_retries": 0})
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(doc))
    _inject(monkeypatch, {1: 1})
    rc = main(["run", str(f), "--runs-dir", str(tmp_path / "runs"), "--no-dashboard"])
    lines = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith("fedfleet: error: executor: actor 0 failed"), lines
    assert "executor.max_retries (0)" in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing resumable: nothing left behind


def test_startup_error_line_extracts_the_user_message():
    from simulator.execution.ray_pool import startup_error_line

    text = ("ActorDiedError: The actor died because of an error raised in its creation task\n"
            "  File x, line 3\nsimulator.InputError: data.path: file not found: 'a.txt'\n")
    assert startup_error_line(text) == "data.path: file not found: 'a.txt'"
    assert startup_error_line("RayError\nboom\n").startswith("executor: a Ray actor failed")
