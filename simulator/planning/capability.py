"""CapabilityPlanner: give each selected device the most capable transformer workload it can run.

Decision procedure (docs/large-models.md). ``model.workloads.order`` lists workload kinds from
most to least preferred, e.g. ``[lora, partial, split]``. Each kind expands into options, most
capable first: LoRA ranks descending, partial top-k blocks descending, width rates descending,
split cuts ascending. An option is *admissible* for a client when its peak memory fits the
device's usable memory and, with ``require_deadline``, its estimated time (download + compute +
upload, as :func:`simulator.core.cost.estimate`) is within ``scenario.deadline_s``. Walking the kinds in
order, a client takes the first admissible option of the first kind that has one; for ``split``
it takes the admissible cut with the smallest time instead. A client for which only the deadline
fails gets the fastest option that fits in memory (``meets_deadline`` False; the round resolver
then calls it a straggler); a client with no option that fits in memory gets ``none`` and is
infeasible (``out_of_memory``).

Costs are closed-form (planning.llm_config / llm_cost / memory): nothing here imports torch.
Work per client per round: n_samples sequences of ``model.seq_len`` tokens, x epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.core.cost import BITS_PER_BYTE, TaskCost
from simulator.planning import llm_cost as C
from simulator.planning import memory as M
from simulator.planning.base import Plan
from simulator.config.llm import ModelSpec, closed_form_spec
from simulator.fleet.population import Population

CHUNK = 16384  # clients planned at once
DEFAULT_TARGETS = {"llama": ("q_proj", "v_proj"), "gpt2": ("c_attn",), "bert": ("query", "value")}


@dataclass(frozen=True)
class Option:
    """One concrete workload and its client-independent costs."""

    kind: str
    memory_bytes: float  # peak on the device
    trainable_params: float
    flops_per_token: float  # client FLOPs per training token
    download_bytes: float  # per round, before per-step split traffic
    upload_bytes: float
    rank: int = 0
    blocks: int = 0
    cut: int = 0
    width: float = 1.0
    server_flops_per_token: float = 0.0  # split: the server's share, waited for by the client
    step_bytes: float = 0.0  # split: activations up and gradients down, each, per step


def build_options(spec: ModelSpec, sc: Any) -> list[Option]:
    """All options of the scenario's workload kinds, grouped by kind in ``order``."""
    m, w, t = sc.model, sc.model.workloads, sc.training
    s, b, db = m.seq_len, t.batch_size, m.dtype_bytes
    opt = M.optimizer_bytes_per_param(t.optimizer, t.momentum)
    ck = w.activation_checkpointing
    comp = w.compression
    P, L, blk = spec.total_params, spec.num_layers, spec.block_params
    targets = w.lora_targets or DEFAULT_TARGETS[spec.family]
    logits = M.logits_bytes(spec, s, b)
    acts_all = M.activation_bytes(spec, L, s, b, ck)
    base_down = 0.0 if w.base_cached else P * db

    def rc(layers: int, p: float = 1.0) -> float:  # recompute under activation checkpointing
        return C.recompute_flops_per_token(spec, s, layers, p) if ck else 0.0

    out: list[Option] = []
    for kind in w.order:
        if kind == "full":
            out.append(Option("full", M.peak_bytes(P, P, db, opt, acts_all, logits), P,
                              C.full_flops_per_token(spec, s) + rc(L), P * db,
                              C.upload_bytes(P, db, comp)))
        elif kind == "lora":
            for r in sorted(set(w.lora_ranks), reverse=True):
                pl = spec.lora_params(r, targets)
                out.append(Option("lora", M.peak_bytes(P + pl, pl, db, opt, acts_all, logits), pl,
                                  C.lora_flops_per_token(spec, s, pl) + rc(L),
                                  base_down + pl * db,
                                  C.upload_bytes(pl, db, comp), rank=r))
        elif kind == "partial":
            ks = sorted({k for k in w.partial_blocks if k <= L} or {L}, reverse=True)
            down = P * db if not w.base_cached else ks[0] * blk * db
            for k in ks:
                acts = M.activation_bytes(spec, k, s, b, ck)
                out.append(Option("partial", M.peak_bytes(P, k * blk, db, opt, acts, logits),
                                  k * blk, C.partial_flops_per_token(spec, s, k) + rc(k), down,
                                  C.upload_bytes(k * blk, db, comp), blocks=k))
        elif kind == "split":
            out.extend(_split_options(spec, sc, opt, targets))
        elif kind == "width":
            for p in sorted(set(w.width_rates), reverse=True):
                pw = C.width_params(spec, p)
                acts = M.activation_bytes(spec, L, s, b, ck, width_rate=p)
                out.append(Option("width", M.peak_bytes(pw, pw, db, opt, acts, logits), pw,
                                  C.width_flops_per_token(spec, s, p) + rc(L, p), pw * db,
                                  C.upload_bytes(pw, db, comp), width=p))
    return out


