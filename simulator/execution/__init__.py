"""Executors run a round's client jobs and return one partial sum per call.

``local`` trains in-process; ``ray`` spreads jobs over a pool of actors. Both produce identical
aggregates (fixed-point sums) for the same jobs.
"""

import logging
from typing import Any

from simulator.execution.base import Executor

__all__ = ["Executor", "make_executor"]

log = logging.getLogger(__name__)
status = logging.getLogger("simulator.status")  # shown by the CLI (simulator/cli/progress.py)


def make_executor(scenario: Any, population_size: int) -> Executor:
    """The executor ``executor.kind`` names; ``auto`` decides (:mod:`simulator.execution.choose`),
    logs which it chose and why, and leaves the decision in ``executor.choice``."""
    from simulator.execution.choose import choose

    choice = choose(scenario)
    if choice.requested == "auto":
        status.info("executor: %s (auto: %s)", choice.kind, choice.reason)
    ex: Any
    if choice.kind == "ray":
        from simulator.execution.ray_pool import RayExecutor

        ex = RayExecutor(scenario, population_size)
    else:
        from simulator.execution.local import LocalExecutor

        ex = LocalExecutor(scenario, population_size)
    ex.choice = choice.as_dict()
    return ex
