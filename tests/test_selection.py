"""Selection policies on tiny hand-made populations with known answers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import InputError
from simulator.config.scenario import ScenarioError, parse_scenario
from simulator.config.selection import (
    BUILTIN_POLICIES,
    DeadlineParams,
    FairParams,
    OortParams,
    PowerOfChoiceParams,
    TiflParams,
)
from simulator.core import outcomes as R
from simulator.fleet.population import Population
from simulator.io.checkpoint import load_checkpoint, save_checkpoint
from simulator.selection import RoundContext, RoundFeedback, make_selector
from simulator.selection.base import known_policies
from simulator.selection.common import weighted_sample
from simulator.selection.oort import OortSelector
from simulator.selection.policies import DeadlineSelector, FairSelector, PowerOfChoiceSelector
from simulator.selection.tifl import TiflSelector
from tests.conftest import small_doc


def make_pop(n: int, n_samples: np.ndarray | None = None) -> Population:
    z = np.zeros(n)
    return Population(
        profiles=(), profile_idx=np.zeros(n, np.int16), link_idx=np.zeros(n, np.int8),
        train_flops_per_s=z + 1e9, memory_bytes=z + 1e9, downlink_bits_per_s=z + 1e7,
        uplink_bits_per_s=z + 1e7, latency_s=np.zeros(n, np.float32), dropout_hazard_per_s=z,
        always_on=np.ones(n, bool), window_start_h=np.zeros(n, np.float32),
        window_len_h=np.full(n, 24.0, np.float32),
        n_samples=np.full(n, 50, np.int64) if n_samples is None else n_samples.astype(np.int64))


def ctx(pop: Population, est: np.ndarray, rnd: int = 0, deadline: float | None = None,
        k: int = 1) -> RoundContext:
    return RoundContext(rnd, 0.0, pop, k, deadline, lambda ids: est[np.asarray(ids)], None)


def feedback(rnd: int, ids: np.ndarray, est: np.ndarray, loss: np.ndarray,
             outcome: np.ndarray | None = None, n_samples: int = 50) -> RoundFeedback:
    ids = np.sort(np.asarray(ids))
    out = np.full(len(ids), R.COMPLETED, np.int8) if outcome is None else outcome[ids]
    done = out == R.COMPLETED
    lo = np.where(done, loss[ids], np.nan)
    return RoundFeedback(rnd, ids, out, est[ids], np.full(len(ids), n_samples), lo, lo ** 2, None)


def gen(seed: int, rnd: int) -> np.random.Generator:
    return np.random.default_rng([seed, rnd])


# --- FedCS ----------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1, 1000), min_size=1, max_size=60), st.floats(1, 1000),
       st.integers(1, 30), st.floats(1, 5), st.integers(0, 2**31))
def test_fedcs_never_picks_a_client_over_the_deadline(est, deadline, n, pool, seed):
    est = np.array(est)
    pop = make_pop(len(est))
    sel = DeadlineSelector(None, pop, DeadlineParams(deadline_s=deadline, pool_factor=pool))
    picked = sel.select(ctx(pop, est), np.arange(len(est)), n, gen(seed, 0))
    assert np.all(est[picked] <= deadline)
    assert len(picked) == min(n, int(np.sum(est <= deadline)))
    assert len(np.unique(picked)) == len(picked)


def test_fedcs_greedy_takes_the_fastest_of_a_large_pool():
    est = np.array([50.0, 10, 700, 20, 30, 601, 40])
    pop = make_pop(len(est))
    sel = DeadlineSelector(None, pop, DeadlineParams(deadline_s=600, pool_factor=100))
    assert list(sel.select(ctx(pop, est), np.arange(7), 3, gen(0, 0))) == [1, 3, 4]


def test_fedcs_uses_the_scenario_deadline_and_requires_one():
    sc = parse_scenario(small_doc(**{"selection.policy": "deadline", "deadline_s": 25}))
    pop = make_pop(4)
    sel = DeadlineSelector(sc, pop)
    est = np.array([10.0, 30, 20, 40])
    assert list(sel.select(ctx(pop, est, deadline=25), np.arange(4), 4, gen(0, 0))) == [0, 2]
    with pytest.raises(InputError, match="selection.deadline.deadline_s"):
        DeadlineSelector(None, pop).select(ctx(pop, est), np.arange(4), 2, gen(0, 0))


# --- Oort -----------------------------------------------------------------------------------------
def _oort_world():
    """40 clients: A fast/high loss, B fast/low loss, C slow/high loss, D slow/low loss."""
    est = np.repeat([10.0, 10.0, 100.0, 100.0], 10)
    loss = np.repeat([3.0, 0.1, 3.0, 0.1], 10)
    return make_pop(40), est, loss


def test_oort_prefers_high_utility_fast_clients_after_exploration():
    pop, est, loss = _oort_world()
    sel = OortSelector(None, pop, OortParams(exploration_factor=0.0, exploration_floor=0.0))
    everyone = np.arange(40)
    sel.select(ctx(pop, est, 0), everyone, 40, gen(1, 0))  # round 0: explore all
    sel.observe(feedback(0, everyone, est, loss))
    assert sel.explored.all()
    assert np.allclose(sel.utility, 50 * loss)  # |B_i| * sqrt(mean(loss^2))
    picks = []
    for r in range(1, 41):
        ids = sel.select(ctx(pop, est, r), everyone, 8, gen(1, r))
        picks.append(ids)
        sel.observe(feedback(r, ids, est, loss))
    group = np.concatenate(picks) // 10
    share = np.bincount(group, minlength=4) / group.size
    assert share[0] > 0.6  # fast, high utility
    assert share[0] > 3 * share[1] and share[0] > 10 * share[2]
    assert share[2] + share[3] < 0.05  # slow clients are penalised (T/t)^2 = 0.01


def test_oort_explores_unexplored_faster_clients_first():
    pop = make_pop(100)
    est = np.where(np.arange(100) % 2 == 0, 10.0, 100.0)  # even ids fast
    sel = OortSelector(None, pop)
    ids = sel.select(ctx(pop, est, 0), np.arange(100), 5, gen(0, 0))
    assert len(ids) == 5 and np.all(ids % 2 == 0)
    assert np.all(np.isfinite(sel.duration_s))  # registered with the cost model's estimate


def test_oort_exploration_fraction_and_split():
    pop, est, loss = _oort_world()
    sel = OortSelector(None, pop)
    assert sel.exploration_fraction(0) == pytest.approx(0.9)
    assert sel.exploration_fraction(10) == pytest.approx(0.9 * 0.98 ** 10)
    assert sel.exploration_fraction(200) == pytest.approx(0.3)
    half = np.arange(20)
    sel.observe(feedback(0, half, est, loss))  # clients 0-19 explored
    ids = sel.select(ctx(pop, est, 200), np.arange(40), 10, gen(0, 1))
    assert np.sum(ids >= 20) == 3  # 30% exploration at the floor
    assert len(sel.last_exploit) == 7 and np.all(sel.last_exploit < 20)


def test_oort_pacer_moves_the_preferred_percentile():
    pop = make_pop(5)
    sel = OortSelector(None, pop)
    sel.history = [1.0] * 40
    sel._pace(40)
    assert sel.percentile == 35.0  # stalled: admit slower clients
    sel.history = [1.0] * 20 + [10.0] * 20
    sel._pace(60)
    assert sel.percentile == 30.0  # changed sharply: tighten
    sel._pace(61)  # not a pacer round
    assert sel.percentile == 30.0


def test_oort_blacklist_and_out_of_memory():
    pop, est, loss = _oort_world()
    sel = OortSelector(None, pop, OortParams(blacklist_after=1, exploration_floor=0.0,
                                             exploration_factor=0.0))
    out = np.full(40, R.COMPLETED, np.int8)
    out[30:] = R.OUT_OF_MEMORY
    sel.observe(feedback(0, np.arange(40), est, loss, out))
    assert np.all(np.isinf(sel.duration_s[30:])) and np.all(sel.completed[:30] == 1)
    # Everyone completed once (blacklisted) but 30-39, which never ran: only they are exploited;
    # the policy tops the round up at random from the others.
    ids = sel.select(ctx(pop, est, 5), np.arange(40), 12, gen(0, 5))
    assert len(ids) == 12 and set(range(30, 40)) <= set(ids)


# --- TiFL -----------------------------------------------------------------------------------------
def test_tifl_tiers_partition_clients_by_latency():
    rng = np.random.default_rng(3)
    est = rng.lognormal(3, 1, 103)
    pop = make_pop(103)
    sel = TiflSelector(None, pop, TiflParams(tiers=5))
    sel.select(ctx(pop, est), np.arange(103), 10, gen(0, 0))
    sizes = np.bincount(sel.tier, minlength=5)
    assert sizes.sum() == 103 and sizes.max() - sizes.min() <= 1
    for t in range(4):
        assert est[sel.tier == t].max() <= est[sel.tier == t + 1].min()


def test_tifl_one_tier_per_round_and_reweighting():
    est = np.arange(50, dtype=float)  # tier t = clients 10t .. 10t+9
    pop = make_pop(50)
    sel = TiflSelector(None, pop, TiflParams(tiers=5, interval=10))
    loss = np.repeat([0.5, 0.4, 0.3, 0.2, 2.0], 10)  # tier 4 learns worst
    for r in range(10):
        ids = sel.select(ctx(pop, est, r), np.arange(50), 6, gen(0, r))
        assert len(set(sel.tier[ids])) == 1  # one tier per round
        sel.observe(feedback(r, ids, est, loss))
    # After 10 rounds: tiers ranked by loss, never-trained tiers count as worst.
    proxy = np.where(np.isnan(sel.tier_loss), np.inf, sel.tier_loss)
    assert np.isnan(sel.tier_loss).sum() < 5
    assert sel.probs.sum() == pytest.approx(1.0)
    order = np.argsort(-proxy, kind="stable")  # highest loss (least accurate) first
    assert np.allclose(sel.probs[order], np.array([5, 4, 3, 2, 1]) / 15)
    trained = ~np.isnan(sel.tier_loss)
    assert np.allclose(sel.tier_loss[trained], loss[::10][trained])


def test_tifl_fills_from_neighbouring_tiers_and_credits():
    est = np.arange(20, dtype=float)
    pop = make_pop(20)
    sel = TiflSelector(None, pop, TiflParams(tiers=4, credits=1))
    seen = []
    for r in range(4):
        ids = sel.select(ctx(pop, est, r), np.arange(20), 5, gen(2, r))
        seen.append(int(np.bincount(sel.tier[ids]).argmax()))
    assert sorted(seen) == [0, 1, 2, 3]  # one credit each: every tier once
    ids = sel.select(ctx(pop, est, 4), np.arange(20), 8, gen(2, 4))  # credits spent: no limit
    tiers = sel.tier[ids].astype(int)
    j = np.bincount(tiers).argmax()
    assert len(ids) == 8 and np.sum(tiers == j) == 5  # the whole drawn tier ...
    assert np.all(np.abs(tiers[tiers != j] - j) == 1)  # ... and 3 from its neighbours


# --- power-of-choice and fair ---------------------------------------------------------------------
def test_power_of_choice_returns_the_highest_loss_candidates():
    pop = make_pop(30)
    est = np.ones(30)
    loss = np.random.default_rng(0).uniform(0, 5, 30)
    sel = PowerOfChoiceSelector(None, pop, PowerOfChoiceParams(d=30))
    sel.observe(feedback(0, np.arange(30), est, loss))
    ids = sel.select(ctx(pop, est, 1), np.arange(30), 5, gen(0, 1))
    assert set(ids) == set(np.argsort(-loss)[:5])
    # With d < candidates: the n highest among the d sampled; never-trained clients count highest.
    sel.last_loss[7] = np.nan
    sel2 = PowerOfChoiceSelector(None, pop, PowerOfChoiceParams(d=10))
    sel2.last_loss[:] = sel.last_loss
    seen_7 = False
    for r in range(8):
        ids = sel2.select(ctx(pop, est, r), np.arange(30), 4, gen(9, r))
        sampled = weighted_sample(np.arange(30), pop.n_samples.astype(float), 10, gen(9, r))
        key = np.where(np.isnan(sel2.last_loss[sampled]), np.inf, sel2.last_loss[sampled])
        assert set(ids) == set(sampled[np.argsort(-key)[:4]])
        seen_7 |= 7 in sampled
        assert (7 in ids) == (7 in sampled)  # never trained: always kept when sampled
    assert seen_7


def test_power_of_choice_samples_by_data_size():
    n_samples = np.array([1] * 20 + [1000] * 20)
    pop = make_pop(40, n_samples)
    sel = PowerOfChoiceSelector(None, pop, PowerOfChoiceParams(d=10))
    ids = np.concatenate([sel.select(ctx(pop, np.ones(40), r), np.arange(40), 5, gen(0, r))
                          for r in range(20)])
    assert np.mean(ids >= 20) > 0.9


@pytest.mark.parametrize("quota", [1, 3])
def test_fair_equalises_participation(quota):
    pop = make_pop(10)
    est = np.ones(10)
    sel = FairSelector(None, pop, FairParams(quota=quota))
    rng_avail = np.random.default_rng(5)
    total = 0
    for r in range(300):
        avail = np.flatnonzero(rng_avail.random(10) < 0.8)  # some clients offline each round
        ids = sel.select(ctx(pop, est, r), avail, 3, gen(0, r))
        assert set(ids) <= set(avail)
        total += min(3, len(avail))
        sel.observe(feedback(r, ids, est, np.ones(10)))
    assert sel.count.sum() == total
    assert sel.count.max() - sel.count.min() <= quota + 2
    jain = sel.count.sum() ** 2 / (10 * (sel.count ** 2).sum())
    assert jain > 0.99


def test_fair_strict_round_robin_when_everyone_is_online():
    pop = make_pop(9)
    sel = FairSelector(None, pop)
    est = np.ones(9)
    for r in range(3):
        ids = sel.select(ctx(pop, est, r), np.arange(9), 3, gen(0, r))
        sel.observe(feedback(r, ids, est, np.ones(9)))
    assert np.all(sel.count == 1)


# --- registry, plugins, scenario ------------------------------------------------------------------
class EveryOther:
    """A user policy for the plugin test: even candidates first."""

    def __init__(self, scenario, population):
        pass

    def select(self, ctx, candidates, n, rng):
        return np.sort(candidates[candidates % 2 == 0][:n])

    def observe(self, feedback):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


PLUGIN = "tests.test_selection.EveryOther"


def test_plugin_accepted_only_when_listed():
    with pytest.raises(ScenarioError, match="selection.policy: plugin .* not listed"):
        parse_scenario(small_doc(**{"selection.policy": PLUGIN}))
    sc = parse_scenario(small_doc(**{"selection.policy": PLUGIN, "plugins": [PLUGIN]}))
    assert type(make_selector(sc, make_pop(4))).__name__ == "EveryOther"
    # make_selector checks again (scenarios built without validation)
    raw = SimpleNamespace(selection=SimpleNamespace(policy=PLUGIN), plugins=())
    with pytest.raises(InputError, match="not listed under plugins"):
        make_selector(raw, make_pop(4))


def test_scenario_selection_fields_are_validated():
    bad = [({"selection.policy": "oortt"}, "selection.policy: unknown selection policy 'oortt'"),
           ({"selection.oort.alpha": -1}, "selection.oort.alpha"),
           ({"selection.oort.bogus": 1}, "selection.oort.bogus: unknown field"),
           ({"selection.tifl.tiers": 0}, "selection.tifl.tiers"),
           ({"selection.fair.count": "x"}, "selection.fair.count"),
           ({"selection.policy": "power_of_choice", "selection.power_of_choice.d": 3},
            "selection.power_of_choice.d: must be at least")]
    for over, msg in bad:
        with pytest.raises(ScenarioError) as ei:
            parse_scenario(small_doc(**over))
        assert len(ei.value.lines) == 1 and ei.value.lines[0].startswith(msg), ei.value.lines
    sc = parse_scenario(small_doc(**{"selection.policy": "oort", "selection.oort.alpha": 1.5}))
    assert sc.selection.oort.alpha == 1.5 and sc.selection.tifl.tiers == 5


def test_builtin_names_match_the_registry():
    assert sorted(BUILTIN_POLICIES) == known_policies()


# --- checkpoints ----------------------------------------------------------------------------------
def _drive(sel, pop, est, loss, outcome, rounds, k=6):
    picks = []
    for r in rounds:
        ids = sel.select(ctx(pop, est, r, deadline=90.0), np.arange(pop.size), k, gen(11, r))
        picks.append(ids)
        sel.observe(feedback(r, ids, est, loss, outcome))
    return picks


@pytest.mark.parametrize("policy", BUILTIN_POLICIES)
def test_state_dict_round_trip_restores_identical_selections(policy, tmp_path):
    n = 60
    sc = parse_scenario(small_doc(**{"selection.policy": policy, "population.size": n,
                                     "clients_per_round": 5, "selection.oort.pacer_step": 3,
                                     "selection.tifl.interval": 2}))
    rng = np.random.default_rng(1)
    pop = make_pop(n, rng.integers(5, 100, n))
    est = rng.uniform(5, 100, n)
    loss = rng.uniform(0.1, 3, n)
    outcome = np.where(rng.random(n) < 0.2, R.STRAGGLER, R.COMPLETED).astype(np.int8)
    a = make_selector(sc, pop)
    _drive(a, pop, est, loss, outcome, range(8))
    save_checkpoint(tmp_path, 8, 0.0, None, np.zeros(1), a.state_dict())
    b = make_selector(sc, pop)
    b.load_state_dict(load_checkpoint(tmp_path).selector_state)
    pa = _drive(a, pop, est, loss, outcome, range(8, 20))
    pb = _drive(b, pop, est, loss, outcome, range(8, 20))
    for x, y in zip(pa, pb, strict=True):
        assert np.array_equal(x, y)


def test_resume_with_oort_gives_identical_tables(tmp_path):
    from simulator.loop.runner import resume_run, run_scenario

    doc = small_doc(**{"selection.policy": "oort", "rounds": 6, "population.size": 60,
                       "clients_per_round": 6})
    full = run_scenario(parse_scenario(doc), name="full", runs_dir=str(tmp_path))

    def stop_after_4(rep):
        if rep.round == 3:
            raise KeyboardInterrupt

    doc["output"] = {"checkpoint_every": 2}
    with pytest.raises(KeyboardInterrupt):
        run_scenario(parse_scenario(doc), name="cut", runs_dir=str(tmp_path), on_round=stop_after_4)
    resumed = resume_run(tmp_path / "cut")
    for table in ("rounds.parquet", "clients.parquet"):
        x = pd.read_parquet(full / table).drop(columns=["wall_s"], errors="ignore")
        y = pd.read_parquet(resumed / table).drop(columns=["wall_s"], errors="ignore")
        pd.testing.assert_frame_equal(x, y, check_exact=True)


@pytest.mark.parametrize("policy", BUILTIN_POLICIES)
def test_every_policy_runs_a_tiny_scenario(policy, tmp_path):
    from simulator.loop.runner import run_scenario

    sc = parse_scenario(small_doc(**{"selection.policy": policy, "rounds": 3,
                                     "population.size": 50, "clients_per_round": 5}))
    run = run_scenario(sc, name=policy, runs_dir=str(tmp_path))
    r = pd.read_parquet(run / "rounds.parquet")
    assert len(r) == 3 and r["selected"].max() <= 7


# --- no oracle: the server's estimates (simulator/selection/estimates.py) ------------------------
def _est_sim(**over):
    from simulator.loop.simulation import Simulation

    return Simulation(parse_scenario(small_doc(**{"mode": "analytic", **over})))


def test_estimates_are_not_the_truth_when_dynamics_are_on(mode="observed"):
    from simulator.core import rng as RR
    from simulator.loop import pipeline as P

    sim = _est_sim(**{"estimates.mode": mode})
    ids = np.arange(sim.pop.size)
    est = sim.estimate_fn(0)(ids)
    la = P.launch(sim, 0, 0.0, ids, RR.stream(7, RR.DROPOUT, 0))
    truth = la.timing.total_s
    ok = ~la.plan.infeasible
    assert np.all(np.isfinite(est[ok]))
    rel = np.abs(est[ok] / truth[ok] - 1.0)
    assert np.median(rel) > 0.05  # the server does not know the draws nor this task's dynamics
    # before any observation the estimate is the class prior: equal for the same class, link
    # and data size, whatever the client's own draw
    p, li, n = sim.pop.profile_idx, sim.pop.link_idx, sim.pop.n_samples
    same = np.flatnonzero((p == p[0]) & (li == li[0]) & (n == n[0]))
    assert np.unique(est[same]).size == 1
    # the oracle (estimates.mode: oracle) is the static cost model on the true draws
    oracle = _est_sim(**{"estimates.mode": "oracle"})
    from simulator.core.cost import estimate_clients

    cost = oracle.planner.plan(0, ids, oracle.pop).cost
    true_static = estimate_clients(oracle.pop, ids, cost).total_s
    assert np.array_equal(oracle.estimate_fn(0)(ids), true_static)


def test_estimator_learns_from_observations_and_class_priors():
    sim = _est_sim()
    e = sim.estimator
    ids = np.array([0, 1])
    cost = sim.planner.plan(0, ids, e.server_view()).cost
    prior = e.prior_s(ids, cost)
    # client 0 completed in twice its prior; client 1 was cut at 3x its prior (a lower bound)
    believed = e.observe(ids, np.array([R.COMPLETED, R.STRAGGLER]), prior * [2.0, 3.0], prior)
    assert believed[0] == pytest.approx(prior[0] * 2.0)
    assert believed[1] == pytest.approx(prior[1] * 3.0)
    assert e.estimate_s(ids, cost) == pytest.approx(prior * [2.0, 3.0])
    # a second completion in exactly its prior: weight 0.5 in log space -> sqrt(2) x prior
    e.observe(ids[:1], np.array([R.COMPLETED]), prior[:1], prior[:1])
    cost0 = sim.planner.plan(0, ids[:1], e.server_view()).cost
    assert e.estimate_s(ids[:1], cost0)[0] == pytest.approx(prior[0] * np.sqrt(2.0))
    # a client never seen takes its class's mean log ratio
    p = sim.pop.profile_idx
    cls = np.flatnonzero((p == p[0]) & (np.arange(p.size) > 1))[:1]
    both = np.exp((np.log(np.sqrt(2.0)) + np.log(3.0)) / 2)
    expect = both if p[1] == p[0] else np.sqrt(2.0)
    assert e.ratio(cls)[0] == pytest.approx(expect)
    # dropped tasks teach nothing
    before = e.log_ratio.copy()
    e.observe(ids, np.array([R.DROPPED, R.OFFLINE]), prior * 9, prior)
    assert np.array_equal(before, e.log_ratio, equal_nan=True)


def test_estimator_state_is_checkpointed():
    sim = _est_sim()
    e = sim.estimator
    e.observe(np.array([4]), np.array([R.COMPLETED]), np.array([50.0]), np.array([10.0]))
    state = e.state_dict()
    fresh = _est_sim().estimator
    rest = fresh.load_state_dict(dict(state, other=1))
    assert rest == {"other": 1}
    assert np.array_equal(fresh.log_ratio, e.log_ratio, equal_nan=True)
    assert fresh.ratio(np.array([4]))[0] == pytest.approx(5.0)
