"""Who is online, without touching all N clients each round (pure numpy).

``Population.available(t)`` is an O(N) pass; at a million clients it costs more than training the
round's 100 clients. For large populations the engine instead asks this index for

- ``count(t)``: the exact number of online clients, by a search over each window-length group's
  clients sorted by window start (O(groups * log N) evaluations of ``Population.available``);
- ``sample(t, n, count, rng)``: n distinct online ids drawn uniformly, by rejection sampling from
  all ids and checking availability only for the drawn ids (O(n * N / count)).

Both call ``Population.available(t, ids)`` on a handful of ids, so they agree bit for bit with the
full O(N) mask. Why the search is exact: for a client with window start s and length L, online
means ``(h - s) % 24 < L`` in float32. Among clients with s <= h this is ``h - s < L`` and among
clients with s > h it is ``h - s + 24 < L``; in each part the left side falls as s grows
(float rounding is monotone), so in start order each part reads "offline..., online...". The
search finds the first online client of each part.
"""

from __future__ import annotations

import numpy as np

from simulator.fleet.population import Population

SPARSE_MIN_POPULATION = 100_000  # below this the O(N) mask is cheaper than any bookkeeping
_MAX_GROUPS = 256  # distinct window lengths; beyond this the index is not worth it
_FANOUT = 32  # points probed per segment and search pass (4 passes for 10^6 clients)


class AvailabilityIndex:
    """Non-always-on clients grouped by window length and sorted by window start."""

    def __init__(self, pop: Population) -> None:
        self.pop = pop
        self.n_always = int(np.count_nonzero(pop.always_on))
        rest = np.flatnonzero(~pop.always_on)
        lengths = pop.window_len_h[rest]
        order = np.lexsort((pop.window_start_h[rest], lengths))
        self.ids = rest[order]  # by (length, start)
        self.starts = pop.window_start_h[self.ids]
        lens = lengths[order]
        cut = np.flatnonzero(np.diff(lens)) + 1 if lens.size else np.zeros(0, np.int64)
        self.group_lo = np.concatenate([[0], cut]).astype(np.int64)
        self.group_hi = np.concatenate([cut, [lens.size]]).astype(np.int64)

    @classmethod
    def build(cls, pop: Population) -> AvailabilityIndex | None:
        """An index for populations large enough to need one (None otherwise)."""
        if pop.size < SPARSE_MIN_POPULATION or type(pop) is not Population:
            return None
        if pop.gate_prob is not None:  # FLGo gate: counts are not monotone in window start
            return None
        if np.unique(pop.window_len_h[~pop.always_on]).size > _MAX_GROUPS:
            return None
        return cls(pop)

    # --- counting -----------------------------------------------------------------------------
    def _online(self, t_s: float, pos: np.ndarray) -> np.ndarray:
        return self.pop.available(t_s, self.ids[pos])

    def count(self, t_s: float) -> int:
        """Exactly ``np.count_nonzero(pop.available(t_s))``."""
        if self.ids.size == 0:
            return self.n_always
        # The hour exactly as Population._hours_into_window subtracts it (same expression, same
        # promotion against the float32 starts; subtracting zero is exact).
        hour = ((t_s / 3600.0) % 24.0 - np.zeros(1, self.starts.dtype))[0]
        split = np.empty_like(self.group_lo)
        for g, (lo, hi) in enumerate(zip(self.group_lo, self.group_hi, strict=True)):
            split[g] = lo + np.searchsorted(self.starts[lo:hi], hour, side="right")
        # Segments [lo, split) (start <= hour) and [split, hi) (start > hour).
        seg_lo = np.concatenate([self.group_lo, split])
        seg_hi = np.concatenate([split, self.group_hi])
        first = self._first_online(t_s, seg_lo, seg_hi)
        return self.n_always + int((seg_hi - first).sum())

    def _first_online(self, t_s: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Per segment [lo, hi) (offline..., online... in order): the first online position."""
        lo, hi = lo.copy(), hi.copy()
        k = np.arange(_FANOUT)
        while True:
            width = hi - lo
            live = np.flatnonzero(width > 0)
            if live.size == 0:
                return lo
            pos = lo[live, None] + (width[live, None] * k[None, :]) // _FANOUT  # in [lo, hi)
            on = self._online(t_s, pos.ravel()).reshape(pos.shape)
            any_on = on.any(axis=1)
            j = np.where(any_on, on.argmax(axis=1), _FANOUT)
            rows = np.arange(live.size)
            # The first online position lies in (pos[j-1], pos[j]] (pos[j] := hi when j = K).
            new_hi = np.where(j < _FANOUT, pos[rows, np.minimum(j, _FANOUT - 1)], hi[live])
            new_lo = np.where(j > 0, pos[rows, np.maximum(j - 1, 0)] + 1, lo[live])
            lo[live], hi[live] = new_lo, np.maximum(new_hi, new_lo)

    # --- sampling -----------------------------------------------------------------------------
    def sample(self, t_s: float, n: int, count: int, rng: np.random.Generator,
               max_draws_per_pick: int = 64, exclude: np.ndarray | None = None
               ) -> np.ndarray | None:
        """n distinct online ids, uniformly at random, in draw order (None: list them instead).

        ``exclude``: a population-sized mask of clients that may not be drawn (busy in a buffered
        run); ``count`` is then the number of online clients outside it.

        Gives up (None) when n >= count or when online clients are so rare that rejection would
        take more than ``max_draws_per_pick * n`` draws; the caller then lists the candidates.
        """
        size = self.pop.size
        if n <= 0:
            return np.zeros(0, np.int64)
        if n >= count or count * max_draws_per_pick < size:
            return None
        chosen = np.zeros(0, np.int64)
        seen = np.zeros(0, np.int64)  # sorted, for membership tests
        budget = max_draws_per_pick * n
        while chosen.size < n and budget > 0:
            need = n - chosen.size
            m = min(budget, int(need * size / count * 1.2) + 16)
            budget -= m
            draw = rng.integers(0, size, size=m, dtype=np.int64)
            draw = draw[self.pop.available(t_s, draw)]
            if exclude is not None:
                draw = draw[~exclude[draw]]
            _, first = np.unique(draw, return_index=True)
            draw = draw[np.sort(first)]  # distinct, in draw order
            draw = draw[~np.isin(draw, seen, assume_unique=True)][:need]
            chosen = np.concatenate([chosen, draw])
            seen = np.sort(chosen)
        return chosen if chosen.size == n else None
