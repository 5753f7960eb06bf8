"""Tensor operations per training step: the second term of the per-step overhead.

On a CPU (and on a GPU at small batch) eager PyTorch pays a fixed cost per dispatched operation
(argument checking, autograd bookkeeping, allocation, a kernel launch) whatever the tensor size.
A small model's step is dominated by that cost, and models differ in how many operations a step
runs: a 3-layer MLP ~60, a 4-block Llama ~1,300, the same Llama with LoRA on every linear layer
~2,100 (more operations, fewer FLOPs). A single ``step_overhead_s`` per profile therefore
mispredicts one family from another; the clock charges

    seconds per step = step_overhead_s + ops_per_step * op_overhead_s + FLOPs / FLOP/s

with ``op_overhead_s`` fitted by ``fedfleet profiles calibrate`` (docs/clock.md).

The counts below are the operations PyTorch dispatches (aten ops, forward, backward and the
optimizer, counted with a ``TorchDispatchMode``) in one step of the workloads' own trainers:
``MLPWorkload._train_sequential`` and ``LLMWorkload._steps`` (a Hugging Face Llama, peft LoRA).
They depend only on the architecture (layers, blocks, adapted matrices, trained tensors, the
optimizer), never on widths, and are exact for the configurations in
tests/test_op_counts.py, which recounts them with torch. Other families (GPT-2, BERT) and the
partial, split and width workloads are not counted: they are charged the per-step term only.
"""

from __future__ import annotations

from typing import Any

# Per trained tensor, per step: torch.optim on CPU runs its per-tensor loop.
OPTIMIZER_OPS_PER_TENSOR = {"sgd": 1, "sgd_momentum": 3, "adam": 9}
OPTIMIZER_FIXED_OPS = 4  # zero_grad and the optimizer's own step bookkeeping

# MLP (``MLPWorkload._train_sequential``): forward, backward and the gradient reset per linear
# layer (with its ReLU); plain SGD is one fused ``_foreach_add_`` for all tensors.
MLP_OPS_PER_LAYER = 16
MLP_FIXED_OPS = {"plain": 9, "optimizer": 10}

# Llama (``LLMWorkload._steps``), forward and backward without the optimizer.
LLAMA_FULL_BASE_OPS = 85  # embedding, final norm, lm_head, loss
LLAMA_FULL_BLOCK_OPS = 219  # one block, every weight trained
LLAMA_FROZEN_BLOCK_OPS = 176  # one frozen block (input gradients only), before its adapters
LLAMA_ADAPTER_OPS = 30  # one LoRA pair on a frozen linear (peft: dropout, A, B, scale, add)
LLAMA_LORA_BASE_OPS = 27  # 22 (q, v only) to 32 (all linear layers): the midpoint
LLAMA_BLOCK_TENSORS = 9  # q, k, v, o, gate, up, down, two norms
LLAMA_BASE_TENSORS = 3  # embedding, final norm, lm_head (2 when tied)


def optimizer_key(optimizer: str, momentum: float) -> str:
    if optimizer == "sgd":
        return "sgd_momentum" if momentum > 0 else "sgd"
    return "adam"


def mlp_ops_per_step(n_linear: int, optimizer: str, momentum: float) -> float:
    """Operations in one step of ``MLPWorkload._train_sequential`` for ``n_linear`` layers."""
    key = optimizer_key(optimizer, momentum)
    if key == "sgd":
        return float(MLP_FIXED_OPS["plain"] + MLP_OPS_PER_LAYER * n_linear)
    per_tensor = OPTIMIZER_OPS_PER_TENSOR[key]
    return float(MLP_FIXED_OPS["optimizer"] + (MLP_OPS_PER_LAYER + 2 * per_tensor) * n_linear)


def llama_ops_per_step(spec: Any, kind: str, optimizer: str, momentum: float,
                       targets: tuple[str, ...] | str = "all-linear") -> float | None:
    """Operations in one ``LLMWorkload`` step of a Llama-family model: ``kind`` "full" or
    "lora" (adapters on ``targets``); None for other families and kinds (not counted)."""
    if spec.family != "llama" or kind not in ("full", "lora"):
        return None
    per_tensor = OPTIMIZER_OPS_PER_TENSOR[optimizer_key(optimizer, momentum)]
    blocks = spec.num_layers
    if kind == "full":
        tensors = blocks * LLAMA_BLOCK_TENSORS + LLAMA_BASE_TENSORS - int(spec.tied_embeddings)
        fb = LLAMA_FULL_BASE_OPS + LLAMA_FULL_BLOCK_OPS * blocks
    else:
        adapters = sum(lin.count for lin in spec.linears if lin.in_blocks and (
            not lin.is_output if targets == "all-linear" else lin.name in targets))
        tensors = 2 * adapters
        fb = (LLAMA_LORA_BASE_OPS + LLAMA_FROZEN_BLOCK_OPS * blocks
              + LLAMA_ADAPTER_OPS * adapters)
    return float(fb + OPTIMIZER_FIXED_OPS + per_tensor * tensors)


__all__ = ["llama_ops_per_step", "mlp_ops_per_step", "optimizer_key"]
