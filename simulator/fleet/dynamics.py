"""Devices that change between tasks (pure numpy): the ``dynamics:`` block (docs/clock.md).

Applied to each launched task *before* the round is resolved, as per-task changes of the
client's link and per-task multipliers of its bandwidth and compute time, so the vectorised sync
resolver, FedBuff's event loop and edge rounds resolve exactly as before on the changed timing.

* **Bandwidth**: the client's median (its population draw) x ``exp(x)``, ``x`` an
  Ornstein-Uhlenbeck process in simulated time, per client: stationary N(0, sigma^2) and, between
  two tasks ``dt`` apart, ``x' = rho x + sigma sqrt(1 - rho^2) eps`` with ``rho = exp(-dt/tau)``
  (the exact discretisation, so it holds for any gap and every trigger). Downlink and uplink
  share the factor (a congested cell slows both).
* **Compute**: background load (with probability p a task gets a uniform fraction of the
  device) and thermal throttling (after ``onset_s`` seconds of compute the device runs at
  ``sustained_fraction``), for the device kinds listed.
* **Links by time of day**: a device whose class has Wi-Fi and a cellular link is on Wi-Fi with
  ``night_wifi`` at night (local time) and, by day, with the probability that keeps the class's
  daily Wi-Fi share; on the other link it keeps its quantile (the same standard-normal score as
  its population draw).
* **Availability modes** (FLGo): :func:`configure_population` sets the population's gate.

Random numbers: every launch draws ``(eps, u_background, f_background, u_link)`` for its ids (in
the order given, i.e. sorted) from ``stream(seed, DYNAMICS, *key)``, the key being the trigger's
(round; FedBuff wave; round and edge), always all four vectors whatever parts are on. The
per-client OU state (value, time of the last task) is checkpointed, so runs resume exactly and
tables do not depend on the executor (all of this runs in the driver).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulator.core import rng as R
from simulator.core.cost import Timing
from simulator.fleet.hashrng import uniform
from simulator.fleet.population import LINK_TYPES, Population

DYNAMICS = 21  # stream purpose (beside simulator/core/rng.py's tags)
LINK_ASSIGN = 23  # hashrng purpose: which cellular link a Wi-Fi-at-home client uses by day
CELLULAR = ("4g", "5g", "3g")
FLGO_BETA = {"homo": 0.2, "mdf": 0.0001, "ldf": 0.5, "ln": 0.1, "sln": 0.1}


def ou_step(x_prev: np.ndarray, dt_s: np.ndarray, tau_s: float, sigma: float,
            eps: np.ndarray) -> np.ndarray:
    """One exact OU step in log space; ``dt_s`` NaN: the first task (a stationary draw)."""
    first = np.isnan(dt_s)
    rho = np.exp(-np.maximum(np.where(first, 0.0, dt_s), 0.0) / tau_s)
    step = rho * x_prev + sigma * np.sqrt(np.maximum(1.0 - rho * rho, 0.0)) * eps
    return np.where(first, sigma * eps, step)


def throttled_compute_s(compute_s: np.ndarray, onset_s: float, fraction: float) -> np.ndarray:
    """Seconds of ``compute_s`` full-speed work when the device slows to ``fraction`` after
    ``onset_s`` seconds."""
    c = np.asarray(compute_s, np.float64)
    return np.where(c > onset_s, onset_s + (c - onset_s) / fraction, c)


def night_mask(local_hour: np.ndarray, start: float, end: float) -> np.ndarray:
    h = np.asarray(local_hour)
    return (h >= start) & (h < end) if start <= end else (h >= start) | (h < end)


def day_wifi_probability(wifi_share: float, night_wifi: float, night_hours: float) -> float:
    """P(Wi-Fi) by day so that the daily average is the class's Wi-Fi share."""
    day_h = 24.0 - night_hours
    if day_h <= 0:
        return night_wifi
    return float(min(1.0, max(0.0, (24.0 * wifi_share - night_hours * night_wifi) / day_h)))


def flgo_probabilities(mode: str, beta: float | None, n_samples: np.ndarray,
                       g: np.random.Generator) -> np.ndarray | None:
    """Per-client availability probability of a FLGo mode (None for ``window``)."""
    if mode == "window":
        return None
    b = FLGO_BETA[mode] if beta is None else float(beta)
    n = np.maximum(np.asarray(n_samples, np.float64), 1.0)
    if mode == "homo":
        return np.full(n.size, 1.0 - b)
    if mode in ("mdf", "ldf"):
        p = n ** (b if mode == "mdf" else -b)
        return p / p.max()
    tk = g.lognormal(0.0, -math.log(1.0 - b - 1e-6), n.size)  # ln, sln
    return tk / tk.max()


