"""Dataset protocol and the tabular datasets: scikit-learn's digits and LEAF synthetic.

Partitioning scales to any population size by *sampling*: each client draws its shard from the
training pool with its own label distribution (uniform for ``iid``, Dirichlet(alpha) for
``dirichlet``, ``shards_per_client`` classes for ``shards``), without replacement inside a client
and independently across clients. Client sizes are log-normal around ``samples_per_client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from simulator import InputError
from simulator.core import rng as rngmod


class FederatedDataset(Protocol):
    kind: str  # "classification" or "text"
    n_features: int
    n_classes: int
    n_samples: np.ndarray  # int64 [N] samples per client

    def client_data(self, cid: int) -> tuple[np.ndarray, np.ndarray]: ...

    def test_data(self) -> tuple[np.ndarray, np.ndarray]: ...


def client_sizes(n: int, median: int, sigma: float, seed: int) -> np.ndarray:
    g = rngmod.stream(seed, rngmod.PARTITION, 0)
    sizes = np.rint(median * np.exp(sigma * g.standard_normal(n)))
    return np.maximum(sizes, 2).astype(np.int64)


@dataclass
class PooledDataset:
    """A labelled pool split into train/test; clients sample their shards from the train pool."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    n_samples: np.ndarray
    partition: str
    alpha: float
    shards_per_client: int
    seed: int
    kind: str = "classification"

    def __post_init__(self) -> None:
        self.n_features = int(self.x_train.shape[1])
        self._by_class = [np.flatnonzero(self.y_train == c) for c in range(self.n_classes)]

    def _label_probs(self, g: np.random.Generator) -> np.ndarray:
        c = self.n_classes
        if self.partition == "iid":
            p = np.array([len(ix) for ix in self._by_class], dtype=np.float64)
        elif self.partition == "dirichlet":
            p = g.dirichlet(np.full(c, self.alpha))
        else:  # shards: a few classes per client
            k = min(self.shards_per_client, c)
            p = np.zeros(c)
            p[g.choice(c, size=k, replace=False)] = 1.0
        return p / p.sum()

    def client_indices(self, cid: int) -> np.ndarray:
        g = rngmod.stream(self.seed, rngmod.PARTITION, 1, cid)
        n = int(self.n_samples[cid])
        counts = g.multinomial(n, self._label_probs(g))
        parts = []
        for c, m in enumerate(counts):
            if m == 0:
                continue
            pool = self._by_class[c]
            parts.append(g.choice(pool, size=int(m), replace=bool(m > len(pool))))
        idx = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        g.shuffle(idx)
        return idx

    def client_data(self, cid: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.client_indices(cid)
        return self.x_train[idx], self.y_train[idx]

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x_test, self.y_test


def load_digits_pool(test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    g = rngmod.stream(seed, rngmod.DATASET, 0)
    perm = g.permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def build_dataset(scenario, population_size: int) -> FederatedDataset:  # type: ignore[no-untyped-def]
    """Build the scenario's dataset for ``population_size`` clients."""
    d = scenario.data
    seed = scenario.seed
    if d.dataset == "digits":
        xtr, ytr, xte, yte = load_digits_pool(d.test_fraction, seed)
        sizes = client_sizes(population_size, d.samples_per_client, d.size_sigma, seed)
        return PooledDataset(xtr, ytr, xte, yte, 10, sizes, d.partition, d.alpha,
                             d.shards_per_client, seed)
    if d.dataset == "synthetic":
        from simulator.data.synthetic import SyntheticLeaf

        return SyntheticLeaf(d.synthetic, population_size, seed)
    if d.dataset == "text":
        try:
            from simulator.data.text import build_text_dataset
        except ImportError:  # pragma: no cover - text support ships with the LLM workloads
            raise InputError("data.dataset", "text datasets are not available in this build") from None
        return build_text_dataset(scenario, population_size)
    raise InputError("data.dataset", f"unknown dataset {d.dataset!r} (allowed: digits, synthetic, text)")
