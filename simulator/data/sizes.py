"""Client data sizes: log-normal around ``data.samples_per_client`` (numpy only).

Also the sizes-only dataset of analytic runs whose model kind declares ``analytic:sizes`` (a
transformer costed in closed form needs each client's number of sequences, not the corpus).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.core import rng as rngmod


def client_sizes(n: int, median: int, sigma: float, seed: int) -> np.ndarray:
    g = rngmod.stream(seed, rngmod.PARTITION, 0)
    sizes = np.rint(median * np.exp(sigma * g.standard_normal(n)))
    out: np.ndarray = np.maximum(sizes, 2).astype(np.int64)
    return out


@dataclass
class SizesOnlyDataset:
    """Analytic transformer runs need only each client's number of training sequences."""

    n_samples: np.ndarray  # int64 [N] sequences of model.seq_len tokens
    kind: str = "text"
    n_features: int = 0
    n_classes: int = 0


def analytic_dataset(sc: Any, n: int) -> SizesOnlyDataset:
    """Log-normal sequence counts around ``data.samples_per_client`` (``data.size_sigma``)."""
    return SizesOnlyDataset(client_sizes(n, sc.data.samples_per_client, sc.data.size_sigma,
                                         sc.seed))
