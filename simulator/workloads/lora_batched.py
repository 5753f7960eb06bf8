"""Batched LoRA clients: K clients that share one frozen base model trained in one pass.

The per-client path (``LLMWorkload.train_client``) loads a client's adapters into the resident
peft model and runs its optimizer steps alone. Here the K clients of a group run together:

* the frozen base runs once per step on the K clients' mini-batches stacked along the batch
  dimension ([K*b, seq]; attention never mixes sequences, so clients never see each other);
* every adapted linear layer adds each client's own adapter through a forward hook,
  ``scaling * (x_k A_k^T) B_k^T`` for the rows of client k, as two ``torch.bmm`` over
  [K, b*seq, d] (peft's own adapters are switched off with ``disable_adapter``);
* each client's adapters are rows of leaf tensors ``A`` [K, r_g, d_in] and ``B``
  [K, d_out, r_g] (``r_g`` the group's largest rank; ``train_clients`` groups clients by rank,
  about ``GROUP_TOKENS`` tokens per step); a client of rank r < r_g has rows / columns ``r:``
  zero (a truncated copy, as the per-client path; their gradients are exact zeros), so ranks
  may differ within one group;
* the loss is the sum of the clients' own mean losses, so one backward gives every client the
  gradient of its own loss and only for its adapters (the base has ``requires_grad`` off);
* SGD and Adam are applied per client, elementwise on the stacked tensors (``torch._foreach_*``
  over all leaves at once), with the arithmetic of
  ``torch.optim.SGD`` / ``torch.optim.Adam`` (default betas and eps) for one client.
  Clients are ordered by step count, so those still training at step s are a prefix of the
  group; finished clients are neither computed nor updated.

Each client follows the trajectory it follows alone, up to float rounding (the base's matmuls
run on a larger batch); ``tests/test_lora_batched.py`` checks the final adapters against
per-client peft training within ``TOLERANCE``. Used for ``lora`` jobs (no split, no dropout,
an adapter-only global state) when ``executor.batched_lora`` is true (opt-in: float rounding
changes a run's digits); anything else trains per client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from simulator.workloads.mlp import batch_plan

# clients per batched pass on a CPU: about GROUP_TOKENS tokens, so activations stay in cache
# (measured: 8 clients of 8 x 64 tokens beat 4-32 on the hidden-64 Llama; 16-32 clients of
# 8 x 16 tokens beat 4-8 on a hidden-32 one)
GROUP_TOKENS = 4096
MIN_GROUP, MAX_GROUP = 4, 64
TOLERANCE = 2e-5  # max |batched - per-client| of the final adapters (float32 rounding)


@dataclass
class BatchedResult:
    values: np.ndarray  # float64 [P] state after training
    n: int
    loss: float
    loss_sq: float
    steps: int


def group_size(batch_size: int, seq_len: int) -> int:
    """Clients per batched pass: about ``GROUP_TOKENS`` tokens per step."""
    return int(min(MAX_GROUP, max(MIN_GROUP, GROUP_TOKENS // max(1, batch_size * seq_len))))


def can_batch(workload: Any, kinds: np.ndarray) -> bool:
    """True when every job is a plain LoRA client and the state holds only adapters."""
    st = workload.state
    if st.lora is None or st.lora.dropout > 0 or st.base != "none":
        return False
    if workload.train_cfg.optimizer not in ("sgd", "adam"):
        return False
    if not all(s.side for s in workload.layout.slots):
        return False
    return bool(len(kinds)) and all(str(k) == "lora" for k in kinds)


class _Adapters:
    """The forward hooks: add each client's adapter to its rows of every adapted layer."""

    def __init__(self, workload: Any) -> None:
        self.pairs = workload.pairs
        self.scaling = float(workload.state.lora.scaling)
        self.a: list[torch.Tensor] = []  # per pair: [k, r, d_in] (views of the leaves)
        self.b: list[torch.Tensor] = []
        self.handles: list[Any] = []
        self.owner: torch.Tensor | None = None  # client of each sequence when batches differ
        names = {p.module for p in self.pairs}
        index = {p.module: i for i, p in enumerate(self.pairs)}
        for name, module in workload.model.named_modules():
            short = name.split("base_model.model.", 1)[-1]
            if short in names:
                self.handles.append(module.register_forward_hook(self._hook(index[short])))

    def _hook(self, i: int) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor
                 ) -> torch.Tensor:
            a, b = self.a[i], self.b[i]
            x = inputs[0]
            if self.owner is None:  # every client has a full batch: [k, b*seq, d] views
                k = a.shape[0]
                xk = x.reshape(k, -1, a.shape[2])
                out = output.reshape(k, -1, b.shape[1])
            else:  # ragged: one adapter per sequence (rows gathered; grads index_add back)
                a, b = a.index_select(0, self.owner), b.index_select(0, self.owner)
                xk, out = x, output
            # output + scaling * (x A^T) B^T, the add and the scaling fused in one baddbmm
            u = torch.baddbmm(out, torch.bmm(xk, a.transpose(1, 2)), b.transpose(1, 2),
                              alpha=self.scaling)
            return u.reshape(output.shape)

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def train_clients(workload: Any, global_flat: np.ndarray, cids: list[int], seeds: list[int],
                  ranks: list[int]) -> list[BatchedResult]:
    """Train ``cids`` in groups of ``group_size`` clients (of one rank where possible: a group's
    adapters run at its largest rank); results in the order of ``cids``."""
    if not cids:
        return []
    seq_len = int(workload._client_data(cids[0])[0].shape[1])
    group = group_size(workload.train_cfg.batch_size, seq_len)
    order = sorted(range(len(cids)), key=lambda i: -int(ranks[i]))
    out: list[BatchedResult | None] = [None] * len(cids)
    for s in range(0, len(order), group):
        part = order[s:s + group]
        got = train_group(workload, global_flat, [cids[i] for i in part],
                          [seeds[i] for i in part], [ranks[i] for i in part])
        for i, res in zip(part, got, strict=True):
            out[i] = res
    return [r for r in out if r is not None]


