"""Secure aggregation cost model and dropout threshold (Bonawitz et al. CCS 2017)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.config.privacy import SecureAggregation
from simulator.config.scenario import parse_scenario
from simulator.core import outcomes as R
from simulator.core.cost import TaskCost, Timing
from simulator.loop.runner import run_scenario
from simulator.planning import Plan
from simulator.privacy.secagg import (
    SecureAggregator,
    client_overhead,
    expansion_factor,
    ring_bits,
    secagg_failed,
    server_prg_bytes,
    threshold,
)
from tests.conftest import small_doc

CFG = SecureAggregation(enabled=True)


def test_ring_bits_and_threshold():
    assert ring_bits(16, 1024) == 26 and ring_bits(16, 1025) == 27 and ring_bits(32, 1) == 32
    assert threshold(10, 2 / 3) == 7 and threshold(9, 2 / 3) == 6 and threshold(3, 0.01) == 1


@given(st.integers(1, 5000), st.floats(0.01, 1.0))
def test_fails_exactly_below_threshold(n, frac):
    t = threshold(n, frac)
    assert 1 <= t <= n
    assert secagg_failed(t - 1, n, frac) and not secagg_failed(t, n, frac)


def test_client_overhead_by_hand():
    # n = 3, a 1,000-byte plain update of 32-bit elements (250 elements).
    o = client_overhead(3, 1000.0, CFG)
    enc = 2 * 32 + 2 * 4 + 28  # two shares, two ids, AES-GCM nonce + tag = 100 bytes
    assert o.setup_up_bytes == 2 * 33 + 2 * enc
    assert o.setup_down_bytes == 3 * (2 * 33 + 4) + 2 * enc
    assert o.masked_extra_bytes == pytest.approx(250 * 34 / 8 - 1000)  # 32 + ceil(log2 3) bits
    assert o.unmask_up_bytes == 2 * (32 + 4)
    assert o.prg_bytes == pytest.approx(3 * 250 * 34 / 8)
    assert o.key_agreements == 4
    # Server: self masks of 2 survivors + pairwise masks of the 1 dropout with each survivor.
    assert server_prg_bytes(2, 1, 1000.0, 3, CFG) == pytest.approx(4 * 250 * 34 / 8)


def test_expansion_matches_the_paper():
    # Bonawitz et al. 2017 (abstract): 16-bit inputs, 1.73x for 2^10 users and 2^20 elements,
    # 1.98x for 2^14 users and 2^24 elements.
    cfg = SecureAggregation(enabled=True, input_bits=16)
    assert expansion_factor(2**10, 2**20, cfg) == pytest.approx(1.73, rel=0.03)
    assert expansion_factor(2**14, 2**24, cfg) == pytest.approx(1.98, rel=0.03)


def _plan(n, plain=4e6, infeasible=None):
    inf = np.zeros(n, bool) if infeasible is None else np.asarray(infeasible)
    cost = TaskCost(np.full(n, plain), np.full(n, plain), np.full(n, 1e9), np.zeros(n))
    return Plan(cost, inf, np.full(n, "full", dtype=object))


def test_charge_adds_bytes_and_time_to_each_phase():
    n = 4
    plan = _plan(n, infeasible=[False, False, False, True])
    t = Timing(np.ones(n), np.ones(n), np.ones(n))
    sa_ = SecureAggregator(CFG)
    down, up, lat = np.full(n, 8e6), np.full(n, 8e6), np.full(n, 0.01)
    plan2, t2, sa = sa_.charge(plan, t, down, up, lat)
    assert sa.n == 3
    o = client_overhead(3, 4e6, CFG)
    assert np.allclose(plan2.cost.upload_bytes[:3], 4e6 + o.up_bytes)
    assert np.allclose(plan2.cost.download_bytes[:3], 4e6 + o.down_bytes)
    assert plan2.cost.upload_bytes[3] == 4e6 and t2.total_s[3] == 3.0  # never joined
    setup = 2 * 0.01 + (o.setup_up_bytes + o.setup_down_bytes + o.survivor_list_bytes) / 1e6
    assert t2.download_s[0] == pytest.approx(1 + setup)
    assert t2.compute_s[0] == pytest.approx(1 + o.prg_bytes / 1e9 + 4 * 2e-4)
    extra = o.masked_extra_bytes + o.unmask_up_bytes
    assert t2.upload_s[0] == pytest.approx(1 + 0.01 + extra / 1e6)


@pytest.mark.parametrize("survivors", [0, 1, 2, 3, 4, 5, 6])
def test_settle_fails_exactly_below_threshold(survivors):
    n = 6
    cfg = SecureAggregation(enabled=True, threshold_fraction=0.5)  # t = 3
    sa_ = SecureAggregator(cfg)
    _, _, sa = sa_.charge(_plan(n), Timing(np.ones(n), np.ones(n), np.ones(n)),
                          np.full(n, 1e7), np.full(n, 1e7), np.zeros(n))
    outcome = np.array([R.COMPLETED] * survivors + [R.DROPPED] * (n - survivors), np.int8)
    out = R.RoundOutcome(outcome, np.ones(n), 10.0, np.ones(n), np.ones(n), np.ones(n))
    out2 = sa_.settle(sa, out)
    assert sa.failed == (survivors < 3)
    if sa.failed:
        assert out2.duration_s == 10.0
    else:
        prg = server_prg_bytes(survivors, n - survivors, 4e6, n, cfg)
        expect = prg / cfg.server_prg_bytes_per_s
        assert out2.duration_s == pytest.approx(10.0 + expect)


def _run(tmp_path, name, **over):
    run = run_scenario(parse_scenario(small_doc(**over)), name=name, runs_dir=str(tmp_path))
    return pd.read_parquet(run / "rounds.parquet"), pd.read_parquet(run / "clients.parquet")


def test_engine_round_fails_when_survivors_drop_below_threshold(tmp_path):
    # 26 invited (overcommit 1.3), 20 kept: with t = n the round can never unmask.
    r, c = _run(tmp_path, "strict", **{"secure_aggregation.enabled": True,
                                       "secure_aggregation.threshold_fraction": 1.0})
    assert r["secagg_failed"].all()
    assert (r["completed"] < r["secagg_threshold"]).all()
    assert r["accuracy"].nunique() == 1  # no model update in any round
    assert c["train_loss"].isna().all()  # nobody was trained: their updates would be unusable


def test_engine_records_overhead_and_threshold_decision(tmp_path):
    r0, c0 = _run(tmp_path, "plain")
    r, c = _run(tmp_path, "sa", **{"secure_aggregation.enabled": True,
                                   "secure_aggregation.threshold_fraction": 0.7})
    assert (r["secagg_failed"] == (r["completed"] < r["secagg_threshold"])).all()
    assert (r["secagg_threshold"] == np.ceil(0.7 * r["secagg_participants"] - 1e-9)).all()
    assert r["secagg_bytes_up"].gt(0).all() and r["secagg_server_s"].gt(0).any()
    assert (r["bytes_up"] > r0["bytes_up"]).all() and (r["bytes_down"] > r0["bytes_down"]).all()
    done = c[c["outcome"] == "completed"]
    assert done["secagg_s"].gt(0).all() and done["secagg_bytes_up"].gt(0).all()
    # Completed clients move their plain update plus the protocol's bytes.
    plain = c0[c0["outcome"] == "completed"]["bytes_up"].iloc[0]
    assert np.allclose(done["bytes_up"], plain + done["secagg_bytes_up"])
    assert r["secagg_failed"].dtype == bool
    assert not math.isnan(r["accuracy"].iloc[-1])
