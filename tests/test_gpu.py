"""GPU: a host granted a GPU (executor.num_gpus_per_actor > 0) trains its batched clients on CUDA.

Skipped without CUDA. CPU stays the default: without a GPU grant the workload never touches
CUDA, even where one is present. GPU and CPU kernels round differently, so results are compared
with a tolerance, never bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.aggregation import apply_fedavg
from simulator.config.scenario import parse_scenario
from simulator.core import rng
from simulator.core.jobs import JobBatch
from tests.conftest import small_doc

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _jobs(ids, rnd=0):
    ids = np.asarray(ids, np.int64)
    return JobBatch(rnd, ids, np.array([rng.int_seed(7, rng.TRAINING, rnd, c) for c in ids],
                                       np.uint64))


def _workload(**over):
    from simulator.workloads.mlp import MLPWorkload

    torch.set_num_threads(1)
    return MLPWorkload(parse_scenario(small_doc(**over)), 200)


@pytest.mark.parametrize("opt", [{}, {"training.momentum": 0.9},
                                 {"training.optimizer": "adam", "training.lr": 0.01}])
def test_gpu_batched_training_matches_cpu(opt):
    gpu = _workload(**{"executor.num_gpus_per_actor": 1, **opt})
    cpu = _workload(**opt)
    assert gpu.device.type == "cuda" and cpu.device.type == "cpu"
    g = cpu.initial_state()
    a = gpu.train_clients(g, _jobs(range(60)), batched=True)
    b = cpu.train_clients(g, _jobs(range(60)), batched=True)
    tol = 1e-3 if opt.get("training.optimizer") == "adam" else 1e-4
    assert np.abs(a.mean(0) - b.mean(0)).max() < tol
    pa, pb = gpu.train(g, _jobs(range(60))).sorted(), cpu.train(g, _jobs(range(60))).sorted()
    assert np.array_equal(pa.client_ids, pb.client_ids)
    assert np.allclose(apply_fedavg(g, pa), apply_fedavg(g, pb), atol=tol)
    assert np.allclose(pa.loss_mean, pb.loss_mean, atol=1e-4)


def test_gpu_fedavg_learns_digits():
    w = _workload(**{"executor.num_gpus_per_actor": 0.5})
    g = w.initial_state()
    acc0, loss0 = w.evaluate(g)
    for r in range(15):
        ids = np.unique(np.arange(r * 10, r * 10 + 40) % 200)
        g = apply_fedavg(g, w.train(g, _jobs(ids, r)).sorted())
    acc1, loss1 = w.evaluate(g)
    assert loss1 < loss0 and acc1 > acc0 + 0.3


@pytest.mark.ray
def test_ray_actors_train_on_their_gpu(tmp_path, ray_session):
    import pandas as pd

    from simulator.execution.ray_pool import RayExecutor
    from simulator.loop.runner import run_scenario

    if ray_session.cluster_resources().get("GPU", 0) < 1:
        pytest.skip("the Ray session sees no GPU")
    over = {"executor.kind": "ray", "executor.num_actors": 2, "executor.num_cpus_per_actor": 1,
            "executor.num_gpus_per_actor": 0.5}
    sc = parse_scenario(small_doc(**over))
    ex = RayExecutor(sc, sc.population.size)
    try:
        where = ray_session.get([a.placement.remote() for a in ex.actors])
    finally:
        ex.close()
    assert all(p["device"].startswith("cuda") and p["gpu_ids"] for p in where)
    gpu_run = run_scenario(sc, name="gpu", runs_dir=str(tmp_path))
    cpu_run = run_scenario(parse_scenario(small_doc()), name="cpu", runs_dir=str(tmp_path))
    r_gpu = pd.read_parquet(gpu_run / "rounds.parquet")
    r_cpu = pd.read_parquet(cpu_run / "rounds.parquet")
    # Simulated time does not depend on where training runs; accuracy does only by rounding.
    assert r_gpu["completed"].tolist() == r_cpu["completed"].tolist()
    assert np.allclose(r_gpu["accuracy"], r_cpu["accuracy"], atol=0.02)
