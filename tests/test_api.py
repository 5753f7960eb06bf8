"""The public Python API (simulator/api.py, simulator/__init__.py, MemoryRecorder): inputs,
overrides, recorders, callbacks, plugins, errors, and a light ``import simulator``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import simulator
from simulator import FedFleetError
from simulator.io.recording import CLIENT_COLUMNS, ROUND_COLUMNS, MemoryRecorder
from tests.conftest import ROOT, small_doc


def tiny(**over: Any) -> dict[str, Any]:
    return small_doc(**{"population.size": 40, "clients_per_round": 8, "rounds": 3, **over})


def frames_equal(a: simulator.Run, b: simulator.Run) -> None:
    pd.testing.assert_frame_equal(a.rounds.drop(columns="wall_s"), b.rounds.drop(columns="wall_s"))
    pd.testing.assert_frame_equal(a.clients, b.clients)


def files_under(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def reference() -> simulator.Run:
    """``tiny()`` run in memory: what every input form below must reproduce."""
    return simulator.run(tiny(), recorder="memory")


# --- inputs -------------------------------------------------------------------------------------
def test_dict_path_and_scenario_inputs_give_the_same_run(workdir: Path,
                                                         reference: simulator.Run) -> None:
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(tiny()))
    sc = simulator.parse_scenario(tiny())
    for given in ("tiny.yaml", workdir / "tiny.yaml", sc, tiny()):
        got = simulator.run(given, recorder="memory")
        assert got.scenario == sc
        frames_equal(got, reference)
    assert reference.path is None and reference.final_accuracy == reference.rounds.accuracy.iloc[-1]
    assert len(reference.rounds) == 3 and set(reference.clients["round"]) == {0, 1, 2}


def test_disk_run_writes_the_cli_layout_and_reads_back_as_in_memory(
        workdir: Path, reference: simulator.Run) -> None:
    got = simulator.run(tiny())
    assert got.path == Path("runs") / "small"
    assert sorted(p.name for p in got.path.iterdir()) == [
        "clients.parquet", "manifest.json", "rounds.parquet", "scenario.json"]
    manifest = json.loads((got.path / "manifest.json").read_text())
    assert got.manifest == manifest and manifest["status"] == "complete"
    assert manifest["rounds_run"] == 3 and manifest["stopped_early"] is False
    frames_equal(got, reference)
    frames_equal(simulator.Run.open(got.path), reference)
    assert simulator.Run.open(got.path).scenario == got.scenario
    # options: another name and folder; the same name again needs overwrite=True
    other = simulator.run(tiny(), name="second", runs_dir=workdir / "elsewhere")
    assert other.path == workdir / "elsewhere" / "second" and other.name == "second"
    with pytest.raises(FedFleetError, match="already exists"):
        simulator.run(tiny())
    assert simulator.run(tiny(), overwrite=True).path == got.path


def test_the_package_exports_its_api_lazily() -> None:
    from simulator.api import Run, run
    from simulator.loop.simulation import Simulation

    assert simulator.run is run and simulator.Run is Run and simulator.Simulation is Simulation
    assert simulator.MemoryRecorder is MemoryRecorder and simulator.__version__
    from simulator.aggregation.strategy import register_strategy
    from simulator.core import registry

    assert simulator.register_strategy is register_strategy
    not_yet = []
    for name in simulator.__all__:
        try:
            getattr(simulator, name)
        except AttributeError:
            not_yet.append(name)
    # The registry's decorators are exported as soon as simulator/core/registry.py defines them.
    assert all(n.startswith("register_") and not hasattr(registry, n) for n in not_yet), not_yet
    assert "register_trigger" not in not_yet
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        simulator.nope  # noqa: B018


def test_import_simulator_is_light() -> None:
    code = textwrap.dedent("""
        import json, sys
        import simulator
        from simulator import FedFleetError, InputError
        heavy = ("torch", "ray", "pandas", "pyarrow", "simulator.loop", "simulator.api",
                 "simulator.config.scenario")
        print(json.dumps([m for m in heavy if m in sys.modules]))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=120, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


