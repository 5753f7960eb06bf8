"""DP-FedAvg: clipping bounds every contribution, z=0 with no clipping is FedAvg, the ledger's
epsilon is dp-accounting's, noise is deterministic, tables carry epsilon."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from simulator.aggregation import Partial, apply_fedavg
from simulator.aggregation.fedavg import SCALE
from simulator.config.scenario import ScenarioError, parse_scenario
from simulator.core import rng
from simulator.loop.runner import run_scenario
from simulator.privacy import ClientUpdateHook, clip_update
from simulator.privacy.accountant import PrivacyLedger, RdpCurve
from simulator.privacy.dp import apply_dp_fedavg
from tests.conftest import small_doc

dp_accounting = pytest.importorskip("dp_accounting")

# Always-on devices with one link and equal client sizes: every invited client completes.
STEADY = {
    "population.mix": [{"profile": "edge-server-l4", "share": 0.5},
                       {"profile": "jetson-agx-orin", "share": 0.5}],
    "data.size_sigma": 0.0,
    "overcommit": 1.0,
    "deadline_s": None,
}


def _run(tmp_path, name, **over):
    sc = parse_scenario(small_doc(**over))
    run = run_scenario(sc, name=name, runs_dir=str(tmp_path))
    return pd.read_parquet(run / "rounds.parquet"), pd.read_parquet(run / "clients.parquet")


# --- clipping ------------------------------------------------------------------------------------
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(1, 300), elements=finite),
       st.floats(1e-6, 1e6, allow_nan=False))
def test_clip_bounds_norm_and_keeps_direction(delta, c):
    clipped, norm = clip_update(delta, c)
    assert np.linalg.norm(clipped) <= c
    assert norm == pytest.approx(np.linalg.norm(delta))
    if norm <= c:
        assert clipped is delta or np.array_equal(clipped, delta)  # untouched, bit for bit
    else:
        assert np.allclose(clipped * norm / c, delta, rtol=1e-9, atol=1e-12)


def test_hook_clips_gives_unit_weight_and_masks():
    hook = ClientUpdateHook("central", 1.0, 0.0, seed=3)
    d = np.array([3.0, 4.0, 12.0])  # norm 13
    out, w = hook(0, 5, d, 40.0)
    assert w == 1.0 and np.linalg.norm(out) <= 1.0
    out, _ = hook(0, 5, d, 40.0, mask=np.array([1.0, 1.0, 0.0]))  # masked norm 5
    assert out[2] == 0.0 and np.allclose(out[:2], [0.6, 0.8], atol=1e-9)


def test_local_noise_is_deterministic_per_round_and_client():
    hook = ClientUpdateHook("local", 0.5, 2.0, seed=11)
    z = np.zeros(20_000)
    a, _ = hook(3, 7, z, 1.0)
    b, _ = hook(3, 7, z, 1.0)
    c, _ = hook(3, 8, z, 1.0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.std(a) == pytest.approx(1.0, rel=0.03)  # z * C = 2 * 0.5
    expect = rng.stream(11, rng.PRIVACY, 3, 7).standard_normal(20_000) * 1.0
    assert np.array_equal(a, expect)


def test_workload_contributions_are_clipped():
    torch = pytest.importorskip("torch")
    from simulator.core.jobs import JobBatch
    from simulator.workloads.mlp import MLPWorkload

    torch.set_num_threads(1)
    c = 0.05
    w = MLPWorkload(parse_scenario(small_doc(**{"privacy.mode": "central", "privacy.clip_norm": c,
                                                "privacy.noise_multiplier": 0.0})), 200)
    g = w.initial_state()
    quant = math.sqrt(w.n_params) * 0.5 / SCALE  # fixed-point rounding of the sum
    for cid in range(12):
        jobs = JobBatch(0, np.array([cid]), np.array([rng.int_seed(7, rng.TRAINING, 0, cid)],
                                                    np.uint64))
        part = w.train(g, jobs)
        contribution = part.sum_q.astype(np.float64) / SCALE
        assert np.linalg.norm(contribution) <= c + quant
        assert np.all(part.weight == 1.0)  # unweighted: sensitivity C


# --- z = 0, no clipping: FedAvg ----------------------------------------------------------------
def test_dp_aggregate_with_zero_noise_equals_fedavg_bit_for_bit():
    rs = np.random.default_rng(0)
    g = rs.normal(size=64).astype(np.float32)
    hook = ClientUpdateHook("central", 1e12, 0.0, seed=0)
    p = Partial.empty(64)
    for cid in range(9):
        d, w = hook(0, cid, rs.normal(size=64) * 1e-2, 30.0)
        p.add_client(cid, d, w, 30, 0.0, 0.0)
    dp_new = apply_dp_fedavg(g, p, 9, np.zeros(64), server_lr=0.7)
    assert np.array_equal(dp_new, apply_fedavg(g, p, 0.7))


def test_zero_noise_huge_clip_run_matches_fedavg(tmp_path):
    r0, _ = _run(tmp_path, "plain", **STEADY)
    r1, _ = _run(tmp_path, "dp0", **STEADY, **{"privacy.mode": "central",
                                               "privacy.clip_norm": 1e9,
                                               "privacy.noise_multiplier": 0.0})
    assert (r0["completed"] == 20).all()
    assert np.array_equal(r0["accuracy"], r1["accuracy"])
    assert np.allclose(r0["loss"], r1["loss"], rtol=1e-6)
    assert np.isinf(r1["epsilon"]).all()  # no noise: no privacy


def test_noise_costs_accuracy_and_is_reproducible(tmp_path):
    over = {"privacy.mode": "central", "privacy.clip_norm": 0.5, "privacy.noise_multiplier": 5.0}
    r1, c1 = _run(tmp_path, "a", **over)
    r2, c2 = _run(tmp_path, "b", **over)
    cols = [k for k in r1.columns if k != "wall_s"]
    pd.testing.assert_frame_equal(r1[cols], r2[cols], check_exact=True)
    pd.testing.assert_frame_equal(c1, c2, check_exact=True)
    r0, _ = _run(tmp_path, "plain")
    assert not np.array_equal(r0["loss"], r1["loss"])


# --- accounting ----------------------------------------------------------------------------------
def _dp_accounting_epsilon(q, z, rounds, delta):
    acc = dp_accounting.rdp.RdpAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds)
    return acc.get_epsilon(delta)


@pytest.mark.parametrize("q,z,delta", [(0.01, 1.1, 1e-5), (0.1, 0.8, 1e-6), (0.003, 3.0, 1e-7)])
def test_ledger_epsilon_matches_dp_accounting(q, z, delta):
    ledger = PrivacyLedger("central", q, z, delta, population_size=1000)
    ids = np.arange(3)
    for r in range(100):  # one step per round: the ledger sums the rounds' RDP curves
        eps, per = ledger.step(r, ids, np.ones(3, bool))
        if r in (0, 1, 9, 99):
            assert eps == pytest.approx(_dp_accounting_epsilon(q, z, r + 1, delta), rel=1e-12)
            assert np.all(per == eps)


def test_run_epsilon_column_matches_dp_accounting(tmp_path):
    r, c = _run(tmp_path, "eps", **{"privacy.mode": "central", "privacy.noise_multiplier": 1.1,
                                    "privacy.delta": 1e-5})
    # q_r = invited / online of each round (tests/test_dp_sampling.py checks the quickstart)
    acc = dp_accounting.rdp.RdpAccountant()
    expect = []
    for q in r["selected"] / r["candidates"]:
        acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(1.1)))
        expect.append(acc.get_epsilon(1e-5))
    assert r["epsilon"].tolist() == pytest.approx(expect, rel=1e-12)
    assert r["epsilon"].is_monotonic_increasing
    assert (c.groupby("round")["epsilon"].max().to_numpy() == r["epsilon"].to_numpy()).all()


def test_local_ledger_counts_participations():
    z, delta = 2.0, 1e-5
    ledger = PrivacyLedger("local", 1.0, z, delta, population_size=10)
    ledger.step(0, np.array([1, 2, 3]), np.array([True, True, False]))
    eps, per = ledger.step(1, np.array([1, 4]), np.array([True, True]))
    acc = dp_accounting.rdp.RdpAccountant()
    acc.compose(dp_accounting.GaussianDpEvent(z / 2), 2)  # sensitivity 2C: multiplier z/2
    assert eps == acc.get_epsilon(delta) == per[0]
    assert per[1] == RdpCurve(1.0, z / 2).epsilon(1, delta)
    state = ledger.state_dict()
    other = PrivacyLedger("local", 1.0, z, delta, population_size=10)
    other.load_state_dict(state)  # takes (pops) its own keys from a checkpoint's state dict
    assert state == {} and np.array_equal(other.counts, ledger.counts)


def test_local_mode_run_records_per_client_epsilon(tmp_path):
    r, c = _run(tmp_path, "local", **{"privacy.mode": "local", "privacy.noise_multiplier": 1.0})
    done = c[c["outcome"] == "completed"]
    assert done["epsilon"].gt(0).all() and np.isfinite(done["epsilon"]).all()
    assert (c.groupby("round")["epsilon"].max() <= r.set_index("round")["epsilon"]).all()


def test_bad_privacy_block_is_one_clear_line():
    with pytest.raises(ScenarioError, match="privacy.mode"):
        parse_scenario(small_doc(**{"privacy.mode": "global"}))
    with pytest.raises(ScenarioError, match="privacy.clip_norm"):
        parse_scenario(small_doc(**{"privacy.mode": "central", "privacy.clip_norm": 0}))
    tiny = {"model": {"kind": "transformer", "preset": "tiny-llama", "seq_len": 16},
            "data": {"dataset": "text"}, "privacy.mode": "central"}
    parse_scenario(small_doc(**tiny))  # real transformer training clips too
    parse_scenario(small_doc(**tiny, mode="analytic"))  # accounting only


@pytest.mark.slow
def test_transformer_updates_are_clipped():
    """Central DP with zero noise on LoRA training: each round's global step is the sum of
    clipped updates over k, so its norm is at most the clip norm."""
    from simulator.config.scenario import load_scenario
    from simulator.core.jobs import JobBatch
    from simulator.workloads import build_workload
    from tests.conftest import ROOT

    clip = 1e-3
    sc = load_scenario(ROOT / "scenarios/llm-lora-heterogeneous.yaml",
                       {"privacy.mode": "central", "privacy.clip_norm": clip,
                        "privacy.noise_multiplier": 0.0, "executor.kind": "local"})
    w = build_workload(sc, sc.population.size)
    g = w.initial_state()
    ids = np.arange(6, dtype=np.int64)
    n = len(g)
    jobs = JobBatch(0, ids, np.arange(6, dtype=np.uint64) + 1,
                    {"kind": np.array(["lora"] * 6, dtype=object),
                     "rank": np.full(6, 16), "blocks": np.zeros(6, np.int64),
                     "cut": np.zeros(6, np.int64)})
    part = w.train(g, jobs)
    from simulator.privacy.dp import dp_step

    step = dp_step(part, 6, np.zeros(n))
    assert 0 < np.linalg.norm(step) <= clip * (1 + 1e-6)


@pytest.mark.ray
def test_local_dp_identical_on_ray(tmp_path, ray_session):
    over = {"privacy.mode": "local", "privacy.noise_multiplier": 0.3, "rounds": 2}
    r0, c0 = _run(tmp_path, "loc", **over)
    r1, c1 = _run(tmp_path, "ray", **over, **{"executor.kind": "ray", "executor.num_actors": 2})
    cols = [k for k in r0.columns if k != "wall_s"]
    pd.testing.assert_frame_equal(r0[cols], r1[cols], check_exact=True)
    pd.testing.assert_frame_equal(c0, c1, check_exact=True)


def test_central_noise_std_is_z_c_over_k():
    from simulator.privacy import ServerPrivacy

    sc = parse_scenario(small_doc(**{"privacy.mode": "central", "privacy.clip_norm": 0.2,
                                     "privacy.noise_multiplier": 4.0}))
    from simulator.aggregation.chain import ServerChain
    from simulator.aggregation.fedavg import FedAvg
    from simulator.aggregation.strategy import AggregationContext, Contribution, ServerSums

    chain = ServerChain(FedAvg(sc), [ServerPrivacy(sc, 200)])
    ctx = AggregationContext(0, sc.seed, 3.0, "sync", noise_keys=(0,), expected_clients=20)

    def step() -> np.ndarray:
        sums = ServerSums([Contribution(Partial.empty(200_000))])
        return chain.aggregate(np.zeros(200_000, np.float32), sums, ctx)

    first = step()
    assert np.std(first) == pytest.approx(3.0 * 4.0 * 0.2 / 20, rel=0.01)  # lr * z * C / k
    assert np.array_equal(first, step())  # from (seed, PRIVACY, round)
