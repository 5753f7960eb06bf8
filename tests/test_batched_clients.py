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


# --- batched vision clients (simulator/workloads/torch_batched.py) -----------------------------
# max |batched - one by one| over every parameter after training, as a fraction of how far
# training moved the weights: float32 rounding grows with that distance (momentum 0.9 moves
# them ~10x as far, and its differences measured 1.4e-5 of it on an AMD EPYC, 2e-7 without it)
TOL_OF_MOVED = 5e-5


def two_conv(input_shape: tuple = (1, 8, 8), n_classes: int = 10) -> object:
    """pfl-research's 2-conv + 1-dense CNN layout, padded for 8x8 digits."""
    from torch import nn

    c, h, w = input_shape
    return nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * (h // 4) * (w // 4), n_classes))


def _vision(over: dict) -> object:
    from simulator.workloads import build_workload

    model = over.pop("model", {"kind": "cnn", "params": {"hidden": 32}})
    doc = {"population.size": 60, "executor.batched_vision": True, "data.size_sigma": 0.7,
           "model": model, **over}
    return build_workload(parse_scenario(small_doc(**doc)), 60)


@pytest.mark.parametrize("over", [
    {},  # the FEMNIST-shape CNN (5x5 convs, 'same' padding), clients of different sizes
    {"model": {"kind": "custom", "factory": "tests.test_batched_clients:two_conv"}},
    {"training.momentum": 0.9, "training.epochs": 2, "training.batch_size": 7},
    {"aggregation.strategy": "fedprox", "aggregation.params": {"mu": 0.1}},
])
def test_batched_vision_equals_one_by_one(over: dict) -> None:
    w = _vision(dict(over))
    assert w._batched is not None, w.why_not_batched
    g = w.initial_state()
    jobs = _jobs(range(0, 60, 2))
    a, la, lqa = w.train_clients(g, jobs, batched=True)
    b, lb, lqb = w.train_clients(g, jobs, batched=False)
    moved = np.abs(b - g).max()
    assert moved > 1e-3  # the clients did train
    assert np.abs(a - b).max() <= TOL_OF_MOVED * moved, (np.abs(a - b).max(), moved)
    np.testing.assert_allclose(la, lb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lqa, lqb, rtol=1e-5, atol=1e-6)


def test_batched_vision_run_close_to_one_by_one() -> None:
    """Whole runs: the same clients, aggregates within float rounding of each other."""
    from simulator.workloads import build_workload

    rows = []
    for batched in (True, False):
        sc = parse_scenario(small_doc(**{"executor.batched_vision": batched,
                                         "model": {"kind": "cnn", "params": {"hidden": 32}}}))
        w = build_workload(sc, sc.population.size)
        g = w.initial_state()
        p = w.train(g, _jobs(range(25)))
        rows.append(p)
    a, b = rows
    np.testing.assert_array_equal(a.client_ids, b.client_ids)
    assert np.abs(a.sum_q - b.sum_q).max() / max(1, np.abs(b.sum_q).max()) < 1e-4


def test_batched_vision_refuses_what_it_cannot_batch() -> None:
    w = _vision({"training.optimizer": "adam"})
    assert w._batched is None and "adam" in str(w.why_not_batched)
    w = _vision({"model": {"kind": "resnet18", "params": {"stem": "cifar"}}})
    assert w._batched is None and "batch norm" in str(w.why_not_batched)


def test_image_inputs_channels_last_same_training(tmp_path) -> None:  # noqa: ANN001
    """One-by-one vision clients see images laid out channels-last (oneDNN's fast layout for
    convolutions and pooling, benchmarks/bench_cifar.py); training is the same up to float
    rounding as with the plain NCHW layout."""
    import torch

    from simulator.workloads import build_workload
    from simulator.workloads import torch_model as TM

    g0 = np.random.default_rng(0)
    y = g0.integers(0, 10, 700)
    x = g0.integers(0, 256, (700, 8, 8, 3)).astype(np.uint8)  # NHWC, as image files hold them
    np.savez(tmp_path / "img.npz", x=x[:600], y=y[:600], x_test=x[600:], y_test=y[600:])
    sc = parse_scenario(small_doc(**{
        "data": {"dataset": "images", "path": str(tmp_path / "img.npz"), "partition": "iid",
                 "samples_per_client": 20},
        "model": {"kind": "custom", "factory": "tests.test_batched_clients:two_conv"}}))
    w = build_workload(sc, sc.population.size)
    xc, _ = w.dataset.client_data(0)
    xt = w._x(xc)
    assert xt.shape[1:] == (3, 8, 8)
    assert xt.is_contiguous(memory_format=torch.channels_last) and not xt.is_contiguous()
    g = w.initial_state()
    jobs = _jobs(range(6))
    a, la, _ = w.train_clients(g, jobs, batched=False)
    plain = TM.TorchModelWorkload._x  # the NCHW-contiguous layout, for comparison
    try:
        TM.TorchModelWorkload._x = lambda self, x: torch.from_numpy(  # type: ignore[method-assign]
            np.ascontiguousarray(x, np.float32)).reshape((-1, *self.input_shape))
        b, lb, _ = w.train_clients(g, jobs, batched=False)
    finally:
        TM.TorchModelWorkload._x = plain  # type: ignore[method-assign]
    moved = np.abs(b - g).max()
    assert moved > 1e-3
    assert np.abs(a - b).max() <= TOL_OF_MOVED * moved, (np.abs(a - b).max(), moved)
    np.testing.assert_allclose(la, lb, rtol=1e-5, atol=1e-6)