# --- overrides ----------------------------------------------------------------------------------
def test_overrides_as_keywords_and_as_a_dict(reference: simulator.Run) -> None:
    base = tiny(rounds=5, seed=1)
    kw = simulator.run(base, recorder="memory", rounds=3, seed=7, selection__policy="oort",
                       training__lr=0.05)
    as_dict = simulator.run(base, recorder="memory", overrides={
        "rounds": 3, "seed": 7, "selection.policy": "oort", "training.lr": 0.05})
    mixed = simulator.run(base, recorder="memory", rounds=3, seed=7,
                          overrides={"selection.policy": "oort", "training.lr": 0.05})
    for r in (kw, as_dict, mixed):
        assert (r.scenario.rounds, r.scenario.seed) == (3, 7)
        assert r.scenario.selection.policy == "oort" and r.scenario.training.lr == 0.05
        frames_equal(r, kw)
    assert base["rounds"] == 5 and base["seed"] == 1  # the caller's document is not modified
    # a Scenario is re-validated with the overrides; without them it is used as it is
    sc = simulator.parse_scenario(base)
    assert simulator.run(sc, recorder="memory", rounds=3, seed=7, selection__policy="oort",
                         training__lr=0.05).scenario == kw.scenario
    # overrides change the run: not the reference's tables
    assert not kw.rounds.drop(columns="wall_s").equals(reference.rounds.drop(columns="wall_s"))


@pytest.mark.parametrize("call, match", [
    (dict(rounds=2, overrides={"rounds": 3}), r"^rounds: given twice"),
    (dict(selection__policy="oort", overrides={"selection.policy": "random"}),
     r"^selection\.policy: given twice"),
    (dict(overrides=["rounds=3"]), r"^overrides: expected a dict"),
    (dict(overrides={"a..b": 1}), r"^overrides: invalid key"),
    (dict(rounds=0), r"^rounds: Input should be greater than or equal to 1"),
    (dict(trainin__lr=0.1), r"^trainin: unknown field"),
    (dict(training__lr="fast"), r"^training\.lr: "),
    (dict(clients_per_round=1000), r"clients_per_round \(1000\) exceeds population\.size"),
])
def test_bad_overrides_are_one_line_errors(workdir: Path, call: dict[str, Any], match: str) -> None:
    with pytest.raises(FedFleetError, match=match) as info:
        simulator.run(tiny(), **call)
    assert "\n" not in str(info.value)
    assert not (workdir / "runs").exists()


# --- recorders ----------------------------------------------------------------------------------
def test_memory_recorder_writes_no_files(workdir: Path) -> None:
    before = files_under(workdir)
    run = simulator.run(tiny(**{"output.runs_dir": str(workdir / "out")}), recorder="memory",
                        runs_dir=workdir / "other", name="mem")
    assert files_under(workdir) == before == []
    assert run.path is None and run.manifest["recorder"] == "memory"
    assert run.manifest["tables"] == {"rounds": 3, "clients": len(run.clients)}
    assert run.name == "mem" and "in memory" in repr(run)


def test_memory_recorder_refuses_checkpoints(workdir: Path) -> None:
    with pytest.raises(FedFleetError, match=r"^output\.checkpoint_every: checkpoints need a run "
                                            r"directory") as info:
        simulator.run(tiny(**{"output.checkpoint_every": 1}), recorder="memory")
    assert "\n" not in str(info.value) and files_under(workdir) == []
    rec = MemoryRecorder()
    with pytest.raises(FedFleetError, match="checkpoint"):
        rec.partial_dir  # noqa: B018
    with pytest.raises(FedFleetError, match="checkpoint"):
        rec.truncate_after(0)
    # stepping a Simulation by hand: sim.checkpoint(MemoryRecorder()) is the same clear error
    sim = simulator.Simulation(simulator.parse_scenario(tiny()))
    try:
        sim.step(rec)
        with pytest.raises(FedFleetError, match="checkpoint"):
            sim.checkpoint(rec)
    finally:
        sim.close()
    assert len(rec) == 1


