"""q-FedAvg (Li, Sanjabi, Beirami and Smith, ICLR 2020, "Fair resource allocation in federated
learning"): minimises sum_k F_k^(q+1) / (q+1), giving clients with a higher loss more weight.

With L = 1 / lr (``lipschitz``, default 1 / training.lr), Delta w_k = L (w - w_k) = -L delta_k and
F_k client k's loss:

    Delta_k = F_k^q Delta w_k,   h_k = q F_k^(q-1) ||Delta w_k||^2 + L F_k^q
    new = global - sum_k Delta_k / sum_k h_k

F_k is the client's mean local training loss (the paper evaluates it on the global model before
training; the simulator reports the training loss, which starts there). q = 0 is the unweighted
mean of the updates."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from simulator.aggregation.strategies.base import NeedsClientUpdates, Params


class QFedAvgParams(Params):
    q: float = Field(1.0, ge=0, le=100, description="fairness exponent q (0: uniform mean)")
    lipschitz: float | None = Field(None, gt=0, description="L (default 1 / training.lr)")


class QFedAvg(NeedsClientUpdates):
    """q-FedAvg (Li et al. 2020): fairness through loss-weighted updates."""

    Params = QFedAvgParams

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        u = sums.client_updates()
        if not len(u):
            return global_flat.copy()
        p = self.params or QFedAvgParams()
        lip = p.lipschitz or 1.0 / float(self.scenario.training.lr)
        f = np.maximum(np.nan_to_num(u.train_loss, nan=1e-10), 1e-10)
        dw = -lip * u.deltas
        fq = f ** p.q
        h = p.q * f ** (p.q - 1.0) * (dw * dw).sum(1) + lip * fq
        step = -(fq[:, None] * dw).sum(0) / h.sum()
        return (global_flat.astype(np.float64) + step).astype(global_flat.dtype)
