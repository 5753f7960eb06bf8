"""simulator/workloads/seeded.py: many clients' ``default_rng(seed)`` permutations at once."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.workloads import seeded

EDGE = [0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1]


def _reference(seeds: np.ndarray, lens: np.ndarray, epochs: int) -> np.ndarray:
    parts = []
    for s, n in zip(seeds.tolist(), lens.tolist(), strict=True):
        g = np.random.default_rng(s)
        parts.extend(g.permutation(n) for _ in range(epochs))
    return np.concatenate(parts)


def _seeds(n: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    return np.concatenate([np.array(EDGE, np.uint64),
                           rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False),
                           rng.integers(0, 2**32, n, dtype=np.uint64)])


def test_seed_sequence_words_equal_numpy() -> None:
    seeds = _seeds(300)
    want = np.array([np.random.SeedSequence(s).generate_state(4, np.uint64)
                     for s in seeds.tolist()])
    assert np.array_equal(seeded._state_words(seeds), want)


def test_pcg64_states_equal_default_rng() -> None:
    seeds = _seeds(50)
    for s, st in zip(seeds.tolist(), seeded.states(seeds), strict=True):
        ref = np.random.default_rng(s).bit_generator.state["state"]
        assert (ref["state"], ref["inc"]) == st, s


@pytest.mark.parametrize("epochs", [1, 2, 3])
def test_permutations_equal_default_rng_per_client(epochs: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seeds = _seeds(200)
    lens = np.random.default_rng(epochs).integers(0, 90, len(seeds))
    lens[:3] = [0, 1, 2]
    want = _reference(seeds, lens, epochs)
    assert seeded._exact()  # the vectorised path is the one under test, not the fallback
    # ... and it never builds a Generator per client
    monkeypatch.setattr(np.random, "default_rng", lambda *a: pytest.fail("per-client rng"))
    assert np.array_equal(seeded.permutations(seeds, lens, epochs), want)


def test_fallback_when_numpy_seeds_differently(monkeypatch: pytest.MonkeyPatch) -> None:
    seeds, lens = _seeds(20), np.full(46, 7)
    monkeypatch.setattr(seeded, "_EXACT", False)
    assert np.array_equal(seeded.permutations(seeds, lens, 2), _reference(seeds, lens, 2))


def test_empty() -> None:
    assert seeded.permutations(np.zeros(0, np.uint64), np.zeros(0, np.int64), 1).shape == (0,)
