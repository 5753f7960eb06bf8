"""One simulation: the state of a run (fleet, model, clock, components) and its checkpoints.

What happens in a step is the round pipeline (simulator/loop/pipeline.py):

    launch (available -> select -> plan -> estimate -> draws -> battery) -> resolve in simulated
    time -> train survivors -> server chain -> observe -> record

and *when* the server aggregates is the scenario's trigger (``sync``, ``buffered``,
``hierarchical`` or a plugin's; simulator/core/registry.py ``TRIGGERS``). The trigger owns only
its own bookkeeping (events in flight, edge clocks); everything else is here, so checkpointing,
recording and callbacks work the same for every trigger.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator import FedFleetError, InputError
from simulator.aggregation.adversary import adversary_step
from simulator.aggregation.chain import ServerChain
from simulator.aggregation.strategy import build_strategy, strategy_name
from simulator.config.scenario import Scenario
from simulator.core.registry import STRATEGIES, TRIGGERS, declared
from simulator.data import build_dataset
from simulator.fleet.availability import AvailabilityIndex
from simulator.fleet.dynamics import FleetDynamics, configure_population
from simulator.fleet.eligibility import restrict_links
from simulator.fleet.energy import battery_for
from simulator.fleet.population import Population, sample_population
from simulator.fleet.profiles import catalog
from simulator.io.checkpoint import load_checkpoint, save_checkpoint
from simulator.loop.shared import SharedClock
from simulator.planning import make_planner
from simulator.privacy import ServerPrivacy
from simulator.privacy.secagg import make_secure_aggregator
from simulator.selection import make_selector
from simulator.selection.estimates import DurationEstimator

log = logging.getLogger(__name__)


@dataclass
class RoundReport:
    round: int
    sim_end_s: float
    accuracy: float
    completed: int
    loss: float = math.nan  # evaluation loss; NaN when not evaluated


def build_population(sc: Scenario) -> tuple[Population, Any]:
    profiles = catalog(sc.population.profiles_dir)
    mix = sc.population.mix
    pop = sample_population([profiles[m.profile] for m in mix], [m.share for m in mix],
                            sc.population.size, sc.seed)
    if sc.population.require_link:  # e.g. [wifi]: other clients never train
        restrict_links(pop, sc.population.require_link)
    if sc.mode == "analytic" and sc.model.kind == "transformer":  # sizes only, no corpus
        from simulator.planning.capability import analytic_dataset

        dataset: Any = analytic_dataset(sc, pop.size)
    else:
        dataset = build_dataset(sc, pop.size)
    pop.n_samples = np.asarray(dataset.n_samples, np.int64)
    if sc.population.trace is not None:  # measured compute, bandwidth, availability
        from simulator.fleet.trace_fleet import apply_trace

        pop = apply_trace(sc, pop, lambda: trace_flops_per_sample(sc, pop, dataset))
    configure_population(sc, pop)  # FLGo availability modes (simulator/fleet/dynamics.py)
    return pop, dataset


def trace_flops_per_sample(sc: Scenario, pop: Population, dataset: Any) -> float:
    """Training FLOPs per sample for an ``ms_per_sample`` trace: the scenario's, or the
    planner's (dense models); refused with the field named otherwise."""
    tf = sc.population.trace
    if tf is not None and tf.flops_per_sample is not None:
        return float(tf.flops_per_sample)
    planner = make_planner(sc, pop, dataset.n_features, dataset.n_classes)
    fps = getattr(planner, "flops_per_sample", None)
    if fps is None:
        raise InputError("population.trace.flops_per_sample", f"required with an ms_per_sample "
                         f"trace for model.kind '{sc.model.kind}'")
    return float(fps)


def build_chain(sc: Scenario, pop: Population) -> ServerChain:
    """The scenario's strategy wrapped by its server steps (secure aggregation, then DP)."""
    steps: list[Any] = []
    secagg = make_secure_aggregator(sc)
    if secagg is not None:
        steps.append(secagg)
    if sc.privacy.mode != "none":
        steps.append(ServerPrivacy(sc, pop.size))
    steps += [s for s in (adversary_step(sc, pop),) if s is not None]  # Byzantine clients
    return ServerChain(build_strategy(sc), steps)


@dataclass
class Parts:
    """Everything a run needs that can be built without training (``fedfleet validate``)."""

    pop: Population
    dataset: Any
    planner: Any
    selector: Any
    battery: Any
    chain: ServerChain
    trigger_cls: Any


# Workloads that apply a strategy's client-side hook (ClientTraining) in their local steps.
CLIENT_TRAINING_MODELS = ("mlp", "custom", "cnn", "resnet18", "mobilenet_v2")
# ... and those that also keep a per-client state for it (SCAFFOLD's control variates).
CLIENT_STATE_MODELS = ("mlp",)


