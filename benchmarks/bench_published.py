"""Published validation targets: where the analytic model lands against figures others measured.

1. FlowerTune LLM (Flower's federated LLM leaderboard; configuration from
   ``examples/flowertune-llm/pyproject.toml`` and ``flowertune_llm/models.py`` in adap/flower):
   Mistral-7B, 4-bit base (``BitsAndBytesConfig(load_in_4bit=True)``: bitsandbytes FP4, blocks of
   64), LoRA r = 32 / alpha 64 on peft's default targets for the family (q_proj, v_proj), seq 512,
   batch 16, gradient checkpointing, AdamW. Published: 17-26 GB of GPU memory per client across
   its four tasks (the FlowerTune templates' READMEs).
2. PockEngine (Zhu et al., arXiv 2310.17752): fine-tuning Llama-2-7B on a Jetson AGX Orin runs
   at 550 tokens/s with PockEngine, "7.9x faster than PyTorch", i.e. about 70 tokens/s with
   plain PyTorch.

Both are computed through the planner the engine uses (``CapabilityPlanner``; memory from
``planning/memory.py``, FLOPs from ``planning/llm_cost.py``) and the shipped
``jetson-agx-orin`` profile. Analytic; no torch; a few seconds.

    python -m benchmarks.bench_published
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator.config.scenario import parse_scenario  # noqa: E402
from simulator.fleet.profiles import load_profile  # noqa: E402
from simulator.planning import memory as M  # noqa: E402
from simulator.planning.capability import CapabilityPlanner  # noqa: E402

FLOWERTUNE_GB = (17.0, 26.0)
POCKENGINE_PYTORCH_TOKENS_S = 550.0 / 7.9  # ~70


def scenario(model: dict[str, Any], batch: int) -> Any:
    return parse_scenario({
        "name": "published", "seed": 0, "rounds": 1, "clients_per_round": 1,
        "population": {"size": 2, "mix": [{"profile": "jetson-agx-orin", "share": 1.0}]},
        "data": {"dataset": "text"}, "model": model,
        "training": {"batch_size": batch, "optimizer": "adam", "lr": 5e-5, "epochs": 1}})


def flowertune(base_quantization: str = "fp4") -> Any:
    return scenario({"kind": "transformer", "preset": "mistral-7b", "seq_len": 512,
                     "dtype_bytes": 2, "workloads": {
                         "order": ["lora"], "lora_ranks": [32],
                         "lora_targets": ["q_proj", "v_proj"], "activation_checkpointing": True,
                         "base_quantization": base_quantization, "require_deadline": False}}, 16)


def pockengine() -> Any:
    return scenario({"kind": "transformer", "preset": "llama-2-7b", "seq_len": 512,
                     "dtype_bytes": 2, "workloads": {"order": ["full"],
                                                     "require_deadline": False}}, 1)


def flowertune_breakdown(sc: Any) -> dict[str, float]:
    """The terms of the LoRA option's peak memory (bytes), as planning/memory.py adds them."""
    pl = CapabilityPlanner(sc)
    spec, w, o = pl.spec, sc.model.workloads, pl.options[0]
    db, s, b = sc.model.dtype_bytes, sc.model.seq_len, sc.training.batch_size
    pl_params = o.trainable_params
    terms = {
        "base weights": spec.total_params * db
        - M.quantized_base_saving(spec, db, w.base_quantization),
        "adapters + grads + Adam": pl_params * (2 * db + M.ADAM_BYTES),
        "activations (checkpointed)": M.activation_bytes(spec, spec.num_layers, s, b, True),
        "logits (fp32)": M.logits_bytes(spec, s, b),
    }
    assert abs(sum(terms.values()) - o.memory_bytes) < 1.0, (terms, o.memory_bytes)
    return terms


def pockengine_tokens_s() -> tuple[float, float, float, float]:
    """(analytic tokens/s, FLOPs per token, sustained FLOP/s, peak FLOP/s) of full fine-tuning
    on the shipped Jetson AGX Orin profile."""
    sc = pockengine()
    opt = CapabilityPlanner(sc).options[0]
    c = load_profile(ROOT / "device_profiles" / "jetson-agx-orin.yaml").compute
    rate = c.train_flops_per_s
    return rate / opt.flops_per_token, opt.flops_per_token, rate, c.peak_flops_per_s[c.precision]


def main(argv: list[str] | None = None) -> int:
    terms = flowertune_breakdown(flowertune())
    total = sum(terms.values()) / 1e9
    lo, hi = FLOWERTUNE_GB
    mid = (lo + hi) / 2
    bf16 = CapabilityPlanner(flowertune("none")).options[0].memory_bytes / 1e9
    print("| target | configuration | published | FedFleet (analytic) | error |")
    print("|---|---|---:|---:|---:|")
    print(f"| FlowerTune per-client GPU memory | Mistral-7B, 4-bit (FP4) base, LoRA r32 on q/v, "
          f"seq 512, batch 16, grad. checkpointing, AdamW | {lo:.0f}-{hi:.0f} GB | "
          f"{total:.2f} GB | {total / mid - 1:+.0%} vs midpoint, {total / lo - 1:+.0%} vs "
          f"{lo:.0f} GB |")
    tok, fpt, rate, peak = pockengine_tokens_s()
    target = POCKENGINE_PYTORCH_TOKENS_S
    print(f"| PockEngine baseline: plain PyTorch fine-tuning | Llama-2-7B full fine-tuning, "
          f"Jetson AGX Orin (shipped profile: {rate / 1e12:.2f} TFLOP/s sustained) | "
          f"{target:.0f} tokens/s | {tok:.0f} tokens/s | {tok / target - 1:+.0%} |")
    print("\nFlowerTune breakdown (GB):")
    for k, v in terms.items():
        print(f"  {k:<28}{v / 1e9:8.2f}")
    print(f"  {'total':<28}{total:8.2f}   (a 16-bit base instead: {bf16:.2f} GB)")
    print(f"\nPockEngine: {fpt / 1e9:.1f} GFLOP per token; the published 70 tokens/s implies "
          f"{target * fpt / 1e12:.2f} TFLOP/s sustained, train_efficiency "
          f"{target * fpt / peak:.3f} of the {peak / 1e12:.1f} TFLOP/s dense fp16 peak (the "
          f"profile assumes {rate / peak:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