def train_group(workload: Any, global_flat: np.ndarray, cids: list[int], seeds: list[int],
                ranks: list[int]) -> list[BatchedResult]:
    """Train ``cids`` (LoRA, ranks ``ranks``) together from ``global_flat``; results in order."""
    w = workload
    t = w.train_cfg
    k = len(cids)
    r_max = w.state.lora.r_max
    data = [w._client_data(c) for c in cids]
    plans = [batch_plan(len(y), t.epochs, t.batch_size, np.random.default_rng(int(sd)))
             for (_, y), sd in zip(data, seeds, strict=True)]
    n_steps = np.array([p.shape[0] for p in plans], np.int64)
    order = np.argsort(-n_steps, kind="stable")  # most steps first: active clients = a prefix
    steps = int(n_steps.max()) if k else 0
    active_at = [(n_steps > s).sum() for s in range(steps)]
    g = torch.from_numpy(np.ascontiguousarray(global_flat, np.float32))
    # the leaves: every client's adapters at the group's largest rank r_g (components beyond it
    # are zero for every client of the group and cost nothing), truncated to its own rank
    rank_o = torch.tensor([min(int(ranks[i]), r_max) if ranks[i] > 0 else r_max for i in order])
    r_g = int(rank_o.max()) if k else r_max
    keep = (torch.arange(r_g)[None, :] < rank_o[:, None]).float()  # [k, r_g]
    a_leaves: list[torch.Tensor] = []
    b_leaves: list[torch.Tensor] = []
    for pr_i, pr in enumerate(w.pairs):
        sa, sb = _slots(w, pr_i)
        a0 = g[sa.start:sa.stop].view(r_max, pr.d_in)[:r_g]
        b0 = g[sb.start:sb.stop].view(pr.d_out, r_max)[:, :r_g]
        a_leaves.append((a0.unsqueeze(0) * keep[:, :, None]).contiguous().requires_grad_(True))
        b_leaves.append((b0.unsqueeze(0) * keep[:, None, :]).contiguous().requires_grad_(True))
    leaves = a_leaves + b_leaves
    adam = t.optimizer == "adam"
    m1 = [torch.zeros_like(p) for p in leaves] if adam or t.momentum > 0 else []
    m2 = [torch.zeros_like(p) for p in leaves] if adam else []
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    xs = [torch.from_numpy(data[i][0]) for i in order]
    ys = [torch.from_numpy(data[i][1]) for i in order]
    pl = [plans[i] for i in order]
    tot = torch.zeros(k, dtype=torch.float64)
    tot_sq = torch.zeros(k, dtype=torch.float64)
    count = torch.zeros(k, dtype=torch.float64)
    hooks = _Adapters(w)
    for p in w.layout.params:
        p.requires_grad_(False)
    try:
        with w.model.disable_adapter(), torch.enable_grad():
            for s in range(steps):
                act = int(active_at[s])
                rows = [pl[j][s][pl[j][s] >= 0] for j in range(act)]
                lens = torch.tensor([len(r) for r in rows], dtype=torch.int64)
                idx = [torch.from_numpy(r) for r in rows]
                xb = torch.cat([xs[j][idx[j]] for j in range(act)])  # [rows, seq], real only
                yb = torch.cat([ys[j][idx[j]] for j in range(act)])
                full = bool((lens == lens[0]).all())
                hooks.owner = None if full else torch.repeat_interleave(torch.arange(act), lens)
                hooks.a = [p[:act] for p in a_leaves]
                hooks.b = [p[:act] for p in b_leaves]
                logits = w.model(input_ids=xb).logits
                per_row = nn.functional.cross_entropy(logits.transpose(1, 2), yb,
                                                      reduction="none").mean(1)  # [rows]
                owner = torch.repeat_interleave(torch.arange(act), lens)
                cnt = lens.to(torch.float32)
                # the sum of the clients' own mean losses: one backward, each its own gradient
                (per_row / cnt[owner]).sum().backward()
                d = per_row.detach().double()
                tot[:act] += torch.zeros(act, dtype=torch.float64).index_add_(0, owner, d)
                tot_sq[:act] += torch.zeros(act, dtype=torch.float64).index_add_(0, owner, d * d)
                count[:act] += cnt.double()
                with torch.no_grad():
                    _step(leaves, m1, m2, act, s + 1, t, adam, beta1, beta2, eps)
    finally:
        hooks.close()
        w.model.eval()
    out: list[BatchedResult | None] = [None] * k
    with torch.no_grad():
        for j, i in enumerate(order):
            vals = np.zeros(w.n_params, np.float64)  # components beyond r_g stay zero
            for pr_i, pr in enumerate(w.pairs):
                sa, sb = _slots(w, pr_i)
                vals[sa.start:sa.stop].reshape(r_max, pr.d_in)[:r_g] = a_leaves[pr_i][j].numpy()
                vals[sb.start:sb.stop].reshape(pr.d_out, r_max)[:, :r_g] = \
                    b_leaves[pr_i][j].numpy()
            c = max(float(count[j]), 1.0)
            out[i] = BatchedResult(vals, len(data[i][1]), float(tot[j]) / c,
                                   float(tot_sq[j]) / c, int(n_steps[i]))
    return [r for r in out if r is not None]


