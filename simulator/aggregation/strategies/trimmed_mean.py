"""Coordinate-wise trimmed mean (Yin et al., ICML 2018): per coordinate, drop the
k = floor(beta * n) largest and k smallest of the n client values and average the rest.

    new = global + server_lr * trimmed_mean_beta(delta_1..n)      (unweighted)"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from simulator.aggregation.fedavg import step_model
from simulator.aggregation.strategies.base import NeedsClientUpdates, Params


class TrimmedMeanParams(Params):
    beta: float = Field(0.1, ge=0, lt=0.5, description="fraction trimmed at each end")


class TrimmedMean(NeedsClientUpdates):
    """Coordinate-wise trimmed mean (Yin et al. 2018)."""

    Params = TrimmedMeanParams

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        u = sums.client_updates()
        n = len(u)
        if not n:
            return global_flat.copy()
        beta = self.params.beta if self.params is not None else 0.1
        k = min(int(np.floor(beta * n)), (n - 1) // 2)
        s = np.sort(u.deltas, axis=0)
        return step_model(global_flat, s[k:n - k].mean(axis=0), ctx.server_lr)
