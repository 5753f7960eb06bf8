"""FedBuff's server step (Nguyen et al., AISTATS 2022): staleness-weighted mean of the buffer.

    new = global + server_lr * sum_g s(tau_g) S_g / sum_g W_g

with S_g the fixed-point sum of the updates trained from version g, W_g their weight and
s(tau) = 1/sqrt(1+tau) (``sqrt``, FedScale's FedBuff) or (1+tau)^-f (``polynomial``); the
function is ``aggregation.fedbuff.staleness`` / ``staleness_exponent``. On the sync trigger every
staleness is 0 and this is FedAvg.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.aggregation.fedavg import step_model


def staleness_weight(tau: int | np.ndarray, kind: str = "sqrt", exponent: float = 0.5) -> Any:
    """s(tau): 1/sqrt(1+tau) (FedScale's FedBuff) or (1+tau)^-exponent."""
    t = np.asarray(tau, np.float64)
    return 1.0 / np.sqrt(1.0 + t) if kind == "sqrt" else (1.0 + t) ** (-float(exponent))


class FedBuffStaleness:
    """Staleness-weighted FedAvg; settings from ``aggregation.fedbuff``."""

    def __init__(self, scenario: Any = None, params: Any = None) -> None:
        cfg = getattr(getattr(scenario, "aggregation", None), "fedbuff", None)
        self.kind = getattr(cfg, "staleness", "sqrt")
        self.exponent = float(getattr(cfg, "staleness_exponent", 0.5))

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        step = sums.mean_update(
            lambda c: float(staleness_weight(c.staleness, self.kind, self.exponent)))
        return step_model(global_flat, step, ctx.server_lr)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def client_training(self) -> None:
        return None
