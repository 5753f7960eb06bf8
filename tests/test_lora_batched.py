"""Batched LoRA clients equal per-client peft training within lora_batched.TOLERANCE."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_lora import jobs_for, tiny_workload

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


def _state(r_max=4):
    from simulator.workloads.llm import StateConfig
    from simulator.workloads.lora import LoraSpec

    return StateConfig(LoraSpec(r_max=r_max, alpha=2.0 * r_max, target_modules="all-linear"),
                       "none")


def _per_client_and_batched(w, ids, ranks, rnd=0):
    from simulator.workloads import lora_batched as LB

    g = w.initial_state()
    g = g + np.random.default_rng(3).normal(0, 0.05, g.shape).astype(np.float32)  # B != 0
    jobs = jobs_for(ids, "lora", rnd)
    ref = [w.train_client(g, int(c), int(s), "lora", int(r))
           for c, s, r in zip(ids, jobs.seeds, ranks, strict=True)]
    got = LB.train_group(w, g, list(ids), [int(s) for s in jobs.seeds], list(ranks))
    return g, ref, got


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_batched_lora_equals_per_client_peft(opt):
    from simulator.workloads import lora_batched as LB
    from simulator.workloads.llm import TrainConfig

    w = tiny_workload(state=_state(4), train=TrainConfig(2, 4, 0.02, opt, 0.0), n_clients=40)
    ids = [0, 3, 5, 8, 13, 21, 34, 39]  # different data sizes: different step counts
    ranks = [4, 1, 2, 4, 3, 1, 4, 2]
    g, ref, got = _per_client_and_batched(w, ids, ranks)
    steps = {r.stats["steps"] for r in ref}
    assert len(steps) > 1, "the test needs clients with different step counts"
    for r, b, rank in zip(ref, got, ranks, strict=True):
        moved = np.abs(r.values - g).max()
        assert moved > 1e-3  # they trained
        assert np.abs(b.values - r.values).max() <= LB.TOLERANCE
        assert b.n == r.n and b.steps == r.stats["steps"]
        assert b.loss == pytest.approx(r.loss, rel=1e-5)
        assert b.loss_sq == pytest.approx(r.loss_sq, rel=1e-5)
        outside = ~w.within_rank(rank)  # a truncated copy: components beyond the rank are 0
        assert np.all(b.values[outside] == 0.0)


def test_train_uses_the_batched_path_and_aggregates_the_same():
    from simulator.aggregation import apply_fedavg

    w = tiny_workload(state=_state(4), n_clients=30)
    g = w.initial_state()
    ids = list(range(0, 30, 3))
    jobs = jobs_for(ids, "lora", 0, rank=2)
    w.batched = False
    a = apply_fedavg(g, w.train(g, jobs))
    calls = []
    from simulator.workloads import lora_batched as LB

    orig = LB.train_group

    def spy(*args, **kw):
        calls.append(1)
        return orig(*args, **kw)

    LB.train_group = spy
    try:
        w.batched = True
        b = apply_fedavg(g, w.train(g, jobs))
    finally:
        LB.train_group = orig
    assert calls, "batched_lora did not take the batched LoRA path"
    assert np.abs(a - b).max() <= LB.TOLERANCE


def test_non_lora_jobs_are_not_batched():
    from simulator.workloads import lora_batched as LB
    from simulator.workloads.llm import StateConfig
    from simulator.workloads.lora import LoraSpec

    w = tiny_workload(state=StateConfig(LoraSpec(r_max=4, alpha=8.0), "top", 1))
    assert not LB.can_batch(w, np.array(["lora", "lora"], dtype=object))
    w2 = tiny_workload(state=_state(4))
    assert LB.can_batch(w2, np.array(["lora"], dtype=object))
    assert not LB.can_batch(w2, np.array(["lora", "split"], dtype=object))


def test_train_clients_groups_by_rank_and_keeps_the_job_order():
    """train_clients sorts by rank into groups (adapters at each group's largest rank) and must
    hand the results back in the jobs' order, each equal to that client's per-client training."""
    from simulator.workloads import lora_batched as LB
    from simulator.workloads.llm import TrainConfig

    w = tiny_workload(state=_state(4), train=TrainConfig(1, 4, 0.02, "adam", 0.0), n_clients=40)
    ids = [2, 7, 11, 19, 23, 31]
    ranks = [1, 4, 2, 1, 3, 2]  # unsorted: grouping reorders them
    g = w.initial_state()
    g = g + np.random.default_rng(4).normal(0, 0.05, g.shape).astype(np.float32)
    jobs = jobs_for(ids, "lora", 1)
    seeds = [int(s) for s in jobs.seeds]
    ref = [w.train_client(g, c, s, "lora", r) for c, s, r in zip(ids, seeds, ranks, strict=True)]
    orig = LB.MAX_GROUP, LB.MIN_GROUP
    LB.MAX_GROUP = LB.MIN_GROUP = 2  # three groups of two: ranks {4,3}, {2,2}, {1,1}
    try:
        got = LB.train_clients(w, g, ids, seeds, ranks)
    finally:
        LB.MAX_GROUP, LB.MIN_GROUP = orig
    for r, b, rank in zip(ref, got, ranks, strict=True):
        assert np.abs(b.values - r.values).max() <= LB.TOLERANCE
        assert np.all(b.values[~w.within_rank(rank)] == 0.0)


def test_batched_call_leaves_peft_adapters_as_it_found_them():
    """The session switches peft's adapters off itself (not through disable_adapter): afterwards
    they are on again, and per-client peft training gives what it gave before the call."""
    from simulator.workloads import lora_batched as LB

    w = tiny_workload(state=_state(4), n_clients=20)
    g = w.initial_state()
    g = g + np.random.default_rng(5).normal(0, 0.05, g.shape).astype(np.float32)
    jobs = jobs_for([1, 2], "lora", 0)
    before = w.train_client(g, 1, int(jobs.seeds[0]), "lora", 4).values
    LB.train_clients(w, g, [1, 2], [int(s) for s in jobs.seeds], [4, 2])
    layers = LB._tuner_layers(w)
    assert layers and not any(m.disable_adapters for m in layers)
    assert not w.model._adapters_disabled
    after = w.train_client(g, 1, int(jobs.seeds[0]), "lora", 4).values
    np.testing.assert_array_equal(after, before)
