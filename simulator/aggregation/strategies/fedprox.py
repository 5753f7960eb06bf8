"""FedProx (Li et al., MLSys 2020): each client minimises F_i(w) + mu/2 ||w - w_g||^2.

Client side (``ClientTraining.correction``, applied by the workload at every local step): the
gradient gains ``mu (w - w_g)``. Server side: the trigger's default averaging. ``mu: 0`` is FedAvg
bit for bit (the correction adds exact zeros)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from simulator.aggregation.fedavg import step_model
from simulator.aggregation.strategies.base import Params, base_step
from simulator.aggregation.strategy import StatelessStrategy


class FedProxParams(Params):
    mu: float = Field(0.01, ge=0, le=1e4, description="proximal coefficient mu")


class Proximal:
    """The proximal gradient mu (w - w_g) (torch tensors or numpy arrays)."""

    def __init__(self, mu: float) -> None:
        self.mu = float(mu)

    def correction(self, param: Any, global_param: Any) -> Any:
        return self.mu * (param - global_param)


class FedProx(StatelessStrategy):
    """FedProx (Li et al. 2020): proximal term mu on the clients."""

    Params = FedProxParams

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        return step_model(global_flat, base_step(self.scenario, sums, ctx), ctx.server_lr)

    def client_training(self) -> Proximal:
        return Proximal(self.params.mu if self.params is not None else 0.01)
