"""``np.random.default_rng(seed)`` for many integer seeds at once, bit for bit.

Building a Generator from an integer runs numpy's ``SeedSequence`` hash (a few dozen 32-bit
multiply-xorshift steps) and PCG64's seeding in Python-level objects: ~15-25 us a client, which
is a large share of a batched MLP round where each client then draws one small permutation. The
hash constants do not depend on the seed, so the whole hash vectorises over an array of seeds
(uint32 lanes); PCG64's 128-bit seeding is two multiply-adds per seed. One Generator is then
re-pointed at each seed's state, so every draw equals ``default_rng(seed)``'s.

The algorithm is numpy's documented ``SeedSequence`` (numpy/random/bit_generator.pyx) and
``pcg64_set_seed``; :func:`permutations` checks a few seeds against numpy itself once per
process and falls back to ``default_rng`` per seed if numpy ever changed either.
"""

from __future__ import annotations

import numpy as np

_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_POOL = 4
_M32 = 0xFFFFFFFF
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645
_M128 = (1 << 128) - 1


def _consts(init: int, mult: int, n: int) -> list[int]:
    """The hash constant before each of n hashmix steps (it evolves independently of data)."""
    out, h = [], init
    for _ in range(n):
        out.append(h)
        h = (h * mult) & _M32
    return out


_HA_ALL = np.array(_consts(_INIT_A, _MULT_A, _POOL + _POOL * (_POOL - 1) + 1), np.uint32)
_HA, _HA_NEXT = _HA_ALL[:-1], _HA_ALL[1:]  # hashmix xors the constant, then multiplies by the next
_HB_ALL = np.array(_consts(_INIT_B, _MULT_B, 9), np.uint32)
_HB, _HB_NEXT = _HB_ALL[:-1], _HB_ALL[1:]


def _hm(v: np.ndarray, ks: slice) -> np.ndarray:
    """numpy's hashmix of v ([L, N] or [N]) with the hash constants of steps ks, one per row."""
    h = _HA[ks][:, None]
    v = (v ^ h) * _HA_NEXT[ks][:, None]
    return v ^ (v >> np.uint32(16))


def _state_words(seeds: np.ndarray) -> np.ndarray:
    """SeedSequence(seed).generate_state(4, np.uint64) for each uint64 seed: [N, 4] uint64.

    An integer seed is split into its uint32 words (one for seeds < 2**32, else two) and the
    pool's missing words are hashmix(0): a one-word seed is hashed exactly as [lo, 0], so every
    seed goes through the same four lanes. In mix_entropy's second loop a source lane is hashed
    once per destination with the next constant and mixed into the other three lanes, which do
    not change in between: one vectorised step per source lane."""
    s = np.asarray(seeds, np.uint64)
    words = np.zeros((_POOL, len(s)), np.uint32)
    words[0] = (s & np.uint64(_M32)).astype(np.uint32)
    words[1] = (s >> np.uint64(32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        mixer = _hm(words, slice(0, _POOL))
        k = _POOL
        for src in range(_POOL):
            dst = [d for d in range(_POOL) if d != src]
            hashed = _hm(mixer[src][None, :], slice(k, k + _POOL - 1))  # [3, N]
            k += _POOL - 1
            r = np.uint32(_MIX_L) * mixer[dst] - np.uint32(_MIX_R) * hashed
            mixer[dst] = r ^ (r >> np.uint32(16))
        v = (mixer[np.arange(8) % _POOL] ^ _HB[:, None]) * _HB_NEXT[:, None]
        v ^= v >> np.uint32(16)
    return np.ascontiguousarray(v.T).view(np.uint64)


def states(seeds: np.ndarray) -> list[tuple[int, int]]:
    """PCG64 ``(state, inc)`` of ``default_rng(seed)`` for each seed."""
    val = _state_words(seeds)
    out = []
    for a, b, c, d in val.tolist():
        inc = ((((c << 64) | d) << 1) | 1) & _M128
        # pcg_setseq_128_srandom_r: state 0, one step (state = inc), add the seed, one step
        st = ((inc + ((a << 64) | b)) * _PCG_MULT + inc) & _M128
        out.append((st, inc))
    return out


_EXACT: bool | None = None  # whether this numpy seeds as above (checked once per process)


def _exact() -> bool:
    global _EXACT
    if _EXACT is None:
        seeds = np.array([0, 1, 2**32 - 1, 2**32, 2**64 - 1, 12345678901234567], np.uint64)
        ok = True
        for s, (st, inc) in zip(seeds.tolist(), states(seeds), strict=True):
            ref = np.random.default_rng(s).bit_generator.state
            ok &= ref["bit_generator"] == "PCG64" and \
                (ref["state"]["state"], ref["state"]["inc"]) == (st, inc)
        _EXACT = ok
    return _EXACT


def permutations(seeds: np.ndarray, lens: np.ndarray, epochs: int) -> np.ndarray:
    """``concatenate([default_rng(s).permutation(n) for each epoch] for s, n in ...)``: per
    client, ``epochs`` permutations of ``range(n)`` drawn from one generator seeded with its
    seed, in that order (as ``mlp.batch_plan`` draws them), for all clients at once."""
    seeds = np.asarray(seeds, np.uint64)
    lens = np.asarray(lens, np.int64)
    out = np.empty(int(lens.sum()) * epochs, np.int64)
    if len(seeds) == 0:
        return out
    if not _exact():  # numpy changed its seeding: the slow exact path
        parts: list[np.ndarray] = []
        for s, n in zip(seeds.tolist(), lens.tolist(), strict=True):
            g = np.random.default_rng(s)
            parts.extend(g.permutation(n) for _ in range(epochs))
        return np.concatenate(parts) if parts else out
    # Generator.permutation(n) is arange(n) shuffled in place: lay out every arange at once
    seg = np.repeat(lens, epochs)
    starts = np.zeros(len(seg), np.int64)
    np.cumsum(seg[:-1], out=starts[1:])
    out[:] = np.arange(len(out)) - np.repeat(starts, seg)
    g = np.random.Generator(np.random.PCG64(0))
    bg, shuffle = g.bit_generator, g.shuffle
    inner: dict[str, int] = {"state": 0, "inc": 0}
    d = {"bit_generator": "PCG64", "state": inner, "has_uint32": 0, "uinteger": 0}
    i = 0
    for (st, inc), n in zip(states(seeds), lens.tolist(), strict=True):
        inner["state"], inner["inc"] = st, inc
        bg.state = d
        for _ in range(epochs):
            shuffle(out[i:i + n])
            i += n
    return out
