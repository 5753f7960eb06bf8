"""Hierarchical FL maths (HierFAVG, Liu et al., "Client-Edge-Cloud Hierarchical Federated
Learning", ICC 2020): pure numpy (the ``hierarchy:`` block lives in
simulator/config/hierarchy.py).

Clients -> edge aggregators -> cloud. Each edge round, every edge runs a synchronous FedAvg round
over its own clients (clients train ``training.epochs`` local epochs: HierFAVG's kappa_1) and
updates its edge model; every ``edge_rounds_per_cloud_round`` edge rounds (kappa_2) the edges
send their models over their backhaul to the cloud, which waits for the slowest edge, averages the
edge models weighted by the samples their clients trained on since the last cloud round, and sends
the result back. With one edge and kappa_2 = 1 this is exactly flat FedAvg (tests check it).

Edges keep their own clocks between cloud rounds: a fast edge starts its next edge round without
waiting for the others; only the cloud round synchronises them.
"""

from __future__ import annotations

import numpy as np

from simulator.core.cost import BITS_PER_BYTE


# --- pure functions ------------------------------------------------------------------------------
def assign_edges(n_clients: int, n_edges: int, rule: str = "modulo") -> np.ndarray:
    """Edge id of every client: ``id % n_edges`` or contiguous blocks of ids."""
    ids = np.arange(n_clients, dtype=np.int64)
    if rule == "block":
        return (ids * n_edges // max(n_clients, 1)).astype(np.int32)
    return (ids % n_edges).astype(np.int32)


def split_per_edge(k: int, edge_sizes: np.ndarray) -> np.ndarray:
    """Clients per edge round for each edge: k split in proportion to edge sizes (largest
    remainder), at least 1 for a non-empty edge, never more than the edge holds."""
    sizes = np.asarray(edge_sizes, np.float64)
    raw = k * sizes / max(sizes.sum(), 1.0)
    out = np.floor(raw).astype(np.int64)
    rem = k - int(out.sum())
    if rem > 0:
        order = np.argsort(-(raw - out), kind="stable")
        out[order[:rem]] += 1
    out = np.where(sizes > 0, np.maximum(out, 1), 0)
    return np.minimum(out, sizes.astype(np.int64))


def transfer_s(n_bytes: float, bits_per_s: np.ndarray, latency_s: np.ndarray) -> np.ndarray:
    """Seconds to move ``n_bytes`` over each link (one round trip included)."""
    return np.asarray(latency_s, np.float64) + n_bytes * BITS_PER_BYTE / np.asarray(bits_per_s)


def cloud_round_times(edge_ready_s: np.ndarray, up_s: np.ndarray, down_s: np.ndarray,
                      sending: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Cloud aggregation timing.

    Edge e finishes its last edge round at ``edge_ready_s[e]``; ``sending`` edges upload their
    model (``up_s``), the cloud aggregates when the slowest one has arrived, then every edge
    receives the new model after ``down_s``. Returns (cloud time, arrival per edge, resume per
    edge). With no sending edge the cloud "aggregates" when the last edge is ready.
    """
    ready = np.asarray(edge_ready_s, np.float64)
    arrival = np.where(sending, ready + up_s, np.nan)
    t_cloud = float(np.nanmax(arrival)) if np.any(sending) else float(ready.max(initial=0.0))
    t_cloud = max(t_cloud, float(ready.max(initial=0.0)))
    return t_cloud, arrival, t_cloud + np.asarray(down_s, np.float64)


def shared_backhaul(n_bytes: float, ready_s: np.ndarray, sending: np.ndarray,
                    up_bits_per_s: np.ndarray, down_bits_per_s: np.ndarray,
                    latency_s: np.ndarray, ingress_bits_per_s: float | None,
                    egress_bits_per_s: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-edge upload and download seconds when the cloud's link is shared (``capacity:``):
    sending edges upload from when each is ready through the cloud's ingress; every edge then
    downloads the new model at once through its egress (max-min fair,
    simulator/fleet/capacity.py). Same shapes as :func:`transfer_s` gives."""
    from simulator.fleet.capacity import fluid_share

    lat = np.asarray(latency_s, np.float64)
    bits = n_bytes * BITS_PER_BYTE
    up = transfer_s(n_bytes, up_bits_per_s, lat)
    idx = np.flatnonzero(sending)
    if idx.size:
        start = ready_s[idx] + lat[idx]
        end = fluid_share(start, np.full(idx.size, bits), np.asarray(up_bits_per_s)[idx],
                          ingress_bits_per_s)
        up[idx] = end - ready_s[idx]
    t_cloud = float(np.max(np.where(sending, ready_s + up, -np.inf), initial=0.0))
    t_cloud = max(t_cloud, float(np.max(ready_s, initial=0.0)))
    n = len(lat)
    down = fluid_share(np.full(n, t_cloud) + lat, np.full(n, bits),
                       np.asarray(down_bits_per_s, np.float64), egress_bits_per_s) - t_cloud
    return up, down


def cloud_average(edge_models: np.ndarray, weights: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Weighted average of edge models [E, P]; ``fallback`` when every weight is 0.

    The weights are normalised first, so a single contributing edge gets weight exactly 1.0 and
    the cloud model equals that edge's model bit for bit."""
    w = np.asarray(weights, np.float64)
    total = w.sum()
    if total <= 0:
        return fallback.copy()
    p = w / total
    out = np.zeros(edge_models.shape[1], np.float64)
    for e in np.flatnonzero(p > 0):  # edge order: deterministic
        out += p[e] * edge_models[e].astype(np.float64)
    return out.astype(fallback.dtype)

