"""LEAF's synthetic(alpha, beta) federated dataset (Li et al., "Federated Optimization in
Heterogeneous Networks", MLSys 2020; LEAF, Caldas et al. 2018).

Client k: u_k ~ N(0, alpha), B_k ~ N(0, beta); W_k, b_k ~ N(u_k, 1); v_k ~ N(B_k, 1);
x ~ N(v_k, diag(j^-1.2)); y = argmax(W_k x + b_k). alpha controls how much local models differ,
beta how much local features differ. Client sizes follow LEAF's power law (log-normal).
Each client is generated on demand from (seed, client), so any population size works.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.core import rng as rngmod


class SyntheticLeaf:
    kind = "classification"

    def __init__(self, cfg, population_size: int, seed: int) -> None:  # type: ignore[no-untyped-def]
        self.cfg = cfg
        self.seed = seed
        self.n_features = cfg.dim
        self.n_classes = cfg.classes
        g = rngmod.stream(seed, rngmod.PARTITION, 0)
        # LEAF draws sizes from lognormal(4, 2); we scale the median to ``mean_samples``.
        raw = g.lognormal(0.0, 1.0, population_size)
        self.n_samples = np.maximum(np.rint(raw * cfg.mean_samples / np.exp(0.5)),
                                    2).astype(np.int64)
        self._cov_diag = np.arange(1, cfg.dim + 1, dtype=np.float64) ** -1.2
        self._test: tuple[np.ndarray, np.ndarray] | None = None

    def _generate(self, key: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.cfg
        g = rngmod.stream(self.seed, rngmod.DATASET, 1, key)
        u = g.normal(0.0, np.sqrt(c.alpha)) if c.alpha > 0 else 0.0
        b_mean = g.normal(0.0, np.sqrt(c.beta)) if c.beta > 0 else 0.0
        w = g.normal(u, 1.0, (c.dim, c.classes))
        b = g.normal(u, 1.0, c.classes)
        v = g.normal(b_mean, 1.0, c.dim)
        x = v + g.standard_normal((n, c.dim)) * np.sqrt(self._cov_diag)
        y = np.argmax(x @ w + b, axis=1)
        return x.astype(np.float32), y.astype(np.int64)

    def client_data(self, cid: int) -> tuple[np.ndarray, np.ndarray]:
        return self._generate(cid, int(self.n_samples[cid]))

    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out virtual clients (ids beyond the population) from the same distribution."""
        if self._test is None:
            per = max(1, self.cfg.test_samples // 100)
            parts = [self._generate(10_000_000_000 + j, per) for j in range(100)]
            self._test = (np.concatenate([p[0] for p in parts]),
                          np.concatenate([p[1] for p in parts]))
        return self._test


def build_synthetic(scenario: Any, population_size: int, params: Any = None) -> SyntheticLeaf:
    """``data.dataset: synthetic``: settings in ``data.synthetic`` (each client's own
    distribution is the heterogeneity, so ``data.partition`` does not apply)."""
    return SyntheticLeaf(scenario.data.synthetic, population_size, scenario.seed)