def test_memory_recorder_tables() -> None:
    rec = MemoryRecorder()
    rounds, clients = rec.tables()
    assert list(rounds.columns) == list(ROUND_COLUMNS) and len(rounds) == 0
    assert list(clients.columns) == list(CLIENT_COLUMNS) and len(clients) == 0
    import numpy as np

    rec.append({"round": 0, "accuracy": 0.5}, {"round": np.zeros(2, np.int64),
                                               "device_class": np.array(["a", "b"], object)})
    rec.flush()
    rec.append({"round": 1, "accuracy": 0.75}, {"round": np.ones(1, np.int64),
                                                "device_class": np.array(["c"], object)})
    assert rec.rounds.to_dict("list") == {"round": [0, 1], "accuracy": [0.5, 0.75]}
    assert rec.clients.to_dict("list") == {"round": [0, 0, 1], "device_class": ["a", "b", "c"]}
    assert str(rec.rounds["round"].dtype) == "int64" and len(rec) == 2
    rec.abort()
    assert len(rec) == 0 and len(rec.rounds) == 0


# --- callbacks ----------------------------------------------------------------------------------
class Counter:
    def __init__(self) -> None:
        self.rounds: list[int] = []
        self.clock: list[float] = []

    def on_round_end(self, sim: Any, report: Any) -> None:
        self.rounds.append(report.round)
        self.clock.append(sim.clock_s)


@pytest.mark.parametrize("recorder", ["memory", "disk"])
def test_callbacks_are_called_once_per_round(workdir: Path, recorder: str) -> None:
    obj, calls = Counter(), []
    run = simulator.run(tiny(rounds=4), recorder=recorder,
                        callbacks=[obj, lambda sim, rep: calls.append((rep.round, rep.accuracy))])
    assert obj.rounds == [0, 1, 2, 3] and [r for r, _ in calls] == [0, 1, 2, 3]
    assert obj.clock == list(run.rounds["sim_end_s"])
    assert [a for _, a in calls] == list(run.rounds["accuracy"])


@pytest.mark.parametrize("recorder", ["memory", "disk"])
def test_stop_run_from_a_callback_ends_the_run_after_that_round(workdir: Path,
                                                                recorder: str) -> None:
    seen: list[int] = []

    def stop_at_two(sim: Any, report: Any) -> None:
        if report.round == 2:
            raise simulator.StopRun("enough")

    def after(sim: Any, report: Any) -> None:
        seen.append(report.round)

    run = simulator.run(tiny(rounds=6, **{"output.checkpoint_every": 0}), recorder=recorder,
                        callbacks=[stop_at_two, after])
    assert len(run.rounds) == 3 and run.manifest["rounds_run"] == 3
    assert run.manifest["stopped_early"] is True and run.manifest["stop_reason"] == "enough"
    assert seen == [0, 1]  # a callback after the one that stops does not see that round
    assert run.final_accuracy == run.rounds["accuracy"].iloc[-1]
    if recorder == "disk":
        assert (run.path / "manifest.json").exists() and not Path(f"{run.path}.partial").exists()


def test_a_callback_that_is_not_callable_is_refused(workdir: Path) -> None:
    with pytest.raises(FedFleetError, match=r"^callbacks\[1\]: expected a function"):
        simulator.run(tiny(), recorder="memory", callbacks=[Counter(), 42])


def test_run_scenario_takes_callbacks_and_on_round_comes_first(workdir: Path) -> None:
    from simulator.loop.runner import run_scenario

    order: list[str] = []
    run_scenario(simulator.parse_scenario(tiny(rounds=2)), runs_dir=str(workdir / "runs"),
                 on_round=lambda rep: order.append(f"on_round {rep.round}"),
                 callbacks=[lambda sim, rep: order.append(f"callback {rep.round}")])
    assert order == ["on_round 0", "callback 0", "on_round 1", "callback 1"]


# --- a strategy plugin listed under plugins:, through a checkpoint and resume -------------------
PLUGIN = '''
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

import simulator


@simulator.register_strategy("api_test_momentum")
class Momentum:
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        beta: float = Field(0.9, ge=0, lt=1)

    def __init__(self, scenario, params):
        self.beta, self.v = params.beta, None

    def apply(self, global_flat, sums, ctx):
        step = sums.mean_update()
        self.v = step if self.v is None else self.beta * self.v + step
        return (global_flat.astype(np.float64) + ctx.server_lr * self.v).astype(global_flat.dtype)

    def state_dict(self):
        return {} if self.v is None else {"v": self.v}

    def load_state_dict(self, state):
        self.v = state.get("v")
'''


