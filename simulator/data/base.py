"""Dataset protocol, ``build_dataset`` (through the ``DATASETS`` registry) and the digits pool.

Partitioning scales to any population size by *sampling*: each client draws its shard from the
training pool with its own label distribution (the ``data.partition`` partitioner's,
simulator/data/partition.py: the pool's mix for ``iid``, Dirichlet(alpha) for ``dirichlet``,
``shards_per_client`` classes for ``shards``), without replacement inside a client and
independently across clients. Client sizes are log-normal around ``samples_per_client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from simulator import InputError
from simulator.core import rng as rngmod
from simulator.core.registry import (
    DATASETS,
    MODEL_KINDS,
    check_model_data,
    declared,
    ensure_plugins,
)
from simulator.data.partition import PartitionSpec, partition_spec, partitioner
from simulator.data.sizes import analytic_dataset, client_sizes, scenario_sizes

__all__ = ["FederatedDataset", "PooledDataset", "build_dataset", "build_run_dataset",
           "client_sizes", "digits_arrays", "load_digits_pool"]


class FederatedDataset(Protocol):
    kind: str  # "classification" or "text"
    n_features: int
    n_classes: int
    n_samples: np.ndarray  # int64 [N] samples per client

    def client_data(self, cid: int) -> tuple[np.ndarray, np.ndarray]: ...

    def test_data(self) -> tuple[np.ndarray, np.ndarray]: ...


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

    partition_params: Any = None  # the partitioner's validated data.partition_params
    input_shape: tuple[int, ...] | None = None  # one sample's shape (images: C, H, W)

    def __post_init__(self) -> None:
        self.n_features = int(self.x_train.shape[1])
        self._by_class = [np.flatnonzero(self.y_train == c) for c in range(self.n_classes)]
        self._spec = PartitionSpec(self.partition, self.alpha, self.shards_per_client,
                                   self.partition_params)
        self._mix = partitioner(self._spec)
        self._class_sizes = np.array([len(ix) for ix in self._by_class], dtype=np.float64)

    def _label_probs(self, g: np.random.Generator) -> np.ndarray:
        return np.asarray(self._mix(g, self._class_sizes, self._spec), dtype=np.float64)

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


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1,797 x 64 pixels 0..16, labels) as float64/int64.

    Read straight from the ``digits.csv.gz`` scikit-learn ships, located with
    ``importlib.util.find_spec`` (which does not run ``sklearn/__init__``): importing
    ``sklearn.datasets`` costs seconds (scipy, joblib, ...) for a 250 KB file. Falls back to
    ``sklearn.datasets.load_digits`` where the file is not where it is expected."""
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    origin = spec.origin if spec is not None else None
    path = Path(origin).parent / "datasets" / "data" / "digits.csv.gz" if origin else None
    if path is not None and path.is_file():
        with gzip.open(path, "rt") as f:
            data = np.loadtxt(f, delimiter=",")
        return data[:, :-1], data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    d = load_digits()
    return np.asarray(d.data, np.float64), np.asarray(d.target, np.int64)


def load_digits_pool(test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    data, target = digits_arrays()
    x = (data / 16.0).astype(np.float32)
    y = target.astype(np.int64)
    g = rngmod.stream(seed, rngmod.DATASET, 0)
    perm = g.permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def build_digits(scenario: Any, population_size: int, params: Any = None) -> PooledDataset:
    """``data.dataset: digits``: scikit-learn's 8x8 digits (1,797 images, bundled)."""
    d = scenario.data
    seed = scenario.seed
    spec = partition_spec(d)
    xtr, ytr, xte, yte = load_digits_pool(d.test_fraction, seed)
    sizes = scenario_sizes(scenario, population_size)
    return PooledDataset(xtr, ytr, xte, yte, 10, sizes, spec.name, spec.alpha,
                         spec.shards_per_client, seed, partition_params=spec.params,
                         input_shape=(1, 8, 8))  # 8x8 grey images, for cnn / custom models


DATASET_ATTRS = ("n_samples", "n_features", "n_classes", "client_data", "test_data")


def build_dataset(scenario: Any, population_size: int) -> FederatedDataset:
    """Build the scenario's dataset for ``population_size`` clients: the ``data.dataset`` builder
    of simulator/core/registry.py ``DATASETS``, with its validated ``data.params``. The
    scenario's model kind must train on what it gives (``InputError`` naming ``model.kind``)."""
    ensure_plugins(scenario)
    check_model_data(scenario)
    d = scenario.data
    build = DATASETS.load(d.dataset)
    params = DATASETS.parse_params(d.dataset, getattr(d, "params", None), "data.params")
    ds = build(scenario, population_size, params)
    missing = [a for a in DATASET_ATTRS if not hasattr(ds, a)]
    if missing:
        raise InputError("data.dataset", f"dataset '{d.dataset}' built a "
                         f"{type(ds).__name__} without {', '.join(missing)}")
    if len(ds.n_samples) != population_size:
        raise InputError("data.dataset", f"dataset '{d.dataset}' gave {len(ds.n_samples)} "
                         f"client sizes for {population_size} clients")
    from simulator.data.client_split import with_client_split

    return with_client_split(ds, scenario)  # held-out splits when clients evaluate


def build_run_dataset(scenario: Any, population_size: int) -> Any:
    """What a run needs: client sizes only in ``mode: analytic`` when the model kind declares
    ``analytic:sizes`` (no corpus is built), else :func:`build_dataset`."""
    kind = scenario.model.kind
    if (scenario.mode == "analytic" and kind in MODEL_KINDS
            and "sizes" in declared(MODEL_KINDS.entry(kind), "analytic")):
        return analytic_dataset(scenario, population_size)
    return build_dataset(scenario, population_size)

