"""Workload options: what each workload kind of ``model.workloads.order`` can give a device.

A workload kind is ``fn(ctx) -> list[Option]``, its options most capable first (LoRA ranks
descending, partial top-k blocks descending, width rates descending, split cuts ascending),
registered in simulator/core/registry.py ``WORKLOADS`` (a plugin adds one with
``simulator.register_workload``). :class:`OptionContext` carries what every kind's costs share
(closed forms in planning/llm_cost.py and planning/memory.py; nothing here imports torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulator.config.llm import ModelSpec
from simulator.planning import llm_cost as C
from simulator.planning import memory as M
from simulator.planning.ops import llama_ops_per_step
from simulator.planning.precision import (
    Precisions,
    base_saving,
    dequant_flops_per_token,
    down_bytes,
    lora_memory,
    precisions,
)
from simulator.planning.pruning import kept_weights, option_densities, saved_flops_per_token

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
    ops_per_step: float = 0.0  # tensor operations a step dispatches (planning/ops.py; 0: not
    #                            counted, charged the per-step overhead only)
    base_quant: str = "none"  # storage of the frozen base (planning/precision.py)
    density: float = 1.0  # share of block linear weights kept (planning/pruning.py)


@dataclass(frozen=True)
class OptionContext:
    """The model, the scenario and the quantities every workload kind's costs share."""

    spec: ModelSpec
    sc: Any  # the scenario (model.workloads: the kinds' settings)
    opt: float  # optimizer bytes per trainable parameter
    targets: Any  # LoRA target modules (model.workloads.lora_targets or the family's default)
    logits: float  # bytes of one batch's logits
    acts_all: float  # activation bytes of all blocks
    base_down: float  # bytes of the frozen base sent down (0 when devices cache it)
    prec: Precisions | None = None  # the dtypes (planning/precision.py); None: from sc

    @property
    def p(self) -> Precisions:
        return self.prec if self.prec is not None else precisions(self.sc)

    def acts(self, layers: int, width_rate: float = 1.0) -> float:
        """Activation bytes of ``layers`` stored blocks at the activation dtype."""
        sc = self.sc
        return self.p.act_scale * M.activation_bytes(
            self.spec, layers, sc.model.seq_len, sc.training.batch_size,
            sc.model.workloads.activation_checkpointing, width_rate=width_rate)

    def down(self, elements: float, dtype_bytes: float) -> float:
        """Bytes of ``elements`` values sent down (model.workloads.downlink)."""
        return down_bytes(elements, dtype_bytes, self.sc.model.workloads.downlink)

    def rc(self, layers: int, p: float = 1.0) -> float:
        """Recompute FLOPs per token under activation checkpointing (0 without it)."""
        sc = self.sc
        if not sc.model.workloads.activation_checkpointing:
            return 0.0
        return C.recompute_flops_per_token(self.spec, sc.model.seq_len, layers, p)


def option_context(spec: ModelSpec, sc: Any) -> OptionContext:
    m, w, t = sc.model, sc.model.workloads, sc.training
    s, b, db = m.seq_len, t.batch_size, m.dtype_bytes
    p = precisions(sc)
    return OptionContext(
        spec, sc, M.optimizer_bytes_per_param(t.optimizer, t.momentum),
        w.lora_targets or DEFAULT_TARGETS[spec.family], M.logits_bytes(spec, s, b),
        p.act_scale * M.activation_bytes(spec, spec.num_layers, s, b,
                                         w.activation_checkpointing),
        0.0 if w.base_cached else down_bytes(spec.total_params, db, w.downlink), p)


def ops_per_step(ctx: OptionContext, kind: str) -> float:
    t = ctx.sc.training
    n = llama_ops_per_step(ctx.spec, kind, t.optimizer, t.momentum, ctx.targets)
    return 0.0 if n is None else n


def changed_base_bytes(ctx: OptionContext, blocks: tuple[int, int] | None = None,
                       embedding: bool = True) -> float:
    """Bytes of the frozen base that other clients' workloads change every round, within what a
    client holds (``blocks``: its [first, last) blocks, default all; ``embedding``: whether it
    holds the embedding). A cached base (``base_cached``) is stale there and must be fetched
    again: ``partial`` trains the top k_max blocks, ``split`` with ``split_train: full`` the
    embedding and blocks [0, largest cut). 0 without a cached base (the whole base comes down)."""
    spec, m, w = ctx.spec, ctx.sc.model, ctx.sc.model.workloads
    if not w.base_cached:
        return 0.0
    L = spec.num_layers
    lo, hi = blocks if blocks is not None else (0, L)
    changed = [False] * L
    emb = False
    if "partial" in w.order:
        k = max({k for k in w.partial_blocks if k <= L} or {L})
        for i in range(L - k, L):
            changed[i] = True
    if "split" in w.order and w.split_train == "full":
        cuts = C.auto_split_cuts(L) if w.split_cuts == "auto" else list(w.split_cuts)
        for i in range(min(max(cuts, default=0), L)):
            changed[i] = True
        emb = True
    n = sum(changed[i] for i in range(max(lo, 0), min(hi, L)))
    return ctx.down(n * spec.block_params + (spec.embedding_params if emb and embedding else 0),
                    m.dtype_bytes)


