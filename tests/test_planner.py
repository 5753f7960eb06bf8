"""CapabilityPlanner: memory never exceeded, most capable option chosen, deadline respected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.config.scenario import parse_scenario
from simulator.core.cost import estimate
from simulator.fleet.population import Population
from simulator.planning import make_planner
from simulator.planning.base import FullModelPlanner
from simulator.planning.capability import CapabilityPlanner

GB = 1e9


def scenario(model: dict, deadline: float | None = 600.0, batch: int = 1, **top: object):
    doc = {"name": "t", "mode": "analytic", "seed": 1,
           "population": {"size": 10, "mix": [{"profile": "cloud-a100", "share": 1.0}]},
           "rounds": 1, "clients_per_round": 1, "deadline_s": deadline,
           "training": {"batch_size": batch, "optimizer": "adam"},
           "model": {"kind": "transformer", **model}, **top}
    if deadline is None:
        del doc["deadline_s"]
    return parse_scenario(doc)


def population(mem, flops, down=1e8, up=1e7, lat=0.05, samples=8) -> Population:
    """Hand-made clients: only the columns the planner reads matter."""
    mem = np.asarray(mem, np.float64)
    n = len(mem)

    def col(v, dt=np.float64):
        return np.broadcast_to(np.asarray(v, dt), (n,)).copy()

    return Population(
        profiles=(), profile_idx=np.zeros(n, np.int16), link_idx=np.zeros(n, np.int8),
        train_flops_per_s=col(flops), memory_bytes=mem, downlink_bits_per_s=col(down),
        uplink_bits_per_s=col(up), latency_s=col(lat, np.float32),
        dropout_hazard_per_s=np.zeros(n), always_on=np.ones(n, bool),
        window_start_h=np.zeros(n, np.float32), window_len_h=np.full(n, 24.0, np.float32),
        n_samples=col(samples, np.int64))


def admissible(planner: CapabilityPlanner, pop: Population, ids: np.ndarray) -> np.ndarray:
    """[option, client] memory fits and (with require_deadline) time within the deadline."""
    *_, total = planner.option_costs(ids, pop)
    ok = planner.mem[:, None] <= pop.memory_bytes[ids][None, :]
    dl = planner.sc.deadline_s
    if planner.require_deadline and dl is not None:
        ok &= total <= dl
    return ok


# --- hand-made cases -------------------------------------------------------------------------

def test_mlp_scenarios_keep_the_full_model_planner() -> None:
    sc = parse_scenario({"name": "m", "population": {"size": 5, "mix": [
        {"profile": "cloud-a100", "share": 1.0}]}, "rounds": 1, "clients_per_round": 1})
    assert isinstance(make_planner(sc, population([1e9], [1e12]), 64, 10), FullModelPlanner)


def test_7b_fleet_assignment_by_hand() -> None:
    # Prepare: A100-like, L4-like, 6.8 GB laptop GPU, 1.2 GB phone, 0.3 GB watch
    sc = scenario({"preset": "llama-2-7b", "seq_len": 512}, deadline=3600)
    pop = population([72 * GB, 21.6 * GB, 6.8 * GB, 1.2 * GB, 0.3 * GB],
                     [1.25e14, 4.2e13, 7.4e12, 4e11, 1e10])
    ids = np.arange(5)
    # Execute
    plan = CapabilityPlanner(sc, pop).plan(0, ids, pop)
    # Assert: LoRA r=64 where 13.5 GB of weights fit, split below, nothing on the watch
    assert list(plan.kind) == ["lora", "lora", "split", "split", "none"]
    assert list(plan.columns["rank"][:2]) == [64, 64]
    assert plan.columns["cut"][2] > plan.columns["cut"][3] >= 1
    assert list(plan.infeasible) == [False] * 4 + [True]
    assert (plan.cost.memory_bytes[:4] <= pop.memory_bytes[:4]).all()
    assert plan.columns["memory_bytes"].dtype == np.float64
    for k in ("rank", "blocks", "cut"):
        assert plan.columns[k].dtype == np.int64
    assert plan.columns["width"].dtype == np.float64 and plan.columns["width"][4] == 1.0


def test_split_cut_minimises_time_within_memory() -> None:
    # Prepare: 4-block model; the server gives each client 1e8 FLOP/s (compute dominates the
    # few kB of adapters at this size).
    sc = scenario({"preset": "tiny-llama", "seq_len": 64,
                   "workloads": {"order": ["split"], "split_server_flops_per_s": 1e8}},
                  deadline=None)
    slow, fast = 1e6, 1e12  # slower / faster than the server share
    pl = CapabilityPlanner(sc)
    mem_cut = {o.cut: o.memory_bytes for o in pl.options}
    pop = population([1e12, 1e12, (mem_cut[2] + mem_cut[3]) / 2], [slow, fast, fast])
    ids = np.arange(3)
    # Execute
    plan = pl.plan(0, ids, pop)
    # Assert: slow client keeps 1 block, fast client all 3 cuts' worth, memory caps the third
    assert list(plan.columns["cut"]) == [1, 3, 2]
    *_, total = pl.option_costs(ids, pop)
    fits = pl.mem[:, None] <= pop.memory_bytes[None, :]
    best = np.where(fits, total, np.inf).min(axis=0)
    t = estimate(pop.downlink_bits_per_s, pop.uplink_bits_per_s, pop.latency_s,
                 pop.train_flops_per_s, plan.cost).total_s
    assert np.allclose(t, best)


def test_deadline_moves_a_client_down_the_fallback_order() -> None:
    # One client with plenty of memory but a slow GPU: LoRA fits in memory, not in time.
    model = {"preset": "tiny-llama", "seq_len": 64,
             "workloads": {"order": ["full", "split"], "split_server_flops_per_s": 1e15}}
    pop = population([1e12], [5e7], samples=64)  # full: ~124 s, split at cut 1: ~25 s
    loose = CapabilityPlanner(scenario(model, deadline=None)).plan(0, np.arange(1), pop)
    tight = CapabilityPlanner(scenario(model, deadline=60.0)).plan(0, np.arange(1), pop)
    assert loose.kind[0] == "full"
    assert tight.kind[0] == "split" and tight.columns["meets_deadline"][0]


def test_compression_shrinks_uploads() -> None:
    base = {"preset": "llama-2-7b", "workloads": {"order": ["lora"]}}
    pop = population([80 * GB], [1e14])
    plans = {}
    for method in ("none", "int8", "int4", "topk"):
        m = {**base, "workloads": {**base["workloads"], "compression": {"method": method}}}
        plans[method] = CapabilityPlanner(scenario(m)).plan(0, np.arange(1), pop)
    up = {k: p.cost.upload_bytes[0] for k, p in plans.items()}
    pl = 32 * 64 * (4096 + 4096) * 2  # r=64 on q, v
    assert up["none"] == pl * 2
    assert up["int8"] == pl + np.ceil(pl / 64) * 2
    assert up["int4"] == pl / 2 + np.ceil(pl / 64) * 2
    assert up["topk"] == np.ceil(pl * 0.01) * (2 + 4)


# --- properties over random devices and model sizes -------------------------------------------

models = st.fixed_dictionaries({
    "heads": st.sampled_from([2, 4, 8]),
    "head_dim": st.sampled_from([8, 16, 64]),
    "layers": st.integers(1, 12),
    "inter": st.integers(16, 2048),
    "vocab": st.integers(32, 50000),
    "order": st.permutations(["full", "lora", "partial", "split", "width"]).map(
        lambda p: p[: 3]),
    "seq": st.sampled_from([16, 64, 256]),
})
devices = st.lists(st.tuples(st.floats(1e6, 1e11), st.floats(1e8, 1e14), st.floats(1e5, 1e9),
                             st.floats(1e5, 1e9), st.integers(2, 200)), min_size=1, max_size=12)


def build(m: dict, devs: list, deadline: float | None, require: bool):
    h = m["heads"] * m["head_dim"]
    order = [k for k in m["order"] if not (k == "split" and m["layers"] < 2)] or ["lora"]
    model = {"family": "llama", "seq_len": m["seq"],
             "config": {"hidden_size": h, "num_attention_heads": m["heads"],
                        "num_hidden_layers": m["layers"], "intermediate_size": m["inter"],
                        "vocab_size": m["vocab"], "max_position_embeddings": 256},
             "workloads": {"order": order, "partial_blocks": [min(m["layers"], b) for b in (4, 1)],
                           "require_deadline": require}}
    sc = scenario(model, deadline=deadline, batch=2)
    mem, flops, down, up, n = (np.array(x) for x in zip(*devs, strict=True))
    pop = population(mem, flops, down, up, 0.02, n)
    return CapabilityPlanner(sc, pop), pop, np.arange(len(devs))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models, devices, st.sampled_from([None, 30.0, 600.0]), st.booleans())
def test_planner_invariants(m: dict, devs: list, deadline: float | None, require: bool) -> None:
    pl, pop, ids = build(m, devs, deadline, require)
    plan = pl.plan(0, ids, pop)
    ok = admissible(pl, pop, ids)
    fits = pl.mem[:, None] <= pop.memory_bytes[None, :]
    kind = plan.kind.astype(str)
    assigned = kind != "none"
    # never more memory than the device has; "none" exactly when nothing fits
    assert (plan.cost.memory_bytes[assigned] <= pop.memory_bytes[assigned]).all()
    assert (assigned == fits.any(axis=0)).all()
    assert (plan.infeasible == ~assigned).all()
    # the chosen kind is the first kind in the order with an admissible option
    for i in np.flatnonzero(ok.any(axis=0)):
        first = next(k for k in pl.order if ok[pl.kinds == k, i].any())
        assert kind[i] == first
    # the largest LoRA rank (most blocks, widest rate) that is admissible
    for k, col in (("lora", "rank"), ("partial", "blocks"), ("width", "width")):
        rows = np.flatnonzero(pl.kinds == k)
        for i in np.flatnonzero(kind == k):
            if ok[:, i].any():
                best = pl.attrs[col][rows[ok[rows, i]]].max()
                assert plan.columns[col][i] == best
    # deadline: met whenever an admissible option exists and require_deadline is on
    t = estimate(pop.downlink_bits_per_s, pop.uplink_bits_per_s, pop.latency_s,
                 pop.train_flops_per_s, plan.cost).total_s
    if require and deadline is not None:
        can = ok.any(axis=0)
        assert (t[can] <= deadline + 1e-9).all()
        assert (plan.columns["meets_deadline"][assigned] == can[assigned]).all()


@settings(max_examples=30, deadline=None)
@given(models, st.floats(1e6, 1e11))
def test_too_small_for_everything_gets_none(m: dict, mem: float) -> None:
    pl, _, _ = build(m, [(mem, 1e12, 1e8, 1e8, 10)], None, False)
    tiny = population([pl.mem.min() * 0.999], [1e12])
    plan = pl.plan(0, np.arange(1), tiny)
    assert plan.kind[0] == "none" and plan.infeasible[0]
    assert plan.cost.memory_bytes[0] == 0 and plan.columns["rank"][0] == 0


# --- analytic runs -----------------------------------------------------------------------------

def test_analytic_llm_run_records_assignments_without_torch(tmp_path: Path) -> None:
    code = f"""
