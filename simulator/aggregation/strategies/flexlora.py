"""FlexLoRA (Bai et al., NeurIPS 2024, "Federated Fine-tuning of Large Language Models under
Heterogeneous Tasks and Client Resources"): heterogeneous LoRA ranks aggregated as full-size
updates and handed back by SVD.

Client i (rank r_i, n_i samples) returns its factors ``B_i`` [d_out, r_i], ``A_i`` [r_i, d_in].
Per adapted layer the server forms the weighted full-size update and decomposes it::

    dW = sum_i p_i B_i A_i,   p_i = n_i / sum_j n_j
    dW = U S V^T  (SVD),   B = U[:, :r] sqrt(S[:r]),   A = sqrt(S[:r]) V[:, :r]^T

and a client of rank r_i receives the first r_i components (``B[:, :r_i]``, ``A[:r_i]``): the
best rank-r_i approximation of dW (Eckart-Young), as the paper's per-client truncated SVD. The
engine keeps the global adapters at ``r_max`` (the largest rank of the scenario), which is all
any client receives; components of dW beyond r_max reach no client and are dropped (the
evaluated global model uses the rank-r_max approximation). HetLoRA (the default) instead
averages the zero-padded factors, which is not the average of the products.

LoRA clients only (``model.workloads.order: [lora]``), the synchronous trigger (a buffered
client's factors are relative to an older model), real mode. Reads every individual update
(``needs:client_updates``); the bytes each way are a LoRA client's (factors at its own rank).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.aggregation.lora_layout import AdapterSlot, adapter_layout
from simulator.aggregation.strategies.base import NeedsClientUpdates
from simulator.errors import InputError


def factors(flat: np.ndarray, s: AdapterSlot) -> tuple[np.ndarray, np.ndarray]:
    """(B [d_out, r], A [r, d_in]) of one adapted layer in a flat state."""
    a = flat[s.a_start:s.b_start].reshape(s.rank, s.d_in)
    b = flat[s.b_start:s.stop].reshape(s.d_out, s.rank)
    return b, a


def svd_factors(dw: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, A) with ``B @ A`` the best rank-``rank`` approximation of ``dw``; the singular
    values are split evenly (B = U sqrt(S), A = sqrt(S) V^T), zero-padded to ``rank``."""
    u, sv, vt = np.linalg.svd(dw, full_matrices=False)
    k = min(rank, sv.size)
    root = np.sqrt(sv[:k])
    b = np.zeros((dw.shape[0], rank))
    a = np.zeros((rank, dw.shape[1]))
    b[:, :k] = u[:, :k] * root
    a[:k] = root[:, None] * vt[:k]
    return b, a


def aggregate(clients: list[tuple[np.ndarray, np.ndarray]], weights: list[float], rank: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Reference FlexLoRA step for one layer: ``[(B_i, A_i)]`` -> (B, A) at ``rank``."""
    w = np.asarray(weights, np.float64)
    p = w / w.sum()
    dw = sum(pi * (b @ a) for pi, (b, a) in zip(p, clients, strict=True))
    return svd_factors(np.asarray(dw), rank)


def lora_only_problem(scenario: Any, name: str) -> tuple[str, str] | None:
    """Why a LoRA-factor rule cannot run on ``scenario`` (field, message), or None."""
    m = scenario.model
    if m.kind != "transformer":
        return ("aggregation.strategy", f"'{name}' aggregates LoRA factors: it needs "
                f"model.kind 'transformer' (got '{m.kind}')")
    if list(m.workloads.order) != ["lora"]:
        return ("model.workloads.order", f"aggregation.strategy '{name}' needs LoRA clients "
                f"only: set order: [lora] (got {list(m.workloads.order)})")
    if scenario.mode != "real":
        return ("mode", f"aggregation.strategy '{name}' aggregates trained LoRA factors: it "
                "needs mode: real")
    return None


class FlexLoRA(NeedsClientUpdates):
    """FlexLoRA (Bai et al. 2024): SVD of the weighted full-size update, per layer."""

    def __init__(self, scenario: Any = None, params: Any = None) -> None:
        super().__init__(scenario, params)
        self._layout: list[AdapterSlot] | None = None
        if scenario is not None:
            problem = lora_only_problem(scenario, "flexlora")
            if problem is not None:
                raise InputError(*problem)

    def layout(self) -> list[AdapterSlot]:
        if self._layout is None:
            self._layout = adapter_layout(self.scenario)
        return self._layout

    def check_model(self, n_params: int) -> None:
        super().check_model(n_params)
        lay = self.layout()
        if not lay or lay[-1].stop != n_params:
            raise InputError("aggregation.strategy", f"'flexlora' expects a state of LoRA "
                             f"adapters only ({lay[-1].stop if lay else 0:,} values), the model "
                             f"has {n_params:,}")

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        u = sums.client_updates()
        if not len(u):
            return global_flat.copy()
        g = global_flat.astype(np.float64)
        clients = g[None, :] + u.deltas  # each client's factors (zeros beyond its rank)
        p = u.n_samples / u.n_samples.sum()
        new = g.copy()
        for s in self.layout():
            dw = np.zeros((s.d_out, s.d_in))
            for pi, row in zip(p, clients, strict=True):
                b, a = factors(row, s)
                dw += pi * (b @ a)
            b, a = svd_factors(dw, s.rank)
            new[s.a_start:s.b_start] = a.reshape(-1)
            new[s.b_start:s.stop] = b.reshape(-1)
        return new
