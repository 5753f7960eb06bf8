"""Helpers shared by the built-in strategies (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from simulator.aggregation.fedbuff import staleness_weight
from simulator.aggregation.strategy import AggregationContext, ServerSums, StatelessStrategy
from simulator.errors import InputError

UPDATES_BYTES_MAX = 8e9  # individual updates the driver may hold for one aggregation


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def base_step(scenario: Any, sums: ServerSums, ctx: AggregationContext) -> np.ndarray:
    """The averaging step the scenario would use without a strategy, which the others build on:
    with ``aggregation.method: fedbuff`` (buffered trigger) FedBuff's staleness-weighted mean
    (``aggregation.fedbuff``), else the FedAvg mean (an edge mean at the cloud). With no momentum
    / no proximal term a strategy is thereby the scenario's default strategy, bit for bit."""
    agg = getattr(scenario, "aggregation", None)
    if (ctx.trigger == "buffered" and sums.mean is None
            and getattr(agg, "method", "fedavg") == "fedbuff"):
        cfg = getattr(getattr(scenario, "aggregation", None), "fedbuff", None)
        kind = getattr(cfg, "staleness", "sqrt")
        exponent = float(getattr(cfg, "staleness_exponent", 0.5))
        return sums.mean_update(lambda c: float(staleness_weight(c.staleness, kind, exponent)))
    return sums.mean_update()


def as_array(x: Any) -> np.ndarray | None:
    return None if x is None else np.asarray(x, np.float64).copy()


def updates_per_aggregation(scenario: Any) -> int:
    """The most individual updates one aggregation holds: ``clients_per_round`` (sync), the
    FedBuff buffer (buffered)."""
    fb = getattr(scenario.aggregation, "fedbuff", None)
    if scenario.trigger == "buffered":
        return int(fb.buffer_size if fb is not None else 10)
    return int(scenario.clients_per_round)


class NeedsClientUpdates(StatelessStrategy):
    """Base of the rules that read every individual update (``needs:client_updates``): the
    workloads return each update as float64 rows besides the fixed-point sum, so the driver holds
    k x 8 P bytes per aggregation (twice that while the shards' rows are concatenated); refused
    above ``UPDATES_BYTES_MAX``."""

    def check_model(self, n_params: int) -> None:
        k = updates_per_aggregation(self.scenario)
        need = 2.0 * 8.0 * n_params * k
        if need > UPDATES_BYTES_MAX:
            raise InputError("aggregation.strategy", f"'{self.scenario.strategy}' reads every "
                             f"update: {k:,} updates x {n_params:,} parameters need about "
                             f"{need / 1e9:.1f} GB in the driver (limit "
                             f"{UPDATES_BYTES_MAX / 1e9:.0f} GB); fewer clients per aggregation")
