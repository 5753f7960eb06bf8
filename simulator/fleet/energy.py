"""Energy per task and battery state (pure numpy).

Energy of one task (joules), from the device's profile (``energy.*``):

    train_watts * compute seconds + transmit_watts * (download + upload seconds)

counting only the seconds actually spent in each phase (a client cut mid-compute pays for the
part it did). Idle power while waiting for the round to close is not charged: the device is free
to do other work then (``idle_watts`` is kept in the profiles for a future duty-cycle model).

Battery model (devices whose profile has ``energy.battery_wh``; mains-powered ones have none):

* the initial charge is drawn uniformly in [20 %, 100 %] of capacity, per client, from its own
  random stream (``(seed, BATTERY)``), so it does not disturb any other draw;
* every task drains its energy when it ends (the level never goes below 0; a task is not cut when
  the battery runs out mid-task: tasks are short next to a battery's life);
* with ``population.battery_recharge_hours`` set, a device recharges at capacity / that many hours
  while it is idle *and inside its availability window* (FL clients train while on a charger; the
  window is when the device is plugged in and on Wi-Fi). The level is updated lazily, when the
  device is next asked: charging seconds = overlap of [last update, now] with its daily windows;
* a device below ``population.min_battery_fraction`` is still invited (the server does not know
  its battery) but declines at once: outcome ``low_battery``, no bytes, no energy, no slot time.
  The default threshold 0 never declines, so scenarios without it behave as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.core import rng as rngmod
from simulator.fleet.population import Population

# Random-stream purpose tag for initial battery levels; far from simulator.core.rng's small tags.
BATTERY = 101
INITIAL_MIN, INITIAL_MAX = 0.2, 1.0
JOULES_PER_WH = 3600.0
_S_PER_H = 3600.0


def task_energy_j(
    train_watts: np.ndarray, transmit_watts: np.ndarray, download_done_s: np.ndarray,
    compute_done_s: np.ndarray, upload_done_s: np.ndarray,
) -> np.ndarray:
    """Joules spent by each task: training power x compute time + radio power x transfer time."""
    return train_watts * compute_done_s + transmit_watts * (download_done_s + upload_done_s)


def window_overlap_s(
    a_s: np.ndarray, b_s: float, start_h: np.ndarray, len_h: np.ndarray, always_on: np.ndarray,
) -> np.ndarray:
    """Seconds of [a_s, b_s] spent inside each client's daily availability window.

    The window opens at ``start_h`` (UTC hours) for ``len_h`` hours every 24 h. With
    G(u) = floor(u / 24) * L + min(u mod 24, L) the online hours in [start, start + u], the
    overlap is G(b - start) - G(a - start).
    """
    a_h = np.asarray(a_s, np.float64) / _S_PER_H - start_h
    b_h = b_s / _S_PER_H - start_h
    length = np.asarray(len_h, np.float64)

    def g(u: np.ndarray) -> np.ndarray:
        return np.floor(u / 24.0) * length + np.minimum(np.mod(u, 24.0), length)

    out = (g(b_h) - g(a_h)) * _S_PER_H
    return np.where(always_on, b_s - np.asarray(a_s, np.float64), np.maximum(out, 0.0))


@dataclass
class Battery:
    """Battery columns for N clients; NaN capacity = mains powered (never low)."""

    capacity_j: np.ndarray  # float64 [N]
    level_j: np.ndarray  # float64 [N]
    updated_s: np.ndarray  # float64 [N] simulated time of the last update
    recharge_w: np.ndarray  # float64 [N] charging power while idle in the window (0 = none)
    min_fraction: float
    pop: Population

    @classmethod
    def build(cls, pop: Population, seed: int, min_fraction: float = 0.0,
              recharge_hours: float | None = None) -> Battery:
        cap_wh = pop.profile_column(
            lambda p: np.nan if p.energy.battery_wh is None else p.energy.battery_wh)
        cap = cap_wh * JOULES_PER_WH
        has = np.isfinite(cap)
        level = np.full(pop.size, np.nan)
        if has.any():
            u = rngmod.stream(seed, BATTERY).uniform(INITIAL_MIN, INITIAL_MAX, pop.size)
            level = np.where(has, u * cap, np.nan)
        rate = np.zeros(pop.size) if recharge_hours is None else np.nan_to_num(
            cap / (recharge_hours * _S_PER_H))
        return cls(cap, level, np.zeros(pop.size), rate, float(min_fraction), pop)

    @property
    def any(self) -> bool:
        return bool(np.isfinite(self.capacity_j).any())

    def fraction(self, t_s: float, ids: np.ndarray) -> np.ndarray:
        """Charge fraction of ``ids`` at ``t_s`` (NaN for mains), applying any pending recharge."""
        cap = self.capacity_j[ids]
        if not np.isfinite(cap).any():
            return np.full(len(ids), np.nan)
        lvl = self.level_j[ids]
        rate = self.recharge_w[ids]
        if rate.any():
            p = self.pop
            on = window_overlap_s(self.updated_s[ids], t_s, p.window_start_h[ids],
                                  p.window_len_h[ids], p.always_on[ids])
            lvl = np.minimum(cap, lvl + rate * on)
            self.level_j[ids] = lvl
            self.updated_s[ids] = np.maximum(self.updated_s[ids], t_s)
        return lvl / cap

    def is_low(self, fraction: np.ndarray) -> np.ndarray:
        """True where a battery device is below the threshold (NaN, i.e. mains, is never low)."""
        return np.asarray(fraction) < self.min_fraction

    def drain(self, ids: np.ndarray, joules: np.ndarray, at_s: np.ndarray | float) -> None:
        """Take each task's energy off its battery when the task ends at ``at_s``."""
        ids = np.asarray(ids)
        if ids.size == 0 or not np.isfinite(self.capacity_j[ids]).any():
            return
        lvl = np.maximum(self.level_j[ids] - np.asarray(joules, np.float64), 0.0)
        self.level_j[ids] = lvl
        self.updated_s[ids] = np.broadcast_to(np.asarray(at_s, np.float64), ids.shape)

    # --- checkpoints: stored beside the selector state, under a prefix -------------------------
    _PREFIX = "battery__"

    def state_dict(self) -> dict[str, Any]:
        if not self.any:
            return {}
        return {f"{self._PREFIX}level_j": self.level_j.copy(),
                f"{self._PREFIX}updated_s": self.updated_s.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        """Take this object's keys out of ``state``; returns the rest (the selector's)."""
        rest = {k: v for k, v in state.items() if not k.startswith(self._PREFIX)}
        if f"{self._PREFIX}level_j" in state:
            self.level_j = np.asarray(state[f"{self._PREFIX}level_j"], np.float64).copy()
            self.updated_s = np.asarray(state[f"{self._PREFIX}updated_s"], np.float64).copy()
        return rest


def battery_for(pop: Population, scenario: Any) -> Battery:
    """The scenario's battery model (fields ``population.min_battery_fraction`` and
    ``population.battery_recharge_hours``; absent fields mean 'never declines, no charging')."""
    sp = scenario.population
    return Battery.build(pop, scenario.seed, getattr(sp, "min_battery_fraction", 0.0),
                         getattr(sp, "battery_recharge_hours", None))


def mark_low_battery(out: Any, low: np.ndarray) -> Any:
    """Give declined clients (already resolved as never started) the ``low_battery`` outcome."""
    from dataclasses import replace

    from simulator.core.outcomes import LOW_BATTERY

    if not np.any(low):
        return out
    return replace(out, outcome=np.where(low, LOW_BATTERY, out.outcome).astype(np.int8))
