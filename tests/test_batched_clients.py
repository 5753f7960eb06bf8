"""Batched client training: the MLP's direct gather equals the per-client path element for
element, and batched vision clients (torch.func vmap) equal per-client training within a
stated tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config.scenario import parse_scenario
from simulator.core import rng
from simulator.core.jobs import JobBatch
from tests.conftest import small_doc


def _jobs(ids: range | np.ndarray, rnd: int = 0) -> JobBatch:
    ids = np.asarray(ids, np.int64)
    seeds = np.array([rng.int_seed(7, rng.TRAINING, rnd, int(c)) for c in ids], np.uint64)
    return JobBatch(rnd, ids, seeds)


@pytest.mark.parametrize("over", [
    {},  # digits: a pooled dataset (rows gathered straight from the pool)
    {"data.size_sigma": 0.8, "training.epochs": 2, "training.batch_size": 7},
    {"data.dataset": "synthetic", "data.size_sigma": 0.6},  # per-client shards
])
def test_group_arrays_equal_pad_group(over: dict) -> None:
    from simulator.workloads.mlp import MLPWorkload

    sc = parse_scenario(small_doc(**{"population.size": 120, "model.hidden": [8], **over}))
    w = MLPWorkload(sc, 120)
    jobs = _jobs(range(0, 120, 3))
    order = np.argsort(w.dataset.n_samples[jobs.client_ids], kind="stable")
    ids, seeds = jobs.client_ids[order], jobs.seeds[order]
    flip = np.arange(len(ids)) % 3 == 0
    xs, ys, ms, n_steps, n = w._group_arrays(ids, seeds, flip)
    inputs = [w._client_inputs(c, sd) for c, sd in zip(ids, seeds, strict=True)]
    k = w.dataset.n_classes
    inputs = [(x, (k - 1 - y).astype(y.dtype), pl) if b else (x, y, pl)
              for (x, y, pl), b in zip(inputs, flip, strict=True)]
    steps = max(p[2].shape[0] for p in inputs)
    rx, ry, rm = w._pad_group(inputs, steps)
    assert xs.dtype == rx.dtype and ys.dtype == ry.dtype
    np.testing.assert_array_equal(xs, rx)
    np.testing.assert_array_equal(ys, ry)
    np.testing.assert_array_equal(ms, rm)
    np.testing.assert_array_equal(n_steps, [p[2].shape[0] for p in inputs])
    np.testing.assert_array_equal(n, [len(p[1]) for p in inputs])
