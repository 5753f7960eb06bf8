"""LoRA adapters (Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large Language Models") via peft.

Each host keeps one peft model resident with adapters at the scenario's largest rank ``r_max``.
A client at rank ``r <= r_max`` trains a *truncated copy*: rows ``r:`` of every ``A`` [r_max, d_in]
and columns ``r:`` of every ``B`` [d_out, r_max] are zeroed and their gradients masked, which is
exactly a rank-``r`` adapter (the product ``B A`` only sees the first ``r`` rank-1 terms, and a
zero row of ``A`` meets a zero column of ``B``, so their gradients are zero too). The scaling is
``alpha / r_max`` for every client, so a truncated adapter equals the first ``r`` components of the
global one (HetLoRA, Cho et al. 2024, hands out truncated copies of the global factors).
Compute runs at ``r_max``; simulated time comes from the cost model, not from this host.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

ADAPTER = "default"
_BLOCK = re.compile(r"\.layers\.(\d+)\.")


@dataclass(frozen=True)
class LoraSpec:
    """LoRA options shared by every client; per-client ranks come from the planner."""

    r_max: int = 8
    alpha: float = 16.0
    target_modules: tuple[str, ...] | str = ("q_proj", "v_proj")  # or "all-linear"
    dropout: float = 0.0
    train_head: bool = True  # also train (and send) lm_head and the final norm

    @property
    def scaling(self) -> float:
        return self.alpha / self.r_max


@dataclass(frozen=True)
class AdapterPair:
    """One adapted linear layer: ``W x + scaling * B (A x)``."""

    module: str  # e.g. "model.layers.0.self_attn.q_proj"
    block: int
    a: nn.Parameter  # [r_max, d_in]
    b: nn.Parameter  # [d_out, r_max]
    base: nn.Parameter  # [d_out, d_in] frozen base weight

    @property
    def d_in(self) -> int:
        return int(self.a.shape[1])

    @property
    def d_out(self) -> int:
        return int(self.b.shape[0])


def block_of(name: str) -> int:
    """Decoder block index of a parameter/module name, or -1 outside the blocks."""
    m = _BLOCK.search("." + name)
    return int(m.group(1)) if m else -1


def attach_lora(model: nn.Module, spec: LoraSpec) -> Any:
    """Wrap ``model`` with peft LoRA adapters at ``r_max`` (A kaiming-uniform, B zero)."""
    from peft import LoraConfig, get_peft_model

    targets = spec.target_modules
    cfg = LoraConfig(r=spec.r_max, lora_alpha=spec.alpha,  # type: ignore[arg-type]
                     target_modules=targets if isinstance(targets, str) else list(targets),
                     lora_dropout=spec.dropout, bias="none", init_lora_weights=True)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in 5.x
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, cfg)


def adapter_pairs(peft_model: nn.Module) -> list[AdapterPair]:
    """Adapted layers in module order (deterministic: the model's own order)."""
    from peft.tuners.lora import LoraLayer

    pairs = []
    for name, module in peft_model.named_modules():
        mod: Any = module  # peft's layers are typed loosely (Tensor | Module attributes)
        if isinstance(module, LoraLayer) and ADAPTER in mod.lora_A:
            short = name.split("base_model.model.", 1)[-1]
            pairs.append(AdapterPair(short, block_of(short), mod.lora_A[ADAPTER].weight,
                                     mod.lora_B[ADAPTER].weight, mod.get_base_layer().weight))
    if not pairs:
        raise ValueError("no LoRA adapters were attached (check the target modules)")
    return pairs


def lora_param_count(pairs: list[AdapterPair], rank: int) -> int:
    """Parameters a rank-``rank`` client sends: sum of r * (d_in + d_out) (reference.md s.3)."""
    return int(sum(rank * (p.d_in + p.d_out) for p in pairs))


def truncate_(pair: AdapterPair, rank: int) -> None:
    """Zero the rank components ``rank:`` in place (a truncated copy of the global adapter)."""
    with torch.no_grad():
        pair.a[rank:].zero_()
        pair.b[:, rank:].zero_()


def mask_rank_grads_(pair: AdapterPair, rank: int) -> None:
    """Keep truncated components at zero whatever the optimizer (defensive: grads are 0 already)."""
    for p, sl in ((pair.a, (slice(rank, None),)), (pair.b, (slice(None), slice(rank, None)))):
        if p.grad is not None:
            p.grad[sl] = 0.0


def fresh_adapter_(pair: AdapterPair, gen: torch.Generator) -> None:
    """peft's default init (A kaiming-uniform with a=sqrt(5), B zero), from ``gen``."""
    with torch.no_grad():
        bound = 1.0 / math.sqrt(pair.d_in)  # kaiming_uniform(a=sqrt(5)) on [r, d_in]
        pair.a.uniform_(-bound, bound, generator=gen)
        pair.b.zero_()


def merged_delta(pair: AdapterPair, rank: int, scaling: float) -> torch.Tensor:
    """The change LoRA makes to the base weight: ``scaling * B[:, :r] @ A[:r]`` [d_out, d_in]."""
    return scaling * (pair.b[:, :rank].detach() @ pair.a[:rank].detach())
