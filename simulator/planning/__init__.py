"""Workload planning: what each selected client trains, and what that costs.

``plan_round`` returns the per-client cost columns (bytes, FLOPs, memory) and the assignment
columns recorded in clients.parquet. Clients that cannot hold any workload are ``infeasible``.
"""

from simulator.planning.base import Plan, make_planner

__all__ = ["Plan", "make_planner"]
