"""Server strategies: what the server does with the sums that reach it.

A round (or a buffered aggregation, or a cloud round) hands the strategy a :class:`ServerSums`:
the fixed-point partial sums of weighted client updates (``Partial``), one per start version with
its staleness, after the server chain (simulator/aggregation/chain.py) has acted on them (central
DP adds noise and fixes the denominator). The strategy returns the new global model:

    new_global = strategy.apply(global_flat, sums, ctx)

``sums.mean_update()`` is the FedAvg step (per-coordinate weighted mean of the deltas, optionally
with a weight per contribution, e.g. FedBuff's staleness weights); strategies build on it (server
momentum keeps a velocity, adaptive optimisers keep moments). Strategy state is numpy arrays and
JSON values (``state_dict`` / ``load_state_dict``), saved in checkpoints.

Algorithms that change local training (a proximal term, control variates) also give a
:class:`ClientTraining` from ``client_training()``; workloads apply it at every local step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from simulator.aggregation.fedavg import SCALE, Partial, mean_step, step_model  # noqa: F401
from simulator.core.registry import STRATEGIES, declared
from simulator.errors import FedFleetError, InputError


@dataclass(frozen=True)
class Contribution:
    """Updates trained from one model version: their exact sum and how stale they are."""

    partial: Partial
    version: int = 0  # the global version the clients started from
    staleness: int = 0  # versions published between their start and this aggregation


@dataclass
class ServerSums:
    """What reaches the server for one aggregation (after the server chain's steps)."""

    contributions: Sequence[Contribution] = ()
    noise: np.ndarray | None = None  # added to the numerator (central DP)
    denominator: float | None = None  # fixed denominator for every coordinate (DP-FedAvg)
    mean: np.ndarray | None = None  # an already averaged update (edge models at the cloud)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_params(self) -> int:
        if self.mean is not None:
            return int(self.mean.size)
        return int(self.contributions[0].partial.sum_q.size) if self.contributions else 0

    @property
    def weight(self) -> np.ndarray:
        """Per-coordinate sum of client weights (0 where no client trained)."""
        w = np.zeros(self.n_params, np.float64)
        for c in self.contributions:
            w += c.partial.weight
        return w

    def mean_update(self, weight_of: Callable[[Contribution], float] | None = None) -> np.ndarray:
        """sum_g s_g S_g (+ noise) / (sum_g W_g, or the fixed denominator), float64 [P].

        Without ``weight_of`` the fixed-point sums are merged exactly (integer addition) before
        the one division; with it each contribution's sum is scaled by its float weight s_g and
        accumulated in the order given (callers sort by start version: deterministic).
        Coordinates nobody trained (weight 0) get 0 unless a fixed denominator applies."""
        if self.mean is not None:
            return self.mean
        parts = list(self.contributions)
        n = self.n_params
        if weight_of is None:
            q = np.zeros(n, np.int64)
            den = np.zeros(n, np.float64)
            for c in parts:
                q = q + c.partial.sum_q
                den = den + c.partial.weight
            num = q.astype(np.float64) / SCALE
        else:
            num = np.zeros(n, np.float64)
            den = np.zeros(n, np.float64)
            for c in parts:
                num += float(weight_of(c)) * (c.partial.sum_q.astype(np.float64) / SCALE)
                den += c.partial.weight
        if self.noise is not None:
            num = num + self.noise
        return mean_step(num, den if self.denominator is None else float(self.denominator))

    def client_updates(self) -> ClientUpdates:
        """Every individual update that reached the server (strategies that declare
        ``needs:client_updates``), contributions in the order given, clients by id within each."""
        parts = [c for c in self.contributions if len(c.partial.client_ids)]
        if self.mean is not None or any(c.partial.updates is None for c in parts):
            raise FedFleetError("aggregation.strategy: this strategy needs individual client "
                                "updates, which this aggregation does not carry")
        if not parts:
            return ClientUpdates(np.zeros(0, np.int64), np.zeros((0, self.n_params)),
                                 np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
        cat = np.concatenate
        return ClientUpdates(
            cat([c.partial.client_ids for c in parts]),
            cat([c.partial.updates for c in parts]),
            cat([c.partial.n_samples for c in parts]).astype(np.float64),
            cat([c.partial.loss_mean for c in parts]),
            cat([np.full(len(c.partial.client_ids), c.staleness) for c in parts]))


@dataclass(frozen=True)
class ClientUpdates:
    """Individual client updates (float64 deltas, one row per client update)."""

    client_ids: np.ndarray
    deltas: np.ndarray  # [n, P]
    n_samples: np.ndarray  # float64 [n]
    train_loss: np.ndarray  # mean local training loss per client [n]
    staleness: np.ndarray  # int [n]

    def __len__(self) -> int:
        return int(self.client_ids.shape[0])


@dataclass(frozen=True)
class AggregationContext:
    """Read-only facts about one aggregation, for strategies and chain steps."""

    round: int  # aggregation index (rounds.parquet row)
    seed: int
    server_lr: float
    trigger: str  # sync | buffered | hierarchical | a plugin's
    tier: str = "server"  # "edge" or "cloud" in hierarchical runs
    edge: int | None = None
    noise_keys: tuple[int, ...] = ()  # stream keys for this aggregation's server noise
    expected_clients: int = 1  # updates the aggregation is designed for (k, K, an edge's k)


@runtime_checkable
class ServerStrategy(Protocol):
    """Built as ``cls(scenario, params)``; ``params`` is its validated params model (or None)."""

    def apply(self, global_flat: np.ndarray, sums: ServerSums,
              ctx: AggregationContext) -> np.ndarray: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ClientTraining(Protocol):
    """Client side of an algorithm that changes local training (FedProx's proximal term,
    SCAFFOLD's control variates), returned by the strategy's ``client_training()``.

    Workloads add ``correction(param, global_param)`` to every parameter's gradient at every
    local step, before the optimizer step (FedProx: ``mu * (param - global_param)``, the gradient
    of mu/2 ||w - w_g||^2). Tensors are torch tensors; in the batched MLP trainer ``param`` has a
    leading client dimension and ``global_param`` a leading 1 (broadcast)."""

    def correction(self, param: Any, global_param: Any) -> Any: ...


class StatelessStrategy:
    """Base for strategies without state."""

    def __init__(self, scenario: Any = None, params: Any = None) -> None:
        self.scenario = scenario
        self.params = params

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def client_training(self) -> ClientTraining | None:
        return None


def register_strategy(name: str | None = None, *, params: Any = None,
                      declares: Sequence[str] = (), replace: bool = False) -> Callable[[Any], Any]:
    """Decorator for a plugin strategy class: ``@register_strategy("fedavgm", params=P)``;
    ``declares``: ``trigger:<t>`` it runs on, ``needs:client_updates`` / ``needs:client_state``
    (docs/strategies.md)."""
    return STRATEGIES.register(name, params=params, declares=declares, replace=replace)


def build_strategy(scenario: Any) -> Any:
    """The scenario's server strategy, with its parameters validated and its declarations
    checked against the scenario (``strategy_problem``)."""
    name = strategy_name(scenario)
    cls = STRATEGIES.load(name)
    problem = strategy_problem(scenario, name)
    if problem is not None:
        raise InputError(*problem)
    params = STRATEGIES.parse_params(name, scenario.aggregation.params, "aggregation.params")
    return cls(scenario, params)


def strategy_problem(scenario: Any, name: str | None = None) -> tuple[str, str] | None:
    """``(field, message)`` when the strategy's declarations (simulator/core/registry.py) rule
    the scenario out, generated from them: ``trigger:<t>`` lists the triggers it runs on (none
    declared: all); ``needs:client_updates`` (robust rules read every individual update) rules out
    secure aggregation and central DP, which hide or replace them."""
    name = name or strategy_name(scenario)
    if name not in STRATEGIES:
        return None
    entry = STRATEGIES.entry(name)
    triggers = declared(entry, "trigger")
    trig = getattr(scenario, "trigger", None)
    if triggers and trig is not None and trig not in triggers:
        return ("aggregation.strategy", f"'{name}' does not run on aggregation trigger "
                f"'{trig}' (it supports: {', '.join(triggers)})")
    if "client_updates" in declared(entry, "needs"):
        if getattr(getattr(scenario, "secure_aggregation", None), "enabled", False):
            return ("secure_aggregation.enabled", f"not supported by aggregation.strategy "
                    f"'{name}' (it needs individual client updates, which secure aggregation "
                    "hides)")
        if getattr(getattr(scenario, "privacy", None), "mode", "none") == "central":
            return ("privacy.mode", f"'central' is not supported by aggregation.strategy "
                    f"'{name}' (it needs individual client updates; allowed: none, local)")
    if "client_state" in declared(entry, "needs"):
        if getattr(getattr(scenario, "secure_aggregation", None), "enabled", False):
            return ("secure_aggregation.enabled", f"not supported by aggregation.strategy "
                    f"'{name}' (it reads each client's new state, e.g. control variates)")
        if getattr(getattr(scenario, "privacy", None), "mode", "none") != "none":
            return ("privacy.mode", f"not supported by aggregation.strategy '{name}' (its "
                    "per-client state, e.g. control variates, is not privatised; allowed: none)")
    return None


def needs_client_updates(scenario: Any) -> bool:
    """Whether workloads must return individual updates (the strategy declares
    ``needs:client_updates``), besides the fixed-point sums."""
    name = strategy_name(scenario)
    return name in STRATEGIES and "client_updates" in declared(STRATEGIES.entry(name), "needs")


def strategy_name(scenario: Any) -> str:
    agg = scenario.aggregation
    if agg.strategy:
        return str(agg.strategy)
    return "fedbuff" if agg.method == "fedbuff" else "fedavg"
