"""Client data sizes around ``data.samples_per_client`` (numpy only): log-normal
(``data.size_sigma``) by default, or a power law (``data.size_distribution: powerlaw``, Pareto
with shape ``data.size_exponent``, the heavy tail of LEAF's and FedScale's client sizes).

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


def powerlaw_sizes(n: int, median: int, exponent: float, seed: int) -> np.ndarray:
    """Pareto(shape ``exponent``) sizes scaled so that their median is ``median``: a few clients
    hold most samples (P(size > s) ~ s^-exponent)."""
    g = rngmod.stream(seed, rngmod.PARTITION, 0)
    raw = (g.pareto(exponent, n) + 1.0) / 2.0 ** (1.0 / exponent)  # classical Pareto, median 1
    out: np.ndarray = np.maximum(np.rint(median * raw), 2).astype(np.int64)
    return out


def data_sizes(d: Any, n: int, seed: int) -> np.ndarray:
    """Client sizes of a scenario's data block ``d`` (``data.size_distribution``)."""
    if getattr(d, "size_distribution", "lognormal") == "powerlaw":
        return powerlaw_sizes(n, d.samples_per_client, d.size_exponent, seed)
    return client_sizes(n, d.samples_per_client, d.size_sigma, seed)


def scenario_sizes(sc: Any, n: int) -> np.ndarray:
    """Client sizes of the scenario's data block (``data.size_distribution``)."""
    return data_sizes(sc.data, n, sc.seed)


@dataclass
class SizesOnlyDataset:
    """Analytic transformer runs need only each client's number of training sequences."""

    n_samples: np.ndarray  # int64 [N] sequences of model.seq_len tokens
    kind: str = "text"
    n_features: int = 0
    n_classes: int = 0


def analytic_dataset(sc: Any, n: int) -> SizesOnlyDataset:
    """Log-normal sequence counts around ``data.samples_per_client`` (``data.size_sigma``)."""
    return SizesOnlyDataset(scenario_sizes(sc, n))
