"""Helpers shared by the selection policies: column state and vectorised sampling.

Per-client policy state lives in population-sized numpy columns (one entry per client id), so a
selector over 1,000,000 clients holds a few MB and a round costs a few vector operations over
the candidates; nothing loops over clients in Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator import FedFleetError


class ColumnState:
    """``state_dict``/``load_state_dict`` for selectors whose state is named attributes.

    ``_columns`` name numpy arrays (saved in the checkpoint's .npz); ``_scalars`` name JSON-able
    values (floats, ints, bools, lists). Loading checks each column's length against the
    population, so a checkpoint from another scenario fails with a clear message.
    """

    _columns: tuple[str, ...] = ()
    _scalars: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: np.array(getattr(self, k), copy=True) for k in self._columns}
        for k in self._scalars:
            out[k] = _jsonable(getattr(self, k))
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self._columns:
            if k not in state:
                raise FedFleetError(f"selector checkpoint: missing column '{k}'")
            cur = getattr(self, k)
            new = np.asarray(state[k])
            if cur.ndim and new.shape[0] != cur.shape[0] and k not in self._variable_columns():
                raise FedFleetError(f"selector checkpoint: column '{k}' has {new.shape[0]} rows, "
                                    f"the population has {cur.shape[0]}")
            setattr(self, k, new.astype(cur.dtype, copy=True))
        for k in self._scalars:
            if k in state:
                setattr(self, k, state[k])

    def _variable_columns(self) -> tuple[str, ...]:
        """Array state whose length is not the population's (e.g. last round's picks)."""
        return ()


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def top_k(ids: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Positions (into ``ids``/``score``) of the ``k`` largest scores (unordered)."""
    m = len(ids)
    if k >= m:
        return np.arange(m)
    if k <= 0:
        return np.zeros(0, np.int64)
    return np.argpartition(-score, k - 1)[:k]


def random_keys_smallest(key: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the ``k`` smallest integer-valued ``key``s, ties broken uniformly at random."""
    m = len(key)
    if k >= m:
        return np.arange(m)
    if k <= 0:
        return np.zeros(0, np.int64)
    jittered = key.astype(np.float64) + rng.random(m)  # a uniform in [0, 1) keeps integer bands
    return np.argpartition(jittered, k - 1)[:k]


def weighted_sample(ids: np.ndarray, weights: np.ndarray, k: int,
                    rng: np.random.Generator) -> np.ndarray:
    """``k`` ids without replacement, each draw with probability proportional to its weight.

    Efraimidis & Spirakis (2006) keys ``log(u)/w``: the k largest keys are a sample equal in law
    to k sequential weighted draws without replacement, in O(M) (numpy's ``choice(p=...,
    replace=False)`` loops). Zero or non-finite weights are taken last, uniformly at random.
    """
    m = len(ids)
    if k >= m:
        return ids.copy()
    if k <= 0:
        return ids[:0].copy()
    w = np.asarray(weights, np.float64)
    ok = np.isfinite(w) & (w > 0)
    u = rng.random(m)
    keys = np.full(m, -np.inf)
    with np.errstate(divide="ignore"):
        keys[ok] = np.log(u[ok]) / w[ok]
    n_ok = int(ok.sum())
    if n_ok >= k:
        return ids[np.argpartition(-keys, k - 1)[:k]]
    rest = np.flatnonzero(~ok)
    fill = rest[np.argpartition(u[rest], k - n_ok - 1)[: k - n_ok]]
    return np.concatenate([ids[ok], ids[fill]])


def uniform_sample(ids: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    if k >= len(ids):
        return ids.copy()
    return rng.choice(ids, size=k, replace=False)
