"""Uniform random selection over available clients (FedAvg, McMahan et al. AISTATS 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.selection.base import RoundContext, RoundFeedback


class RandomSelector:
    def __init__(self, scenario: Any = None, population: Any = None) -> None:
        pass

    def select(
        self, ctx: RoundContext, candidates: np.ndarray, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        if n >= len(candidates):
            return np.sort(candidates)
        return np.sort(rng.choice(candidates, size=n, replace=False))

    def select_sparse(
        self, ctx: RoundContext, index: Any, n: int, n_online: int, rng: np.random.Generator,
        exclude: np.ndarray | None = None,
    ) -> np.ndarray:
        """Large populations: rejection-sample online ids (an ``AvailabilityIndex``) in O(n)
        instead of listing all online clients; lists them only when online clients are rare.
        ``exclude``: mask of clients that may not be picked (``n_online`` counts the others)."""
        ids = index.sample(ctx.time_s, n, n_online, rng, exclude=exclude)
        if ids is None:
            online = ctx.population.available(ctx.time_s)
            if exclude is not None:
                online &= ~exclude
            return self.select(ctx, np.flatnonzero(online), n, rng)
        return np.sort(ids)

    def observe(self, feedback: RoundFeedback) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
