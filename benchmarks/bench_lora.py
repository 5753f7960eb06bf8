"""Batched LoRA clients vs per-client peft training (client updates per CPU-second).

Workload: the tiny Llama of scenarios/llm-lora-heterogeneous.yaml (hidden 64, 4 blocks, 4 heads,
intermediate 176, vocabulary 32, 64-token sequences), LoRA on every linear layer with the
clients' ranks drawn from {16, 8, 4} (r_max 16), Adam lr 0.01, batch 8, one local epoch, ~12
sequences per client (the scenario's text data). Per-client training is the workload's peft
path (one resident peft model, a client's adapters loaded, its own optimizer); batched trains
the same K clients in one pass (simulator/workloads/lora_batched.py). Timed alternately
(per-client, batched, per-client, ...) in one process; the best of N repetitions is reported with
the median beside it, on one torch thread (as in every actor).

    python -m benchmarks.bench_lora                # ~40 s on 2 cores (16 and 64 clients)
    python -m benchmarks.bench_lora --clients 16,32,64 --reps 3

The notes give the achieved GFLOP/s of both sides (about 4 FLOPs per frozen linear weight per
token, forward plus input gradient, plus 6 per adapter weight): when per-client training is
already near the core's matmul rate, batching can only remove the per-step overhead, and the
speed-up is bounded by that overhead's share.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from benchmarks.common import ROOT, Table, load_line, machine_line, median, ratio, verdict

GOAL = 5.0  # batched >= 5x per-client peft training, 16-64 clients
SCENARIO = ROOT / "scenarios" / "llm-lora-heterogeneous.yaml"


def workload(population: int, device: str = "cpu") -> Any:
    import torch

    from simulator.config.scenario import apply_overrides, parse_scenario, read_yaml
    from simulator.workloads import build_workload

    torch.set_num_threads(1)
    doc = apply_overrides(read_yaml(SCENARIO), {
        "population.size": population, "model.workloads.order": ["lora"],
        "model.workloads.compression": {"method": "none"},
        "executor.kind": "local", "executor.num_gpus_per_actor": 1 if device != "cpu" else 0})
    return build_workload(parse_scenario(doc), population)


def jobs(w: Any, k: int, rnd: int) -> tuple[list[int], list[int], list[int]]:
    from simulator.core import rng

    ids = list(range(rnd * k, rnd * k + k))
    seeds = [rng.int_seed(5, rng.TRAINING, rnd, c) for c in ids]
    ranks = [(16, 8, 4)[c % 3] for c in ids]
    return ids, seeds, ranks


def per_client(w: Any, g: np.ndarray, ids: list[int], seeds: list[int], ranks: list[int]
               ) -> None:
    for c, s, r in zip(ids, seeds, ranks, strict=True):
        w.train_client(g, c, s, "lora", r)


def batched(w: Any, g: np.ndarray, ids: list[int], seeds: list[int], ranks: list[int]) -> None:
    from simulator.workloads import lora_batched as LB

    LB.train_group(w, g, ids, seeds, ranks)


def flops_per_client(w: Any, ids: list[int], ranks: list[int]) -> float:
    """Approximate training FLOPs of the clients ``ids`` (see the module docstring)."""
    from torch import nn

    frozen = sum(m.weight.numel() for n, m in w.model.named_modules()
                 if isinstance(m, nn.Linear) and "lora_" not in n)
    adapter_per_rank = sum(p.d_in + p.d_out for p in w.pairs)
    tot = 0.0
    for c, r in zip(ids, ranks, strict=True):
        x, _ = w._client_data(c)
        tokens = x.size * w.train_cfg.epochs
        tot += tokens * (4.0 * frozen + 6.0 * adapter_per_rank * r)
    return tot


def timed(fn: Any) -> tuple[float, float]:
    c, t = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="16,64", help="clients per batched pass")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.clients.split(",")]
    w = workload(max(sizes) * (args.reps + 1) + 8)
    g = w.initial_state()
    ids, seeds, ranks = jobs(w, 4, 0)
    per_client(w, g, ids, seeds, ranks)  # warm: kernels, caches
    batched(w, g, ids, seeds, ranks)
    res: dict[str, list[tuple[float, float]]] = {}
    load0 = load_line()
    for rep in range(args.reps):
        for k in sizes:
            job = jobs(w, k, rep)
            for _ in range(1):
                for c in job[0]:
                    w._client_data(c)  # shards made before timing, for both sides
            res.setdefault(f"per {k}", []).append(timed(lambda job=job: per_client(w, g, *job)))
            res.setdefault(f"bat {k}", []).append(timed(lambda job=job: batched(w, g, *job)))
    t = Table("LoRA client updates per CPU-second: batched vs per-client peft (tiny Llama, ranks "
              "16/8/4 on all linear layers, Adam, batch 8)",
              ["clients", "per-client updates/CPU-s", "batched updates/CPU-s",
               "speed-up (best CPU)", "speed-up (median CPU)", "speed-up (wall)", "goal",
               "status"])
    worst = float("inf")
    rate = []
    for k in sizes:
        job = jobs(w, k, 0)
        f = flops_per_client(w, job[0], job[2]) / 1e9
        rate.append(f"{k} clients: per-client {f / min(c for c, _ in res[f'per {k}']):.1f}, "
                    f"batched {f / min(c for c, _ in res[f'bat {k}']):.1f} GFLOP/CPU-s")
    for k in sizes:
        pc, bc = [c for c, _ in res[f"per {k}"]], [c for c, _ in res[f"bat {k}"]]
        pw, bw = [x for _, x in res[f"per {k}"]], [x for _, x in res[f"bat {k}"]]
        best = ratio(min(pc), min(bc))
        worst = min(worst, best)
        t.add(k, k / min(pc), k / min(bc), best, ratio(median(pc), median(bc)),
              ratio(min(pw), min(bw)), f">= {GOAL:.0f}x", verdict(best, GOAL, True))
    t.notes += [f"worst speed-up over {sizes}: {worst:.1f}x; best of {args.reps} interleaved "
                "repetitions", "achieved (approx.): " + "; ".join(rate),
                f"{load0} before, {load_line()} after", machine_line()]
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
