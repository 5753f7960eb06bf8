"""Batched LoRA clients vs per-client peft training (client updates per CPU-second).

Workloads: the tiny Llama of scenarios/llm-lora-heterogeneous.yaml (hidden 64, 4 blocks, 4 heads,
intermediate 176, vocabulary 32, 64-token sequences), LoRA on every linear layer with the
clients' ranks drawn from {16, 8, 4} (r_max 16), Adam lr 0.01, batch 8, one local epoch, ~12
sequences per client (the scenario's text data); and a smaller one (hidden 32, 2 blocks,
intermediate 88, 16-token sequences, ranks 8/4/2) on the same data. Per-client training is the
workload's peft path (one resident peft model, a client's adapters loaded, its own optimizer);
batched trains the same K clients in batched passes (simulator/workloads/lora_batched.py).
Timed alternately (per-client, batched, per-client, ...) in one process; the best of N
repetitions is reported with the median beside it, on one torch thread (as in every actor).

    python -m benchmarks.bench_lora                # ~60 s on 2 cores (two models, 16 and 64)
    python -m benchmarks.bench_lora --clients 16,32,64 --reps 3 --models "h32 L2 seq16"

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


MODELS = {
    # the scenario's tiny Llama: hidden 64, 4 blocks, 64-token sequences, ranks 16/8/4
    "scenario h64 L4 seq64": ({}, (16, 8, 4)),
    # a smaller one, where per-client training is dominated by per-step overhead
    "h32 L2 seq16": ({"model.config.hidden_size": 32, "model.config.intermediate_size": 88,
                      "model.config.num_hidden_layers": 2, "model.seq_len": 16,
                      "model.config.max_position_embeddings": 16,
                      "model.workloads.lora_ranks": [8, 4, 2]}, (8, 4, 2)),
}


def workload(population: int, device: str = "cpu", extra: dict[str, Any] | None = None) -> Any:
    import torch

    from simulator.config.scenario import apply_overrides, parse_scenario, read_yaml
    from simulator.workloads import build_workload

    torch.set_num_threads(1)
    doc = apply_overrides(read_yaml(SCENARIO), {
        "population.size": population, "model.workloads.order": ["lora"],
        "model.workloads.compression": {"method": "none"},
        "executor.kind": "local", "executor.num_gpus_per_actor": 1 if device != "cpu" else 0,
        **(extra or {})})
    return build_workload(parse_scenario(doc), population)


def jobs(w: Any, k: int, rnd: int, rank_set: tuple[int, ...] = (16, 8, 4)
         ) -> tuple[list[int], list[int], list[int]]:
    from simulator.core import rng

    ids = list(range(rnd * k, rnd * k + k))
    seeds = [rng.int_seed(5, rng.TRAINING, rnd, c) for c in ids]
    ranks = [rank_set[c % len(rank_set)] for c in ids]
    return ids, seeds, ranks


def per_client(w: Any, g: np.ndarray, ids: list[int], seeds: list[int], ranks: list[int]
               ) -> None:
    for c, s, r in zip(ids, seeds, ranks, strict=True):
        w.train_client(g, c, s, "lora", r)


def batched(w: Any, g: np.ndarray, ids: list[int], seeds: list[int], ranks: list[int]) -> None:
    """As the engine does (``LLMWorkload._train_batched``): groups by rank and size."""
    from simulator.workloads import lora_batched as LB

    LB.train_clients(w, g, ids, seeds, ranks)


def matmul_rate(w: Any, tokens: int = 4096, reps: int = 20) -> float:
    """FLOP per CPU-second of one thread on the model's largest frozen matmul at ``tokens`` rows
    (the in-run physical limit: no training step of this model can run its FLOPs faster)."""
    import torch

    h, i = w.hidden, int(w.model.config.intermediate_size)
    x, wt = torch.randn(tokens, h), torch.randn(h, i)
    x @ wt
    c = time.process_time()
    for _ in range(reps):
        x @ wt
    return 2.0 * tokens * h * i * reps / max(time.process_time() - c, 1e-9)


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
    ap.add_argument("--clients", default="16,64", help="clients trained per round")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS), help="subset of: " + ", ".join(MODELS))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.clients.split(",")]
    t = Table("LoRA client updates per CPU-second: batched vs per-client peft (tiny Llamas, LoRA "
              "on all linear layers, Adam, batch 8, one epoch)",
              ["model", "clients", "per-client updates/CPU-s", "batched updates/CPU-s",
               "speed-up (best CPU)", "speed-up (median CPU)", "speed-up (wall)",
               "ceiling (matmul rate)", "goal", "status"])
    load0 = load_line()
    worst = float("inf")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        extra, rank_set = MODELS[name]
        w = workload(max(sizes) * (args.reps + 1) + 8, extra=extra)
        g = w.initial_state()
        warm = jobs(w, 4, 0, rank_set)
        per_client(w, g, *warm)  # warm: kernels, caches
        batched(w, g, *warm)
        res: dict[str, list[tuple[float, float]]] = {}
        for rep in range(args.reps):
            for k in sizes:
                job = jobs(w, k, rep, rank_set)
                for c in job[0]:
                    w._client_data(c)  # shards made before timing, for both sides
                res.setdefault(f"per {k}", []).append(
                    timed(lambda job=job, w=w, g=g: per_client(w, g, *job)))
                res.setdefault(f"bat {k}", []).append(
                    timed(lambda job=job, w=w, g=g: batched(w, g, *job)))
        peak = matmul_rate(w)
        for k in sizes:
            job = jobs(w, k, 0, rank_set)
            f = flops_per_client(w, job[0], job[2])
            pc, bc = [c for c, _ in res[f"per {k}"]], [c for c, _ in res[f"bat {k}"]]
            pw, bw = [x for _, x in res[f"per {k}"]], [x for _, x in res[f"bat {k}"]]
            best = ratio(min(pc), min(bc))
            worst = min(worst, best)
            t.add(name, k, k / min(pc), k / min(bc), best, ratio(median(pc), median(bc)),
                  ratio(min(pw), min(bw)), ratio(min(pc), f / peak), f">= {GOAL:.0f}x",
                  verdict(best, GOAL, True))
            t.notes.append(f"{name}, {k} clients: per-client {f / 1e9 / min(pc):.1f}, batched "
                           f"{f / 1e9 / min(bc):.1f} GFLOP/CPU-s; the model's largest frozen "
                           f"matmul at 4096 rows runs {peak / 1e9:.1f} GFLOP/CPU-s")
    t.notes += [f"worst speed-up: {worst:.1f}x; best of {args.reps} interleaved repetitions",
                "ceiling = per-client CPU time / (the clients' training FLOPs at the in-run "
                "matmul rate): what batching could reach if it removed every overhead and ran "
                "every FLOP at that rate; where it is below the goal, the goal is not reachable "
                "on this CPU for that model",
                f"{load0} before, {load_line()} after", machine_line()]
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
