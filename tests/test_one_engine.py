"""One engine: a strategy plugin runs on every trigger without engine changes; every trigger
takes central DP, checkpoints and (where declared) secure aggregation; the buffered trigger
selects sparsely at a million clients.

The server-momentum strategy below is a plugin: it lives in this test file, registers itself
with the public decorator and is named by ``aggregation.strategy`` with ``plugins:`` listing this
module. Nothing in simulator/ knows about it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict, Field

from simulator.aggregation.strategy import register_strategy
from simulator.config.scenario import ScenarioError, parse_scenario
from simulator.loop.runner import resume_run, run_scenario
from tests.conftest import small_doc

PLUGIN = __name__  # "tests.test_one_engine"


class MomentumParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    beta: float = Field(0.9, ge=0, lt=1)


@register_strategy("test_server_momentum", params=MomentumParams)
class ServerMomentum:
    """FedAvgM (Hsu et al. 2019): v <- beta v + mean update; new = global + lr v."""

    def __init__(self, scenario: Any, params: MomentumParams) -> None:
        self.beta = params.beta
        self.velocity: np.ndarray | None = None

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        step = sums.mean_update()
        self.velocity = step if self.velocity is None else self.beta * self.velocity + step
        return (global_flat.astype(np.float64)
                + ctx.server_lr * self.velocity).astype(global_flat.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.velocity is None else {"velocity": self.velocity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        v = state.get("velocity")
        self.velocity = None if v is None else np.asarray(v, np.float64).copy()


EDGE_MIX = {"population.mix": [{"profile": "edge-server-l4", "share": 0.3},
                               {"profile": "rpi4", "share": 0.4},
                               {"profile": "jetson-orin-nano", "share": 0.3}]}
TRIGGERS: dict[str, dict[str, Any]] = {
    "sync": {},
    "buffered": {"aggregation.method": "fedbuff",
                 "aggregation.fedbuff": {"concurrency": 12, "buffer_size": 4, "max_staleness": 3}},
    "hierarchical": {**EDGE_MIX, "hierarchy": {"edges": 4, "edge_profile": "edge-server-l4",
                                               "edge_rounds_per_cloud_round": 2}},
}


def _doc(trigger: str, **over: Any) -> dict[str, Any]:
    return small_doc(**{"rounds": 4, **TRIGGERS[trigger], **over})


def _tables(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (pd.read_parquet(run / "rounds.parquet").drop(columns=["wall_s"]),
            pd.read_parquet(run / "clients.parquet"))


def _run(tmp_path: Path, name: str, doc: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _tables(run_scenario(parse_scenario(doc), name=name, runs_dir=str(tmp_path)))


def _momentum(beta: float) -> dict[str, Any]:
    return {"plugins": [PLUGIN], "aggregation.strategy": "test_server_momentum",
            "aggregation.params": {"beta": beta}}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_momentum_plugin_runs_on_every_trigger(tmp_path: Path, trigger: str) -> None:
    r_avg, _ = _run(tmp_path, "avg", _doc(trigger))
    r_zero, c_zero = _run(tmp_path, "zero", _doc(trigger, **_momentum(0.0)))
    r_mom, _ = _run(tmp_path, "mom", _doc(trigger, **_momentum(0.9)))
    # beta = 0 is the trigger's default strategy, bit for bit (FedAvg; FedBuff's weighting aside)
    if trigger != "buffered":
        pd.testing.assert_frame_equal(r_avg, r_zero, check_exact=True)
    assert np.isfinite(r_mom["accuracy"]).all()
    # momentum changes the model after the first aggregation, hence accuracy and losses
    assert not np.array_equal(r_mom["loss"].to_numpy(), r_zero["loss"].to_numpy())
    assert len(c_zero) > 0


def test_strategy_params_validate_like_builtins() -> None:
    with pytest.raises(ScenarioError, match=r"aggregation\.params\.beta: "):
        parse_scenario(_doc("sync", **_momentum(1.5)))
    with pytest.raises(ScenarioError, match=r"aggregation\.params\.gamma: unknown parameter"):
        parse_scenario(_doc("sync", plugins=[PLUGIN],
                            **{"aggregation.strategy": "test_server_momentum",
                               "aggregation.params": {"gamma": 1}}))
    with pytest.raises(ScenarioError, match=r"aggregation\.strategy: unknown server strategy "
                                            r"'nope' \(allowed: "):
        parse_scenario(_doc("sync", **{"aggregation.strategy": "nope"}))


def test_non_strategy_plugin_is_refused() -> None:
    with pytest.raises(ScenarioError, match=r"aggregation\.strategy: 'x' is not a server "
                                            r"strategy \(it has no apply"):
        from simulator.core.registry import STRATEGIES

        STRATEGIES.add("x", object, replace=True)
        try:
            parse_scenario(_doc("sync", **{"aggregation.strategy": "x"}))
        finally:
            STRATEGIES.remove("x")


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_checkpoint_resume_with_strategy_state(tmp_path: Path, trigger: str) -> None:
    """The velocity is saved with the checkpoint: crash, resume, identical tables."""
    doc = _doc(trigger, rounds=6, **_momentum(0.9), **{"output.checkpoint_every": 2})
    ref_r, ref_c = _run(tmp_path / "ref", "ref", dict(doc, output={"checkpoint_every": 0}))

    class Crash(Exception):
        pass

    def crash(rep: Any) -> None:
        if rep.round == 3:
            raise Crash

    with pytest.raises(Crash):
        run_scenario(parse_scenario(doc), name="c", runs_dir=str(tmp_path / "c"), on_round=crash)
    r, c = _tables(resume_run(tmp_path / "c" / "c"))
    pd.testing.assert_frame_equal(r, ref_r, check_exact=True)
    pd.testing.assert_frame_equal(c, ref_c, check_exact=True)


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_central_dp_on_every_trigger(tmp_path: Path, trigger: str) -> None:
    dp = {"privacy": {"mode": "central", "clip_norm": 1.0, "noise_multiplier": 0.5}}
    r, c = _run(tmp_path, "dp", _doc(trigger, **dp))
    plain, _ = _run(tmp_path, "plain", _doc(trigger))
    assert (np.diff(r["epsilon"].to_numpy()) >= 0).all() and r["epsilon"].iloc[-1] > 0
    assert "epsilon" in c.columns
    assert not np.array_equal(r["loss"].to_numpy(), plain["loss"].to_numpy())  # noise, clipping


def test_hierarchy_with_secure_aggregation(tmp_path: Path) -> None:
    r, c = _run(tmp_path, "sa", _doc("hierarchical", secure_aggregation={"enabled": True}))
    plain_r, plain_c = _run(tmp_path, "plain", _doc("hierarchical"))
    assert (r["secagg_participants"] > 0).all()
    # each edge runs its own protocol: participants are summed over the edges of the round
    per_edge = c[c["outcome"] != "out_of_memory"].groupby("round")["client_id"].size()
    assert (r.set_index("round")["secagg_participants"] <= per_edge).all()
    assert (c["bytes_up"].sum() > plain_c["bytes_up"].sum())  # masks, shares, keys
    assert (r["duration_s"] >= plain_r["duration_s"]).all()


def test_buffered_refuses_what_it_does_not_declare() -> None:
    with pytest.raises(ScenarioError, match=r"secure_aggregation\.enabled: not supported by "
                                            r"aggregation trigger 'buffered' \(it supports: "
                                            r"checkpoint, compression"):
        parse_scenario(_doc("buffered", secure_aggregation={"enabled": True}))


def test_buffered_selects_sparsely_at_a_million_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """No O(N) availability pass per refill: the index samples online, non-busy clients."""
    from simulator.fleet.population import Population
    from simulator.io.recording import Recorder  # noqa: F401  (the tables are not needed)
    from simulator.loop.simulation import Simulation

    doc = small_doc(mode="analytic", rounds=3, clients_per_round=50,
                    **{"population.size": 1_000_000, "aggregation.method": "fedbuff",
                       "aggregation.fedbuff": {"concurrency": 100, "buffer_size": 20}})
    sim = Simulation(parse_scenario(doc))
    assert sim.avail_index is not None
    full_passes = []
    real_available = Population.available

    def spy(self: Population, t: float, ids: np.ndarray | None = None) -> np.ndarray:
        if ids is None or len(ids) == self.size:
            full_passes.append(t)
        return real_available(self, t, ids)

    monkeypatch.setattr(Population, "available", spy)

    class Rows:
        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = []

        def append(self, row: dict[str, Any], cols: dict[str, np.ndarray]) -> None:
            self.rows.append(row)

    rec = Rows()
    for _ in range(3):
        sim.step(rec)
    assert [r["round"] for r in rec.rows] == [0, 1, 2]
    assert sum(r["completed"] for r in rec.rows) >= 60
    assert full_passes == [], f"{len(full_passes)} O(N) availability passes"


# --- a client-side hook: a proximal term (FedProx, Li et al. 2020) as a plugin ------------------
class ProxParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mu: float = Field(0.01, ge=0)


class _Proximal:
    def __init__(self, mu: float) -> None:
        self.mu = mu

    def correction(self, param: Any, global_param: Any) -> Any:
        return self.mu * (param - global_param)  # gradient of mu/2 ||w - w_g||^2


@register_strategy("test_proximal", params=ProxParams)
class Proximal:
    def __init__(self, scenario: Any, params: ProxParams) -> None:
        from simulator.aggregation.fedavg import FedAvg

        self.mu, self.inner = params.mu, FedAvg(scenario)

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        return self.inner.apply(global_flat, sums, ctx)

    def client_training(self) -> _Proximal:
        return _Proximal(self.mu)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@pytest.mark.parametrize("batched", [True, False])
def test_client_hook_changes_local_training(tmp_path: Path, batched: bool) -> None:
    def prox(mu: float) -> dict[str, Any]:
        return {"plugins": [PLUGIN], "aggregation.strategy": "test_proximal",
                "aggregation.params": {"mu": mu}, "executor.batched": batched}

    base, _ = _run(tmp_path, "avg", _doc("sync", **{"executor.batched": batched}))
    zero, _ = _run(tmp_path, "mu0", _doc("sync", **prox(0.0)))
    strong, _ = _run(tmp_path, "mu5", _doc("sync", **prox(5.0)))
    pd.testing.assert_frame_equal(base, zero, check_exact=True)  # mu = 0 is FedAvg, bit for bit
    # a strong pull to the global model: local steps move less, so training loss falls less
    assert strong["train_loss"].iloc[-1] > base["train_loss"].iloc[-1]


def test_client_hook_on_a_model_that_ignores_it_is_refused() -> None:
    """A workload that would silently skip the strategy's client side is refused up front."""
    from simulator import FedFleetError
    from simulator.config.scenario import load_scenario
    from simulator.loop.simulation import build_parts

    root = Path(__file__).resolve().parents[1]
    sc = load_scenario(root / "scenarios" / "llm-lora-heterogeneous.yaml",
                       overrides={"plugins": [PLUGIN], "aggregation.strategy": "test_proximal",
                                  "rounds": 1})
    with pytest.raises(FedFleetError, match=r"aggregation\.strategy.*model\.kind 'transformer'"):
        build_parts(sc)
