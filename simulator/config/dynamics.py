"""Scenario blocks for a clock that changes and is shared: ``dynamics:``, ``capacity:``,
``estimates:`` and ``population.trace:`` (semantics and sources: docs/clock.md).

- ``dynamics`` (simulator/fleet/dynamics.py): per-task bandwidth variation around each client's
  median, compute slow-downs (thermal throttling, background load), links that change with the
  time of day, FLGo-style availability modes. ``dynamics: {enabled: false}`` is today's static
  clock.
- ``capacity`` (simulator/fleet/capacity.py): the server's link, the split-learning server and
  each edge's link shared by the transfers (or clients) using them at once.
- ``estimates`` (simulator/selection/estimates.py): what selectors and planners know of a
  client's speed: ``observed`` (its past observed durations and its declared device class) or
  ``oracle`` (the true cost model, as before this block existed).
- ``population.trace`` (simulator/fleet/trace_fleet.py): per-client compute, bandwidth and
  availability from a parquet trace table (``fedfleet profiles import``, or your own telemetry in
  the format of device_profiles/README.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from simulator.config.base import Strict

DeviceKind = Literal["phone", "tablet", "board", "laptop", "server", "hub"]

ASSUMPTION = "assumption (docs/clock.md, 'Dynamics'): "


class BandwidthDynamics(Strict):
    """Per-task bandwidth: the client's median x exp(x), x an Ornstein-Uhlenbeck process in
    simulated time (log space), so consecutive tasks of a client are correlated."""

    enabled: bool = True
    sigma: float = Field(0.35, ge=0, le=3, description="stationary std of log bandwidth")
    correlation_s: float = Field(1800.0, gt=0, le=1e9, description=(
        "time constant tau: two tasks dt apart correlate exp(-dt/tau) in log space"))
    source: str = Field(
        ASSUMPTION + "log-normal around the client's median (shared/reference.md section 2 "
        "suggests log-normal per link); FedScale's get_completion_time_lognormal redraws per "
        "task with no memory, we correlate tasks in time (sigma and tau are assumptions)",
        min_length=3)


class ThermalDynamics(Strict):
    """Sustained load throttles phones: full speed for ``onset_s`` of compute, then
    ``sustained_fraction`` of it."""

    enabled: bool = True
    kinds: tuple[DeviceKind, ...] = Field(("phone", "tablet"), description="device kinds")
    onset_s: float = Field(300.0, ge=0, le=1e7, description="seconds at full speed")
    sustained_fraction: float = Field(0.7, gt=0, le=1, description="speed after the onset")
    source: str = Field(
        ASSUMPTION + "phones without active cooling throttle under sustained load; onset and "
        "sustained fraction are assumed figures, not a measurement", min_length=3)


class BackgroundLoad(Strict):
    """With ``probability`` per task the user's own apps take part of the device: the task gets
    a uniform fraction in [min_fraction, max_fraction] of its speed."""

    enabled: bool = True
    kinds: tuple[DeviceKind, ...] = Field(("phone", "tablet", "laptop"),
                                          description="device kinds")
    probability: float = Field(0.25, ge=0, le=1)
    min_fraction: float = Field(0.5, gt=0, le=1)
    max_fraction: float = Field(0.9, gt=0, le=1)
    source: str = Field(ASSUMPTION + "share of tasks that meet background load and the speed "
                        "left to them are assumed", min_length=3)

    @model_validator(mode="after")
    def _order(self) -> BackgroundLoad:
        if self.min_fraction > self.max_fraction:
            raise ValueError("min_fraction must not exceed max_fraction")
        return self


class LinkSchedule(Strict):
    """Devices whose class has Wi-Fi and a cellular link: at night (local time) on Wi-Fi with
    ``night_wifi``; by day with the probability that keeps the class's daily Wi-Fi share (its
    profile's link share) unchanged."""

    enabled: bool = True
    night_start_hour: float = Field(22.0, ge=0, lt=24)
    night_end_hour: float = Field(7.0, ge=0, lt=24)
    night_wifi: float = Field(0.9, ge=0, le=1, description="P(on Wi-Fi) at night")
    source: str = Field(
        ASSUMPTION + "at home (Wi-Fi) at night; the daily Wi-Fi share is the profile's link "
        "share (e.g. Ofcom Mobile Matters 2023: phones on Wi-Fi 62.3% of the time)", min_length=3)