def _split_options(spec: ModelSpec, sc: Any, opt: float, targets: Any) -> list[Option]:
    """Split learning (SplitFed): the client keeps the embedding and blocks [0, cut); labels go
    to the server, which runs the rest. Per step, b*s*h activations go up and their gradients
    come down. ``split_train`` "lora" trains rank-``split_lora_rank`` adapters on the client's
    blocks (targets as for LoRA), "full" trains the client's blocks and embedding."""
    m, w, t = sc.model, sc.model.workloads, sc.training
    s, b, db, ck = m.seq_len, t.batch_size, m.dtype_bytes, w.activation_checkpointing
    cuts = (C.auto_split_cuts(spec.num_layers) if w.split_cuts == "auto"
            else sorted(set(w.split_cuts)))
    step = C.split_step_bytes(spec, s, b, db)
    lora_blk = spec.lora_params(w.split_lora_rank, targets, blocks_only=True)
    lora_all = spec.lora_params(w.split_lora_rank, targets)
    out = []
    for c in cuts:
        base = spec.embedding_params + c * spec.block_params
        if w.split_train == "full":
            train, held, rank = float(base), float(base), 0
            down = base * db
            srv_lora = 0
        else:
            train, held, rank = float(c * lora_blk), float(base + c * lora_blk), w.split_lora_rank
            down = train * db + (0.0 if w.base_cached else base * db)
            srv_lora = lora_all - c * lora_blk
        acts = M.activation_bytes(spec, c, s, b, ck) + 2.0 * step  # + send/receive buffers
        out.append(Option(
            "split", M.peak_bytes(held, train, db, opt, acts, 0.0), train,
            C.split_client_flops_per_token(spec, s, c, int(train) if rank else 0, w.split_train)
            + (C.recompute_flops_per_token(spec, s, c) if ck else 0.0),
            down, C.upload_bytes(train, db, w.compression), rank=rank, cut=c,
            server_flops_per_token=C.split_server_flops_per_token(spec, s, c, srv_lora,
                                                                  w.split_train),
            step_bytes=step))
    return out


@dataclass
class SizesOnlyDataset:
    """Analytic transformer runs need only each client's number of training sequences."""

    n_samples: np.ndarray  # int64 [N] sequences of model.seq_len tokens
    kind: str = "text"
    n_features: int = 0
    n_classes: int = 0


def analytic_dataset(sc: Any, n: int) -> SizesOnlyDataset:
    """Log-normal sequence counts around ``data.samples_per_client`` (``data.size_sigma``)."""
    from simulator.data.base import client_sizes  # numpy only

    return SizesOnlyDataset(client_sizes(n, sc.data.samples_per_client, sc.data.size_sigma,
                                         sc.seed))


