"""Partial (top-k block) training: only the top ``k`` of ``L`` decoder blocks train.

The frozen tensors get ``requires_grad = False``, so autograd records no graph below the lowest
trainable block and backward stops there: the cost model's
``~2N + 4Lsh + (k/L)(4 N_layers + 8 Lsh)`` FLOPs per token (shared/reference.md section 3; layer
freezing as in Lee et al. 2023, "Surgical Fine-Tuning Improves Adaptation to Distribution
Shifts"). The final norm and lm_head stay frozen, as the capability planner assumes
(docs/large-models.md). Aggregation averages each coordinate only over the clients that trained
it, through the per-coordinate weights of :class:`~simulator.aggregation.Partial` (as HeteroFL
and FjORD do for their sub-models: Diao et al. 2021, Horvath et al. 2021).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from torch import nn

from simulator.workloads.lora import block_of

HEAD_SUFFIXES = ("lm_head.weight", "model.norm.weight")


def is_head(name: str) -> bool:
    """The final norm and the output projection, which sit above every block."""
    return name.endswith(HEAD_SUFFIXES)


def param_block(name: str, n_layers: int) -> int:
    """Block of a base parameter: -1 embeddings, 0..L-1 decoder blocks, L final norm and head."""
    if is_head(name):
        return n_layers
    return block_of(name)


def top_blocks(n_layers: int, k: int) -> range:
    """The ``k`` highest decoder blocks (all when ``k >= L``, none when ``k <= 0``)."""
    k = max(0, min(int(k), n_layers))
    return range(n_layers - k, n_layers)


def trains_block(block: int, n_layers: int, k: int) -> bool:
    """Does a top-``k`` client train a tensor in ``block``? (The head, at ``L``, always trains.)"""
    return block >= n_layers or block in top_blocks(n_layers, k)


def set_trainable(params: Iterable[tuple[str, nn.Parameter]],
                  predicate: Callable[[str], bool]) -> list[nn.Parameter]:
    """``requires_grad = predicate(name)`` for every parameter; returns the trainable ones."""
    out = []
    for name, p in params:
        flag = bool(predicate(name))
        p.requires_grad_(flag)
        if flag:
            out.append(p)
    return out


def coordinate_average(global_flat: np.ndarray, deltas: list[np.ndarray],
                       masks: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """Reference rule (for tests): each coordinate averaged over the clients whose mask covers it;
    coordinates nobody trained keep their global value."""
    num = sum(w * d * m for d, m, w in zip(deltas, masks, weights, strict=True))
    den = sum(w * m for m, w in zip(masks, weights, strict=True))
    step = np.divide(num, den, out=np.zeros_like(global_flat, dtype=np.float64), where=den > 0)
    return global_flat + step
