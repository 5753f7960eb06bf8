"""FedNova (Wang et al., NeurIPS 2020, "Tackling the objective inconsistency problem"):
normalised averaging, so that clients taking more local steps do not pull the model to their
own objective.

With p_i = n_i / sum n, tau_i client i's local steps (epochs * ceil(n_i / batch_size): they
differ by client through its data size) and a_i = ||a_i||_1 of its local-SGD coefficients
(tau_i for plain SGD; (tau_i - rho (1 - rho^tau_i) / (1 - rho)) / (1 - rho) with momentum rho):

    new = global + server_lr * (sum_i p_i a_i) * sum_i p_i delta_i / a_i"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.aggregation.fedavg import step_model
from simulator.aggregation.strategies.base import NeedsClientUpdates


def local_steps(n_samples: np.ndarray, epochs: int, batch_size: int) -> np.ndarray:
    """Local SGD steps per client, as the workloads take them (mlp.batch_plan)."""
    return float(epochs) * np.ceil(np.asarray(n_samples, np.float64) / float(batch_size))


def norm_a(tau: np.ndarray, rho: float) -> np.ndarray:
    if rho <= 0:
        return tau
    return (tau - rho * (1.0 - rho ** tau) / (1.0 - rho)) / (1.0 - rho)


class FedNova(NeedsClientUpdates):
    """FedNova (Wang et al. 2020): updates normalised by local steps."""

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        u = sums.client_updates()
        if not len(u):
            return global_flat.copy()
        t = self.scenario.training
        rho = float(t.momentum) if t.optimizer == "sgd" else 0.0
        a = norm_a(local_steps(u.n_samples, t.epochs, t.batch_size), rho)
        p = u.n_samples / u.n_samples.sum()
        step = float((p * a).sum()) * ((p / a)[:, None] * u.deltas).sum(0)
        return step_model(global_flat, step, ctx.server_lr)
