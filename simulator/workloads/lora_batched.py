"""Batched LoRA clients: K clients that share one frozen base model trained in one pass.

The per-client path (``LLMWorkload.train_client``) loads a client's adapters into the resident
peft model and runs its optimizer steps alone. Here the K clients of a group run together:

* the frozen base runs once per step on the K clients' mini-batches stacked along the batch
  dimension ([K*b, seq]; attention never mixes sequences, so clients never see each other);
* every adapted linear layer adds each client's own adapter through a forward hook,
  ``scaling * (x_k A_k^T) B_k^T`` for the rows of client k, as two ``torch.bmm`` over
  [K, b*seq, d] (peft's own adapters are switched off with ``disable_adapter``);
* each client's adapters are rows of leaf tensors ``A`` [K, r_max, d_in] and ``B``
  [K, d_out, r_max]; a client of rank r < r_max has rows / columns ``r:`` zeroed and masked
  (a truncated copy, as the per-client path), so ranks differ within one group;
* the loss is the sum of the clients' own mean losses, so one backward gives every client the
  gradient of its own loss and only for its adapters (the base has ``requires_grad`` off);
* SGD and Adam are applied per client, elementwise on the stacked tensors, exactly as
  ``torch.optim.SGD`` / ``torch.optim.Adam`` (default betas and eps) apply them to one client.
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

GROUP = 8  # clients per batched pass on a CPU: activations stay in cache (8 beat 2-32, measured)
TOLERANCE = 2e-5  # max |batched - per-client| of the final adapters (float32 rounding)


@dataclass
class BatchedResult:
    values: np.ndarray  # float64 [P] state after training
    n: int
    loss: float
    loss_sq: float
    steps: int


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
    # the leaves: every client's adapters at r_max, truncated to its rank
    rank_o = torch.tensor([min(int(ranks[i]), r_max) if ranks[i] > 0 else r_max for i in order])
    keep = (torch.arange(r_max)[None, :] < rank_o[:, None]).float()  # [k, r_max]
    a_leaves: list[torch.Tensor] = []
    b_leaves: list[torch.Tensor] = []
    for pr_i, pr in enumerate(w.pairs):
        sa, sb = _slots(w, pr_i)
        a0 = g[sa.start:sa.stop].view(r_max, pr.d_in)
        b0 = g[sb.start:sb.stop].view(pr.d_out, r_max)
        a_leaves.append((a0.unsqueeze(0) * keep[:, :, None]).contiguous().requires_grad_(True))
        b_leaves.append((b0.unsqueeze(0) * keep[:, None, :]).contiguous().requires_grad_(True))
    leaves = a_leaves + b_leaves
    masks = [keep[:, :, None]] * len(a_leaves) + [keep[:, None, :]] * len(b_leaves)
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
                    _step(leaves, masks, m1, m2, act, s + 1, t, adam, beta1, beta2, eps)
    finally:
        hooks.close()
        w.model.eval()
    out: list[BatchedResult | None] = [None] * k
    with torch.no_grad():
        for j, i in enumerate(order):
            vals = np.empty(w.n_params, np.float64)
            for pr_i in range(len(w.pairs)):
                sa, sb = _slots(w, pr_i)
                vals[sa.start:sa.stop] = a_leaves[pr_i][j].reshape(-1).numpy()
                vals[sb.start:sb.stop] = b_leaves[pr_i][j].reshape(-1).numpy()
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


def _step(leaves: list[torch.Tensor], masks: list[torch.Tensor], m1: list[torch.Tensor],
          m2: list[torch.Tensor], act: int, step: int, t: Any, adam: bool, beta1: float,
          beta2: float, eps: float) -> None:
    """One optimizer step for the first ``act`` clients, as torch.optim does for one client."""
    lr = float(t.lr)
    for j, p in enumerate(leaves):
        if p.grad is None:
            continue
        grad = p.grad[:act] * masks[j][:act]  # a truncated copy: components r: stay zero
        par = p.data[:act]
        if adam:
            ea, es = m1[j][:act], m2[j][:act]
            ea.lerp_(grad, 1 - beta1)
            es.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bc1 = 1 - beta1 ** step
            bc2_sqrt = (1 - beta2 ** step) ** 0.5
            denom = (es.sqrt() / bc2_sqrt).add_(eps)
            par.addcdiv_(ea, denom, value=-lr / bc1)
        elif t.momentum > 0:
            buf = m1[j][:act]
            if step == 1:
                buf.copy_(grad)
            else:
                buf.mul_(t.momentum).add_(grad)
            par.add_(buf, alpha=-lr)
        else:
            par.add_(grad, alpha=-lr)
        p.grad = None
