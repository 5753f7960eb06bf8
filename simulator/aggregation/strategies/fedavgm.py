"""FedAvgM (Hsu, Qi and Brown 2019, "Measuring the effects of non-identical data distribution"):
server momentum on the averaged update.

    v <- momentum * v + mean_update;   new = global + server_lr * v

``momentum: 0`` is the trigger's default strategy (FedAvg; FedBuff on the buffered trigger), bit
for bit. The velocity is checkpointed."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from simulator.aggregation.fedavg import step_model
from simulator.aggregation.strategies.base import Params, as_array, base_step
from simulator.aggregation.strategy import StatelessStrategy


class FedAvgMParams(Params):
    momentum: float = Field(0.9, ge=0, lt=1, description="beta: server momentum")


class FedAvgM(StatelessStrategy):
    """FedAvgM (Hsu et al. 2019): server momentum."""

    Params = FedAvgMParams

    def __init__(self, scenario: Any = None, params: Any = None) -> None:
        super().__init__(scenario, params or FedAvgMParams())
        self.velocity: np.ndarray | None = None

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        step = base_step(self.scenario, sums, ctx)
        v = self.velocity
        self.velocity = step if v is None else self.params.momentum * v + step
        return step_model(global_flat, self.velocity, ctx.server_lr)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.velocity is None else {"velocity": self.velocity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.velocity = as_array(state.get("velocity"))
