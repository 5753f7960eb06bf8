"""Derived random streams: every draw comes from (seed, purpose, round[, client]).

Streams are independent of executor layout: a per-round stream draws for the selected clients in
ascending client-id order, and per-client training streams are keyed by the client id, so the
same scenario gives the same tables on one actor or many.
"""

from __future__ import annotations

import numpy as np

# Purpose tags keep streams for different uses apart (small ints, never reused).
POPULATION = 1
PARTITION = 2
AVAILABILITY = 3
SELECTION = 4
DROPOUT = 5
TRAINING = 6
DATASET = 7
PLANNING = 8
PRIVACY = 9
INIT = 10


def seed_sequence(seed: int, purpose: int, *keys: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), int(purpose), *(int(k) for k in keys)])


def stream(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """A numpy Generator for (seed, purpose, *keys)."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, purpose, *keys)))


def int_seed(seed: int, purpose: int, *keys: int) -> int:
    """A 63-bit integer seed (for torch.manual_seed) for (seed, purpose, *keys)."""
    return int(seed_sequence(seed, purpose, *keys).generate_state(1, dtype=np.uint64)[0] >> 1)