def full(ctx: OptionContext) -> list[Option]:
    """The whole model."""
    spec, m, comp = ctx.spec, ctx.sc.model, ctx.sc.model.workloads.compression
    P, L, db = spec.total_params, spec.num_layers, m.dtype_bytes
    pr = ctx.sc.model.workloads.pruning
    out = [Option("full", M.peak_bytes(P, P, db, ctx.opt, ctx.acts_all, ctx.logits), P,
                  C.full_flops_per_token(spec, m.seq_len) + ctx.rc(L), ctx.down(P, db),
                  float(C.upload_bytes(P, ctx.p.update, comp)),
                  ops_per_step=ops_per_step(ctx, "full"), density=d)
           for d in option_densities(pr, ctx.sc.rounds) if d >= 1.0]
    # a pruned model, its mask fixed this round
    for d in (d for d in option_densities(pr, ctx.sc.rounds) if d < 1.0):
        k = kept_weights(spec, pr, d)
        n = P - k.weights + k.kept  # parameters held, trained and sent (values only: the
        #                             server made the mask)
        out.append(Option(
            "full", M.peak_bytes(n, n, db, ctx.opt, ctx.acts_all, ctx.logits) + k.position_bytes,
            n, C.full_flops_per_token(spec, m.seq_len) + ctx.rc(L)
            - saved_flops_per_token(k, pr.method == "structured", 3.0),
            ctx.down(n, db) + k.position_bytes, float(C.upload_bytes(n, ctx.p.update, comp)),
            ops_per_step=ops_per_step(ctx, "full"), density=d))
    return out


def flora_merge_elements(ctx: OptionContext) -> float:
    """Values a FLoRA client (``aggregation.strategy: flora``) with a cached base downloads each
    round to merge the last round's update into it: the stacked factors of the clients
    aggregated, ``K x mean rank x sum(d_in + d_out)`` (``K = clients_per_round``, ranks as
    configured), or the adapted layers' dense weights if fewer; 0 for any other strategy or
    without a cached base (the whole merged base then comes down anyway)."""
    sc = ctx.sc
    if sc.aggregation.strategy != "flora" or not sc.model.workloads.base_cached:
        return 0.0
    ranks = list(sc.model.workloads.lora_ranks)
    stacked = sc.clients_per_round * (sum(ranks) / len(ranks)) * ctx.spec.lora_params(
        1, ctx.targets)
    t = ctx.targets
    dense = sum(lin.d_in * lin.d_out * lin.count for lin in ctx.spec.linears
                if (not lin.is_output if t == "all-linear" else lin.name in t))
    return float(min(stacked, dense))


def lora(ctx: OptionContext) -> list[Option]:
    """LoRA adapters (Hu et al. 2022) on the frozen base, ranks descending; per rank one option
    per base storage of ``base_quantization`` (in its order: the first that fits is taken)."""
    spec, m, w, p = ctx.spec, ctx.sc.model, ctx.sc.model.workloads, ctx.p
    P, L, db = spec.total_params, spec.num_layers, m.dtype_bytes
    b, ck = ctx.sc.training.batch_size, w.activation_checkpointing
    pr = w.pruning
    out = []
    for r in sorted(set(w.lora_ranks), reverse=True):
        pl = spec.lora_params(r, ctx.targets)
        for q in p.base_choices:
            for d in option_densities(pr, ctx.sc.rounds):
                mem = lora_memory(P, pl, p, ctx.opt, ctx.acts_all, ctx.logits)
                fpt = C.lora_flops_per_token(spec, m.seq_len, pl) + ctx.rc(L)
                base_down = ctx.base_down
                if q != "none" or d < 1.0:  # a QLoRA device holds a 4- or 8-bit frozen base
                    mem -= base_saving(spec, db, q, d, pr)
                if q != "none":
                    fpt += dequant_flops_per_token(spec, q, m.seq_len, b, ck)
                if d < 1.0:  # a pruned base: fewer FLOPs (structured), fewer bytes down
                    k = kept_weights(spec, pr, d)
                    fpt -= saved_flops_per_token(k, pr.method == "structured", 2.0 + ck)
                    if not w.base_cached:
                        base_down = ctx.down(P - k.weights + k.kept, db) + k.position_bytes
                merge = ctx.down(flora_merge_elements(ctx), p.update) if w.base_cached else 0.0
                out.append(Option("lora", mem, pl, fpt,
                                  base_down + changed_base_bytes(ctx) + ctx.down(pl, p.update)
                                  + merge,
                                  float(C.upload_bytes(pl, p.update, w.compression)),
                                  rank=r, ops_per_step=ops_per_step(ctx, "lora"), base_quant=q,
                                  density=d))
    return out


