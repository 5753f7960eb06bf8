"""Partial (top-k blocks) and HeteroFL width sub-models: each coordinate is averaged only over
the clients that trained it."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.aggregation import Partial, apply_fedavg
from simulator.config.scenario import parse_scenario
from simulator.core import rng
from simulator.core.jobs import JobBatch
from simulator.workloads.partial import coordinate_average, top_blocks, trains_block
from simulator.workloads.width import embed, extract, sub_sizes, width_mask
from tests.conftest import small_doc

torch = pytest.importorskip("torch")


# --- pure rules on hand-made tensors ----------------------------------------------------------
def test_top_blocks():
    assert list(top_blocks(4, 1)) == [3] and list(top_blocks(4, 9)) == [0, 1, 2, 3]
    assert list(top_blocks(4, 0)) == []
    assert trains_block(4, 4, 1) and not trains_block(0, 4, 1)


def test_partial_masks_average_each_coordinate_over_its_trainers():
    # Prepare: 6 coordinates = 3 "blocks" of 2; client a trains the top 2 blocks, b the top 1.
    g = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    da, ma, wa = np.array([0, 0, 4.0, 4.0, 1.0, 1.0]), np.array([0, 0, 1, 1, 1, 1.0]), 3.0
    db, mb, wb = np.array([0, 0, 0, 0, -1.0, 3.0]), np.array([0, 0, 0, 0, 1, 1.0]), 1.0
    # Execute
    p = Partial.empty(6)
    p.add_client(0, da, wa, 3, 0.0, 0.0, mask=ma)
    p.add_client(1, db, wb, 1, 0.0, 0.0, mask=mb)
    new = apply_fedavg(g, p)
    # Assert: block 0 untouched; block 1 only a's update; block 2 weighted 3:1.
    expect = [1.0, 1.0, 6.0, 6.0, 3.0 + (3 * 1 - 1) / 4, 3.0 + (3 * 1 + 3) / 4]
    assert np.allclose(new, expect, atol=1e-9)
    assert np.allclose(coordinate_average(g, [da, db], [ma, mb], [wa, wb]), expect)


def test_width_sub_model_layout_on_hand_made_tensors():
    sizes = [2, 4, 3]  # W1 [4, 2], b1 [4], W2 [3, 4], b2 [3]: 8 + 4 + 12 + 3 = 27
    assert sub_sizes(sizes, 0.5) == [2, 2, 3] and sub_sizes(sizes, 0.3) == [2, 2, 3]
    assert sub_sizes(sizes, 0.25) == [2, 1, 3] and sub_sizes(sizes, 1.0) == sizes
    flat = np.arange(27.0)
    m = width_mask(sizes, 0.5)
    w1 = m[:8].reshape(4, 2)
    w2 = m[12:24].reshape(3, 4)
    assert w1.tolist() == [[1, 1], [1, 1], [0, 0], [0, 0]]
    assert m[8:12].tolist() == [1, 1, 0, 0]
    assert w2.tolist() == [[1, 1, 0, 0]] * 3 and m[24:].tolist() == [1, 1, 1]
    sub = extract(flat, sizes, 0.5)
    assert sub.tolist() == [0, 1, 2, 3, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 26]
    back = embed(sub, sizes, 0.5, np.full(27, -1.0))
    assert np.array_equal(back[m > 0], flat[m > 0]) and np.all(back[m == 0] == -1.0)


def test_heterofl_aggregation_on_hand_made_tensors():
    sizes = [1, 2, 1]  # W1 [2,1] b1 [2] W2 [1,2] b2 [1]: 7 coordinates
    g = np.zeros(7)
    full_delta = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])  # client 0: rate 1, weight 1
    half_sub = np.array([10.0, 30.0, 50.0, 70.0])  # client 1: rate 0.5, weight 3
    half_delta = embed(half_sub, sizes, 0.5, g)
    p = Partial.empty(7)
    p.add_client(0, full_delta, 1.0, 1, 0, 0, mask=width_mask(sizes, 1.0))
    p.add_client(1, half_delta, 3.0, 3, 0, 0, mask=width_mask(sizes, 0.5))
    new = apply_fedavg(g, p)
    # W1[0], b1[0], W2[0,0], b2 are shared (weights 1:3); W1[1], b1[1], W2[0,1] only client 0.
    assert np.allclose(new, [(1 + 30) / 4, 2.0, (3 + 90) / 4, 4.0, (5 + 150) / 4, 6.0,
                             (7 + 210) / 4], atol=1e-9)


# --- the MLP workload with width jobs ---------------------------------------------------------
def _mlp_workload(**over):
    from simulator.workloads.width import WidthMLPWorkload

    torch.set_num_threads(1)
    return WidthMLPWorkload(parse_scenario(small_doc(**{"model.hidden": [16, 8], **over})), 200)


def _jobs(ids, kinds, rates, rnd=0):
    ids = np.asarray(ids, np.int64)
    return JobBatch(rnd, ids, np.array([rng.int_seed(7, rng.TRAINING, rnd, c) for c in ids],
                                       np.uint64),
                    {"kind": np.array(kinds, dtype=object), "width": np.array(rates, float)})


@pytest.mark.parametrize("batched", [True, False])
def test_width_jobs_train_only_their_sub_model(batched):
    w = _mlp_workload(**{"executor.batched": batched})
    g = w.initial_state()
    part = w.train(g, _jobs([3, 4], ["width", "width"], [0.5, 0.5]))
    mask = width_mask(w.sizes, 0.5)
    assert np.array_equal(part.weight, mask * part.n_samples.sum())
    new = apply_fedavg(g, part)
    assert np.array_equal(new[mask == 0], g[mask == 0])
    assert np.abs(new[mask > 0] - g[mask > 0]).max() > 1e-4
    # The sub-model trained is exactly a small MLP started from the extracted weights.
    sub = w._sub(0.5)
    direct = sub.train_clients(extract(g, w.sizes, 0.5).astype(np.float32),
                               _jobs([3], ["full"], [1.0]), batched=batched)[0]
    single = apply_fedavg(g, w.train(g, _jobs([3], ["width"], [0.5])))
    assert np.allclose(extract(single, w.sizes, 0.5), direct, atol=1e-6)


def test_without_width_jobs_it_is_the_mlp_workload():
    from simulator.workloads.mlp import MLPWorkload

    w = _mlp_workload()
    plain = MLPWorkload(parse_scenario(small_doc(**{"model.hidden": [16, 8]})), 200)
    g = w.initial_state()
    jobs = _jobs(range(10), ["full"] * 10, [1.0] * 10)
    a, b = w.train(g, jobs), plain.train(g, jobs)
    assert np.array_equal(a.sum_q, b.sum_q) and np.array_equal(a.weight, b.weight)


def test_mixed_widths_learn_digits():
    w = _mlp_workload(**{"model.hidden": [32]})
    g = w.initial_state()
    acc0, loss0 = w.evaluate(g)
    rates = [1.0, 0.5, 0.25, 0.5]
    for r in range(12):
        ids = np.unique((np.arange(40) + 13 * r) % 200)
        kinds = ["width"] * len(ids)
        g = apply_fedavg(g, w.train(g, _jobs(ids, kinds, [rates[c % 4] for c in ids], r)))
    acc1, loss1 = w.evaluate(g)
    assert loss1 < loss0 and acc1 > acc0 + 0.3
