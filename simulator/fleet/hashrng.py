"""Counter-based uniforms: u(seed, purpose, slot, client) as a pure function of its keys.

A stream (simulator/core/rng.py) gives draws in order; availability must instead answer "is
client c online at t?" for any subset of clients and in any order (the availability index asks
about a few ids, a round about all), and give the same answer each time. SplitMix64 (Steele,
Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014) finalises a 64-bit
key mixed from the four integers; the top 53 bits make a uniform in [0, 1).
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniform(seed: int, purpose: int, slot: int, ids: np.ndarray) -> np.ndarray:
    """One uniform in [0, 1) per id, a pure function of (seed, purpose, slot, id)."""
    with np.errstate(over="ignore"):
        k = _mix(np.uint64(seed % 2**64) * _GOLDEN + np.uint64(purpose))
        k = _mix(k + np.uint64(slot % 2**64) * _GOLDEN)
        z = _mix(k + np.asarray(ids).astype(np.uint64) * _GOLDEN + _GOLDEN)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
