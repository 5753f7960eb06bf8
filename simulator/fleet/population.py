"""Population: N clients as numpy columns (never N Python objects).

Profiles give each device class its medians; each client draws its own compute, bandwidth and
availability window around them (log-normal spreads, stated as assumptions in the profiles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from simulator.core import rng as rngmod
from simulator.fleet.profiles import DeviceProfile

LINK_TYPES = ("wifi", "4g", "5g", "3g", "ethernet", "datacenter")
GATE_PURPOSE = 22  # hashrng purpose of the availability gate (simulator/fleet/dynamics.py)
GATE_SCAN_SLOTS = 24
_SECONDS_PER_HOUR = 3600.0


@dataclass
class Population:
    """Columns for N clients. Row i is client id i."""

    profiles: tuple[DeviceProfile, ...]
    profile_idx: np.ndarray  # int16 [N] index into profiles
    link_idx: np.ndarray  # int8 [N] index into LINK_TYPES
    train_flops_per_s: np.ndarray  # float64 [N] sustained training FLOP/s
    memory_bytes: np.ndarray  # float64 [N] usable by a training job
    downlink_bits_per_s: np.ndarray  # float64 [N]
    uplink_bits_per_s: np.ndarray  # float64 [N]
    latency_s: np.ndarray  # float32 [N] round-trip per transfer
    dropout_hazard_per_s: np.ndarray  # float64 [N]
    always_on: np.ndarray  # bool [N]
    window_start_h: np.ndarray  # float32 [N] UTC hour the availability window opens
    window_len_h: np.ndarray  # float32 [N]
    n_samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # set by data
    # Kept from the draws above (nothing new is drawn): each client's time-zone offset and the
    # standard-normal scores of its bandwidth draw, so that a link change (simulator/fleet/
    # dynamics.py) puts the client at the same quantile of the other link's distribution.
    tz_offset_h: np.ndarray | None = None  # float32 [N]
    link_z_down: np.ndarray | None = None  # float64 [N]
    link_z_up: np.ndarray | None = None  # float64 [N]
    # FLGo-style availability gate (dynamics.availability): inside its window a client is
    # available in slot floor(t / gate_slot_s) when u(seed, slot, client) < its probability.
    gate_prob: np.ndarray | None = None  # float64 [N], None: no gate
    gate_sin: bool = False  # SLN: probabilities times 0.4 sin(2 pi (slot % 24) / 23) + 0.5
    gate_slot_s: float = 3600.0
    gate_seed: int = 0

    @property
    def size(self) -> int:
        return int(self.profile_idx.shape[0])

    @property
    def profile_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.profiles)

    def profile_column(self, getter) -> np.ndarray:  # type: ignore[no-untyped-def]
        """Broadcast a per-profile value (e.g. ``lambda p: p.energy.train_watts``) to N rows."""
        table = np.array([float(getter(p)) for p in self.profiles], dtype=np.float64)
        return table[self.profile_idx]

    def per_profile(self, getter, ids: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
        table = np.array([float(getter(p)) for p in self.profiles], dtype=np.float64)
        return table[self.profile_idx[ids]]

    # --- availability -------------------------------------------------------------------------
    def _hours_into_window(self, t_s: float,
                           ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        start = self.window_start_h if ids is None else self.window_start_h[ids]
        hour = (t_s / _SECONDS_PER_HOUR) % 24.0
        into = (hour - start) % 24.0
        return into, (self.window_len_h if ids is None else self.window_len_h[ids])

    def available(self, t_s: float, ids: np.ndarray | None = None) -> np.ndarray:
        """Bool mask: which clients (all, or ``ids``) are online at simulated time t_s."""
        into, length = self._hours_into_window(t_s, ids)
        always = self.always_on if ids is None else self.always_on[ids]
        on = always | (into < length)
        if self.gate_prob is not None:
            on &= self.gate_open(int(t_s // self.gate_slot_s), ids)
        return on

    def gate_open(self, slot: int, ids: np.ndarray | None) -> np.ndarray:
        """The FLGo gate in ``slot`` (all True without one)."""
        sel = np.arange(self.size) if ids is None else np.asarray(ids, np.int64)
        if self.gate_prob is None:
            return np.ones(sel.size, bool)
        from simulator.fleet.hashrng import uniform

        p = self.gate_prob[sel]
        if self.gate_sin:  # FLGo SLN: np.linspace(0, 2 pi, 24)[slot % 24]
            p = p * (0.4 * np.sin(2.0 * np.pi * (slot % 24) / 23.0) + 0.5)
        return uniform(self.gate_seed, GATE_PURPOSE, slot, sel) < p

    def _gate_bounds(self, t_s: float, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(seconds until the gate closes, seconds until it next opens), scanning one day."""
        slot0 = int(t_s // self.gate_slot_s)
        close = np.full(len(ids), np.inf)
        opens = np.full(len(ids), np.inf)
        still = self.gate_open(slot0, ids)
        opens[still] = 0.0
        for j in range(1, GATE_SCAN_SLOTS + 1):
            at = (slot0 + j) * self.gate_slot_s - t_s
            g = self.gate_open(slot0 + j, ids)
            close = np.where(still & ~g & np.isinf(close), at, close)
            still &= g
            opens = np.where(g & np.isinf(opens), at, opens)
        return close, np.where(np.isinf(opens), GATE_SCAN_SLOTS * self.gate_slot_s, opens)

    def seconds_until_offline(self, t_s: float, ids: np.ndarray) -> np.ndarray:
        """For online clients: seconds from t_s until their window closes (inf if always on)."""
        into, length = self._hours_into_window(t_s, ids)
        left = (length - into) * _SECONDS_PER_HOUR
        left = np.where(into < length, left, 0.0)
        left = np.where(self.always_on[ids], np.inf, left)
        if self.gate_prob is not None:
            left = np.minimum(left, self._gate_bounds(t_s, ids)[0])
        return left

    def seconds_until_online(self, t_s: float, ids: np.ndarray) -> np.ndarray:
        """Seconds from t_s until each client is next online (0 if online now)."""
        into, length = self._hours_into_window(t_s, ids)
        wait = np.where(into < length, 0.0, (24.0 - into) * _SECONDS_PER_HOUR)
        wait = np.where(self.always_on[ids], 0.0, wait)
        if self.gate_prob is not None:  # a lower bound: the caller checks again then
            wait = np.maximum(wait, self._gate_bounds(t_s, ids)[1])
        return wait

    def nbytes(self) -> int:
        return sum(
            v.nbytes for v in self.__dict__.values() if isinstance(v, np.ndarray)
        )


def _counts(shares: Sequence[float], n: int) -> np.ndarray:
    """Largest-remainder split of n into integer counts proportional to shares."""
    raw = np.asarray(shares, dtype=np.float64) * n
    counts = np.floor(raw).astype(np.int64)
    rem = n - int(counts.sum())
    if rem > 0:
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:rem]] += 1
    return counts