class AvailabilityModes(Strict):
    """FLGo's availability modes (flgo/simulator/default_simulator.py) on top of the profiles'
    daily windows: every ``slot_s`` a client inside its window is available with probability
    p_i (independent per slot). ``window``: p_i = 1 (the windows alone, FLGo's IDL)."""

    mode: Literal["window", "homo", "mdf", "ldf", "ln", "sln"] = Field("window", description=(
        "window (IDL), homo: 1-beta, mdf: (n_i^beta)/max, ldf: (n_i^-beta)/max, ln: lognormal "
        "(0, -ln(1-beta))/max, sln: ln x (0.4 sin(2 pi s/24)+0.5) with s the slot in the day"))
    beta: float | None = Field(None, ge=0, lt=1, description=(
        "the mode's parameter (FLGo defaults: homo 0.2, mdf 0.0001, ldf 0.5, ln/sln 0.1)"))
    slot_s: float = Field(3600.0, gt=0, le=1e7, description="one FLGo round = this many seconds")
    source: str = Field("FLGo (WwZzz/easyFL, flgo/simulator/default_simulator.py); one FLGo "
                        "round mapped to slot_s seconds (assumption)", min_length=3)


class Dynamics(Strict):
    """``enabled: false`` switches every part off (the static clock of earlier versions)."""

    enabled: bool = True
    bandwidth: BandwidthDynamics = BandwidthDynamics()
    thermal: ThermalDynamics = ThermalDynamics()
    background: BackgroundLoad = BackgroundLoad()
    link: LinkSchedule = LinkSchedule()
    availability: AvailabilityModes = AvailabilityModes()


class Capacity(Strict):
    """Shared resources (simulator/fleet/capacity.py). Link capacities default to null
    (unlimited): a server's link is a property of the deployment, no shipped scenario states
    one, and a sourced default does not exist (docs/clock.md)."""

    server_egress_bits_per_s: float | None = Field(None, gt=0, le=1e15, description=(
        "server -> clients (downloads), max-min shared by concurrent transfers; null: unlimited"))
    server_ingress_bits_per_s: float | None = Field(None, gt=0, le=1e15, description=(
        "clients -> server (uploads) shared alike; null: unlimited"))
    edge_link_bits_per_s: float | None = Field(None, gt=0, le=1e15, description=(
        "hierarchical runs: each edge's link to its clients, shared by them (each direction)"))
    split_server: Literal["shared", "per_client"] = Field("shared", description=(
        "shared: the split server's total throughput (split_server_flops_per_s) is divided "
        "among the split clients attached at once (processor sharing); per_client: every "
        "client gets model.workloads.split_server_flops_per_s whatever the load"))
    split_server_flops_per_s: float | None = Field(None, gt=0, le=1e21, description=(
        "the split server's total FLOP/s; null: provisioned for the round's cohort, i.e. "
        "model.workloads.split_server_flops_per_s x clients_per_round (FedBuff: concurrency)"))


class Estimates(Strict):
    """What selectors and planners know of each client's speed."""

    mode: Literal["observed", "oracle"] = Field("observed", description=(
        "observed: past observed durations per client + declared device class (class prior "
        "for clients never seen); oracle: the true cost model (unrealistic; earlier versions)"))
    weight: float = Field(0.5, gt=0, le=1, description=(
        "weight of the newest observation in the per-client running estimate (log space)"))


class TraceFleet(Strict):
    """Per-client compute, bandwidth and availability from a trace table (parquet)."""

    path: str = Field(min_length=1, description="parquet table (device_profiles/README.md)")
    assignment: Literal["modulo", "random"] = Field("modulo", description=(
        "client i takes row i % rows (FedScale's rule), or rows drawn at random (seeded)"))
    flops_per_sample: float | None = Field(None, gt=0, le=1e16, description=(
        "FLOPs of one training sample, to turn ms_per_sample into FLOP/s (default: the "
        "model's, as the planner counts it)"))
    availability: Literal["trace", "profile"] = Field("trace", description=(
        "trace: the table's active intervals decide who is online (when it has them); "
        "profile: the profiles' daily windows"))
