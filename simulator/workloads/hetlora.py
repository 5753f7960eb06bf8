"""HetLoRA aggregation (Cho et al. 2024, "Heterogeneous LoRA for Federated Fine-tuning of
On-Device Foundation Models", EMNLP): pure numpy, no torch.

Clients get truncated copies of the global rank-``r_max`` adapters (first ``r_i`` rows of ``A``,
first ``r_i`` columns of ``B``), train them, and send them back. The server **zero-pads** each
client's factors to ``r_max`` and takes the weighted average of the padded factors::

    A_new = sum_i w_i * pad(A_i) / sum_i w_i        (w_i = client i's number of sequences)

so a rank component that only some clients hold is averaged *with zeros* from the clients that do
not hold it (this is the paper's rule; it shrinks high-rank components when few high-rank clients
take part - the "dilution" later work such as Byun & Lee 2024 tries to avoid). We follow the paper.
The paper's optional sparsity weighting (w_i proportional to ||B_i A_i||_F) is not implemented:
weights are data sizes, as in FedAvg.

In the engine's delta form (``new = global + sum w*delta / sum w`` per coordinate) this is: the
client's mask covers *all* ``r_max`` components of the adapters it trained, and on the padded
components its delta is ``0 - global``. ``client_contribution`` builds exactly that; the per-
coordinate weights of :class:`~simulator.aggregation.Partial` then reproduce the paper's average,
bit-identically for any actor layout.
"""

from __future__ import annotations

import numpy as np


def truncate(a: np.ndarray, b: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The copy a rank-``rank`` client receives: ``A[:r]`` [r, d_in], ``B[:, :r]`` [d_out, r]."""
    return a[:rank].copy(), b[:, :rank].copy()


def pad(a_r: np.ndarray, b_r: np.ndarray, r_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad a client's factors back to ``r_max``."""
    r = a_r.shape[0]
    a = np.zeros((r_max, a_r.shape[1]), a_r.dtype)
    b = np.zeros((b_r.shape[0], r_max), b_r.dtype)
    a[:r] = a_r
    b[:, :r] = b_r
    return a, b


def aggregate(clients: list[tuple[np.ndarray, np.ndarray]], weights: list[float],
              r_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference HetLoRA aggregate of ``[(A_i [r_i, d_in], B_i [d_out, r_i])]`` (for tests)."""
    padded = [pad(a, b, r_max) for a, b in clients]
    w = np.asarray(weights, np.float64)
    a = sum(wi * pa for wi, (pa, _) in zip(w, padded, strict=True)) / w.sum()
    b = sum(wi * pb for wi, (_, pb) in zip(w, padded, strict=True)) / w.sum()
    return a, b


def rank_mask(d_in: int, d_out: int, r_max: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """1 on the components a rank-``rank`` client holds (what it sends), 0 on the padding."""
    ma = np.zeros((r_max, d_in))
    mb = np.zeros((d_out, r_max))
    ma[:rank] = 1.0
    mb[:, :rank] = 1.0
    return ma, mb


def client_contribution(global_flat: np.ndarray, client_flat: np.ndarray,
                        trained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(delta, aggregation mask) of one client in the engine's delta form.

    ``client_flat`` holds the client's padded parameters (zeros on components beyond its rank)
    and ``trained`` marks the tensors it trained, *including* their padded components, which
    therefore enter the average as zeros with the client's weight.
    """
    delta = np.where(trained > 0, client_flat.astype(np.float64) - global_flat.astype(np.float64),
                     0.0)
    return delta, trained.astype(np.float64)