class CapabilityPlanner:
    """Plans transformer workloads per client; see the module docstring for the procedure."""

    def __init__(self, scenario: Any, population: Population | None = None,
                 spec: ModelSpec | None = None) -> None:
        self.sc = scenario
        self.spec = spec or closed_form_spec(scenario.model)
        w = scenario.model.workloads
        self.options = build_options(self.spec, scenario)
        self.kinds = np.array([o.kind for o in self.options], dtype=object)
        self.mem = np.array([o.memory_bytes for o in self.options])
        self.fpt = np.array([o.flops_per_token for o in self.options])
        self.srv = np.array([o.server_flops_per_token for o in self.options])
        self.down = np.array([o.download_bytes for o in self.options])
        self.up = np.array([o.upload_bytes for o in self.options])
        self.step = np.array([o.step_bytes for o in self.options])
        self.attrs = {name: np.array([getattr(o, name) for o in self.options], dtype=dt)
                      for name, dt in (("rank", np.int64), ("blocks", np.int64),
                                       ("cut", np.int64), ("width", np.float64),
                                       ("trainable_params", np.float64))}
        self.order = w.order
        self.require_deadline = w.require_deadline
        self.server_rate = w.split_server_flops_per_s

    def option_costs(self, ids: np.ndarray, population: Population
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per (option, client): download, upload, equivalent FLOPs, waiting s, total s.

        A split client waits for the server (its share ``split_server_flops_per_s``) and one
        round trip per step; that wait is charged as compute time (FLOPs at the client's own
        rate) so :func:`simulator.core.cost.estimate` and the round resolver see the true duration.
        ``total`` repeats estimate's arithmetic in the same order on [opt, n] arrays, so it equals
        ``estimate(...).total_s`` of the chosen option bit for bit.
        """
        sc, p = self.sc, population
        seqs = p.n_samples[ids].astype(np.float64)
        tokens = seqs * sc.model.seq_len * sc.training.epochs  # [n]
        steps = C.steps_per_round(seqs, sc.training.batch_size, sc.training.epochs)
        fps, lat = p.train_flops_per_s[ids], p.latency_s[ids].astype(np.float64)
        split = self.step > 0
        wait = (self.srv[:, None] * tokens / self.server_rate
                + np.where(split[:, None], steps * lat, 0.0))  # [opt, n]
        flops = self.fpt[:, None] * tokens + wait * fps
        down = self.down[:, None] + self.step[:, None] * steps
        up = self.up[:, None] + self.step[:, None] * steps
        bits = BITS_PER_BYTE
        total = ((lat + down * bits / p.downlink_bits_per_s[ids]) + flops / fps
                 + (lat + up * bits / p.uplink_bits_per_s[ids]))
        return down, up, flops, wait, total

    def choose(self, fits: np.ndarray, in_time: np.ndarray, total: np.ndarray) -> np.ndarray:
        """Option index per client (-1: nothing fits in memory); arrays are [opt, n]."""
        n = fits.shape[1]
        ok = fits & in_time if self.require_deadline else fits
        chosen = np.full(n, -1, np.int64)
        for kind in self.order:
            rows = np.flatnonzero(self.kinds == kind)
            if rows.size == 0:
                continue
            todo = chosen < 0
            sub = ok[rows][:, todo]
            has = sub.any(axis=0)
            if kind == "split":  # the cut with the least client time (compute, transfer, wait)
                pick = np.argmin(np.where(sub, total[rows][:, todo], np.inf), axis=0)
            else:  # the most capable option: options are listed most capable first
                pick = np.argmax(sub, axis=0)
            idx = np.flatnonzero(todo)[has]
            chosen[idx] = rows[pick[has]]
        late = (chosen < 0) & fits.any(axis=0)  # fits in memory, misses the deadline everywhere
        if late.any():
            chosen[late] = np.argmin(np.where(fits[:, late], total[:, late], np.inf), axis=0)
        return chosen

    def plan(self, round: int, ids: np.ndarray, population: Population) -> Plan:
        """The workload of each client in ``ids`` (in chunks: memory stays ~O(options x CHUNK))."""
        ids = np.asarray(ids, np.int64)
        if len(ids) <= CHUNK:
            return self._plan(ids, population)
        parts = [self._plan(ids[i:i + CHUNK], population) for i in range(0, len(ids), CHUNK)]
        cat = lambda get: np.concatenate([get(q) for q in parts])
        cost = TaskCost(*(cat(lambda q, f=f: getattr(q.cost, f))  # type: ignore[misc]
                          for f in ("download_bytes", "upload_bytes", "train_flops",
                                    "memory_bytes")))
        cols = {k: cat(lambda q, k=k: q.columns[k]) for k in parts[0].columns}
        return Plan(cost, cat(lambda q: q.infeasible), cat(lambda q: q.kind), cols)

    def _plan(self, ids: np.ndarray, population: Population) -> Plan:
        n = len(ids)
        down, up, flops, wait, total = self.option_costs(ids, population)
        fits = self.mem[:, None] <= population.memory_bytes[ids][None, :]
        dl = self.sc.deadline_s
        in_time = total <= dl if dl is not None else np.ones_like(fits)
        chosen = self.choose(fits, in_time, total)
        none = chosen < 0
        j = np.where(none, 0, chosen)
        cols = np.arange(n)

        def pick(a: np.ndarray) -> np.ndarray:
            return np.where(none, 0.0, a[j, cols])

        def attr(name: str) -> np.ndarray:
            a = self.attrs[name][j]
            return np.where(none, 1.0 if name == "width" else 0, a).astype(a.dtype)

        mem = np.where(none, 0.0, self.mem[j])
        cost = TaskCost(download_bytes=pick(down), upload_bytes=pick(up),
                        train_flops=pick(flops), memory_bytes=mem)
        columns = {
            "rank": attr("rank"),
            "blocks": attr("blocks"),
            "cut": attr("cut"),
            "width": attr("width"),
            "memory_bytes": mem,
            "trainable_params": attr("trainable_params"),
            "server_wait_s": pick(wait),
            "meets_deadline": ~none & np.where(none, False, in_time[j, cols]),
        }
        kind = np.where(none, "none", self.kinds[j]).astype(object)
        return Plan(cost, none, kind, columns)