def partial(ctx: OptionContext) -> list[Option]:
    """Only the top k blocks train (the rest frozen), k descending."""
    spec, m, w = ctx.spec, ctx.sc.model, ctx.sc.model.workloads
    P, L, blk, db = spec.total_params, spec.num_layers, spec.block_params, m.dtype_bytes
    s = m.seq_len
    ks = sorted({k for k in w.partial_blocks if k <= L} or {L}, reverse=True)
    # its own top k_max too
    down = ctx.down(P, db) if not w.base_cached else changed_base_bytes(ctx)
    out = []
    for k in ks:
        acts = ctx.acts(k)
        out.append(Option("partial", M.peak_bytes(P, k * blk, db, ctx.opt, acts, ctx.logits),
                          k * blk, C.partial_flops_per_token(spec, s, k) + ctx.rc(k), down,
                          float(C.upload_bytes(k * blk, ctx.p.update, w.compression)),
                          blocks=k))
    return out


def split(ctx: OptionContext) -> list[Option]:
    """Split learning (SplitFed): the client keeps the embedding and blocks [0, cut); labels go
    to the server, which runs the rest. Per step, b*s*h activations go up and their gradients
    come down. ``split_train`` "lora" trains rank-``split_lora_rank`` adapters on the client's
    blocks (targets as for LoRA), "full" trains the client's blocks and embedding. Registered
    with ``pick:fastest``: a client takes the admissible cut with the least time."""
    spec, sc, opt, targets = ctx.spec, ctx.sc, ctx.opt, ctx.targets
    m, w, t = sc.model, sc.model.workloads, sc.training
    s, b, db, ck = m.seq_len, t.batch_size, m.dtype_bytes, w.activation_checkpointing
    cuts = (C.auto_split_cuts(spec.num_layers) if w.split_cuts == "auto"
            else sorted(set(w.split_cuts)))
    step = C.split_step_bytes(spec, s, b, ctx.p.wire)  # the activation dtype, not the base's
    u = ctx.p.update
    lora_blk = spec.lora_params(w.split_lora_rank, targets, blocks_only=True)
    lora_all = spec.lora_params(w.split_lora_rank, targets)
    out = []
    for c in cuts:
        base = spec.embedding_params + c * spec.block_params
        if w.split_train == "full":
            train, held, rank = float(base), float(base), 0
            down = ctx.down(base, db)
            srv_lora = 0
        else:
            train, held, rank = float(c * lora_blk), float(base + c * lora_blk), w.split_lora_rank
            down = ctx.down(train, u) + (changed_base_bytes(ctx, (0, c)) if w.base_cached
                                         else ctx.down(base, db))
            srv_lora = lora_all - c * lora_blk
        acts = ctx.acts(c) + 2.0 * step  # + send/receive buffers
        mem = (M.peak_bytes(held, train, db, opt, acts, 0.0) if w.split_train == "full"
               else lora_memory(float(base), train, ctx.p, opt, acts, 0.0))
        out.append(Option(
            "split", mem, train,
            C.split_client_flops_per_token(spec, s, c, int(train) if rank else 0, w.split_train)
            + (C.recompute_flops_per_token(spec, s, c) if ck else 0.0),
            down, float(C.upload_bytes(train, u, w.compression)), rank=rank, cut=c,
            server_flops_per_token=C.split_server_flops_per_token(spec, s, c, srv_lora,
                                                                  w.split_train),
            step_bytes=step))
    return out


def width(ctx: OptionContext) -> list[Option]:
    """HeteroFL width sub-models (Diao et al. 2021), rates descending."""
    spec, m, w = ctx.spec, ctx.sc.model, ctx.sc.model.workloads
    L, db, s = spec.num_layers, m.dtype_bytes, m.seq_len
    out = []
    for p in sorted(set(w.width_rates), reverse=True):
        pw = C.width_params(spec, p)
        acts = ctx.acts(L, width_rate=p)
        out.append(Option("width", M.peak_bytes(pw, pw, db, ctx.opt, acts, ctx.logits), pw,
                          C.width_flops_per_token(spec, s, p) + ctx.rc(L, p), ctx.down(pw, db),
                          float(C.upload_bytes(pw, ctx.p.update, w.compression)), width=p))
    return out
