"""Executors run a round's client jobs and return one partial sum per call.

``local`` trains in-process; ``ray`` spreads jobs over a pool of actors. Both produce identical
aggregates (fixed-point sums) for the same jobs.
"""

from typing import Any

from simulator.execution.base import Executor

__all__ = ["Executor", "make_executor"]


def make_executor(scenario: Any, population_size: int) -> Executor:
    if scenario.executor.kind == "ray":
        from simulator.execution.ray_pool import RayExecutor

        return RayExecutor(scenario, population_size)
    from simulator.execution.local import LocalExecutor

    return LocalExecutor(scenario, population_size)
