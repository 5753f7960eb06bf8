"""Separate precisions of a transformer workload (docs/large-models.md 'Precisions').

Three dtypes, each its own field of ``model.workloads`` (all default to what earlier versions
charged, so unset fields leave every number unchanged):

- **base storage**: ``model.dtype_bytes`` for every weight, or, for the frozen base of a LoRA
  device, ``base_quantization`` (int8 / nf4 / fp4 block linears, planning/memory.py
  ``QUANT_BYTES``); a list or ``auto`` lets the planner pick per device the first method that
  makes LoRA fit. A quantized base costs one dequantized layer of workspace (memory.py) and
  :data:`DEQUANT_FLOPS_PER_WEIGHT` per quantized weight per pass over the base;
- **compute / activation**: ``activation_dtype_bytes``; activation memory scales from the
  16-bit formulas (memory.py) by ``bytes / 2`` and split learning's per-step traffic is sent at
  it, never at the base storage;
- **update**: ``update_dtype_bytes``; adapters (held, gradients), adapter downloads and dense
  uploads (before ``compression``) are charged at it.

``downlink`` encodes what the server sends down (:func:`down_bytes`). Pure arithmetic: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.config.llm import ModelSpec

QUANT_METHODS = ("none", "int8", "nf4", "fp4")
AUTO_CHOICES = ("none", "int8", "nf4")  # base_quantization: auto, in the order tried
# Dequantizing one stored weight for one pass: a code lookup / int-to-float convert and one
# multiply by its block scale (bitsandbytes dequantize_4bit / int8 vector-wise dequant). A LoRA
# step dequantizes every quantized block linear in the forward pass and again for the input
# gradients of the backward pass (+1 with activation checkpointing's recompute). Charged at the
# device's FLOP rate: these are element-wise, memory-bound kernels, so this is a lower bound.
DEQUANT_FLOPS_PER_WEIGHT = 2.0


@dataclass(frozen=True)
class Precisions:
    """The scenario's dtypes in bytes per element (see the module docstring)."""

    weight: float  # model.dtype_bytes
    activation: float | None  # None: the 16-bit formulas as they are, split traffic at weight
    update: float
    base_choices: tuple[str, ...]  # LoRA base storage methods, in the order the planner tries

    @property
    def act_scale(self) -> float:
        """Factor on the 16-bit activation-memory formulas."""
        return 1.0 if self.activation is None else self.activation / 2.0

    @property
    def wire(self) -> float:
        """Bytes per split-traffic element (activations up, their gradients down)."""
        return self.weight if self.activation is None else self.activation

    @property
    def chooses_base(self) -> bool:
        """Whether clients.parquet gets a base_quantization column (any non-default setting)."""
        return self.base_choices != ("none",)


def precisions(sc: Any) -> Precisions:
    m, w = sc.model, sc.model.workloads
    q = w.base_quantization
    choices = AUTO_CHOICES if q == "auto" else (q,) if isinstance(q, str) else tuple(q)
    return Precisions(float(m.dtype_bytes), w.activation_dtype_bytes,
                      float(m.dtype_bytes if w.update_dtype_bytes is None
                            else w.update_dtype_bytes), tuple(dict.fromkeys(choices)))


def quantized_weights(spec: ModelSpec) -> float:
    """Weights of the block linear layers (what a quantized base stores at QUANT_BYTES)."""
    return float(sum(lin.count * lin.d_in * lin.d_out for lin in spec.linears if lin.in_blocks))


def dequant_flops_per_token(spec: ModelSpec, method: str, seq_len: int, batch: int,
                            checkpointing: bool) -> float:
    """Dequantization FLOPs of a quantized base per training token: per step, every quantized
    weight once per pass (forward, backward's input gradients, the recompute with
    checkpointing), spread over the step's batch x seq_len tokens."""
    if method == "none":
        return 0.0
    passes = 3.0 if checkpointing else 2.0
    return DEQUANT_FLOPS_PER_WEIGHT * quantized_weights(spec) * passes / (float(seq_len) * batch)


