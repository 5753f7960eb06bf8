"""FLoRA (Wang et al., NeurIPS 2024, "FLoRA: Federated Fine-Tuning Large Language Models with
Heterogeneous Low-Rank Adaptations"): stacking instead of averaging the factors.

Client i (rank r_i, n_i samples) returns ``B_i`` [d_out, r_i] and ``A_i`` [r_i, d_in]. The
server stacks the weighted factors, ``A = [p_1 A_1; ...; p_K A_K]`` (rows) and
``B = [B_1, ..., B_K]`` (columns), so that ``B A = sum_i p_i B_i A_i`` exactly (no cross terms,
unlike averaging A and B separately), merges the product into each adapted layer's base weight,
and clients start the next round from fresh adapters::

    W <- W + s * sum_i p_i B_i A_i,   p_i = n_i / sum_j n_j,   s = alpha / r_max
    A <- A_0,  B <- 0

The state therefore holds the adapted layers' base weights besides the adapters
(``StateConfig.base == "adapted"``; ``simulator/aggregation/lora_layout.py``). The fresh adapters
are the same seeded ``A_0`` every round (the paper re-initialises them; a fixed seeded
initialisation keeps runs reproducible), with ``B = 0`` so that a round starts from exactly the
merged model. Bytes: with a cached base (``model.workloads.base_cached``, the default) a client
downloads what it needs to merge the last round's update itself, the stacked factors
(``clients_per_round x mean rank x sum(d_in + d_out)`` values) or the adapted layers' weights if
fewer (``simulator/planning/options.py: flora_merge_elements``); without one, the merged base as
every such client does. It uploads its factors at its own rank.

LoRA clients only, the synchronous trigger, real mode; reads every individual update.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.aggregation.lora_layout import (
    LORA_SCALING,
    AdapterSlot,
    BaseSlot,
    adapter_layout,
    base_layout,
)
from simulator.aggregation.strategies.base import NeedsClientUpdates
from simulator.aggregation.strategies.flexlora import factors, lora_only_problem
from simulator.errors import InputError


def stack(clients: list[tuple[np.ndarray, np.ndarray]], weights: list[float]
          ) -> tuple[np.ndarray, np.ndarray]:
    """Reference FLoRA stacking of ``[(B_i, A_i)]``: (B [d_out, sum r_i], A [sum r_i, d_in])
    with ``B @ A = sum_i p_i B_i A_i``."""
    w = np.asarray(weights, np.float64)
    p = w / w.sum()
    b = np.concatenate([bi for bi, _ in clients], axis=1)
    a = np.concatenate([pi * ai for pi, (_, ai) in zip(p, clients, strict=True)], axis=0)
    return b, a


class FLoRA(NeedsClientUpdates):
    """FLoRA (Wang et al. 2024): stack the clients' factors, merge the product into the base."""

    def __init__(self, scenario: Any = None, params: Any = None) -> None:
        super().__init__(scenario, params)
        self._layout: tuple[list[AdapterSlot], list[BaseSlot]] | None = None
        if scenario is not None:
            problem = lora_only_problem(scenario, "flora")
            if problem is not None:
                raise InputError(*problem)

    def layout(self) -> tuple[list[AdapterSlot], list[BaseSlot]]:
        if self._layout is None:
            ad = adapter_layout(self.scenario)
            self._layout = ad, base_layout(ad)
        return self._layout

    def check_model(self, n_params: int) -> None:
        super().check_model(n_params)
        _, base = self.layout()
        if not base or base[-1].stop != n_params:
            raise InputError("aggregation.strategy", f"'flora' expects the adapters and the "
                             f"adapted layers' weights ({base[-1].stop if base else 0:,} values), "
                             f"the model has {n_params:,}")

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        u = sums.client_updates()
        if not len(u):
            return global_flat.copy()
        g = global_flat.astype(np.float64)
        clients = g[None, :] + u.deltas  # each client's factors (zeros beyond its rank)
        p = u.n_samples / u.n_samples.sum()
        new = g.copy()
        for s, w in zip(*self.layout(), strict=True):
            dw = np.zeros((s.d_out, s.d_in))
            for pi, row in zip(p, clients, strict=True):
                b, a = factors(row, s)
                dw += pi * (b @ a)
            new[w.start:w.stop] += LORA_SCALING * dw.reshape(-1)
            new[s.b_start:s.stop] = 0.0  # fresh adapters: B = 0, A stays the seeded A_0
        return new