def _slots(w: Any, pair: int) -> tuple[Any, Any]:
    cache = w.__dict__.setdefault("_pair_slots", {})
    hit = cache.get(pair)
    if hit is None:
        a = next(s for s in w.layout.slots if s.pair == pair and s.side == "A")
        b = next(s for s in w.layout.slots if s.pair == pair and s.side == "B")
        hit = cache[pair] = (a, b)
    return hit


def _step(leaves: list[torch.Tensor], m1: list[torch.Tensor], m2: list[torch.Tensor], act: int,
          step: int, t: Any, adam: bool, beta1: float, beta2: float, eps: float) -> None:
    """One optimizer step for the first ``act`` clients, as torch.optim does for one client
    (its single-tensor arithmetic, applied to every leaf at once with ``torch._foreach_*``).

    No mask is needed: a truncated client's components ``r:`` are exact zeros in ``A`` (rows)
    and ``B`` (columns), so their gradients are exact zeros (each is a product with the other
    factor's zero block) and SGD, momentum and Adam (``0 / (0 + eps)``) leave them at zero.
    """
    lr = float(t.lr)
    live = [j for j, p in enumerate(leaves) if p.grad is not None]
    if not live:
        return
    grads = [leaves[j].grad[:act] for j in live]  # type: ignore[index]
    pars = [leaves[j].data[:act] for j in live]
    if adam:
        ea, es = [m1[j][:act] for j in live], [m2[j][:act] for j in live]
        torch._foreach_lerp_(ea, grads, 1 - beta1)
        torch._foreach_mul_(es, beta2)
        torch._foreach_addcmul_(es, grads, grads, value=1 - beta2)
        bc1 = 1 - beta1 ** step
        bc2_sqrt = (1 - beta2 ** step) ** 0.5
        denom = torch._foreach_sqrt(es)
        torch._foreach_div_(denom, bc2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(pars, ea, denom, value=-lr / bc1)
    elif t.momentum > 0:
        bufs = [m1[j][:act] for j in live]
        if step == 1:
            torch._foreach_copy_(bufs, grads)
        else:
            torch._foreach_mul_(bufs, t.momentum)
            torch._foreach_add_(bufs, grads)
        torch._foreach_add_(pars, bufs, alpha=-lr)
    else:
        torch._foreach_add_(pars, grads, alpha=-lr)
    for j in live:
        leaves[j].grad = None