def sample_population(
    profiles: Sequence[DeviceProfile], shares: Sequence[float], n: int, seed: int
) -> Population:
    """Draw N clients from a mix of device profiles (deterministic in ``seed``)."""
    if n < 1:
        raise ValueError("population size must be at least 1")
    g = rngmod.stream(seed, rngmod.POPULATION)
    counts = _counts(shares, n)
    profile_idx = np.repeat(np.arange(len(profiles), dtype=np.int16), counts)
    g.shuffle(profile_idx)

    link_idx = np.zeros(n, np.int8)
    flops = np.empty(n)
    mem = np.empty(n)
    down = np.empty(n)
    up = np.empty(n)
    lat = np.empty(n, np.float32)
    hazard = np.empty(n)
    always = np.zeros(n, bool)
    wstart = np.zeros(n, np.float32)
    wlen = np.full(n, 24.0, np.float32)
    tzs = np.zeros(n, np.float32)
    zdown = np.zeros(n)
    zup = np.zeros(n)

    for pi, prof in enumerate(profiles):
        rows = np.flatnonzero(profile_idx == pi)
        m = rows.size
        if m == 0:
            continue
        c = prof.compute
        flops[rows] = c.train_flops_per_s * np.exp(c.spread_sigma * g.standard_normal(m))
        mem[rows] = prof.memory.usable_bytes
        links = prof.network.links
        choice = g.choice(len(links), size=m, p=np.array([lk.share for lk in links]) / sum(
            lk.share for lk in links))
        zd = g.standard_normal(m)
        zu = g.standard_normal(m)
        for li, lk in enumerate(links):
            sel = choice == li
            r = rows[sel]
            link_idx[r] = LINK_TYPES.index(lk.link)
            down[r] = lk.downlink_bits_per_s_median * np.exp(lk.sigma * zd[sel])
            up[r] = lk.uplink_bits_per_s_median * np.exp(lk.sigma * zu[sel])
            lat[r] = lk.latency_s
        zdown[rows], zup[rows] = zd, zu
        hazard[rows] = prof.dropout.hazard_per_hour / _SECONDS_PER_HOUR
        av = prof.availability
        if av.pattern == "always":
            always[rows] = True
        else:
            offsets = np.asarray(av.timezone_offsets_hours)
            tz = offsets[g.integers(0, len(offsets), m)]
            tzs[rows] = tz
            jitter = g.uniform(-av.start_jitter_hours, av.start_jitter_hours, m)
            # Local start hour -> UTC: local = utc + tz  =>  utc = local - tz.
            wstart[rows] = ((av.window_start_hour + jitter - tz) % 24.0).astype(np.float32)
            wlen[rows] = av.window_hours
            if av.window_hours >= 24.0:
                always[rows] = True
    return Population(
        profiles=tuple(profiles),
        profile_idx=profile_idx,
        link_idx=link_idx,
        train_flops_per_s=flops,
        memory_bytes=mem,
        downlink_bits_per_s=down,
        uplink_bits_per_s=up,
        latency_s=lat,
        dropout_hazard_per_s=hazard,
        always_on=always,
        window_start_h=wstart,
        window_len_h=wlen,
        n_samples=np.zeros(n, np.int64),
        tz_offset_h=tzs,
        link_z_down=zdown,
        link_z_up=zup,
    )
