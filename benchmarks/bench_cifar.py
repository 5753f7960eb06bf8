"""The pfl-research CIFAR-10 workload, CIFAR-shaped: FedFleet vs a plain FedAvg loop.

Workload (issue 15 item 5; pfl-research's cross-device CIFAR-10 benchmark shape): 1,000
clients x 50 images (synthetic 32x32x3, written to a temporary ``.npz``; no download), 50
clients per round, batch 10, one local epoch (5 steps), SGD lr 0.1, a CNN of two 3x3
convolutions (32 and 64 channels, each with ReLU and 2x2 max pooling) and one dense layer (the
"2-conv + 1-dense" model; 42,442 parameters). FedFleet runs it as a user would
(``dataset: images``, ``model.kind: custom`` with :func:`pfl_cnn` as the factory, the in-process
executor, analytic clock on); the baseline is the best simple thing a user would write: one
model reused for every client, weights loaded from the global vector, plain SGD, a weighted
average. Both train the same clients on the same images in the same process.

Prints client updates per second and per CPU-second (steady rounds, after one warm-up round),
the ratio, and the projected time of pfl-research's 1,500 rounds.

    python -m benchmarks.bench_cifar                 # ~1 minute on 2 cores
    python -m benchmarks.bench_cifar --rounds 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLIENTS, PER_CLIENT, PER_ROUND, BATCH, LR, PFL_ROUNDS = 1000, 50, 50, 10, 0.1, 1500


def pfl_cnn(input_shape: Any = (3, 32, 32), n_classes: int = 10) -> Any:
    """Two 3x3 convolutions (32, 64 channels; ReLU; 2x2 max pool) and one dense layer."""
    from torch import nn

    c, h, w = input_shape
    flat = 64 * (((h - 2) // 2 - 2) // 2) * (((w - 2) // 2 - 2) // 2)
    return nn.Sequential(nn.Conv2d(c, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(flat, n_classes))


def make_data(path: Path, seed: int = 0) -> None:
    """CIFAR-shaped images: per class a mean colour pattern plus noise (learnable, not trivial)."""
    g = np.random.default_rng(seed)
    n = CLIENTS * PER_CLIENT
    protos = g.integers(40, 215, (10, 32, 32, 3))
    y = g.integers(0, 10, n + 1000)
    x = np.clip(protos[y] + g.normal(0, 60, (n + 1000, 32, 32, 3)), 0, 255).astype(np.uint8)
    np.savez(path, x=x[:n], y=y[:n], x_test=x[n:], y_test=y[n:])


def scenario(npz: Path, rounds: int) -> dict[str, Any]:
    return {
        "name": "cifar-pfl", "seed": 1, "rounds": rounds, "clients_per_round": PER_ROUND,
        "overcommit": 1.0,
        "population": {"size": CLIENTS, "mix": [{"profile": "phone-flagship", "share": 1.0}]},
        "data": {"dataset": "images", "path": str(npz), "partition": "iid",
                 "samples_per_client": PER_CLIENT, "size_sigma": 0.0},
        "model": {"kind": "custom", "factory": "benchmarks.bench_cifar:pfl_cnn"},
        "training": {"epochs": 1, "batch_size": BATCH, "lr": LR, "optimizer": "sgd"},
        "selection": {"policy": "random"}, "executor": {"kind": "local"},
        "dynamics": {"enabled": False},
    }


def run_fedfleet(npz: Path, rounds: int) -> tuple[list[float], list[float], int]:
    """Per-round (wall, CPU) seconds of FedFleet rounds, and client updates per round."""
    import simulator

    walls: list[float] = []
    cpus: list[float] = []
    state = {"w": time.perf_counter(), "c": time.process_time()}

    def on_round(sim: Any, report: Any) -> None:
        w, c = time.perf_counter(), time.process_time()
        walls.append(w - state["w"])
        cpus.append(c - state["c"])
        state["w"], state["c"] = w, c

    run = simulator.run(scenario(npz, rounds), recorder="memory", callbacks=[on_round])
    done = int(run.rounds["completed"].iloc[-1]) if "completed" in run.rounds else PER_ROUND
    return walls, cpus, done


def run_plain(npz: Path, rounds: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """The plain loop: one model, the same sampling shape (50 random clients of 1,000).

    Returns per-round training (wall, CPU) and, timed apart, the (wall, CPU) of evaluating the
    new global model on the 1,000 test images as FedFleet does every round."""
    import torch
    from torch import nn

    d = np.load(npz)
    x = torch.from_numpy(d["x"]).permute(0, 3, 1, 2).float().div_(255.0)
    y = torch.from_numpy(d["y"].astype(np.int64))
    xt = torch.from_numpy(d["x_test"]).permute(0, 3, 1, 2).float().div_(255.0)
    yt = torch.from_numpy(d["y_test"].astype(np.int64))
    model = pfl_cnn()
    params = list(model.parameters())
    glob = nn.utils.parameters_to_vector(params).detach().clone()
    g = np.random.default_rng(0)
    walls, cpus, ewalls, ecpus = [], [], [], []
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        acc = torch.zeros_like(glob)
        for cid in g.choice(CLIENTS, PER_ROUND, replace=False):
            rows = torch.arange(cid * PER_CLIENT, (cid + 1) * PER_CLIENT)
            nn.utils.vector_to_parameters(glob, params)
            order = rows[torch.from_numpy(g.permutation(PER_CLIENT))]
            for i in range(0, PER_CLIENT, BATCH):
                idx = order[i:i + BATCH]
                for p in params:
                    p.grad = None
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                with torch.no_grad():
                    torch._foreach_add_([p.data for p in params], [p.grad for p in params],
                                        alpha=-LR)
            acc += nn.utils.parameters_to_vector(params).detach()
        glob = acc / PER_ROUND
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        w0, c0 = time.perf_counter(), time.process_time()
        nn.utils.vector_to_parameters(glob, params)
        with torch.no_grad():
            correct = sum(int((model(xt[i:i + 256]).argmax(1) == yt[i:i + 256]).sum())
                          for i in range(0, len(yt), 256))
        assert 0 <= correct <= len(yt)
        ewalls.append(time.perf_counter() - w0)
        ecpus.append(time.process_time() - c0)
    return walls, cpus, ewalls, ecpus


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)
    import torch

    from benchmarks.common import load_line

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "cifar.npz"
        make_data(npz)
        fw, fc, done = run_fedfleet(npz, args.rounds)
        pw, pc, ew, ec = run_plain(npz, args.rounds)
    # steady rounds: drop the first (imports, data, model build)
    f_wall, f_cpu = float(np.median(fw[1:])), float(np.median(fc[1:]))
    p_wall, p_cpu = float(np.median(pw[1:])), float(np.median(pc[1:]))
    e_wall, e_cpu = float(np.median(ew[1:])), float(np.median(ec[1:]))
    n_params = sum(p.numel() for p in pfl_cnn().parameters())
    print(f"### pfl-research CIFAR-10 shape: {CLIENTS} clients x {PER_CLIENT} images, "
          f"{PER_ROUND}/round, batch {BATCH}, 1 epoch, SGD {LR}, 2-conv + 1-dense CNN "
          f"({n_params:,} params), one thread\n")
    print("| measure | FedFleet (local) | plain loop | FedFleet / plain |\n|---|---:|---:|---:|")
    print(f"| client updates per second (steady rounds) | {done / f_wall:.0f} | "
          f"{PER_ROUND / p_wall:.0f} | {(done / f_wall) / (PER_ROUND / p_wall):.2f}x |")
    print(f"| client updates per CPU-second | {done / f_cpu:.0f} | {PER_ROUND / p_cpu:.0f} | "
          f"{(done / f_cpu) / (PER_ROUND / p_cpu):.2f}x |")
    print(f"| round wall, median of rounds 2-{args.rounds} (s) | {f_wall:.3f} | {p_wall:.3f} | "
          f"{f_wall / p_wall:.2f}x |")
    print(f"| projected {PFL_ROUNDS} rounds (min) | {f_wall * PFL_ROUNDS / 60:.1f} | "
          f"{p_wall * PFL_ROUNDS / 60:.1f} | |")
    pe_wall, pe_cpu = p_wall + e_wall, p_cpu + e_cpu
    print(f"| with the test evaluation each round in both: client updates per second | "
          f"{done / f_wall:.0f} | {PER_ROUND / pe_wall:.0f} | "
          f"{(done / f_wall) / (PER_ROUND / pe_wall):.2f}x |")
    print(f"| same, per CPU-second | {done / f_cpu:.0f} | {PER_ROUND / pe_cpu:.0f} | "
          f"{(done / f_cpu) / (PER_ROUND / pe_cpu):.2f}x |")
    print(f"\nFedFleet's rounds evaluate the global model on the 1,000 test images (the plain "
          f"loop's same evaluation, timed apart: {e_wall:.3f} s wall, {e_cpu:.3f} CPU-s a round), "
          f"run the simulated clock and record per-client rows. {load_line()}")
    print(f"\nFedFleet's first round (imports, data, model build, measuring the model): "
          f"{fw[0]:.1f} s; clients completing per round: {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
