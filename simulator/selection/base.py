"""Selector protocol, round context, and the policy registry."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from simulator import InputError
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


_REGISTRY: dict[str, Callable[..., Selector]] = {}


def register(name: str) -> Callable[[Callable[..., Selector]], Callable[..., Selector]]:
    def deco(cls: Callable[..., Selector]) -> Callable[..., Selector]:
        _REGISTRY[name] = cls
        return cls

    return deco


def known_policies() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    import simulator.selection.random_policy  # noqa: F401  (registers itself)

    try:
        import simulator.selection.policies  # noqa: F401
    except ImportError:  # pragma: no cover
        pass


def make_selector(scenario: Any, population: Population) -> Selector:
    """Build the scenario's selector; plugin classes only when listed under ``plugins:``."""
    _load_builtin()
    name = scenario.selection.policy
    if name in _REGISTRY:
        return _REGISTRY[name](scenario, population)
    if "." in name:
        if name not in scenario.plugins:
            raise InputError(
                "selection.policy",
                f"plugin '{name}' is not listed under plugins: (add it there to allow it)",
            )
        mod_name, _, cls_name = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(mod_name), cls_name)
        except (ImportError, AttributeError) as exc:
            raise InputError("selection.policy", f"cannot import plugin '{name}' ({exc})") from None
        return cls(scenario, population)  # type: ignore[no-any-return]
    raise InputError(
        "selection.policy",
        f"unknown policy '{name}' (known: {', '.join(known_policies())}, or a plugin class path)",
    )
