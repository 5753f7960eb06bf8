"""HeteroFL width sub-models for the MLP (Diao et al., ICLR 2021, "HeteroFL: Computation and
Communication Efficient Federated Learning for Heterogeneous Clients").

A client at width rate ``p`` trains the sub-network made of the first ``ceil(p * h)`` units of
every hidden layer (inputs and classes stay whole): in each weight ``[out, in]`` the top-left
block, in each bias the leading entries. The server averages every coordinate only over the
clients whose sub-model contains it (per-coordinate weights of
:class:`~simulator.aggregation.Partial`); coordinates nobody trained keep their global value.
Weights are client data sizes, as FjORD (Horvath et al. 2021) and the rest of FedFleet do;
HeteroFL's unweighted average is the special case of equal sizes. HeteroFL's "scaler" (dividing
activations by ``p`` during training) and static batch norm are not used: the MLP has no norm
layers and the scaler is optional in the paper.

The flat layout is the MLP's: per layer, weight ``[out, in]`` row-major, then bias ``[out]``.
``WidthMLPWorkload`` trains ``width`` jobs (``JobBatch.assignment["width"]`` = p) with the MLP's
own trainers on the extracted sub-model and hands every other job to :class:`MLPWorkload`.
"""

from __future__ import annotations

import copy
import math
import time
from itertools import pairwise
from typing import Any

import numpy as np

from simulator.aggregation import Partial
from simulator.core.jobs import JobBatch
from simulator.workloads.mlp import MLPWorkload, build_mlp


def sub_sizes(sizes: list[int], rate: float) -> list[int]:
    """Layer widths of the rate-``p`` sub-model: hidden layers ``ceil(p * h)`` (at least 1)."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"width rate must be in (0, 1] (got {rate})")
    inner = [max(1, math.ceil(rate * h - 1e-9)) for h in sizes[1:-1]]
    return [sizes[0], *inner, sizes[-1]]


def _blocks(sizes: list[int], sub: list[int]) -> list[tuple[int, int, int, int, int]]:
    """Per layer: (offset in the full flat, out, in, sub out, sub in)."""
    out, off = [], 0
    for (a, b), (sa, sb) in zip(pairwise(sizes), pairwise(sub), strict=True):
        out.append((off, b, a, sb, sa))
        off += a * b + b
    return out


def width_mask(sizes: list[int], rate: float) -> np.ndarray:
    """float [P]: 1 on the coordinates of the rate-``p`` sub-model."""
    sub = sub_sizes(sizes, rate)
    mask = np.zeros(sum(a * b + b for a, b in pairwise(sizes)))
    for off, o, i, so, si in _blocks(sizes, sub):
        w = np.zeros((o, i))
        w[:so, :si] = 1.0
        mask[off:off + o * i] = w.reshape(-1)
        mask[off + o * i:off + o * i + so] = 1.0
    return mask


def extract(flat: np.ndarray, sizes: list[int], rate: float) -> np.ndarray:
    """The sub-model's parameters (in its own MLP layout) cut out of a full flat vector."""
    parts = []
    for off, o, i, so, si in _blocks(sizes, sub_sizes(sizes, rate)):
        parts.append(flat[off:off + o * i].reshape(o, i)[:so, :si].reshape(-1))
        parts.append(flat[off + o * i:off + o * i + so])
    return np.concatenate(parts)


def embed(sub_flat: np.ndarray, sizes: list[int], rate: float, fill: np.ndarray) -> np.ndarray:
    """A full flat vector: ``fill`` with the sub-model's coordinates replaced by ``sub_flat``."""
    out = np.array(fill, dtype=np.float64, copy=True)
    pos = 0
    for off, o, i, so, si in _blocks(sizes, sub_sizes(sizes, rate)):
        w = out[off:off + o * i].reshape(o, i)
        w[:so, :si] = sub_flat[pos:pos + so * si].reshape(so, si)
        pos += so * si
        out[off + o * i:off + o * i + so] = sub_flat[pos:pos + so]
        pos += so
    return out


class WidthMLPWorkload(MLPWorkload):
    """The MLP workload plus HeteroFL ``width`` jobs; without width jobs it *is* the MLP one."""

    def __init__(self, scenario: Any, population_size: int) -> None:
        super().__init__(scenario, population_size)
        self._subs: dict[float, MLPWorkload] = {}

    def _sub(self, rate: float) -> MLPWorkload:
        """A shallow copy of this workload whose model is the rate-``p`` sub-MLP."""
        hit = self._subs.get(rate)
        if hit is None:
            hit = copy.copy(self)
            hit.sizes = sub_sizes(self.sizes, rate)
            hit.model = build_mlp(hit.sizes)
            hit.names = [n for n, _ in hit.model.named_parameters()]
            hit.shapes = [p.shape for p in hit.model.parameters()]
            hit.n_params = int(sum(p.numel() for p in hit.model.parameters()))
            self._subs[rate] = hit
        return hit

    def train(self, global_flat: np.ndarray, jobs: JobBatch) -> Partial:
        kinds = jobs.assignment.get("kind")
        rates = np.asarray(jobs.assignment.get("width", np.ones(len(jobs))), np.float64)
        is_width = np.zeros(len(jobs), bool) if kinds is None else (
            (np.asarray(kinds, dtype=object) == "width") & (rates < 1.0))
        if not is_width.any():
            return super().train(global_flat, jobs)
        t0 = time.perf_counter()
        part = super().train(global_flat, jobs.subset(~is_width)) if (~is_width).any() \
            else Partial.empty(self.n_params)
        g64 = global_flat.astype(np.float64)
        for rate in np.unique(rates[is_width]):
            sel = is_width & (rates == rate)
            sub = self._sub(float(rate))
            mask = width_mask(self.sizes, float(rate))
            g_sub = extract(g64, self.sizes, float(rate)).astype(np.float32)
            ids, seeds = jobs.client_ids[sel], jobs.seeds[sel]
            inputs = [self._client_inputs(c, sd) for c, sd in zip(ids, seeds, strict=True)]
            trainer = sub._train_group if (self.batched and self.optimizer in ("sgd", "adam")) \
                else sub._train_sequential
            finals, losses, losses_sq = trainer(g_sub, inputs)
            for j, cid in enumerate(ids):
                n = len(inputs[j][1])
                full = embed(np.asarray(finals[j], np.float64), self.sizes, float(rate), g64)
                delta, w = full - g64, float(n)
                if self.update_hook is not None:  # DP clipping (and noise), as the MLP path
                    delta, w = self.update_hook(jobs.round, int(cid), delta, w)
                part.add_client(int(cid), delta, w, n, losses[j], losses_sq[j], mask=mask)
        part.wall_s = time.perf_counter() - t0
        return part
