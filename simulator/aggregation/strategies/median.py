"""Coordinate-wise median (Yin et al., ICML 2018, "Byzantine-robust distributed learning"):

    new = global + server_lr * median_i(delta_i)      (per coordinate, unweighted)

Reads every individual update (declares ``needs:client_updates``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.aggregation.fedavg import step_model
from simulator.aggregation.strategies.base import NeedsClientUpdates


class Median(NeedsClientUpdates):
    """Coordinate-wise median of the client updates (Yin et al. 2018)."""

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        u = sums.client_updates()
        if not len(u):
            return global_flat.copy()
        return step_model(global_flat, np.median(u.deltas, axis=0), ctx.server_lr)