def build_parts(sc: Scenario) -> Parts:
    """Build every part of a run that needs no training; raises FedFleetError (one line,
    naming the field) on what cannot run."""
    pop, dataset = build_population(sc)
    planner = make_planner(sc, pop, dataset.n_features, dataset.n_classes)
    selector = make_selector(sc, pop)
    chain = build_chain(sc, pop)
    get = getattr(chain.strategy, "client_training", None)
    if (sc.mode == "real" and get is not None and get() is not None
            and sc.model.kind not in CLIENT_TRAINING_MODELS):
        raise InputError("aggregation.strategy", f"'{sc.strategy}' changes local training, "
                         f"which model.kind '{sc.model.kind}' does not support yet (allowed: "
                         f"{', '.join(CLIENT_TRAINING_MODELS)})")
    name = strategy_name(sc)
    if (sc.mode == "real" and name in STRATEGIES and sc.model.kind not in CLIENT_STATE_MODELS
            and "client_state" in declared(STRATEGIES.entry(name), "needs")):
        raise InputError("aggregation.strategy", f"'{name}' keeps a state per client (control "
                         f"variates), which model.kind '{sc.model.kind}' does not support yet "
                         f"(allowed: {', '.join(CLIENT_STATE_MODELS)})")
    return Parts(pop, dataset, planner, selector, battery_for(pop, sc), chain,
                 TRIGGERS.load(sc.trigger))


Callback = Any  # an object with on_round_end(sim, report), or a function (sim, report)


class Simulation:
    """``Simulation(scenario)``; ``step(recorder)`` runs one round (or aggregation)."""

    def __init__(self, sc: Scenario, callbacks: Iterable[Callback] = ()) -> None:
        self.sc = sc
        self.real = sc.mode == "real"
        self.callbacks: list[Callback] = list(callbacks)
        # The executor starts first, so Ray actors import torch while the driver samples clients.
        self.executor: Any = None
        if self.real:
            from simulator.execution import make_executor

            self.executor = make_executor(sc, sc.population.size)
        try:
            parts = build_parts(sc)
        except BaseException:
            if self.executor is not None:
                self.executor.close()
            raise
        self.pop, self.dataset = parts.pop, parts.dataset
        self.planner, self.selector, self.battery = parts.planner, parts.selector, parts.battery
        self.chain = parts.chain
        self.estimator = DurationEstimator(sc, self.pop)  # what the server knows (no oracle)
        self.dynamics = FleetDynamics(sc, self.pop)  # what changes between tasks
        self.shared = SharedClock(self)  # shared server, split server and edge capacity
        self.avail_index = AvailabilityIndex.build(self.pop)  # None below 10^5 clients
        self.global_flat = self.executor.initial_state() if self.executor else np.zeros(0)
        if self.real and (check := getattr(self.chain.strategy, "check_model", None)):
            check(int(self.global_flat.size))  # memory the strategy needs for this model
        self.clock_s = 0.0
        self.next_round = 0
        self.accuracy: float | None = None
        self.trigger = parts.trigger_cls(self)
        from simulator.loop.client_eval import ClientEvaluation

        self.client_eval = ClientEvaluation(self)  # evaluation: block (off by default)

    @property
    def privacy(self) -> Any:
        return self.chain.step_named("privacy")

    @property
    def secagg(self) -> Any:
        return self.chain.step_named("secagg")

    def estimate_fn(self, rnd: int) -> Callable[[np.ndarray], np.ndarray]:
        """Estimated task seconds for ids under round ``rnd``'s plan (for system-aware policies):
        the server's estimate from observed durations and declared classes
        (simulator/selection/estimates.py), never the clock's true draws."""
        def est(ids: np.ndarray) -> np.ndarray:
            ids = np.asarray(ids, np.int64)
            cost = self.planner.plan(rnd, ids, self.estimator.server_view()).cost
            return self.estimator.estimate_s(ids, cost)
        return est

    def evaluate(self) -> tuple[float, float]:
        return self.executor.evaluate(self.global_flat)

    def step(self, recorder: Any) -> RoundReport:
        # client evaluation adds its columns to the round's row, whatever the trigger
        report: RoundReport = self.trigger.step(self.client_eval.wrap(recorder))
        for cb in self.callbacks:
            hook = getattr(cb, "on_round_end", None)
            if hook is not None:
                hook(self, report)
            elif callable(cb):
                cb(self, report)
        return report

    # --- checkpointing --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**self.selector.state_dict(), **self.battery.state_dict(),
                **self.chain.state_dict(), **self.trigger.state_dict(),
                **self.dynamics.state_dict(), **self.estimator.state_dict()}

    def checkpoint(self, recorder: Any) -> None:
        recorder.flush()
        save_checkpoint(recorder.partial_dir, self.next_round, self.clock_s, self.accuracy,
                        self.global_flat, self.state_dict())

    def restore(self, recorder: Any) -> None:
        ck = load_checkpoint(recorder.partial_dir, self.sc.rounds)
        if ck is None:
            raise FedFleetError(f"no checkpoint in '{recorder.partial_dir}' (nothing to resume; "
                                "set output.checkpoint_every to make runs resumable)")
        self.next_round, self.clock_s, self.accuracy = ck.next_round, ck.clock_s, ck.accuracy
        if self.real:
            self.global_flat = ck.global_flat
        state = self.battery.load_state_dict(ck.selector_state)
        state = self.estimator.load_state_dict(self.dynamics.load_state_dict(state))
        self.chain.load_state_dict(state)  # each part takes its own prefixed keys
        self.trigger.load_state_dict(state)
        self.selector.load_state_dict(state)
        recorder.truncate_after(self.next_round - 1)
        log.info("resumed at round %d (simulated %.0f s)", self.next_round, self.clock_s)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