@pytest.fixture
def plugin_module(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (workdir / "api_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(workdir))
    yield "api_test_plugin"
    from simulator.core.registry import STRATEGIES

    STRATEGIES.remove("api_test_momentum")
    sys.modules.pop("api_test_plugin", None)


def test_a_strategy_plugin_checkpoints_and_resumes_identically(workdir: Path,
                                                               plugin_module: str) -> None:
    doc = tiny(rounds=4, plugins=[plugin_module], **{
        "aggregation.strategy": "api_test_momentum", "aggregation.params": {"beta": 0.5},
        "output.checkpoint_every": 1})
    (workdir / "momentum.yaml").write_text(yaml.safe_dump(doc))
    whole = simulator.run("momentum.yaml", name="whole")
    assert whole.scenario.strategy == "api_test_momentum"
    plain = simulator.run(doc, recorder="memory", aggregation__strategy="fedavg",
                          aggregation__params={}, output__checkpoint_every=0)
    assert whole.final_accuracy != plain.final_accuracy  # the plugin's momentum was applied

    def crash(sim: Any, report: Any) -> None:
        if report.round == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulator.run("momentum.yaml", name="cut", callbacks=[crash])
    assert (workdir / "runs" / "cut.partial" / "checkpoint.json").exists()
    resumed = simulator.resume(workdir / "runs" / "cut")
    assert resumed.manifest["resumed"] is True and resumed.path == workdir / "runs" / "cut"
    frames_equal(resumed, whole)  # the velocity came back from the checkpoint

    with pytest.raises(FedFleetError, match=r"^aggregation\.params\.beta: ") as info:
        simulator.run("momentum.yaml", recorder="memory", output__checkpoint_every=0,
                      aggregation__params={"beta": 2})
    assert "\n" not in str(info.value)


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario, kw, match", [
    ("missing.yaml", {}, r"^missing\.yaml: file not found$"),
    (42, {}, r"^scenario: expected a Scenario, a scenario document \(dict\) or the path"),
    (["name: x"], {}, r"^scenario: expected"),
    ("{doc}", {"recorder": "tape"}, r"^recorder: got 'tape'; allowed: 'disk', 'memory'$"),
    ("{doc}", {"name": "../escape"}, r"^name: invalid run name"),
    ("{doc}", {"overrides": {"population.mix": []}}, r"^population\.mix: "),
    ({"name": "x"}, {}, r"problems: .*population: required field is missing"),
])
def test_bad_input_is_a_one_line_fedfleet_error(workdir: Path, scenario: Any, kw: dict[str, Any],
                                                match: str) -> None:
    if scenario == "{doc}":
        scenario = tiny()
    with pytest.raises(FedFleetError, match=match) as info:
        simulator.run(scenario, **kw)
    assert "\n" not in str(info.value)
    assert files_under(workdir) == []


def test_bad_yaml_file_and_not_a_run(workdir: Path) -> None:
    (workdir / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(FedFleetError, match=r"^bad\.yaml: invalid YAML at line 2"):
        simulator.run("bad.yaml")
    with pytest.raises(FedFleetError, match="is not a complete run"):
        simulator.Run.open(workdir)
    with pytest.raises(FedFleetError, match="no unfinished run"):
        simulator.resume(workdir / "runs" / "nothing")


# --- CLI pieces moved out of the library ----------------------------------------------------------
def test_fedfleet_runs_table_lives_in_the_cli(workdir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.cli.main import main
    from simulator.io import runs_index

    assert not hasattr(runs_index, "print_runs")  # the library lists, the CLI prints
    (workdir / "runs").mkdir(exist_ok=True)  # a missing directory named is an error (exit 2)
    assert main(["runs", str(workdir / "runs")]) == 0
    assert "no runs found" in capsys.readouterr().out
    simulator.run(tiny(rounds=1), name="listed")
    assert main(["runs", str(workdir / "runs")]) == 0
    out = capsys.readouterr().out
    assert "listed" in out and "complete" in out
