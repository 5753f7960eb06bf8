"""FedFleet: federated learning over simulated heterogeneous device fleets.

The public Python API (docs/api.md)::

    import simulator

    run = simulator.run("scenarios/quickstart.yaml", rounds=3, executor__kind="local")
    run.rounds        # pandas DataFrame, one row per round
    run.final_accuracy

Names are imported lazily (module ``__getattr__``): ``import simulator`` loads only the error
classes, never torch, ray, pandas or the simulation loop. The core (scenario, profiles,
population, cost, rounds, selection, planning, aggregation, recording, engine) imports neither ray
nor torch; those live in ``workloads`` and ``execution``.
"""

from __future__ import annotations

import importlib
from typing import Any

from simulator.errors import FedFleetError, InputError

__version__ = "0.1.0"

# public name -> "module:attribute", imported on first access
_LAZY = {
    "run": "simulator.api:run",
    "Run": "simulator.api:Run",
    "resume": "simulator.api:resume",
    "StopRun": "simulator.loop.runner:StopRun",
    "Simulation": "simulator.loop.simulation:Simulation",
    "RoundReport": "simulator.loop.simulation:RoundReport",
    "MemoryRecorder": "simulator.io.recording:MemoryRecorder",
    "load_scenario": "simulator.config.scenario:load_scenario",
    "parse_scenario": "simulator.config.scenario:parse_scenario",
    "Scenario": "simulator.config.scenario:Scenario",
    "ScenarioError": "simulator.config.scenario:ScenarioError",
    "register_strategy": "simulator.aggregation.strategy:register_strategy",
    "register_model": "simulator.core.registry:register_model",
    "register_dataset": "simulator.core.registry:register_dataset",
    "register_partitioner": "simulator.core.registry:register_partitioner",
    "register_workload": "simulator.core.registry:register_workload",
    "register_policy": "simulator.core.registry:register_policy",
    "register_trigger": "simulator.core.registry:register_trigger",
}

__all__ = ["FedFleetError", "InputError", "__version__", *_LAZY]


def _register_trigger(name: str | None = None, *, params: Any = None, declares: Any = (),
                      replace: bool = False) -> Any:
    """Decorator for a plugin aggregation trigger (``TRIGGERS.register``,
    simulator/core/registry.py)."""
    from simulator.core.registry import TRIGGERS

    return TRIGGERS.register(name, params=params, declares=declares, replace=replace)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'simulator' has no attribute '{name}'")
    mod, _, attr = target.partition(":")
    try:
        value = getattr(importlib.import_module(mod), attr)
    except AttributeError:
        if name != "register_trigger":
            raise AttributeError(f"simulator.{name} is not available in this version "
                                 f"({target} not found)") from None
        value = _register_trigger  # until core/registry.py defines register_trigger itself
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

