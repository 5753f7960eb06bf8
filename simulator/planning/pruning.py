"""Pruned block linear weights: which weights are kept and how many bytes their encoding takes
(docs/large-models.md 'Pruning'). Pure arithmetic, no torch.

Per weight matrix [d_out, d_in] (n = d_out x d_in), at density d, as torch.nn.utils.prune counts:

- ``magnitude`` (l1_unstructured): ``n - round((1 - d) n)`` weights kept anywhere in the matrix.
  Encoding, whichever is smaller (:func:`encoding`): the kept values plus their positions as
  ``index_bytes`` indices (``values+indices``) or as a bitmap of ``ceil(n / 8)`` bytes
  (``values+bitmap``); at d = 1 the matrix is sent dense. Dense kernels run it: no FLOP saving.
- ``structured`` (ln_structured, L1, dim 0): ``d_out - round((1 - d) d_out)`` whole output rows
  kept; the kept rows are a smaller dense matrix and a ``ceil(d_out / 8)``-byte row bitmap says
  which (``rows+bitmap``). FLOPs of the matrix scale with the kept share.

The values themselves cost what the caller says (its dtype, a quantized storage, or a downlink
encoding); only the positions are added here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simulator.config.llm import ModelSpec


@dataclass(frozen=True)
class Kept:
    """Block-linear weights of the model, and of them the ones a pruning keeps."""

    weights: float  # all block linear weights
    kept: float  # weights kept
    position_bytes: float  # bytes saying where the kept weights are (0 when unpruned)
    encoding: str  # dense | values+indices | values+bitmap | rows+bitmap | mixed


def keep_count(n: int, density: float) -> int:
    """Weights (or rows) ``torch.nn.utils.prune`` keeps of ``n`` at ``amount = 1 - density``."""
    return n - int(round((1.0 - density) * n))


def encoding(n: int, kept: int, index_bytes: float) -> tuple[float, str]:
    """(position bytes, name) of ``kept`` unstructured weights of ``n``: the smaller of
    indices and a bitmap; dense when nothing is pruned."""
    if kept >= n:
        return 0.0, "dense"
    coo, bitmap = kept * index_bytes, float(math.ceil(n / 8))
    return (coo, "values+indices") if coo < bitmap else (bitmap, "values+bitmap")


def kept_weights(spec: ModelSpec, pruning: Any, density: float) -> Kept:
    """Per block linear matrix of ``spec`` (see the module docstring), summed."""
    method = getattr(pruning, "method", "none")
    total = kept = pos = 0.0
    names: set[str] = set()
    for lin in spec.linears:
        if not lin.in_blocks:
            continue
        n = lin.d_in * lin.d_out
        total += lin.count * n
        if method == "none" or density >= 1.0:
            kept += lin.count * n
            names.add("dense")
            continue
        if method == "structured":
            rows = keep_count(lin.d_out, density)
            kept += lin.count * rows * lin.d_in
            pos += lin.count * math.ceil(lin.d_out / 8)
            names.add("rows+bitmap")
        else:
            k = keep_count(n, density)
            b, name = encoding(n, k, pruning.index_bytes)
            kept += lin.count * k
            pos += lin.count * b
            names.add(name)
    return Kept(total, kept, pos, names.pop() if len(names) == 1 else "mixed")


def saved_flops_per_token(k: Kept, structured: bool, passes: float) -> float:
    """FLOPs per token structured pruning saves: 2 per removed weight per pass over it
    (forward 1, backward input gradients 1, weight gradients 1 when the base trains)."""
    return 2.0 * passes * (k.weights - k.kept) if structured else 0.0


def density_at(pruning: Any, rnd: int) -> float:
    """The global model's density in round ``rnd`` (``schedule: prunefl``: densities[0] x
    factor ** (rnd // every_rounds), not below final_density; fixed: densities[0])."""
    d0 = float(pruning.densities[0])
    if getattr(pruning, "schedule", "fixed") != "prunefl":
        return d0
    lo = min(float(pruning.final_density), d0)
    return max(lo, d0 * pruning.factor ** (max(rnd, 0) // pruning.every_rounds))


def option_densities(pruning: Any, rounds: int) -> list[float]:
    """Densities the planner gives options for, densest first: every scheduled one (prunefl)
    or ``densities``."""
    if getattr(pruning, "schedule", "fixed") == "prunefl":
        ds = {density_at(pruning, t) for t in range(0, max(rounds, 1), pruning.every_rounds)}
    else:
        ds = set(pruning.densities)
    return sorted(ds, reverse=True)
