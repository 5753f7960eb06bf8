"""Selector protocol, round context, and ``make_selector`` (through the ``POLICIES`` registry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from simulator.core.registry import POLICIES, load_plugins, lookup, parse_params_with
from simulator.fleet.population import Population


@dataclass(frozen=True)
class RoundContext:
    """What a selector may look at when choosing (read-only)."""

    round: int
    time_s: float
    population: Population
    clients_per_round: int  # k: updates the round needs
    deadline_s: float | None
    # Estimated task seconds for given ids (download + compute + upload), from the cost model.
    estimate_s: Callable[[np.ndarray], np.ndarray]
    accuracy: float | None = None  # global test accuracy after the previous round


@dataclass(frozen=True)
class RoundFeedback:
    """Outcomes of one round, given to ``observe`` (arrays aligned, sorted by client id)."""

    round: int
    client_ids: np.ndarray
    outcome: np.ndarray  # codes from simulator.core.outcomes
    duration_s: np.ndarray  # each client's planned total seconds
    n_samples: np.ndarray
    train_loss: np.ndarray  # mean loss of trained clients, NaN if not trained
    train_loss_sq: np.ndarray  # mean squared loss (Oort's statistical utility), NaN if not trained
    accuracy: float | None  # global accuracy after the round (None in analytic mode)


class Selector(Protocol):
    """A selection policy, built as ``cls(scenario, population)``.

    Per-client state lives in population-sized numpy columns indexed by client id (never one
    Python object per client), and ``select``/``observe`` work on the candidates and the
    invitees with vector operations. ``state_dict`` returns numpy arrays (saved to the
    checkpoint's .npz) and JSON-able values; ``load_state_dict`` restores them so that a resumed
    run makes identical selections (helpers: simulator/selection/common.py).
    """

    def select(
        self, ctx: RoundContext, candidates: np.ndarray, n: int, rng: np.random.Generator
    ) -> np.ndarray: ...

    def observe(self, feedback: RoundFeedback) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def register(name: str) -> Callable[[Any], Any]:
    """``@register("mine")`` on a selector class: ``simulator.register_policy`` without params."""
    return POLICIES.register(name)


def known_policies() -> list[str]:
    """Names registered in simulator/core/registry.py ``POLICIES`` (built-ins and plugins')."""
    return POLICIES.names()


def make_selector(scenario: Any, population: Population) -> Selector:
    """Build the scenario's selector: a name registered in ``POLICIES``, or a class path listed
    under ``plugins:`` (checked again here: scenarios built without validation). Built as
    ``cls(scenario, population)``, with ``selection.params`` (validated by the policy's params
    model) as a third argument when the policy has one."""
    sel = scenario.selection
    name = sel.policy
    plugins = tuple(getattr(scenario, "plugins", ()) or ())
    load_plugins([p for p in plugins if p != name])  # a listed class path: lookup imports it
    cls, model = lookup(POLICIES, name, plugins)
    if model is None:
        return cls(scenario, population)
    params = parse_params_with(POLICIES, name, model, getattr(sel, "params", None),
                               "selection.params")
    return cls(scenario, population, params)