def configure_population(sc: Any, pop: Population) -> None:
    """The FLGo availability gate (after data sizes are known); nothing when off."""
    d = sc.dynamics
    av = d.availability
    if not d.enabled or av.mode == "window":
        return
    pop.gate_prob = flgo_probabilities(av.mode, av.beta, pop.n_samples,
                                       R.stream(sc.seed, DYNAMICS, 0))
    pop.gate_sin = av.mode == "sln"
    pop.gate_slot_s = float(av.slot_s)
    pop.gate_seed = int(sc.seed)


class FleetDynamics:
    """Per-task link, bandwidth and compute changes; ``apply`` at every launch."""

    def __init__(self, sc: Any, pop: Population) -> None:
        d = sc.dynamics
        self.seed = int(sc.seed)
        self.pop = pop
        self.on = bool(d.enabled)
        self.bw = d.bandwidth if self.on and d.bandwidth.enabled and d.bandwidth.sigma > 0 \
            else None
        n = pop.size
        self.x = np.zeros(n)  # OU state (log bandwidth factor)
        self.t_last = np.full(n, np.nan)  # time of the client's last task (NaN: none yet)
        kinds = np.array([p.kind for p in pop.profiles], dtype=object)

        def by_kind(part: Any) -> np.ndarray | None:
            if not (self.on and part.enabled):
                return None
            table = np.isin(kinds, list(part.kinds))
            return table if table.any() else None

        self.thermal, self.thermal_kind = d.thermal, by_kind(d.thermal)
        self.background, self.background_kind = d.background, by_kind(d.background)
        fixed = sc.population.require_link or getattr(sc.population, "trace", None) is not None
        self.link = d.link if self.on and d.link.enabled and not fixed \
            and pop.link_z_down is not None else None
        if self.link is not None:
            self._link_tables()

    @property
    def active(self) -> bool:
        return self.on and (self.bw is not None or self.thermal_kind is not None
                            or self.background_kind is not None or self.link is not None)

    # --- links ----------------------------------------------------------------------------------
    def _link_tables(self) -> None:
        pop, cfg = self.pop, self.link
        assert cfg is not None
        n_prof = len(pop.profiles)
        width = max(len(p.network.links) for p in pop.profiles)
        self.l_down = np.ones((n_prof, width))
        self.l_up = np.ones((n_prof, width))
        self.l_sigma = np.zeros((n_prof, width))
        self.l_lat = np.zeros((n_prof, width))
        self.l_type = np.zeros((n_prof, width), np.int8)
        self.wifi_j = np.full(n_prof, -1, np.int64)
        self.p_night = np.zeros(n_prof)
        self.p_day = np.zeros(n_prof)
        night_h = (cfg.night_end_hour - cfg.night_start_hour) % 24.0
        cell_cum: list[np.ndarray] = []
        cell_js: list[np.ndarray] = []
        for pi, prof in enumerate(pop.profiles):
            links = prof.network.links
            for j, lk in enumerate(links):
                self.l_down[pi, j] = lk.downlink_bits_per_s_median
                self.l_up[pi, j] = lk.uplink_bits_per_s_median
                self.l_sigma[pi, j] = lk.sigma
                self.l_lat[pi, j] = lk.latency_s
                self.l_type[pi, j] = LINK_TYPES.index(lk.link)
            wifi = [j for j, lk in enumerate(links) if lk.link == "wifi"]
            cell = np.array([j for j, lk in enumerate(links) if lk.link in CELLULAR], np.int64)
            if wifi and cell.size:
                self.wifi_j[pi] = wifi[0]
                share = sum(lk.share for lk in links if lk.link == "wifi")
                self.p_night[pi] = cfg.night_wifi
                self.p_day[pi] = day_wifi_probability(share, cfg.night_wifi, night_h)
                w = np.array([links[j].share for j in cell])
                cell_cum.append(np.cumsum(w) / w.sum())
            else:
                cell_cum.append(np.zeros(0))
            cell_js.append(cell)
        # Per client: its home link (population draw) and its cellular link.
        prof_idx = pop.profile_idx.astype(np.int64)
        self.home_j = np.zeros(pop.size, np.int64)
        self.cell_j = np.full(pop.size, -1, np.int64)
        u = uniform(self.seed, LINK_ASSIGN, 0, np.arange(pop.size))
        for pi in range(n_prof):
            rows = np.flatnonzero(prof_idx == pi)
            if rows.size == 0:
                continue
            types = self.l_type[pi, :len(pop.profiles[pi].network.links)]
            home = np.argmax(types[None, :] == pop.link_idx[rows, None], axis=1)
            self.home_j[rows] = home
            cell = cell_js[pi]
            if self.wifi_j[pi] >= 0:
                pick = cell[np.minimum(np.searchsorted(cell_cum[pi], u[rows], side="right"),
                                       cell.size - 1)]
                is_cell = np.isin(home, cell)
                self.cell_j[rows] = np.where(is_cell, home, pick)
        self.switchable = self.wifi_j[prof_idx] >= 0

    def _task_links(self, t0: float, ids: np.ndarray, u_link: np.ndarray,
                    links: tuple[np.ndarray, np.ndarray, np.ndarray]
                    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
        pop, cfg = self.pop, self.link
        assert cfg is not None and pop.tz_offset_h is not None
        assert pop.link_z_down is not None and pop.link_z_up is not None
        down, up, lat = (np.array(a, np.float64, copy=True) for a in links)
        link_idx = pop.link_idx[ids].copy()
        sw = self.switchable[ids]
        if not sw.any():
            return (down, up, lat), link_idx
        pi = pop.profile_idx[ids].astype(np.int64)
        hour = ((t0 / 3600.0 + pop.tz_offset_h[ids].astype(np.float64)) % 24.0)
        night = night_mask(hour, cfg.night_start_hour, cfg.night_end_hour)
        p = np.where(night, self.p_night[pi], self.p_day[pi])
        j = np.where(u_link < p, self.wifi_j[pi], self.cell_j[ids])
        moved = sw & (j != self.home_j[ids]) & (j >= 0)
        if moved.any():
            m = np.flatnonzero(moved)
            pm, jm, cm = pi[m], j[m], ids[m]
            down[m] = self.l_down[pm, jm] * np.exp(self.l_sigma[pm, jm] * pop.link_z_down[cm])
            up[m] = self.l_up[pm, jm] * np.exp(self.l_sigma[pm, jm] * pop.link_z_up[cm])
            lat[m] = self.l_lat[pm, jm]
            link_idx[m] = self.l_type[pm, jm]
        return (down, up, lat), link_idx

    # --- one launch -----------------------------------------------------------------------------
    def draws(self, key: tuple[int, ...], n: int) -> tuple[np.ndarray, ...]:
        g = R.stream(self.seed, DYNAMICS, 1, *key)
        return (g.standard_normal(n), g.random(n), g.random(n), g.random(n))

    def links(self, t0: float, ids: np.ndarray, key: tuple[int, ...],
              links: tuple[np.ndarray, np.ndarray, np.ndarray], fixed_links: bool = False
              ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        """Task links (down, up, latency), link type per task, and the compute-time factor
        (>= 1) of each task; updates the OU state of ``ids``."""
        n = len(ids)
        eps, u_bg, f_bg, u_link = self.draws(key, n)
        link_idx = self.pop.link_idx[ids].copy()
        if self.link is not None and not fixed_links:
            links, link_idx = self._task_links(t0, ids, u_link, links)
        if self.bw is not None:
            dt = t0 - self.t_last[ids]
            x = ou_step(self.x[ids], dt, self.bw.correlation_s, self.bw.sigma, eps)
            self.x[ids] = x
            self.t_last[ids] = t0
            if not fixed_links:
                m = np.exp(x)
                links = (links[0] * m, links[1] * m, links[2])
        slow = np.ones(n)
        if self.background_kind is not None:
            b = self.background
            hit = (u_bg < b.probability) & self.background_kind[self.pop.profile_idx[ids]]
            frac = b.min_fraction + (b.max_fraction - b.min_fraction) * f_bg
            slow = np.where(hit, 1.0 / frac, 1.0)
        return links, link_idx, slow

    def compute_s(self, ids: np.ndarray, compute_s: np.ndarray, slow: np.ndarray) -> np.ndarray:
        c = np.asarray(compute_s, np.float64) * slow
        if self.thermal_kind is not None:
            hot = self.thermal_kind[self.pop.profile_idx[ids]]
            th = self.thermal
            c = np.where(hot, throttled_compute_s(c, th.onset_s, th.sustained_fraction), c)
        return c

    def timing(self, ids: np.ndarray, timing: Timing, slow: np.ndarray) -> Timing:
        if self.thermal_kind is None and self.background_kind is None:
            return timing
        return Timing(timing.download_s, self.compute_s(ids, timing.compute_s, slow),
                      timing.upload_s)

    # --- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.bw is None:
            return {}
        return {"dyn__x": self.x.copy(), "dyn__t_last": self.t_last.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        if "dyn__x" in state:
            self.x = np.asarray(state.pop("dyn__x"), np.float64).copy()
            self.t_last = np.asarray(state.pop("dyn__t_last"), np.float64).copy()
        return state