def lora_memory(base_params: float, lora_params: float, p: Precisions, optimizer_bytes: float,
                activations: float, logits: float) -> float:
    """Peak bytes of a LoRA device before any base quantization saving: base at the weight
    dtype, adapters and their gradients at the update dtype, optimizer state, activations."""
    from simulator.planning import memory as M

    if p.update == p.weight:  # the earlier expression, bit for bit
        return M.peak_bytes(base_params + lora_params, lora_params, p.weight, optimizer_bytes,
                            activations, logits)
    return (base_params * p.weight + lora_params * (2.0 * p.update + optimizer_bytes)
            + activations + logits)


def down_bytes(elements: float, dtype_bytes: float, downlink: Any) -> float:
    """Bytes to send ``elements`` values down under ``downlink`` (scenario Downlink): none:
    elements x dtype; int8/int4: elements x {1, 0.5} + ceil(elements / block) x scale_bytes."""
    method = getattr(downlink, "method", "none")
    if method == "none" or elements <= 0:
        return float(elements * dtype_bytes)
    per = 1.0 if method == "int8" else 0.5
    return float(elements * per + np.ceil(elements / downlink.block_size) * downlink.scale_bytes)


def precision_problems(sc: Any, transformer: bool) -> list[str]:
    """One line per setting of the fields above that cannot run (validate refuses them)."""
    m, w = sc.model, sc.model.workloads
    p = precisions(sc)
    set_here = {"model.workloads.base_quantization": p.chooses_base,
                "model.workloads.activation_dtype_bytes": w.activation_dtype_bytes is not None,
                "model.workloads.update_dtype_bytes": w.update_dtype_bytes is not None,
                "model.workloads.downlink": w.downlink.method != "none",
                "model.workloads.pruning": w.pruning.method != "none"}
    if not transformer:
        return [f"{k}: read by model.kind transformer only (model.kind is '{m.kind}')"
                for k, v in set_here.items() if v]
    out = []
    if not p.base_choices:
        return ["model.workloads.base_quantization: give at least one of none, int8, nf4, fp4 "
                "(or auto)"]
    if p.chooses_base and "lora" not in w.order:
        out.append("model.workloads.base_quantization: quantizes the frozen base of lora "
                   "options; model.workloads.order has no lora")
    if w.pruning.method != "none" and not {"lora", "full"} & set(w.order):
        out.append("model.workloads.pruning: prunes the base of lora and full options; "
                   "model.workloads.order has neither")
    if sc.mode == "real":
        if w.pruning.method != "none" and (len(set(w.pruning.densities)) > 1
                                           or tuple(w.order) != ("lora",)):
            out.append("model.workloads.pruning: in real mode one density prunes the frozen "
                       "base of LoRA-only runs (model.workloads.order: [lora])")
        if len(p.base_choices) > 1:
            out.append("model.workloads.base_quantization: real mode trains one base on every "
                       "host: give one method (none, int8, nf4, fp4), not a list or auto")
        elif p.chooses_base and tuple(w.order) != ("lora",):
            out.append("model.workloads.base_quantization: in real mode the quantized base is "
                       "trained by LoRA-only runs (model.workloads.order: [lora])")
    return out


def base_saving(spec: ModelSpec, dtype_bytes: float, method: str, density: float,
                pruning: Any) -> float:
    """Bytes a frozen base stored as ``method`` (quantization) at ``density`` (pruning) saves
    against dense ``dtype_bytes`` storage, less the dense workspace one layer needs at a time
    (a dequantized or densified layer; none for structured pruning at 16 bits, whose kept rows
    are a smaller dense matrix)."""
    from simulator.planning import memory as M
    from simulator.planning.pruning import kept_weights

    p_method = getattr(pruning, "method", "none")
    if p_method == "none" or density >= 1.0:
        return M.quantized_base_saving(spec, dtype_bytes, method)
    k = kept_weights(spec, pruning, density)
    v = dtype_bytes if method == "none" else M.QUANT_BYTES[method]
    widest = max((lin.d_in * lin.d_out for lin in spec.linears if lin.in_blocks), default=0)
    work = 0.0 if (p_method == "structured" and method == "none") else widest * dtype_bytes
    return k.weights * dtype_bytes - (k.kept * v + k.position_bytes) - work
