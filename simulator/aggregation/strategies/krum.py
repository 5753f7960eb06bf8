"""Krum and Multi-Krum (Blanchard et al., NeurIPS 2017, "Machine learning with adversaries").

With n updates of which at most f are Byzantine, each update's score is the sum of squared L2
distances to its n - f - 2 nearest other updates (at least 1); Krum takes the update with the
lowest score (m = 1), Multi-Krum the unweighted mean of the m lowest (ties: lower position in
client-id order):

    new = global + server_lr * mean_{i in best m} delta_i"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from simulator.aggregation.fedavg import step_model
from simulator.aggregation.strategies.base import NeedsClientUpdates, Params


class KrumParams(Params):
    f: int = Field(1, ge=0, le=100_000, description="Byzantine updates tolerated")
    m: int = Field(1, ge=1, le=100_000, description="updates averaged (1: Krum; >1: Multi-Krum)")


def krum_scores(deltas: np.ndarray, f: int) -> np.ndarray:
    n = deltas.shape[0]
    sq = (deltas * deltas).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * deltas @ deltas.T, 0.0)
    np.fill_diagonal(d2, np.inf)
    closest = min(max(n - f - 2, 1), max(n - 1, 1))
    return np.sort(d2, axis=1)[:, :closest].sum(1) if n > 1 else np.zeros(n)


class Krum(NeedsClientUpdates):
    """Krum / Multi-Krum (Blanchard et al. 2017)."""

    Params = KrumParams

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        u = sums.client_updates()
        if not len(u):
            return global_flat.copy()
        p = self.params or KrumParams()
        best = np.argsort(krum_scores(u.deltas, p.f), kind="stable")[:p.m]
        return step_model(global_flat, u.deltas[np.sort(best)].mean(axis=0), ctx.server_lr)
