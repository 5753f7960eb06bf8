"""Helpers shared by the built-in strategies (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from simulator.aggregation.fedbuff import staleness_weight
from simulator.aggregation.strategy import AggregationContext, ServerSums


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
