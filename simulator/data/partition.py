"""Partitioners (``data.partition``): one client's mix over the dataset's classes or styles.

A partitioner is ``fn(g, sizes, spec) -> probabilities``: ``g`` is the client's own random
stream, ``sizes`` the pool size of each class (ones for text styles), ``spec`` a
:class:`PartitionSpec` with the data block's settings and the partitioner's validated
``data.partition_params``. Registered in simulator/core/registry.py ``PARTITIONERS``; a plugin adds
one with ``simulator.register_partitioner``. The client then draws its samples with these
probabilities (simulator/data/base.py ``PooledDataset``, simulator/data/text.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.core.registry import PARTITIONERS


@dataclass(frozen=True)
class PartitionSpec:
    name: str
    alpha: float = 0.5  # data.alpha: Dirichlet concentration
    shards_per_client: int = 2  # data.shards_per_client
    params: Any = None  # the partitioner's validated data.partition_params (None: it takes none)


def iid(g: np.random.Generator, sizes: np.ndarray, spec: PartitionSpec) -> np.ndarray:
    """The pool's own class mix (uniform over text styles)."""
    p = np.asarray(sizes, dtype=np.float64)
    out: np.ndarray = p / p.sum()
    return out


def dirichlet(g: np.random.Generator, sizes: np.ndarray, spec: PartitionSpec) -> np.ndarray:
    """Dirichlet(alpha) label skew (Hsu, Qi & Brown 2019)."""
    p = np.maximum(g.dirichlet(np.full(len(sizes), spec.alpha)), 0.0)
    out: np.ndarray = p / p.sum()
    return out


def shards(g: np.random.Generator, sizes: np.ndarray, spec: PartitionSpec) -> np.ndarray:
    """``shards_per_client`` classes per client, equally weighted (McMahan et al. 2017)."""
    c = len(sizes)
    p = np.zeros(c)
    p[g.choice(c, size=min(spec.shards_per_client, c), replace=False)] = 1.0
    out: np.ndarray = p / p.sum()
    return out


def natural(g: np.random.Generator, sizes: np.ndarray, spec: PartitionSpec) -> np.ndarray:
    """The dataset's own clients; generated text has authors: a Dirichlet(alpha) style mix."""
    return dirichlet(g, sizes, spec)


def partition_spec(data: Any) -> PartitionSpec:
    """The scenario data block's partition (its parameters validated)."""
    params = PARTITIONERS.parse_params(data.partition, getattr(data, "partition_params", None),
                                       "data.partition_params")
    return PartitionSpec(data.partition, data.alpha, data.shards_per_client, params)


def partitioner(spec: PartitionSpec) -> Any:
    return PARTITIONERS.load(spec.name)
