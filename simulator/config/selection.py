"""Scenario parameters of the built-in selection policies (``selection.<policy>.*``).

``selection.policy`` is looked up in simulator/core/registry.py ``POLICIES`` when the scenario is
validated (simulator/config/scenario.py ``part_problems``), after ``plugins:`` are imported; a
plugin policy's parameters go in ``selection.params``.

Each block is optional in a scenario file (defaults below) and validated with extra=forbid and
ranges. A block for a policy other than ``selection.policy`` is accepted and ignored, so one file
can carry the settings of several policies (``fedfleet sweep`` drops such overrides and
deduplicates the variants they would create). Imports pydantic only (loaded by scenario.py).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from simulator.config.base import PART_NAME, PluginParams

# The built-in policies (registered in simulator/core/registry.py POLICIES; each has a block
# below). Which names exist is the registry's to say: this is for sweeps and tests.
BUILTIN_POLICIES = ("random", "oort", "deadline", "tifl", "power_of_choice", "fair")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OortParams(_Params):
    """Oort (Lai et al., OSDI'21); defaults are the paper's / its reference code's."""

    alpha: float = Field(2.0, ge=0, le=10, description="system penalty exponent (T/t)^alpha")
    preferred_percentile: float = Field(
        30.0, ge=0, le=100, description="start of the preferred round duration T (a percentile)")
    exploration_factor: float = Field(0.9, ge=0, le=1, description="exploration fraction, round 0")
    exploration_decay: float = Field(0.98, gt=0, le=1, description="per-round decay of it")
    exploration_floor: float = Field(0.3, ge=0, le=1, description="minimum exploration fraction")
    staleness_weight: float = Field(0.1, ge=0, le=100, description="c in sqrt(c*ln(t)/t_last)")
    pacer_step: int = Field(20, ge=1, le=1_000_000, description="rounds per pacer window")
    pacer_delta: float = Field(5.0, ge=0, le=100, description="percentile change per pacer move")
    cut_off: float = Field(0.95, ge=0, le=1, description="exploit pool: score >= cut_off x k-th")
    pool_factor: float = Field(10.0, ge=1, le=1000, description="exploit pool >= factor x picks")
    sample_window: float = Field(5.0, ge=1, le=1000, description="explore pool = window x picks")
    clip_bound: float = Field(0.95, gt=0, le=1, description="utility clipped at this quantile")
    blacklist_after: int | None = Field(
        None, ge=1, le=1_000_000, description="exclude clients after this many participations")


class DeadlineParams(_Params):
    """FedCS (Nishio & Yonetani, ICC 2019)."""

    deadline_s: float | None = Field(
        None, gt=0, le=1e9, description="round deadline (default: the scenario's deadline_s)")
    margin: float = Field(1.0, gt=0, le=1, description="estimate must fit margin x deadline")
    pool_factor: float = Field(
        1.0, ge=1, le=1000,
        description="random pool of factor x n fitting clients; the fastest n of it are taken")


class TiflParams(_Params):
    """TiFL (Chai et al., HPDC'20)."""

    tiers: int = Field(5, ge=1, le=100, description="latency tiers")
    interval: int = Field(10, ge=1, le=1_000_000, description="rounds between re-weightings")
    credits: int | None = Field(
        None, ge=1, le=100_000_000, description="times each tier may be chosen (None: no limit)")


class PowerOfChoiceParams(_Params):
    """Power-of-choice (Cho, Wang & Joshi, AISTATS 2022)."""

    d: int | None = Field(
        None, ge=1, le=100_000_000,
        description="candidates sampled by data size (default: 2 x clients invited per round)")


class FairParams(_Params):
    """Participation-quota fairness (least-participated first)."""

    quota: int = Field(
        1, ge=1, le=1_000_000,
        description="participations per client per band: clients in a lower band go first")
    count: Literal["completed", "invited"] = Field(
        "completed", description="what counts as a participation: completed rounds or invitations")


class SelectionBase(_Params):
    policy: str = Field("random", pattern=PART_NAME, description=(
        "random, oort, deadline, tifl, power_of_choice, fair, one a plugin registers, or a "
        "plugin class path listed under plugins: (docs/policies.md)"))
    params: PluginParams = Field(default_factory=dict, description=(
        "parameters of a plugin policy, validated by its own schema (built-ins: the blocks "
        "below)"))
    oort: OortParams = OortParams()
    deadline: DeadlineParams = DeadlineParams()
    tifl: TiflParams = TiflParams()
    power_of_choice: PowerOfChoiceParams = PowerOfChoiceParams()
    fair: FairParams = FairParams()


def selection_problems(sc: Any) -> list[str]:
    """Checks that need the whole scenario (one line each, naming the field)."""
    sel = sc.selection
    lines: list[str] = []
    if sel.policy == "deadline" and sel.deadline.deadline_s is None and sc.deadline_s is None:
        lines.append("selection.deadline.deadline_s: policy 'deadline' needs a deadline "
                     "(set deadline_s or selection.deadline.deadline_s)")
    d = sel.power_of_choice.d
    invited = min(sc.population.size, math.ceil(sc.clients_per_round * sc.overcommit - 1e-9))
    if sel.policy == "power_of_choice" and d is not None and d < invited:
        lines.append(f"selection.power_of_choice.d: must be at least the clients invited per "
                     f"round ({invited} = clients_per_round x overcommit); got {d}")
    return lines