import sys
from simulator.config.scenario import load_scenario
from simulator.loop.runner import run_scenario
sc = load_scenario('scenarios/llm-7b-lora-fleet.yaml',
                   {{'population.size': 3000, 'rounds': 3, 'clients_per_round': 50}})
run_scenario(sc, runs_dir={str(tmp_path)!r}, overwrite=True)
assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    c = pd.read_parquet(tmp_path / "llm-7b-lora-fleet" / "clients.parquet")
    assert len(c) == 3 * 65
    by = c.groupby("device_class").workload.agg(lambda s: set(s))
    assert by["cloud-a100"] == {"lora"} and by["phone-lowend"] == {"split"}
    assert (c.loc[c.workload == "lora", "rank"] == 64).all()
    assert (c.loc[c.workload == "split", "cut"] >= 1).all()
    assert c["cut"].dtype == np.int64 and c["width"].dtype == np.float64


@pytest.mark.slow
def test_full_7b_fleet_scenario_under_60s(tmp_path: Path) -> None:
    import time

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "simulator.cli.main", "run",
                    "scenarios/llm-7b-lora-fleet.yaml", "--no-dashboard", "--runs-dir",
                    str(tmp_path), "--overwrite"], check=True,
                   timeout=120, capture_output=True)
    assert time.perf_counter() - t0 < 60
    r = pd.read_parquet(tmp_path / "llm-7b-lora-fleet" / "rounds.parquet")
    assert len(r) == 100 and (r.completed == 500).all()
