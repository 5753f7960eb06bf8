"""The per-operation term of the clock (simulator/planning/ops.py, docs/clock.md).

The operation counts are recounted here with torch (a ``TorchDispatchMode`` around the workloads'
own trainers), on configurations other than the ones the constants were read from; the clock
charges them (``cost.estimate``, the capability planner, the MLP planner); the calibration fit
recovers both overheads and the rate."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml

from simulator.config.scenario import load_scenario, parse_scenario
from simulator.core.cost import TaskCost, estimate, estimate_clients
from simulator.loop.simulation import build_population
from simulator.planning import make_planner
from simulator.planning.ops import llama_ops_per_step, mlp_ops_per_step
from simulator.workloads.calibration import fit_overheads
from tests.conftest import ROOT

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402


class Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.n += 1
        return func(*args, **(kwargs or {}))


def counted(fn: Any) -> int:
    fn()
    c = Count()
    with c:
        fn()
    return c.n


@pytest.mark.parametrize("optimizer,momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)])
@pytest.mark.parametrize("hidden", [[40], [24, 24, 24], [8, 16, 32, 64, 128, 8]])
def test_mlp_ops_per_step_are_what_the_trainer_dispatches(hidden: list[int], optimizer: str,
                                                          momentum: float) -> None:
    from simulator.workloads.calibration import _client_runner

    q = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    sc = q.model_copy(update={"training": q.training.model_copy(
        update={"optimizer": optimizer, "momentum": momentum})})
    sizes = [64, *hidden, 10]
    n3, n7 = (counted(_client_runner(sc, sizes, k)) for k in (3, 7))
    assert (n7 - n3) / 4 == mlp_ops_per_step(len(sizes) - 1, optimizer, momentum)


def llama(kind: str, blocks: int, optimizer: str, targets: Any, hidden: int = 48) -> Any:
    raw = yaml.safe_load((ROOT / "scenarios" / "llm-lora-heterogeneous.yaml").read_text())
    raw["model"]["workloads"] = {"order": [kind], "lora_ranks": [4], "lora_targets": targets,
                                 "require_deadline": False}
    raw["model"]["config"].update(num_hidden_layers=blocks, hidden_size=hidden,
                                  intermediate_size=2 * hidden)
    raw["training"]["optimizer"] = optimizer
    raw["population"]["size"] = 20
    return parse_scenario(raw)


@pytest.mark.parametrize("kind,blocks,optimizer,targets,tol", [
    ("full", 3, "adam", "all-linear", 0), ("full", 1, "sgd", "all-linear", 0),
    ("lora", 3, "adam", "all-linear", 5), ("lora", 1, "sgd", ["q_proj", "v_proj"], 5),
    ("lora", 2, "adam", ["q_proj", "k_proj", "down_proj"], 5)])
def test_llama_ops_per_step_are_what_the_trainer_dispatches(kind: str, blocks: int,
                                                            optimizer: str, targets: Any,
                                                            tol: int) -> None:
    from simulator.config.llm import closed_form_spec
    from simulator.workloads import build_workload

    sc = llama(kind, blocks, optimizer, targets)
    wl = build_workload(sc, sc.population.size)
    flat = wl.initial_state()
    kw = {"rank": 4} if kind == "lora" else {}
    steps, ops = [], []
    for cid in range(12):  # two clients with different step counts
        res = wl.train_client(flat, cid, 1, kind, **kw)
        if res.stats["steps"] not in steps:
            steps.append(res.stats["steps"])
            ops.append(counted(lambda c=cid: wl.train_client(flat, c, 1, kind, **kw)))
        if len(steps) == 2:
            break
    per_step = (ops[0] - ops[1]) / (steps[0] - steps[1])
    spec = closed_form_spec(sc.model)
    tgt = targets if isinstance(targets, str) else tuple(targets)
    want = llama_ops_per_step(spec, kind, optimizer, 0.0, tgt)
    assert want is not None and abs(per_step - want) <= tol, (per_step, want)


def test_estimate_charges_operations_only_when_both_are_given() -> None:
    cost = TaskCost(np.zeros(1), np.zeros(1), np.array([1e9]), np.zeros(1),
                    train_steps=np.array([4.0]), train_ops=np.array([4000.0]))
    one = np.ones(1)
    t = estimate(one, one, np.zeros(1), np.array([1e9]), cost, np.array([0.25]),
                 np.array([1e-4]))
    assert t.compute_s.tolist() == [1.0 + 1.0 + 0.4]  # FLOPs + 4 steps x 0.25 + 4000 x 1e-4
    assert estimate(one, one, np.zeros(1), np.array([1e9]), cost,
                    np.array([0.25])).compute_s.tolist() == [2.0]


def test_fit_recovers_both_overheads_and_the_rate() -> None:
    flops = np.array([1e6, 4e6, 1.6e7, 1e6, 4e6, 1e6])
    ops = np.array([41.0, 41.0, 41.0, 89.0, 89.0, 153.0])
    secs = 1.5e-4 + ops * 2e-6 + flops / 3e10
    a, c, rate = fit_overheads(flops, ops, secs)
    assert (a, c, rate) == pytest.approx((1.5e-4, 2e-6, 3e10), rel=1e-9)
    # no variation in ops: the two-term fit
    a, c, rate = fit_overheads(flops[:3], ops[:3], secs[:3])
    assert c == 0.0 and rate == pytest.approx(3e10, rel=1e-9)


def calibrated(tmp_path: Any, sc: Any, step_s: float, op_s: float) -> Any:
    doc = yaml.safe_load((ROOT / "device_profiles" / "laptop-cpu.yaml").read_text())
    name = f"timed-{round(step_s * 1e3)}-{round(op_s * 1e6)}"
    doc.update(name=name)
    doc["compute"].update(step_overhead_s=step_s, op_overhead_s=op_s, spread_sigma=0.0)
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    (d / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    pop_cfg = sc.population.model_copy(update={
        "mix": (sc.population.mix[0].model_copy(update={"profile": name, "share": 1.0}),),
        "profiles_dir": str(d)})
    return sc.model_copy(update={"population": pop_cfg})


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_transformer_plans_charge_both_overheads(tmp_path: Any, kind: str) -> None:
    """Before, a transformer's plan had no step count: a calibrated profile's per-step overhead
    was silently not charged to any LLM client."""
    sc = llama(kind, 2, "adam", "all-linear")
    ids = np.arange(8)
    secs = {}
    for step_s, op_s in ((0.0, 0.0), (0.01, 0.0), (0.01, 1e-5)):
        scp = calibrated(tmp_path, sc, step_s, op_s)
        pop, ds = build_population(scp)
        planner = make_planner(scp, pop, ds.n_features, ds.n_classes)
        plan = planner.plan(0, ids, pop)
        t = estimate_clients(pop, ids, plan.cost)
        *_, total = planner.option_costs(ids, pop)
        assert np.array_equal(total[0], t.total_s)  # the planner's arithmetic is estimate's
        secs[(step_s, op_s)] = t.compute_s
    steps = plan.cost.train_steps
    assert steps is not None and (steps >= 1).all()
    np.testing.assert_allclose(secs[(0.01, 0.0)] - secs[(0.0, 0.0)], 0.01 * steps, rtol=1e-9)
    from simulator.config.llm import closed_form_spec

    ops = llama_ops_per_step(closed_form_spec(sc.model), kind, "adam", 0.0, "all-linear")
    np.testing.assert_allclose(secs[(0.01, 1e-5)] - secs[(0.01, 0.0)], 1e-5 * ops * steps,
                               rtol=1e-9)


def test_mlp_plans_charge_operations(tmp_path: Any) -> None:
    from simulator.workloads.calibration import with_hidden

    q = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    sc = with_hidden(q, [64, 32])  # the model itself (quickstart charges a ResNet-18 proxy)
    ids = np.arange(6)
    out = []
    for op_s in (0.0, 1e-5):
        scp = calibrated(tmp_path, sc, 0.0, op_s)
        pop, ds = build_population(scp)
        plan = make_planner(scp, pop, ds.n_features, ds.n_classes).plan(0, ids, pop)
        out.append(estimate_clients(pop, ids, plan.cost).compute_s)
    np.testing.assert_allclose(out[1] - out[0], 1e-5 * plan.cost.train_steps
                               * mlp_ops_per_step(3, "sgd", 0.0), rtol=1e-9)
    # a clock proxy is another model of unknown structure: the per-step term only
    pop, ds = build_population(calibrated(tmp_path, q, 0.0, 1e-5))
    assert make_planner(q, pop, ds.n_features, ds.n_classes).plan(0, ids, pop).cost.train_ops \
        is None
