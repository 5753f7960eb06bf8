"""Adaptive server optimisers (Reddi et al., ICLR 2021, "Adaptive Federated Optimization"),
on the averaged update Delta (a pseudo-gradient, sign: towards the clients):

    m <- beta1 m + (1 - beta1) Delta
    v <- beta2 v + (1 - beta2) Delta^2                      (FedAdam)
    v <- v - (1 - beta2) Delta^2 sign(v - Delta^2)           (FedYogi)
    v <- v + Delta^2                                         (FedAdagrad)
    new = global + eta m / (sqrt(v) + tau)

with m_0 = 0 and v_0 = tau^2 (the paper's v_{-1} >= tau^2); no bias correction, as in the paper.
``eta`` replaces ``aggregation.server_lr``. m and v are checkpointed."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from simulator.aggregation.fedavg import step_model
from simulator.aggregation.strategies.base import Params, as_array, base_step
from simulator.aggregation.strategy import StatelessStrategy


class FedOptParams(Params):
    eta: float = Field(0.01, gt=0, le=100, description="server learning rate eta")
    beta1: float = Field(0.9, ge=0, lt=1, description="first-moment decay")
    beta2: float = Field(0.99, ge=0, lt=1, description="second-moment decay (Adam, Yogi)")
    tau: float = Field(1e-3, gt=0, le=10, description="adaptivity (epsilon) tau")


class _FedOpt(StatelessStrategy):
    Params = FedOptParams
    variant = "adam"

    def __init__(self, scenario: Any = None, params: Any = None) -> None:
        super().__init__(scenario, params or FedOptParams())
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        p = self.params
        d = base_step(self.scenario, sums, ctx)
        m = np.zeros_like(d) if self.m is None else self.m
        v = np.full_like(d, p.tau ** 2) if self.v is None else self.v
        m = p.beta1 * m + (1.0 - p.beta1) * d
        d2 = d * d
        if self.variant == "adam":
            v = p.beta2 * v + (1.0 - p.beta2) * d2
        elif self.variant == "yogi":
            v = v - (1.0 - p.beta2) * d2 * np.sign(v - d2)
        else:
            v = v + d2
        self.m, self.v = m, v
        return step_model(global_flat, m / (np.sqrt(v) + p.tau), p.eta)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.m is None else {"m": self.m, "v": self.v}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.m, self.v = as_array(state.get("m")), as_array(state.get("v"))


class FedAdam(_FedOpt):
    """FedAdam (Reddi et al. 2021)."""

    variant = "adam"


class FedYogi(_FedOpt):
    """FedYogi (Reddi et al. 2021)."""

    variant = "yogi"


class FedAdagrad(_FedOpt):
    """FedAdagrad (Reddi et al. 2021)."""

    variant = "adagrad"
