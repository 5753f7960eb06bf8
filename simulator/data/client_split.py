"""Each client's own held-out split, for client-side evaluation (``evaluation:`` block).

With ``evaluation.clients_per_round > 0`` :func:`simulator.data.build_dataset` wraps the dataset
in :class:`ClientSplitDataset`: client ``c`` with ``n`` local samples holds out
``n_test = clip(floor(n * f + 0.5), 1, n - 1)`` of them (``f`` = ``client_test_fraction``; none
when ``n < 2``), chosen by a permutation drawn from ``(seed, CLIENT_SPLIT, c)``; it trains on the
other ``n - n_test`` (``n_samples`` counts those, so the clock charges what is trained). The split
depends on the seed and the client only: every host (driver, Ray actors) sees the same one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.config.evaluation import CLIENT_SPLIT
from simulator.core import rng as rngmod


def held_out_counts(n: np.ndarray, fraction: float) -> np.ndarray:
    """int64 [N]: held-out samples per client of ``n`` local samples."""
    n = np.asarray(n, np.int64)
    k = np.floor(n.astype(np.float64) * float(fraction) + 0.5).astype(np.int64)
    k = np.clip(k, 1, np.maximum(n - 1, 1))
    return np.where(n >= 2, k, 0).astype(np.int64)


class ClientSplitDataset:
    """A dataset whose clients train on their training split; ``client_test_data(c)`` is the
    held-out split. Everything else (``test_data``, ``n_classes``, ...) is the inner dataset's."""

    def __init__(self, inner: Any, fraction: float, seed: int) -> None:
        self.inner = inner
        self.fraction = float(fraction)
        self.seed = int(seed)
        total = np.asarray(inner.n_samples, np.int64)
        self.n_total = total
        self.n_test = held_out_counts(total, self.fraction)
        self.n_samples = total - self.n_test  # what clients train on (and the clock charges)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _test_positions(self, cid: int, n: int) -> np.ndarray:
        k = min(int(self.n_test[cid]), max(n - 1, 0))
        perm = rngmod.stream(self.seed, CLIENT_SPLIT, int(cid)).permutation(n)
        return np.sort(perm[:k])

    def split(self, cid: int) -> tuple[tuple[np.ndarray, np.ndarray],
                                       tuple[np.ndarray, np.ndarray]]:
        """((x_train, y_train), (x_test, y_test)) of client ``cid``."""
        x, y = self.inner.client_data(int(cid))
        test = np.zeros(len(y), bool)
        test[self._test_positions(cid, len(y))] = True
        return (x[~test], y[~test]), (x[test], y[test])

    def client_data(self, cid: int) -> tuple[np.ndarray, np.ndarray]:
        return self.split(cid)[0]

    def client_test_data(self, cid: int) -> tuple[np.ndarray, np.ndarray]:
        return self.split(cid)[1]


def with_client_split(ds: Any, scenario: Any) -> Any:
    """``ds`` wrapped when the scenario evaluates clients, else ``ds`` itself."""
    ev = getattr(scenario, "evaluation", None)
    if ev is None or not ev.on:
        return ds
    return ClientSplitDataset(ds, ev.client_test_fraction, scenario.seed)
