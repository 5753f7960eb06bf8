"""Secure aggregation cost model (Bonawitz et al., "Practical Secure Aggregation for
Privacy-Preserving Machine Learning", CCS 2017; pure numpy).

Pairwise masking, semi-honest variant, four message rounds:
  0 AdvertiseKeys   client -> server: 2 public keys;   server -> client: everyone's keys
  1 ShareKeys       client -> server: n-1 encrypted Shamir shares (of its mask key and self-mask
                    seed), one per peer; server -> client: the n-1 addressed to it
  2 MaskedInput     client -> server: x + PRG(b_u) + sum_v +-PRG(s_uv), elements of
                    input_bits + ceil(log2 n) bits (the sum of n inputs must not wrap);
                    server -> client: the survivor list U3
  3 Unmasking       client -> server: one share per peer (b_v for survivors, s_v for dropouts)
Client compute: n PRG expansions of the masked vector (n-1 pairwise + 1 self mask) and
2(n-1) key agreements. Server compute: |U3| self masks + |U2 \\ U3| x |U3| pairwise masks to
remove (<= n^2 expansions, the paper's O(m n^2)). The server can unmask only when at least
t = ceil(threshold_fraction x n) clients survive; otherwise the round fails (no model update).
Dropouts after the unmasking request are not modelled.

What is masked (``masked_layout``): the ring holds the update's elements, not its bytes. An
uncompressed update of d values is quantized to ``input_bits`` fixed point; int8/int4 updates
mask their d 8/4-bit values and their ceil(d / block) scales (``scale_bytes`` wide); a top-k
update is masked *dense*: pairwise masks cancel only if every client masks the same coordinates,
so all d coordinates go up at ``input_bits`` and the sparsity is lost (Bonawitz et al. 2017
sec. 3 mask the whole vector; sparse SecAgg needs a different protocol). Without the element
count (the MLP planner), the plain bytes are taken as ``input_bits``-wide elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from simulator.core import outcomes as R
from simulator.core.cost import BITS_PER_BYTE, Timing
from simulator.planning import Plan


def ring_bits(input_bits: int, n: int) -> int:
    """Bits per masked element so that the sum of n inputs cannot overflow."""
    return int(input_bits + math.ceil(math.log2(max(n, 1))))


def masked_layout(elements: Any, compression: Any, input_bits: int) -> tuple[Any, Any]:
    """(masked elements, their value bits in total) of an update of ``elements`` values under
    ``compression`` (model.workloads.compression; None: uncompressed)."""
    d = np.asarray(elements, np.float64)
    method = getattr(compression, "method", "none")
    if method in ("int8", "int4"):
        scales = np.ceil(d / compression.block_size)
        bits = d * (8 if method == "int8" else 4) + scales * compression.scale_bytes * BITS_PER_BYTE
        return d + scales, bits
    return d, d * input_bits  # none: quantized to input_bits; topk: dense masks


def masked_bytes(n: int, plain_bytes: Any, cfg: Any, elements: Any = None,
                 value_bits: Any = None) -> Any:
    """Bytes of one masked input: every element gets ceil(log2 n) bits so the sum of n cannot
    wrap. Default layout: ``plain_bytes`` of ``input_bits``-wide elements."""
    if elements is None:
        elements = plain_bytes * BITS_PER_BYTE / cfg.input_bits
        value_bits = elements * cfg.input_bits
    extra = ring_bits(cfg.input_bits, n) - cfg.input_bits
    return (value_bits + elements * extra) / BITS_PER_BYTE


def threshold(n: int, fraction: float) -> int:
    """Minimum survivors t = ceil(fraction * n) (at least 1)."""
    return max(1, math.ceil(fraction * n - 1e-9))


def secagg_failed(survivors: int, n: int, fraction: float) -> bool:
    """True when the server cannot unmask: fewer than t of the n participants survived."""
    return survivors < threshold(n, fraction)


@dataclass(frozen=True)
class ClientOverhead:
    """Extra bytes and seconds one client spends on SecAgg, for n participants, m plain bytes."""

    setup_up_bytes: Any  # rounds 0 and 1 (float, or an array like plain_bytes)
    setup_down_bytes: Any
    masked_extra_bytes: Any  # round 2, beyond the plain update
    unmask_up_bytes: Any  # round 3
    survivor_list_bytes: Any  # round 2 reply
    prg_bytes: Any  # mask material each client expands
    key_agreements: int

    @property
    def up_bytes(self) -> Any:
        return self.setup_up_bytes + self.masked_extra_bytes + self.unmask_up_bytes

    @property
    def down_bytes(self) -> Any:
        return self.setup_down_bytes + self.survivor_list_bytes


def client_overhead(n: int, plain_bytes: Any, cfg: Any, elements: Any = None,
                    value_bits: Any = None) -> ClientOverhead:
    """Per-client SecAgg overhead for ``n`` participants and a ``plain_bytes`` update (a number or
    a numpy column: every field broadcasts); ``elements``/``value_bits``: its masked layout
    (``masked_layout``; default ``plain_bytes`` of ``input_bits``-wide elements)."""
    peers = max(n - 1, 0)
    masked = masked_bytes(n, plain_bytes, cfg, elements, value_bits)
    enc_share = 2 * cfg.share_bytes + 2 * cfg.id_bytes + cfg.aead_overhead_bytes
    return ClientOverhead(
        setup_up_bytes=2 * cfg.key_bytes + peers * enc_share,
        setup_down_bytes=n * (2 * cfg.key_bytes + cfg.id_bytes) + peers * enc_share,
        masked_extra_bytes=masked - plain_bytes,
        unmask_up_bytes=peers * (cfg.share_bytes + cfg.id_bytes),
        survivor_list_bytes=n * cfg.id_bytes,
        prg_bytes=n * masked,
        key_agreements=2 * peers,
    )


def server_prg_bytes(survivors: int, dropped: int, plain_bytes: float, n: int, cfg: Any,
                     masked: float | None = None) -> float:
    """Mask material the server regenerates: self masks of survivors, pairwise masks between
    each dropped participant and each survivor (``masked``: one masked input's bytes)."""
    if masked is None:
        masked = float(masked_bytes(n, plain_bytes, cfg))
    return float((survivors + dropped * survivors) * masked)


def expansion_factor(n: int, elements: int, cfg: Any) -> float:
    """Client upload with SecAgg / plain upload (the paper's 'communication expansion')."""
    plain = elements * cfg.input_bits / BITS_PER_BYTE
    o = client_overhead(n, plain, cfg)
    return (plain + o.up_bytes) / plain


@dataclass
class SecAggRound:
    """One round's SecAgg bookkeeping, between ``charge`` and ``settle``."""

    n: int
    plain_bytes: np.ndarray
    extra_up: np.ndarray
    extra_down: np.ndarray
    extra_s: np.ndarray
    failed: bool = False
    server_s: float = 0.0
    survivors: int = 0
    threshold: int | None = None  # set when several cohorts are merged (one per edge)
    masked: np.ndarray | None = None  # bytes of each client's masked input


class SecureAggregator:
    """A step of the server chain (simulator/aggregation/chain.py): charge clients the SecAgg
    terms, then decide whether the round can unmask."""

    name = "secagg"

    def __init__(self, cfg: Any, compression: Any = None) -> None:
        self.cfg = cfg
        self.compression = compression  # model.workloads.compression (transformer plans)

    def charge(self, plan: Plan, timing: Timing, downlink: np.ndarray, uplink: np.ndarray,
               latency: np.ndarray, absent: np.ndarray | None = None
               ) -> tuple[Plan, Timing, SecAggRound]:
        """Add the protocol's bytes and seconds to each invited client (before resolution).

        ``absent``: clients that decline at once (e.g. low battery) and never join round 0, like
        the planner's infeasible (out-of-memory) ones."""
        cfg = self.cfg
        started = ~np.asarray(plan.infeasible, bool)
        if absent is not None:
            started &= ~np.asarray(absent, bool)
        n = int(started.sum())
        plain = np.broadcast_to(np.asarray(plan.cost.upload_bytes, np.float64),
                                started.shape).astype(np.float64)
        d = plan.columns.get("trainable_params")  # update elements (the capability planner)
        if d is None:
            elements = value_bits = None
        else:
            elements, value_bits = masked_layout(
                np.broadcast_to(np.asarray(d, np.float64), started.shape), self.compression,
                cfg.input_bits)
        o = client_overhead(n, plain, cfg, elements, value_bits)  # one entry per invited client
        ring = np.broadcast_to(masked_bytes(n, plain, cfg, elements, value_bits),
                               started.shape).astype(np.float64)
        on = started.astype(np.float64)
        setup_up, setup_down = o.setup_up_bytes * on, o.setup_down_bytes * on
        masked, unmask_up = o.masked_extra_bytes * on, o.unmask_up_bytes * on
        surv, prg = o.survivor_list_bytes * on, o.prg_bytes * on
        agreements = 2.0 * max(n - 1, 0) * started
        lat = np.asarray(latency, np.float64)
        # Rounds 0-1 precede training (charged to the download phase), mask expansion to compute,
        # the larger masked input and the unmasking reply to the upload phase.
        setup_s = np.where(started, 2 * lat + setup_up * BITS_PER_BYTE / uplink
                           + (setup_down + surv) * BITS_PER_BYTE / downlink, 0.0)
        prg_s = prg / cfg.prg_bytes_per_s + agreements * cfg.key_agreement_s
        up_s = np.where(started, lat + (masked + unmask_up) * BITS_PER_BYTE / uplink, 0.0)
        new_timing = Timing(timing.download_s + setup_s, timing.compute_s + prg_s,
                            timing.upload_s + up_s)
        extra_up = setup_up + masked + unmask_up
        extra_down = setup_down + surv
        cost = replace(plan.cost,
                       download_bytes=np.asarray(plan.cost.download_bytes, np.float64) + extra_down,
                       upload_bytes=plain + extra_up)
        sa = SecAggRound(n, plain, extra_up, extra_down, setup_s + prg_s + up_s, masked=ring)
        return replace(plan, cost=cost), new_timing, sa

    def settle(self, sa: SecAggRound, out: R.RoundOutcome) -> R.RoundOutcome:
        """Threshold check after resolution; a successful round waits for the server's unmasking."""
        done = out.outcome == R.COMPLETED
        sa.survivors = int(done.sum())
        sa.failed = sa.n == 0 or secagg_failed(sa.survivors, sa.n, self.cfg.threshold_fraction)
        if sa.failed or sa.survivors == 0:
            return out
        dropped = sa.n - sa.survivors
        plain = float(sa.plain_bytes[done].max())
        masked = None if sa.masked is None else float(sa.masked[done].max())
        sa.server_s = server_prg_bytes(sa.survivors, dropped, plain, sa.n, self.cfg, masked) \
            / self.cfg.server_prg_bytes_per_s
        return replace(out, duration_s=out.duration_s + sa.server_s)

    def merge(self, rounds: list[SecAggRound]) -> SecAggRound:
        """One record of several cohorts (the edges of a hierarchical round): sums of
        participants, thresholds and bytes; failed if any cohort failed; the slowest unmasking."""
        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(r, name) for r in rounds])

        frac = self.cfg.threshold_fraction
        return SecAggRound(sum(r.n for r in rounds), cat("plain_bytes"), cat("extra_up"),
                           cat("extra_down"), cat("extra_s"), any(r.failed for r in rounds),
                           max((r.server_s for r in rounds), default=0.0),
                           sum(r.survivors for r in rounds),
                           sum(threshold(r.n, frac) if r.n else 0 for r in rounds),
                           cat("masked") if all(r.masked is not None for r in rounds) else None)

    def record(self, rnd: int, ids: np.ndarray, released: np.ndarray, row: dict[str, Any],
               cols: dict[str, np.ndarray], sa: SecAggRound) -> None:
        row["secagg_failed"] = bool(sa.failed)
        row["secagg_participants"] = sa.n
        row["secagg_threshold"] = (sa.threshold if sa.threshold is not None else
                                   threshold(sa.n, self.cfg.threshold_fraction) if sa.n else 0)
        row["secagg_bytes_up"] = float(sa.extra_up.sum())
        row["secagg_bytes_down"] = float(sa.extra_down.sum())
        row["secagg_client_s"] = float(sa.extra_s.max(initial=0.0))
        row["secagg_server_s"] = float(sa.server_s)
        cols["secagg_bytes_up"] = sa.extra_up
        cols["secagg_bytes_down"] = sa.extra_down
        cols["secagg_s"] = sa.extra_s


def make_secure_aggregator(scenario: Any) -> SecureAggregator | None:
    cfg = getattr(scenario, "secure_aggregation", None)
    if cfg is None or not cfg.enabled:
        return None
    workloads = getattr(getattr(scenario, "model", None), "workloads", None)
    return SecureAggregator(cfg, getattr(workloads, "compression", None))
