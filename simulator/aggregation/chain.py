"""The server chain: steps that wrap any strategy, for every trigger (pfl-research's postprocessor
shape: each step sees the aggregate on its way to the strategy, and may charge the round).

A step may implement any of

- ``charge(plan, timing, downlink, uplink, latency, absent) -> (plan, timing, state)``: extra bytes
  and seconds for the invited clients, before the round is resolved (secure aggregation);
- ``settle(state, outcome) -> outcome``: after resolution (secure aggregation's threshold and the
  server's unmasking time);
- ``transform(sums, ctx) -> sums``: before the strategy (central DP adds noise and fixes the
  denominator);
- ``record(rnd, ids, released, row, cols, state)``: its columns of rounds/clients.parquet;
- ``state_dict`` / ``load_state_dict`` (keys prefixed by the step, e.g. ``privacy__``).

Client-side parts of the same algorithms (clipping, local noise) run in the workloads through the
client update hook (simulator/privacy/dp.py ``ClientUpdateHook``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from simulator.aggregation.strategy import AggregationContext, ServerSums


class ServerChain:
    def __init__(self, strategy: Any, steps: Sequence[Any] = ()) -> None:
        self.strategy = strategy
        self.steps = list(steps)

    def _with(self, method: str) -> list[Any]:
        return [s for s in self.steps if hasattr(s, method)]

    @property
    def charges(self) -> bool:
        return bool(self._with("charge"))

    def step_named(self, name: str) -> Any:
        return next((s for s in self.steps if getattr(s, "name", None) == name), None)

    # --- launch and resolution ------------------------------------------------------------------
    def charge(self, plan: Any, timing: Any, downlink: np.ndarray, uplink: np.ndarray,
               latency: np.ndarray, absent: np.ndarray | None = None) -> tuple[Any, Any, list[Any]]:
        states = []
        for s in self._with("charge"):
            plan, timing, st = s.charge(plan, timing, downlink, uplink, latency, absent)
            states.append(st)
        return plan, timing, states

    def settle(self, states: list[Any], out: Any) -> Any:
        for s, st in zip(self._with("charge"), states, strict=True):
            if hasattr(s, "settle"):
                out = s.settle(st, out)
        return out

    def failed(self, states: list[Any]) -> bool:
        """True when a step makes the round's sum unusable (secure aggregation below threshold)."""
        return any(bool(getattr(st, "failed", False)) for st in states)

    # --- aggregation ----------------------------------------------------------------------------
    def transform(self, sums: ServerSums, ctx: AggregationContext) -> ServerSums:
        for s in self._with("transform"):
            sums = s.transform(sums, ctx)
        return sums

    def aggregate(self, global_flat: np.ndarray, sums: ServerSums,
                  ctx: AggregationContext, strategy: Any = None) -> np.ndarray:
        """The chain's steps, then ``strategy`` (default: the scenario's)."""
        return (strategy or self.strategy).apply(global_flat, self.transform(sums, ctx), ctx)

    def record(self, rnd: int, ids: np.ndarray, released: np.ndarray, row: dict[str, Any],
               cols: dict[str, np.ndarray], states: list[Any]) -> None:
        charged = self._with("charge")
        for s in self.steps:
            if not hasattr(s, "record"):
                continue
            st = states[charged.index(s)] if s in charged else None
            s.record(rnd, ids, released, row, cols, st)

    # --- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {f"strategy__{k}": v for k, v in self.strategy.state_dict().items()}
        for s in self._with("state_dict"):
            state.update(s.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Takes (pops) its own keys from ``state``."""
        mine = {k[len("strategy__"):]: state.pop(k) for k in list(state)
                if k.startswith("strategy__")}
        self.strategy.load_state_dict(mine)
        for s in self._with("load_state_dict"):
            s.load_state_dict(state)
