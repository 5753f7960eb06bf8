"""Executors run a round's client jobs and return one partial sum per call.

``local`` trains in-process; ``ray`` spreads jobs over a pool of actors. Both produce identical
aggregates (fixed-point sums) for the same jobs.
"""

from simulator.execution.base import JobBatch, make_executor

__all__ = ["JobBatch", "make_executor"]
